"""The paper's main table: its nine methods in the GPU experiments and on the embedded CPU task.

- `snakemake -n results/table1.csv` with each GPU experiment lists a training job for every paper
  method and seed (the launcher builds and OpenRLHF parses their commands: test_openrlhf_cli.py).
- config/paper-embedded.yaml names the nine methods; the default main job keeps its five.
- CI (smoke budget): the nine methods train for a few steps on the embedded task through the
  pipeline's own train rule (`--configfile config/paper-embedded.yaml config/smoke.yaml`), and each
  run's summary.json carries the cost and the window its statistics used.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
from repo_copy import ROOT, copy_repo

from dynamo import metrics_names as M
from dynamo.config import load_config

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
PAPER_METHODS = [
    "grpo",
    "clip-higher",
    "entropy-loss",
    "fork-tokens",
    "entropy-adv",
    "clip-cov",
    "kl-cov",
    "w-reinforce",
    "dynamo",
]


@pytest.mark.parametrize("experiment", ["qwen2.5-math-7b", "qwen2.5-math-1.5b"])
def test_gpu_experiment_dry_run_trains_every_paper_method(experiment):
    configfile = f"config/experiments/{experiment}.yaml"
    cfg = load_config(ROOT / "config" / "config.yaml", ROOT / configfile)
    out = subprocess.run(
        [*SNAKEMAKE, "-n", "results/table1.csv", "--configfile", configfile],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = re.findall(r"rule train:.*?wildcards: method=([\w.-]+), seed=(\d+)", out.stdout, flags=re.S)
    for method in PAPER_METHODS:
        assert {int(seed) for m, seed in jobs if m == method} == set(cfg.seeds), method


def test_paper_embedded_config_adds_the_nine_and_the_default_keeps_three():
    default = load_config(ROOT / "config" / "config.yaml")
    paper = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "paper-embedded.yaml")
    assert paper.methods == PAPER_METHODS and paper.engine == "local"
    assert default.methods == ["grpo", "dapo", "dynamo"]
    assert paper.train == default.train  # same budget as the main job, more methods


@pytest.mark.slow  # nine training jobs, ~13 min on 2 busy cores; the smoke pipeline covers the same path
@pytest.mark.timeout(1800)  # nine training jobs: more than the smoke pipeline's six
def test_nine_paper_methods_train_on_the_embedded_task(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    configs = ["config/paper-embedded.yaml", "config/smoke.yaml"]  # later wins: smoke's budget and name
    cfg = load_config(repo / "config" / "config.yaml", *(repo / c for c in configs))
    targets = [f"runs/{cfg.experiment}/{m}/seed{cfg.seeds[0]}/summary.json" for m in PAPER_METHODS]
    cmd = [*SNAKEMAKE, *targets, "--cores", "2", "--configfile", *configs]
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=1700)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    for method, target in zip(PAPER_METHODS, targets):
        summary = json.loads((repo / target).read_text())
        assert summary["method"]["name"] == method and summary["steps"] == cfg.train.steps
        assert summary[M.SUMMARY_WINDOW] in ("micro_batch", "mini_batch")
        cost = summary[M.SUMMARY_COST]
        assert set(cost) == set(M.COST_FIELDS) and cost["gpu_seconds"] == 0.0
        n = cfg.train.prompts_per_step * cfg.train.rollouts_per_prompt * cfg.train.steps
        assert cost["prompts_seen"] == cfg.train.prompts_per_step * cfg.train.steps
        assert cost["responses_generated"] == n and cost["tokens_trained"] == cost["tokens_generated"] > 0
        rows = [json.loads(line) for line in (repo / target).with_name("metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == list(range(1, cfg.train.steps + 1))
        assert all(math.isfinite(r[M.ACTOR_LOSS]) and math.isfinite(r[M.GRAD_NORM]) for r in rows), method
