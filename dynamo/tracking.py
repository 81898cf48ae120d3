"""Optional experiment tracker: Weights & Biases, off by default (config `logger.wandb`).

The local engine sends every metrics.jsonl line to the tracker under the same names, with the
line's "step" as the W&B step (`LocalTrainer.train`). The OpenRLHF engine uses OpenRLHF's own
W&B logging, switched on by the launcher's flags (`launcher.wandb_flags`), and hands it the same
metrics.jsonl row (the contract's names; OpenRLHF puts `train/` in front of each). wandb is imported
only when enabled; `mode: offline` writes the run below the run directory (`<run>/wandb/`)
without network, for `wandb sync` later.

When a write fails (disk full), the run stops with one line naming the file
(`dynamo.errors.writing`). TensorBoard writes from a thread of its own, whose failure would
print a traceback of its own: `quiet_writer_threads` keeps such threads quiet (the same error
reaches the training loop at the writer's next call, which names the path) and `close_quietly`
shuts the writers down on the way out without adding tracebacks.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynamo.errors import failed_write_errno, writing

if TYPE_CHECKING:  # annotations only: tracking must not import the config layer (tests/test_imports.py)
    from dynamo.config import WandbConfig

ID_FILE = "wandb_run_id.txt"  # a resumed run continues the same W&B run


def require_wandb(cfg: WandbConfig) -> None:
    """Fail before any compute when the tracker is enabled but wandb is not installed."""
    if not cfg.enabled:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "logger.wandb.enabled is true but the wandb package is not installed: `pip install wandb`, "
            "or set logger.wandb.enabled: false"
        ) from None


class WandbTracker:
    def __init__(self, run: Any):
        self.run = run

    def log(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl line: every key but "step" under its own name, at W&B step record["step"]."""
        self.run.log({k: v for k, v in record.items() if k != "step"}, step=int(record["step"]))

    def close(self) -> None:
        self.run.finish()


def open_tracker(
    cfg: WandbConfig, run_dir: str | Path, *, name: str, group: str, config: dict[str, Any]
) -> WandbTracker | None:
    """A started W&B run for this training run, or None when the tracker is off."""
    if not cfg.enabled:
        return None
    require_wandb(cfg)
    import wandb

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    id_file = run_dir / ID_FILE
    if id_file.exists():
        run_id = id_file.read_text().strip()
    else:
        run_id = uuid.uuid4().hex[:16]
        with writing(id_file):
            id_file.write_text(run_id + "\n")
    os.environ.setdefault("WANDB_SILENT", "true")  # keep the training log line-oriented
    run = wandb.init(
        project=cfg.project,
        entity=cfg.entity or None,
        mode=cfg.mode,
        dir=str(run_dir),
        name=name,
        group=group,
        id=run_id,
        resume="allow",
        config=config,
    )
    return WandbTracker(run)


@contextmanager
def quiet_writer_threads() -> Iterator[None]:
    """While inside: a background thread that dies of a failed write prints no traceback (others still do)."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and failed_write_errno(args.exc_value)[0]:
            return  # the writer re-raises it in the main thread, where it is named
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def close_quietly(*writers: Any) -> None:
    """Close TensorBoard writers / trackers after another error: their own failures are not reported
    (the error already on its way out is the one that matters). W&B's finish gets exit code 1."""
    for writer in writers:
        if writer is None:
            continue
        try:
            if isinstance(writer, WandbTracker):
                writer.run.finish(exit_code=1)
            else:
                writer.close()
        except Exception as err:  # best effort on the way out
            if not failed_write_errno(err)[0]:
                print(f"[dynamo] closing {type(writer).__name__} failed: {err}", file=sys.stderr)
