"""The workflow on a real Slurm: a single-node cluster on localhost runs the smoke pipeline via sbatch.

tests/slurm/start.sh installs (Debian packages, first time only) and starts munge, slurmctld and
slurmd; the smoke pipeline (`--configfile config/smoke.yaml`) then runs in a copy of the working
tree through the Slurm executor with tests/slurm/profile, the same executor settings as
workflow/profiles/slurm with the site details of this test cluster. The daemons are stopped
even when the test fails. Needs root and apt (skips otherwise); deselect with `-m "not slurm"`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from repo_copy import copy_repo

pytestmark = pytest.mark.slurm  # in the default run (CI): a real Slurm runs the smoke pipeline

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "slurm"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd needs root")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("Slurm is not installed and apt-get is unavailable to install it")
    base = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_BASE": str(base)}
    try:
        start = subprocess.run(
            ["bash", str(HARNESS / "start.sh")], env=env, capture_output=True, text=True, timeout=600
        )
        if start.returncode != 0:
            if shutil.which("slurmctld") is None:
                pytest.skip(f"could not install Slurm from apt: {start.stderr[-500:]}")
            raise AssertionError(f"Slurm did not start:\n{start.stdout[-2000:]}\n{start.stderr[-2000:]}")
        yield base
    finally:
        subprocess.run(["bash", str(HARNESS / "stop.sh")], env=env, capture_output=True, timeout=120)


def snakemake(work: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """Snakemake with the test profile in `work`; jobs inherit this environment (sbatch --export=ALL)."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(HARNESS / "profile"),
        "--slurm-keep-successful-logs",
        *args,
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"snakemake failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return run


def completed_jobs(cluster: Path) -> list[tuple[str, str]]:
    """(job name, state) of every job the controller finished (its jobcomp/filetxt record)."""
    path = cluster / "log" / "jobcomp.txt"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        rows.append((fields.get("Name", ""), fields.get("JobState", "")))
    return rows


def sbatch_logs(work: Path) -> dict[str, int]:
    """Rule name -> number of sbatch job logs the Slurm executor kept for it."""
    root = work / ".snakemake" / "slurm_logs"
    return {d.name.removeprefix("rule_"): sum(1 for _ in d.rglob("*.log")) for d in root.iterdir() if d.is_dir()}


def test_two_rule_workflow_runs_through_sbatch(slurm_cluster, tmp_path):
    """The executor and profile on their own (independent of the project's pipeline)."""
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: "b.txt"\n\n'
        'rule a:\n    output: "a.txt"\n    resources: mem_mb=100, runtime=2\n'
        '    shell: "echo $SLURM_JOB_ID > {output}"\n\n'
        'rule b:\n    input: "a.txt"\n    output: "b.txt"\n    resources: mem_mb=100, runtime=2\n'
        '    shell: "cat {input} > {output}; echo $SLURM_JOB_ID >> {output}"\n'
    )
    before = len(completed_jobs(slurm_cluster))
    snakemake(tmp_path, "b.txt", timeout=600)
    job_ids = (tmp_path / "b.txt").read_text().split()
    assert len(job_ids) == 2 and job_ids[0] != job_ids[1]  # each rule ran as its own Slurm job
    assert [state for _, state in completed_jobs(slurm_cluster)[before:]] == ["COMPLETED", "COMPLETED"]
    assert sbatch_logs(tmp_path) == {"a": 1, "b": 1}


def test_smoke_pipeline_runs_through_sbatch(slurm_cluster, tmp_path):
    work = tmp_path / "repo"  # a copy, so ./results of the working tree is never touched
    copy_repo(work)
    before = len(completed_jobs(slurm_cluster))
    snakemake(work, "results/table1.csv", "--configfile", "config/smoke.yaml", timeout=1500)
    table = work / "results" / "table1.csv"
    assert table.exists() and len(table.read_text().splitlines()) > 1

    # Every job went through sbatch: the controller finished them all (COMPLETED), and the
    # executor kept one log per job, for the training and evaluation rules among others.
    logs = sbatch_logs(work)
    assert logs.get("train", 0) >= 1 and logs.get("evaluate", 0) >= 1, logs
    states = [state for _, state in completed_jobs(slurm_cluster)[before:]]
    assert states and set(states) == {"COMPLETED"} and len(states) == sum(logs.values()), (states, logs)
