"""The Snakemake pipeline end to end on the smoke config (CPU, ~2 minutes), and its lint."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml
from repo_copy import ROOT, copy_repo

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def test_snakemake_lint_is_clean():
    out = subprocess.run([*SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Lints for" not in out.stdout + out.stderr, out.stdout + out.stderr


def test_dry_run_lists_every_method_and_seed():
    out = subprocess.run(
        [*SNAKEMAKE, "-n", "results/table1.csv", "--quiet", "rules"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    for rule, count in {"train": 9, "evaluate": 12, "warmstart": 1, "table1": 1}.items():
        line = next((ln for ln in text.splitlines() if ln.split()[:1] == [rule]), "")
        assert line.split()[1:2] == [str(count)], f"{rule}: {line!r}\n{text}"
    # The default profile is found (it must sit beside the root Snakefile): without its
    # rerun-incomplete, an output killed after it was written stops every later run.
    assert "Using workflow specific profile profiles/default" in text
    profile = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    assert profile["rerun-incomplete"] is True


SMOKE = [*SNAKEMAKE, "results/table1.csv", "--cores", "2", "--configfile", "config/smoke.yaml"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One uninterrupted smoke pipeline: its repo copy and how long it took."""
    repo = copy_repo(tmp_path_factory.mktemp("smoke") / "repo")
    start = time.monotonic()
    out = subprocess.run(SMOKE, cwd=repo, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return repo, time.monotonic() - start


def test_smoke_pipeline_end_to_end(smoke_run):
    repo, _ = smoke_run
    cmd = SMOKE
    with open(repo / "results/table1.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ["base", "grpo", "dapo", "dynamo"]
    for row in rows:
        for bench in ("arith-easy", "arith-medium", "arith-hard", "avg"):
            assert 0.0 <= float(row[f"{bench}/pass@1"]) <= float(row[f"{bench}/pass@4"]) <= 1.0
    # The long scores file loads in one line and the table is its seed mean.
    from dynamo.reporting import load_scores

    scores = load_scores(repo / "results/scores.csv")
    pass1 = scores[scores.k == 1].pivot_table(index="method", columns="benchmark", values="value")
    for row in rows:
        assert float(row["arith-easy/pass@1"]) == pytest.approx(pass1.loc[row["method"], "arith-easy"], abs=1e-6)
    # Every number traces back to a run: the score files exist and the summary names the commit.
    assert (repo / "runs/smoke/dynamo/seed1/eval/arith-hard/scores.json").exists()
    assert "git_commit" in (repo / "runs/smoke/dynamo/seed1/summary.json").read_text()
    # Running again has nothing to do.
    again = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_kill_at_a_random_moment_then_rerun_gives_a_byte_identical_table(smoke_run, tmp_path):
    """kill -9 of the whole pipeline (Snakemake and its jobs) anywhere in its run, `--unlock`, rerun."""
    reference, duration = smoke_run
    repo = copy_repo(tmp_path / "repo")
    delay = random.uniform(0.1, 0.9) * duration
    print(f"killing after {delay:.1f} s of a {duration:.1f} s pipeline")  # shown when the test fails
    proc = subprocess.Popen(
        SMOKE, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session holds Snakemake and every job it started
        proc.wait()
    unlock = subprocess.run([*SMOKE, "--unlock"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    out = subprocess.run(SMOKE, cwd=repo, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    # scores.csv also records wall-clock seconds, which differ run to run; the tables do not.
    for name in ("results/table1.csv", "results/table1.md"):
        assert (repo / name).read_bytes() == (reference / name).read_bytes(), name
