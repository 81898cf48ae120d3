"""`dynamo stage`: download the hub inputs of an experiment into a project-local cache, for offline nodes.

Many clusters give compute nodes no internet. The pipeline therefore fetches everything an
experiment names by hub id -- the base model, the training set and the registered benchmarks --
once, in a Snakemake `localrule` (workflow/rules/stage.smk) that runs where Snakemake runs, into
plain local files under `cache/`:

    cache/models/<org>--<name>/          the model snapshot (config, tokenizer, safetensors)
    cache/data/<org>--<name>/train.jsonl  the training set's rows, as the hub serves them
    cache/benchmarks/<name>.jsonl         each benchmark's rows, as the hub serves them

Training and evaluation jobs are then given these paths instead of hub ids and run with
HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1, so an accidental hub lookup fails at once instead of
hanging on a node without a route out. The rows are written unchanged, so reading the local file
goes through the same field aliases and normalisation as reading the hub copy.

`plan(cfg)` (pure: no network) says which inputs are hub ids and where their staged copies go;
the workflow and `dynamo doctor` use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from dynamo.config import ExperimentConfig

CACHE = "cache"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# What a model snapshot needs for training, vLLM and evaluation (no .bin/.pth duplicates of the weights).
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "tokenizer*", "*.py"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(ref: str) -> bool:
    """A hub repo id ("org/name") that is not also a local path."""
    return bool(_HUB_ID.match(ref)) and not os.path.exists(ref)


def _slug(repo: str) -> str:
    return repo.replace("/", "--")


@dataclasses.dataclass(frozen=True)
class StagePlan:
    model: tuple[str, str] | None  # (hub id, local directory)
    train: tuple[str, str] | None  # (hub id, local jsonl)
    benchmarks: tuple[tuple[str, str, str], ...]  # (name, hub id, local jsonl)

    @property
    def empty(self) -> bool:
        return not (self.model or self.train or self.benchmarks)

    @property
    def outputs(self) -> list[str]:
        return [
            *([self.model[1]] if self.model else []),
            *([self.train[1]] if self.train else []),
            *(path for _, _, path in self.benchmarks),
        ]


def plan(cfg: ExperimentConfig, cache: str = CACHE) -> StagePlan:
    """Which of the experiment's inputs are hub ids, and where their staged copies go."""
    from dynamo.tasks.benchmarks import BENCHMARKS

    model = cfg.model.path if not cfg.model.build_tiny and is_hub_id(cfg.model.path) else None
    train = cfg.data.train_path if cfg.data.task != "arithmetic" and is_hub_id(cfg.data.train_path) else None
    names = [b for b in cfg.eval.benchmarks if "=" not in b and b in BENCHMARKS and BENCHMARKS[b].hub_id]
    return plan_items(model, train, names, cache)


def plan_items(model: str | None, train: str | None, benchmarks: list[str], cache: str = CACHE) -> StagePlan:
    """The local paths of staged hub inputs (one definition for the workflow and the download)."""
    from dynamo.tasks.benchmarks import get_spec

    return StagePlan(
        (model, f"{cache}/models/{_slug(model)}") if model else None,
        (train, f"{cache}/data/{_slug(train)}/train.jsonl") if train else None,
        tuple((b, get_spec(b).hub_id, f"{cache}/benchmarks/{b}.jsonl") for b in benchmarks),
    )


def command_args(p: StagePlan) -> str:
    """The `dynamo stage` arguments that download plan `p`."""
    args = []
    if p.model:
        args += ["--model", p.model[0]]
    if p.train:
        args += ["--train", p.train[0]]
    if p.benchmarks:
        args += ["--benchmarks", ",".join(name for name, _, _ in p.benchmarks)]
    return " ".join(args)


def staged_config(cfg: ExperimentConfig, p: StagePlan) -> ExperimentConfig:
    """The config the compute jobs see: every staged hub id replaced by its local copy."""
    model = dataclasses.replace(cfg.model, path=p.model[1]) if p.model else cfg.model
    data = dataclasses.replace(cfg.data, train_path=p.train[1]) if p.train else cfg.data
    staged = {name: path for name, _, path in p.benchmarks}
    bench = [f"{b}={staged[b]}" if b in staged else b for b in cfg.eval.benchmarks]
    return dataclasses.replace(cfg, model=model, data=data, eval=dataclasses.replace(cfg.eval, benchmarks=bench))


def offline_prefix() -> str:
    """Environment assignments that put the Hugging Face libraries offline, for a shell command."""
    return " ".join(f"{k}={v}" for k, v in OFFLINE_ENV.items()) + " "


# ---------------------------------------------------------------------------------------------
# Downloading (the localrule)


def _write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=str) + "\n")
    os.replace(tmp, path)


def stage_model(repo: str, out: str) -> None:
    from huggingface_hub import snapshot_download

    tmp = f"{out}.tmp"
    snapshot_download(repo, local_dir=tmp, allow_patterns=MODEL_FILES)
    if os.path.isdir(out):
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)


def stage_dataset(repo: str, out: str, config: str | None = None, split: str = "train") -> int:
    import datasets

    rows = datasets.load_dataset(repo, config, split=split).to_list()
    _write_rows(rows, Path(out))
    return len(rows)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="hub id of the model to snapshot")
    p.add_argument("--train", default=None, help="hub id of the training set (its train split)")
    p.add_argument("--benchmarks", default="", help="comma-separated registered benchmark names")
    p.add_argument("--cache", default=CACHE, help="project-local cache directory (default: cache)")
    p.add_argument("--dry-run", action="store_true", help="print what would be downloaded, download nothing")


def run(args: argparse.Namespace) -> int:
    from dynamo.tasks.benchmarks import get_spec

    names = [b for b in args.benchmarks.split(",") if b]
    p = plan_items(args.model, args.train, names, args.cache)
    for what, item in (("model", p.model), ("training set", p.train)):
        if item:
            print(f"{what}: {item[0]} -> {item[1]}", flush=True)
    for name, repo, path in p.benchmarks:
        print(f"benchmark {name}: {repo} -> {path}", flush=True)
    if args.dry_run or p.empty:
        return 0
    if p.model:
        stage_model(*p.model)
    if p.train:
        print(f"  {stage_dataset(*p.train)} training rows", flush=True)
    for name, repo, path in p.benchmarks:
        spec = get_spec(name)
        print(f"  {name}: {stage_dataset(repo, path, spec.hub_config, spec.split)} rows", flush=True)
    return 0
