"""Checkpoint manifests, verification, fallback, and metrics repair (local engine).

A checkpoint folder is complete only when its `manifest.json` exists: it is written last and
lists every other file with its size and sha256, plus the step. Two checkpoints are kept
(`checkpoint/`, the newest, and `checkpoint.prev/`); `checkpoint.tmp/` is one being written.
On resume, `select_checkpoint` verifies each candidate and takes the newest intact one whose
step the metrics log also reaches, saying which one it used and why; with none intact it
raises UserError naming the damaged file and the command to recover (`--fresh`).

metrics.jsonl is repaired to its last complete line not past the chosen checkpoint's step:
a line cut mid-way (a kill while writing, or damage) and every line after it are dropped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynamo.errors import UserError
from dynamo.io import write_json_atomic, write_text_atomic
from dynamo.provenance_info import file_sha256

MANIFEST = "manifest.json"
FORMAT = "dynamo.checkpoint/1"
# Newest first when steps tie; checkpoint.old is the name older versions used mid-swap.
CANDIDATES = ("checkpoint", "checkpoint.tmp", "checkpoint.prev", "checkpoint.old")
RECOVER_HINT = (
    "rerun the same `dynamo train` command with --fresh to retrain this run from step 0 "
    "(Snakemake: add --config fresh_runs=true)"
)


def write_manifest(ckpt_dir: str | Path, step: int, *, hashes: bool = True) -> None:
    """Record size (+ sha256) of every file under `ckpt_dir`; call after every other file is written.

    hashes=False (sizes only) is for the OpenRLHF engine's DeepSpeed checkpoints, whose optimizer
    shards are too large to hash at every start; a truncated file is still caught by its size."""
    root = Path(ckpt_dir)
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        entry: dict[str, Any] = {"size": path.stat().st_size}
        if hashes:
            entry["sha256"] = file_sha256(path)
        files[path.relative_to(root).as_posix()] = entry
    write_json_atomic(root / MANIFEST, {"format": FORMAT, "step": step, "files": files})


def verify(ckpt_dir: str | Path) -> tuple[int | None, str | None]:
    """(step, None) for an intact checkpoint; (None, problem naming the damaged file) otherwise."""
    root = Path(ckpt_dir)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        return None, f"{manifest_path} is missing (the checkpoint was never completed)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files, step = manifest["files"], int(manifest["step"])
    except (ValueError, KeyError, TypeError):
        return None, f"{manifest_path} is damaged"
    for name, expected in files.items():
        path = root / name
        if not path.is_file():
            return None, f"{path} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return None, f"{path} is damaged ({size} bytes, expected {expected['size']})"
        if "sha256" in expected and file_sha256(path) != expected["sha256"]:
            return None, f"{path} is damaged (its sha256 differs from the manifest)"
    return step, None


@dataclass
class Selection:
    path: Path | None  # the checkpoint to resume from; None = start at step 0
    step: int = 0
    notes: list[str] = field(default_factory=list)  # what was skipped and why (printed to the log)
    damaged: list[Path] = field(default_factory=list)  # candidates that failed verification


def metrics_prefix(path: Path) -> list[tuple[int, str]]:
    """The complete, consecutive (step, line) prefix of metrics.jsonl (steps 1, 2, ...)."""
    if not path.exists():
        return []
    out: list[tuple[int, str]] = []
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # cut mid-line
            try:
                step = int(json.loads(raw.decode())["step"])
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                break
            if step != len(out) + 1:
                break
            out.append((step, raw.decode().rstrip("\n")))
    return out


def select_checkpoint(run_dir: str | Path) -> Selection:
    """The newest intact checkpoint whose step metrics.jsonl reaches (see module docstring).

    Raises UserError when checkpoints exist but none can be used."""
    run_dir = Path(run_dir)
    present = [run_dir / name for name in CANDIDATES if (run_dir / name).is_dir()]
    if not present:
        return Selection(None)
    logged = len(metrics_prefix(run_dir / "metrics.jsonl"))
    selection = Selection(None)
    intact: list[tuple[int, Path]] = []
    for path in present:
        step, problem = verify(path)
        if problem:
            if path.name != "checkpoint.tmp":  # an unfinished tmp is normal after a kill, not damage
                selection.notes.append(problem)
                selection.damaged.append(path)
            continue
        intact.append((step, path))
    usable = [(step, path) for step, path in intact if step <= logged]
    for step, path in intact:
        if step > logged:
            selection.notes.append(
                f"{path} (step {step}) is ahead of {run_dir / 'metrics.jsonl'}, "
                f"which is complete only to step {logged}"
            )
    if not usable:
        if selection.notes:
            raise UserError(
                f"{run_dir}: no usable checkpoint: {'; '.join(selection.notes)}. To recover, {RECOVER_HINT}."
            )
        return selection
    step, path = max(usable, key=lambda sp: sp[0])  # max keeps the first (newest name) among equal steps
    selection.path, selection.step = path, step
    return selection


def repair_metrics(path: Path, step: int) -> int:
    """Keep the complete consecutive lines of metrics.jsonl up to `step`; returns how many were dropped."""
    if not path.exists():
        return 0
    keep = [line for s, line in metrics_prefix(path) if s <= step]
    with open(path, "rb") as fh:
        total = sum(1 for _ in fh)
    if len(keep) != total:
        write_text_atomic(path, "".join(line + "\n" for line in keep))
    return total - len(keep)


def remove(paths: list[Path]) -> None:
    import shutil

    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def require_complete_metrics(path: str | Path, steps: int | None) -> list[dict[str, Any]]:
    """The rows of a finished run's metrics.jsonl; UserError naming the file when a line is damaged
    or a step in 1..`steps` is missing (None: unknown, skip that check).

    Readers (figures) use this so that a damaged log is named instead of a curve silently ending early."""
    from dynamo.errors import read_jsonl_file

    path = Path(path)
    rows = read_jsonl_file(path)
    if steps:
        logged = {r.get("step") for r in rows if isinstance(r, dict)}
        missing = [s for s in range(1, steps + 1) if s not in logged]
        if missing:
            raise UserError(
                f"{path}: damaged or cut short: {len(missing)} of {steps} steps missing (first: step {missing[0]})"
            )
    return rows


def fsync_dir(path: Path) -> None:
    """Make renames inside `path` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
