"""Resume safety for the openrlhf engine: check `<ckpt>/_actor/` before any actor loads it.

OpenRLHF 0.11.2 resumes whenever `<ckpt>/_actor/` exists; DeepSpeed then reads the tag to load from
the file `_actor/latest`, which it writes only after every rank finished saving. A crash during the
first save (or while `latest` itself was rewritten) leaves `_actor/` without a usable `latest`:
DeepSpeed loads nothing, OpenRLHF's `fit()` then raises KeyError('episode'). Here, run once in the
driver before Ray starts:

- `latest` names an existing tag directory: nothing to do (DeepSpeed's own guarantee).
- otherwise, the newest tag directory that carries our completion marker (written by the
  controller after all ranks returned from `save_checkpoint`, trainer.py) becomes `latest` again,
  with a warning naming what was skipped: the previous good checkpoint.
- tag directories exist but none is marked complete: refuse, saying what to delete to start over
  (a half-written checkpoint could load as garbage or fail deep inside DeepSpeed).
- no tag directory at all: nothing was saved; the run starts fresh (trainer.py turns the empty
  states into a fresh start).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "dynamo_complete.json"
_TAG = re.compile(r"^global_step(\d+)$")


class DamagedCheckpointError(RuntimeError):
    pass


def mark_complete(actor_dir: Path, tag: str, step: int) -> None:
    """Record that every rank finished saving `tag` (called by the controller after the save returned)."""
    tag_dir = Path(actor_dir) / tag
    if tag_dir.is_dir():
        tmp = tag_dir / (MARKER + ".tmp")
        tmp.write_text(json.dumps({"step": step}))
        os.replace(tmp, tag_dir / MARKER)


def _tags(actor_dir: Path) -> list[tuple[int, str]]:
    found = [(int(m.group(1)), d.name) for d in actor_dir.iterdir() if d.is_dir() and (m := _TAG.match(d.name))]
    return sorted(found, reverse=True)


def prepare_resume(ckpt_path: str | os.PathLike) -> str | None:
    """Make `<ckpt_path>/_actor` safe to resume from; returns the tag to resume from (None = fresh start)."""
    actor_dir = Path(ckpt_path) / "_actor"
    if not actor_dir.is_dir():
        return None
    latest = actor_dir / "latest"
    tag = latest.read_text().strip() if latest.is_file() else ""
    if tag and (actor_dir / tag).is_dir():
        return tag
    tags = _tags(actor_dir)
    if not tags:
        return None
    complete = [name for _, name in tags if (actor_dir / name / MARKER).is_file()]
    problem = f"'latest' names {tag!r}, which does not exist" if tag else "no readable 'latest' file"
    if not complete:
        raise DamagedCheckpointError(
            f"cannot resume from {actor_dir}: {problem}, and none of its checkpoints "
            f"({', '.join(name for _, name in tags)}) is marked complete ({MARKER}); a crash during the "
            f"save left it unusable. Delete {Path(ckpt_path)} to start this run over."
        )
    good = complete[0]
    skipped = [name for _, name in tags if name != good and _TAG.match(name) and int(name[11:]) > int(good[11:])]
    log.warning(
        "checkpoint directory %s: %s; resuming from the last complete checkpoint %s%s",
        actor_dir,
        problem,
        good,
        f" (skipping incomplete {', '.join(skipped)})" if skipped else "",
    )
    tmp = actor_dir / "latest.tmp"
    tmp.write_text(good)
    os.replace(tmp, latest)
    return good
