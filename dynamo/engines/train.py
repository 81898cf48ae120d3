"""`dynamo train`: RL-train one (method, seed) with the configured engine.

    dynamo train --config config/config.yaml --method dynamo --seed 1 --base-model models/embedded/warmstart \
        --out runs/embedded/dynamo/seed1
    dynamo train --engine openrlhf --config config/config.yaml config/experiments/qwen2.5-math-7b.yaml \
        --method dynamo --seed 1 --out runs/qwen7b/dynamo/seed1 --dry-run

Several --config files merge left to right (later wins), as Snakemake's --configfile does.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

from dynamo import metrics_names as M
from dynamo.config import load_config
from dynamo.io import read_jsonl, write_json_atomic
from dynamo.provenance_info import git_commit


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", nargs="+", required=True, help="experiment YAML file(s), merged left to right")
    p.add_argument("--method", required=True, help="registered method name (see `dynamo methods`)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, final/)")
    p.add_argument("--base-model", help="model to start from (default: the config's base model)")
    p.add_argument("--engine", choices=["local", "openrlhf"], help="override the config's engine")
    p.add_argument("--threads", type=int, help="torch threads (default: config train.threads)")
    p.add_argument("--dry-run", action="store_true", help="openrlhf: print the launch command and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs stay line-oriented)")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="retrain from step 0 when the run's checkpoint was made with another config/model/data/code "
        "or is damaged (default: refuse); a matching checkpoint is still resumed",
    )


def run(args: argparse.Namespace) -> int:
    from dynamo.errors import UserError
    from dynamo.runlock import hold
    from dynamo.validation import seed_problem

    if problem := seed_problem("--seed", args.seed):
        raise UserError(problem)
    cfg = load_config(*args.config)
    method = cfg.method(args.method)  # fails with the list of known methods before any compute
    engine = args.engine or cfg.engine
    if args.dry_run and engine != "openrlhf":
        raise SystemExit("--dry-run applies to the openrlhf engine only")
    if args.dry_run:  # prints the launch command; writes nothing in the run directory
        from dynamo.engines.openrlhf.launcher import launch

        return launch(cfg, args.method, args.seed, args.out, dry_run=True, base_model=args.base_model)
    # One writer per run directory: a second `dynamo train --out` the same stops here, naming the first.
    with hold(args.out, what="dynamo train"):
        return _train_locked(args, cfg, method, engine)


def _train_locked(args: argparse.Namespace, cfg, method, engine: str) -> int:
    fresh = args.fresh or cfg.fresh_runs
    # Before any compute: a checkpoint made with another setup is refused (or cleared with --fresh).
    from dynamo.fingerprint import compute, prepare_run

    base_model = args.base_model or cfg.base_model_path
    command = shlex.join(
        ["dynamo", "train", "--config", *args.config, "--method", args.method, "--seed", str(args.seed)]
        + ["--out", args.out, *(["--base-model", args.base_model] if args.base_model else [])]
        + (["--engine", args.engine] if args.engine else [])
    )
    fingerprint = compute(cfg, args.method, args.seed, base_model, engine)
    if engine == "openrlhf":
        _check_openrlhf_ckpt(Path(args.out), fresh=fresh)
    status = prepare_run(args.out, fingerprint, fresh=fresh, command=command)
    if status == "restarted":
        print(f"[dynamo train] {args.out}: setup changed, --fresh: retraining from step 0", file=sys.stderr)
    if engine == "openrlhf":
        from dynamo.engines.openrlhf.launcher import launch

        rc = launch(cfg, args.method, args.seed, args.out, dry_run=False, base_model=args.base_model)
        if rc == 0 and (Path(args.out) / "ckpt").is_dir():
            from dynamo.checkpoint import write_manifest

            write_manifest(Path(args.out) / "ckpt", step=-1, hashes=False)
        return rc
    return train_local(
        cfg,
        method.name,
        args.seed,
        args.out,
        args.base_model or cfg.base_model_path,
        threads=args.threads,
        show_progress=not args.no_progress,
        fresh=fresh,
    )


def _check_openrlhf_ckpt(run_dir: Path, *, fresh: bool) -> None:
    """A finished OpenRLHF run's ckpt/ has a sizes manifest (written after it ended): verify it before
    OpenRLHF loads it, so a truncated DeepSpeed file is named here instead of failing inside DeepSpeed.
    The manifest is removed before the launch: OpenRLHF rewrites ckpt/ while it runs."""
    from dynamo.checkpoint import MANIFEST, RECOVER_HINT, verify
    from dynamo.errors import UserError
    from dynamo.fingerprint import clear_run

    ckpt = run_dir / "ckpt"
    if not (ckpt / MANIFEST).is_file():
        return
    _, problem = verify(ckpt)
    if problem and fresh:
        print(f"[dynamo train] {problem}; --fresh: retraining from step 0", file=sys.stderr)
        clear_run(run_dir)
        return
    if problem:
        raise UserError(f"{run_dir}: damaged checkpoint: {problem}. To recover, {RECOVER_HINT}.")
    (ckpt / MANIFEST).unlink()


def train_local(
    cfg,
    method_name: str,
    seed: int,
    out: str,
    base_model: str,
    *,
    threads: int | None = None,
    show_progress: bool = True,
    fresh: bool = False,
) -> int:
    from transformers import AutoTokenizer

    from dynamo.engines.local.trainer import LocalTrainer, load_problems

    started = time.perf_counter()
    method = cfg.method(method_name)
    from dynamo.models import named_load_errors

    with named_load_errors(base_model):
        tokenizer = AutoTokenizer.from_pretrained(base_model)
    problems = load_problems(cfg.train_pool_path, cfg.data.template, tokenizer, cfg.data.use_chat_template)
    trainer = LocalTrainer(
        cfg, method, seed, out, base_model, problems, threads=threads, show_progress=show_progress
    )
    trainer.fresh_if_damaged = fresh
    result = trainer.train()
    trainer.save_final()
    summary = {
        "method": method.to_dict(),
        "seed": seed,
        "engine": "local",
        "base_model": base_model,
        "config": dataclasses.asdict(cfg),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch_threads": threads or cfg.train.threads,
        **result,
        "seconds_total_this_process": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "phase_seconds_mean": _phase_means(Path(out) / "metrics.jsonl"),
        M.SUMMARY_WINDOW: method.window,
        M.SUMMARY_COST: local_cost(Path(out) / "metrics.jsonl", on_gpu=trainer.on_gpu),
    }
    write_json_atomic(Path(out) / "summary.json", summary)
    print(
        f"[dynamo train] {method_name} seed {seed}: {result['steps']} steps, "
        f"{summary['seconds_total_this_process']:.1f} s, peak RSS {summary['peak_rss_mb']:.0f} MB",
        file=sys.stderr,
    )
    return 0


def local_cost(metrics_path: Path, *, on_gpu: bool) -> dict:
    """summary.json's cost of a local run; total = the summed step times of every process that
    trained it (a resumed run included; model loading and saving excluded)."""
    rows = M.last_row_per_step(read_jsonl(metrics_path))
    total = sum(float(r.get(M.TIME_STEP, 0.0)) for r in rows)
    return M.run_cost(rows, seconds_total=total, gpus=1 if on_gpu else 0)


def _phase_means(metrics_path: Path) -> dict[str, float]:
    rows = read_jsonl(metrics_path)
    keys = sorted({k for r in rows for k in r if k.startswith("time/")})
    return {k[5:]: sum(r.get(k, 0.0) for r in rows) / max(len(rows), 1) for k in keys}
