"""The day-one GPU smoke configs: small enough to be the first thing run on a cluster, real enough to
exercise the whole GPU path (real OpenRLHF engine, vLLM evaluation, report), and plannable offline."""

from __future__ import annotations

from collections import Counter

import pytest
from repo_copy import copy_repo
from test_slurm_submit import dag_jobs, flag, sbatch_args

from dynamo.config import load_config
from dynamo.engines.openrlhf.config import OpenRLHFConfig

SMOKES = ["qwen2.5-math-1.5b-smoke", "qwen2.5-math-7b-smoke"]


@pytest.mark.parametrize("name", SMOKES)
def test_smoke_config_is_two_steps_of_dynamo_and_grpo_on_one_node(name):
    cfg = load_config("config/config.yaml", f"config/experiments/{name}.yaml")
    assert cfg.engine == "openrlhf" and sorted(cfg.methods) == ["dynamo", "grpo"] and not cfg.ablation_methods
    assert cfg.train.steps == 2 and cfg.seeds == [1]
    assert cfg.eval.limit == 16 and len(cfg.eval.benchmarks) == 1
    o = OpenRLHFConfig.from_dict(cfg.openrlhf)
    assert o.actor_num_nodes == 1 and cfg.resources.train.gpus == o.actor_gpus == 8
    full = load_config("config/config.yaml", f"config/experiments/{name.removesuffix('-smoke')}.yaml")
    assert cfg.model.path == full.model.path and cfg.train.max_new_tokens == full.train.max_new_tokens


@pytest.mark.parametrize("name", SMOKES)
def test_smoke_dry_run_is_at_most_ten_jobs_ending_in_table1(name, tmp_path):
    """`snakemake -n results/table1.md --configfile <smoke>` as the Slurm executor plans it: no GPU,
    no network (the model and data are staged by a job, not looked up)."""
    repo = copy_repo(tmp_path / "repo")
    jobs = dag_jobs(repo, [f"config/experiments/{name}.yaml"], "results/table1.md", all_jobs=True)
    rules = Counter(job.rule.name for job in jobs)
    assert sum(rules.values()) <= 10, rules
    assert rules["train"] == 2 and rules["evaluate"] == 3 and rules["table1"] == 1, rules  # base + 2 methods
    train = next(job for job in jobs if job.rule.name == "train")
    args = sbatch_args(train)
    assert flag(args, "--nodes") == "1" and flag(args, "--gpus") == "8"
