"""Optional experiment tracker: Weights & Biases, off by default (config `logger.wandb`).

The local engine sends every metrics.jsonl line to the tracker under the same names, with the
line's "step" as the W&B step (`LocalTrainer.train`). The OpenRLHF engine uses OpenRLHF's own
W&B logging, switched on by the launcher's flags (`launcher.wandb_flags`). wandb is imported
only when enabled; `mode: offline` writes the run below the run directory (`<run>/wandb/`)
without network, for `wandb sync` later.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
