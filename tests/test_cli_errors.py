"""Every `dynamo` subcommand turns a user error into one clear line and a non-zero exit, no traceback;
`--debug` shows the traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


def dynamo(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dynamo.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "binary.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)
    (d / "bad.yaml").write_text("train: {lr: .nan}\n")
    (d / "scores").mkdir()
    score = d / "runs" / "grpo" / "seed1" / "eval" / "b" / "scores.json"
    score.parent.mkdir(parents=True)
    score.write_text('{"samples_per_problem": 4, "pass_at_1": 0.')
    return d


TRAIN = ["train", "--method", "grpo", "--seed", "1", "--out", "{d}/r", "--config"]
REPORT = ["report", "--methods", "grpo", "--seeds", "1", "--benchmarks", "b", "--out", "{d}/t", "--runs-root"]
CASES = {
    "grade_missing": (["grade", "--input", "{d}/nope.jsonl", "--out", "{d}/o.jsonl"], "nope.jsonl"),
    "grade_binary": (["grade", "--input", "{d}/binary.jsonl", "--out", "{d}/o.jsonl"], "binary.jsonl"),
    "evaluate_no_model": (
        ["evaluate", "--model", "{d}/no-model", "--benchmarks", "x", "--out", "{d}/e"],
        "no-model",
    ),
    "evaluate_twice": (["evaluate", "--model", "{d}", "--benchmarks", "a,a", "--out", "{d}/e"], "listed twice"),
    "train_missing_config": ([*TRAIN, "{d}/none.yaml"], "none.yaml"),
    "train_bad_config": ([*TRAIN, "{d}/bad.yaml"], "config.train.lr"),
    "warmstart_missing_data": (
        ["warmstart", "--model", "{d}/m", "--data", "{d}/sft.jsonl", "--out", "{d}/w"],
        "{d}/",
    ),
    "report_missing_runs": ([*REPORT, "{d}/nothing"], "scores.json"),
    "report_damaged_scores": ([*REPORT, "{d}/runs"], "scores.json: damaged JSON"),
    "figures_missing_runs": (
        ["figures", "--methods", "grpo", "--seeds", "1", "--runs-root", "{d}/no"],
        "metrics.jsonl",
    ),
    "evaluate_bare_arith_split": (
        ["evaluate", "--model", "{d}", "--benchmarks", "arith-easy", "--out", "{d}/e"],
        "--benchmarks arith-easy=data/embedded/arith-easy.jsonl",
    ),
    "evaluate_negative_seed": (
        ["evaluate", "--model", "{d}", "--benchmarks", "a", "--seed", "-1", "--out", "{d}/e"],
        "--seed -1: a seed must be an integer in [0, 4294967295]",
    ),
    "train_negative_seed": (
        ["train", "--method", "grpo", "--seed", "-1", "--out", "{d}/r", "--config", "{d}/bad.yaml"],
        "--seed -1: a seed must be an integer in [0, 4294967295]",
    ),
    "report_unknown_baseline": (
        [*REPORT, "{d}/runs", "--baseline", "gpro"],
        "--baseline 'gpro' is not one of the table's methods: grpo",
    ),
    "verify_missing": (["verify", "{d}/nothing"], "nothing: no such file or directory"),
    "build_model_bad_heads": (["build-model", "--out", "{d}/tiny", "--hidden", "30", "--heads", "4"], "head"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_user_errors_are_one_line_without_traceback(files, name):
    args, needle = CASES[name]
    args = [a.format(d=files) for a in args]
    out = dynamo(*args)
    err = out.stderr.strip()
    assert out.returncode != 0
    assert "Traceback" not in err, err
    # One line says what is wrong (the last one; libraries may log warnings before it).
    last = err.splitlines()[-1]
    assert needle.format(d=files) in last, err
    assert sum(needle.format(d=files) in line for line in err.splitlines()) == 1, err


def test_debug_shows_the_traceback(files):
    out = dynamo("grade", "--input", f"{files}/nope.jsonl", "--out", f"{files}/o.jsonl", "--debug")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_evaluate_help_shows_the_name_path_form_of_the_arithmetic_splits():
    out = dynamo("evaluate", "--help")
    assert out.returncode == 0 and "arith-easy=data/EXP/arith-easy.jsonl" in out.stdout
