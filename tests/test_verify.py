"""Verifiable results: a hand-edited score file, samples file or scores.csv row is refused by the
scores and table steps (one line naming the file) and reported by `dynamo verify`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from reporting_fixture import write_evaluated_run

from dynamo.cli import main as dynamo_main
from dynamo.evaluation.verify import check_score_file

METHODS, SEEDS, BENCHES = ["base", "grpo"], [1, 2], ["a", "b"]


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    """Two methods x two seeds x two benchmarks of 6 problems x 4 samples, and their scores.csv + table."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    root = tmp_path / "runs" / "exp"
    for m, method in enumerate(METHODS):
        for seed in SEEDS:
            write_evaluated_run(
                root, method, seed, {b: (rng.random((6, 4)) < 0.3 + 0.2 * m).tolist() for b in BENCHES}
            )
    common = ["--methods", ",".join(METHODS), "--benchmarks", ",".join(BENCHES)]
    scores = [
        "report",
        "--runs-root",
        str(root),
        "--seeds",
        "1,2",
        *common,
        "--write-scores",
        "results/scores.csv",
    ]
    assert dynamo_main(scores) == 0
    table = ["report", "--scores", "results/scores.csv", *common, "--baseline", "grpo", "--out", "results/table1"]
    assert dynamo_main(table) == 0
    return {"root": root, "scores": scores, "table": table}


def test_untouched_results_verify(runs, capsys):
    capsys.readouterr()
    assert dynamo_main(["verify", "runs", "results"]) == 0
    out = capsys.readouterr().out
    assert "8 score files, 1 scores tables" in out and "no differences" in out


def test_edited_score_file_is_refused_and_reported(runs, capsys):
    path = runs["root"] / "grpo" / "seed1" / "eval" / "a" / "scores.json"
    scores = json.loads(path.read_text())
    scores["pass_at_1"] = scores["pass_at_k"]["1"] = 0.9
    scores["pass_at_k"]["4"] = 0.0
    path.write_text(json.dumps(scores))
    assert check_score_file(path)  # the curve falls: Pass@4 < Pass@1
    capsys.readouterr()
    assert dynamo_main(runs["scores"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "cannot fall" in err
    assert dynamo_main(["verify", "runs"]) == 1
    assert "DIFFERENCE runs/exp/grpo/seed1/eval/a/scores.json: Pass@2" in capsys.readouterr().out


def test_consistent_but_wrong_score_file_is_caught_by_recomputation(runs, capsys):
    path = runs["root"] / "grpo" / "seed2" / "eval" / "b" / "scores.json"
    scores = json.loads(path.read_text())
    scores["pass_at_k"] = {k: min(1.0, v + 0.05) for k, v in scores["pass_at_k"].items()}  # still rising
    scores["pass_at_1"] = scores["pass_at_k"]["1"]
    path.write_text(json.dumps(scores))
    capsys.readouterr()
    assert dynamo_main(runs["scores"]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "the samples' verdicts give" in err
    assert dynamo_main(["verify", str(path)]) == 1


def test_edited_samples_file_is_caught_by_its_hash(runs, capsys):
    samples = runs["root"] / "base" / "seed1" / "eval" / "a" / "samples.jsonl"
    samples.write_text(samples.read_text().replace('"correct": false', '"correct": true', 1))
    capsys.readouterr()
    assert dynamo_main(runs["scores"]) == 1
    assert "samples.jsonl has changed" in capsys.readouterr().err
    assert dynamo_main(["verify", "runs"]) == 1


def test_edited_scores_csv_row_is_refused_by_the_table_step_and_reported(runs, capsys):
    df = pd.read_csv("results/scores.csv")
    row = (df.method == "grpo") & (df.seed == 1) & (df.benchmark == "a") & (df.k == 1)
    assert row.sum() == 1
    df.loc[row, "value"] = 0.95
    df.to_csv("results/scores.csv", index=False)
    capsys.readouterr()
    assert dynamo_main(runs["table"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "results/scores.csv" in err and "grpo seed 1 a Pass@1 = 0.95" in err
    assert dynamo_main(["verify", "results"]) == 1
    assert "DIFFERENCE results/scores.csv" in capsys.readouterr().out


def test_provenance_lists_inputs_and_verify_checks_them(runs, capsys, tmp_path):
    from dynamo.reporting.provenance import main as provenance_main

    (tmp_path / "config.yaml").write_text("experiment: exp\n")
    args = ["--config", "config.yaml", "--inputs", "results/scores.csv"]
    args += ["--outputs", "results/table1.csv", "--out", "results/table1.provenance.json"]
    assert provenance_main(args) == 0
    record = json.loads((tmp_path / "results" / "table1.provenance.json").read_text())
    assert list(record["inputs"]) == ["results/scores.csv"] and list(record["outputs"]) == ["results/table1.csv"]
    assert dynamo_main(["verify", "results"]) == 0
    with open("results/scores.csv", "a") as fh:
        fh.write("\n")
    capsys.readouterr()
    assert dynamo_main(["verify", "results/table1.provenance.json"]) == 1
    assert "input results/scores.csv differs" in capsys.readouterr().out
