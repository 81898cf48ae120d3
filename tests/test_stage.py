"""Staging for offline compute nodes: plan, staged config, and the Slurm DAG (dry run, no network)."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml
from repo_copy import copy_repo

from dynamo.config import load_config
from dynamo.stage import is_hub_id, plan, staged_config

HUB_IDS = ["Qwen/Qwen2.5-Math-7B", "hiyouga/math12k", "HuggingFaceH4", "math-ai/"]
CONFIG_7B = ("config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml")


def test_plan_finds_every_hub_input_of_the_7b_config():
    p = plan(load_config(*CONFIG_7B))
    assert p.model == ("Qwen/Qwen2.5-Math-7B", "cache/models/Qwen--Qwen2.5-Math-7B")
    assert p.train == ("hiyouga/math12k", "cache/data/hiyouga--math12k/train.jsonl")
    assert [b[0] for b in p.benchmarks] == ["aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench"]
    assert all(path.startswith("cache/benchmarks/") for _, _, path in p.benchmarks)


def test_staged_config_names_no_hub_id():
    cfg = load_config(*CONFIG_7B)
    staged = staged_config(cfg, plan(cfg))
    assert staged.base_model_path == "cache/models/Qwen--Qwen2.5-Math-7B"
    assert staged.train_pool_path == "cache/data/hiyouga--math12k/train.jsonl"
    assert all("=" in b and b.split("=", 1)[1].startswith("cache/") for b in staged.eval.benchmarks)
    assert plan(staged).empty  # nothing left to fetch


def test_embedded_default_stages_nothing(tmp_path, monkeypatch):
    assert plan(load_config("config/config.yaml")).empty
    assert is_hub_id("org/name") and not is_hub_id("runs/x/final")
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").mkdir()
    monkeypatch.chdir(tmp_path)
    assert not is_hub_id("org/name")  # an existing local directory wins


def jobs(dry_run_output: str) -> list[tuple[str, str]]:
    """(rule, shell command) per job, in the order Snakemake lists them."""
    out = []
    for block in re.split(r"\n(?=rule \w+:)", dry_run_output):
        m = re.match(r"rule (\w+):", block)
        if m:
            cmd = re.search(r"Shell command: (.*?)(?:\n\n|\Z)", block, re.S)
            out.append((m.group(1), cmd.group(1) if cmd else ""))
    return out


def test_slurm_dag_stages_first_and_compute_jobs_stay_offline(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "results/table1.csv",
        "-n",
        "-p",
        "--profile",
        "workflow/profiles/slurm",
    ]
    cmd += ["--configfile", "config/experiments/qwen2.5-math-7b.yaml"]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = jobs(proc.stdout + proc.stderr)
    rules = [rule for rule, _ in listed]
    # Staging is one job, listed before any compute job (the other root job, resolved_config, may be
    # listed before or after it: Snakemake's order among independent jobs is arbitrary).
    assert rules.count("stage_inputs") == 1 and rules.index("stage_inputs") < min(
        rules.index(r) for r in ("train", "evaluate")
    )
    assert "--model Qwen/Qwen2.5-Math-7B" in listed[rules.index("stage_inputs")][1]
    compute = [(rule, c) for rule, c in listed if rule in ("train", "evaluate")]
    exp = yaml.safe_load((repo / "config/experiments/qwen2.5-math-7b.yaml").read_text())
    runs = len(exp["methods"]) * len(exp["seeds"])
    assert len(compute) == runs + runs + len(exp["seeds"])  # train each run; evaluate each run and the base
    for rule, command in compute:
        assert command.startswith("HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1"), (rule, command)
        assert not any(h in command for h in HUB_IDS), (rule, command)
    # The staged inputs are what the compute jobs read.
    assert any("--base-model cache/models/Qwen--Qwen2.5-Math-7B" in c for r, c in compute if r == "train")
    assert any("aime24=cache/benchmarks/aime24.jsonl" in c for r, c in compute if r == "evaluate")


def test_stage_command_dry_run_lists_the_downloads(capsys):
    from dynamo.cli import main

    assert main(["stage", "--model", "Qwen/Qwen2.5-Math-7B", "--benchmarks", "aime24", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-Math-7B -> cache/models/Qwen--Qwen2.5-Math-7B" in out
    assert "HuggingFaceH4/aime_2024 -> cache/benchmarks/aime24.jsonl" in out
