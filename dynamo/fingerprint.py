"""Run fingerprints: what produced a run, so that a changed config never resumes an old checkpoint.

A fingerprint is a JSON-safe dict of everything that determines a training run's result:

    method      the resolved method spec (registry entry + method_overrides)
    seed, engine
    train, data, model, warmstart, openrlhf
                the config sections the run reads (not eval or resources, which do not change
                the trained weights; `train.threads` and `train.checkpoint_every` are left out too:
                they decide speed and how often state is saved, not what is learned)
    base_model  identity of the model RL starts from: for a local directory, sha256 of its
                config.json and sizes + sha256 of its weight files; for a hub id, id + revision
    task_data   sha256 of the prompt-pool file (or the hub dataset id)
    code        package version + git commit of the code running

`dynamo train` writes it to <run>/fingerprint.json before the first step. A run directory
holding a checkpoint resumes only when the recorded fingerprint equals the current one;
otherwise training stops before any compute with the differing fields named and the two ways
out: `--fresh` (config `fresh_runs: true` under Snakemake), which retrains such runs from
step 0, or restoring the config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from dynamo.errors import UserError
from dynamo.io import write_json_atomic
from dynamo.provenance_info import file_sha256, git_commit

FORMAT = "dynamo.fingerprint/1"
FINGERPRINT_FILE = "fingerprint.json"
# Files and folders of a run that belong to one training trajectory (cleared by --fresh).
RUN_STATE = (
    "checkpoint",
    "checkpoint.prev",
    "checkpoint.tmp",
    "checkpoint.old",
    "ckpt",
    "metrics.jsonl",
    "tb",
    "tensorboard",
    "final",
    "summary.json",
    FINGERPRINT_FILE,
)
# Checkpoint folders of the two engines (local: checkpoint*, OpenRLHF/DeepSpeed: ckpt).
CHECKPOINT_DIRS = ("checkpoint", "checkpoint.prev", "checkpoint.tmp", "checkpoint.old", "ckpt")
_TRAIN_EXCLUDED = ("threads", "checkpoint_every")
# Disk bookkeeping of the openrlhf engine: how many checkpoints are kept, whether the pipeline deletes
# them after evaluation; changing either mid-sweep must not stop runs from resuming.
_OPENRLHF_EXCLUDED = ("max_ckpt_num", "delete_checkpoints_after_eval")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5")
# Above this many bytes of weights, hash the first and last MiB of each file plus its size
# instead of every byte (a 7B model is ~15 GB; hashing it at every start costs a minute).
FULL_HASH_LIMIT = 2 * 1024**3


def compute(cfg: Any, method_name: str, seed: int, base_model: str, engine: str) -> dict[str, Any]:
    """The fingerprint of run (method_name, seed) of `cfg`, starting from `base_model`."""
    sections = dataclasses.asdict(cfg)
    train = {k: v for k, v in sections["train"].items() if k not in _TRAIN_EXCLUDED}
    return {
        "format": FORMAT,
        "method": cfg.method(method_name).to_dict(),
        "seed": seed,
        "engine": engine,
        "train": train,
        "data": sections["data"],
        "model": sections["model"],
        "warmstart": sections["warmstart"],
        "openrlhf": {k: v for k, v in sections["openrlhf"].items() if k not in _OPENRLHF_EXCLUDED}
        if engine == "openrlhf"
        else {},
        "base_model": model_identity(base_model),
        "task_data": data_identity(cfg.train_pool_path),
        "code": code_version(),
    }


def model_identity(path: str) -> dict[str, Any]:
    """sha256 of config.json + size and hash of every weight file (local), or hub id + revision."""
    root = Path(path)
    if not root.is_dir():
        return {"hub_id": path, "revision": _hub_revision(path)}
    files = sorted(
        p for p in root.iterdir() if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name == "config.json")
    )
    total = sum(p.stat().st_size for p in files)
    partial = total > FULL_HASH_LIMIT
    return {
        "local": True,
        "files": {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p, partial=partial)} for p in files},
    }


def _hub_revision(repo_id: str) -> str:
    """The commit the local Hugging Face cache resolves `main` to, when it has one (no network)."""
    cache = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    ref = cache.expanduser() / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else "unresolved"


def data_identity(path: str) -> dict[str, Any]:
    if Path(path).is_file():
        return {"file": Path(path).name, "sha256": file_sha256(Path(path))}
    return {"hub_id": path}


def code_version() -> dict[str, str]:
    from importlib import metadata

    try:
        version = metadata.version("dynamo-rlvr")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": version, "git_commit": git_commit()}


def digest(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted field, old value, new value) for every leaf that differs, in sorted field order."""
    flat_old, flat_new = _flat(old), _flat(new)
    keys = sorted(set(flat_old) | set(flat_new))
    missing = "<absent>"
    return [
        (k, flat_old.get(k, missing), flat_new.get(k, missing))
        for k in keys
        if flat_old.get(k, missing) != flat_new.get(k, missing)
    ]


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict) or not d:
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for key, value in d.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / name).is_dir() and any((run_dir / name).iterdir()) for name in CHECKPOINT_DIRS)


def clear_run(run_dir: Path) -> list[str]:
    """Delete the run's training state (--fresh); returns what was removed."""
    removed = []
    for name in RUN_STATE:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def prepare_run(run_dir: str | Path, fingerprint: dict[str, Any], *, fresh: bool, command: str) -> str:
    """Check `run_dir` against `fingerprint` before any compute, then record it.

    Returns "new" (nothing to resume), "resume" (a checkpoint with the same fingerprint) or
    "restarted" (a checkpoint with another fingerprint, cleared because `fresh`). Without
    `fresh` such a checkpoint raises UserError naming the differing fields. A matching checkpoint
    is resumed even with `fresh`: retraining would reproduce it. `command` is the line to rerun
    with --fresh (shown in the message)."""
    run_dir = Path(run_dir)
    recorded_path = run_dir / FINGERPRINT_FILE
    status = "new"
    if has_checkpoint(run_dir):
        recorded = _read_recorded(recorded_path)
        if recorded == fingerprint:
            status = "resume"
        elif fresh:
            clear_run(run_dir)
            status = "restarted"
        else:
            raise UserError(mismatch_message(run_dir, recorded, fingerprint, command))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(recorded_path, fingerprint)
    return status


def _read_recorded(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def mismatch_message(run_dir: Path, recorded: dict[str, Any] | None, current: dict[str, Any], command: str) -> str:
    if recorded is None:
        what = f"{run_dir / FINGERPRINT_FILE} is missing or damaged, so what produced the checkpoint is unknown"
    else:
        diffs = differences(recorded, current)
        shown = ", ".join(f"{k} ({_short(a)} -> {_short(b)})" for k, a, b in diffs[:8])
        more = f" and {len(diffs) - 8} more" if len(diffs) > 8 else ""
        what = f"its checkpoint was made with a different setup: {shown}{more}"
    return (
        f"{run_dir}: {what}. Refusing to resume it (the result would mix two setups). Either retrain "
        f"it from step 0, discarding its checkpoint and metrics: `{command} --fresh` (Snakemake: add "
        f"`--config fresh_runs=true`), or restore the recorded values (see {run_dir / FINGERPRINT_FILE})."
    )


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:18] + "..." + text[-18:]
