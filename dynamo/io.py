"""Atomic file writes: a reader (or a killed run) never sees a half-written result file.

A write that fails (disk full, no permission) removes its temporary file and raises
`dynamo.errors.WriteError`, one line naming the failure and the file it was writing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dynamo.errors import writing


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary sibling, then rename over `path` (atomic on POSIX)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with writing(path, remove_on_failure=tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with _open_tmp(tmp) as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:  # a kill (KeyboardInterrupt) too: no tmp file is left behind
            tmp.unlink(missing_ok=True)
            raise


def _open_tmp(tmp: Path):
    """The temporary file's handle (a seam for tests that need a writer on a full device)."""
    return open(tmp, "w")


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON Lines file; a damaged line raises UserError naming the file and line."""
    from dynamo.errors import read_jsonl_file

    return read_jsonl_file(path)
