"""User errors: problems with what the user gave us (a missing file, a bad value, an unknown name).

`dynamo` subcommands raise `UserError` (or let an ordinary missing-file / bad-format error
through); `dynamo.cli.main` prints it as one line and exits non-zero, with the traceback only
under `dynamo --debug`. A bug in our code is not a UserError and keeps its traceback.

A failed write (disk full, no permission, read-only file system) is a `WriteError`: every writer
of a run (atomic writes, checkpoints, metrics.jsonl, TensorBoard, model directories) wraps its
writes in `writing(path)`, so the line names what failed and where, e.g. "no space left on device
while writing runs/x/checkpoint.tmp/trainer_state.pt". torch and safetensors wrap the OS error in
their own exception types; `writing` finds the errno in those too.
"""

from __future__ import annotations

import errno as errno_codes
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class UserError(Exception):
    """An error the user can fix; its message is the whole story (it names the file or field)."""


class WriteError(UserError):
    """Writing `path` failed for an OS reason (`errno`, None when the library hid it)."""

    def __init__(self, path: str | Path, errno: int | None, detail: str = ""):
        self.path, self.errno = Path(path), errno
        reason = os.strerror(errno).lower() if errno else f"write failed ({detail})"
        super().__init__(f"{reason} while writing {path}")


# safetensors (Rust) reports "... os error 28" / "code: 28"; torch.save to a path reports only
# "unexpected pos" or "file write failed" (so the writers here hand torch.save an open file,
# which makes torch raise the OSError itself).
_RUST_ERRNO = re.compile(r"(?:os error|code:) (\d+)")
_TORCH_WRITE_FAILED = ("inline_container", "file write failed")


def failed_write_errno(err: BaseException) -> tuple[bool, int | None]:
    """(is this an OS-level write failure?, its errno if known), for OSError and the wrappers of
    safetensors and torch; any other exception is not (a bug keeps its traceback)."""
    if isinstance(err, OSError):
        return True, err.errno
    if type(err).__name__ == "SafetensorError" and (match := _RUST_ERRNO.search(str(err))):
        return True, int(match.group(1))
    if isinstance(err, RuntimeError) and any(mark in str(err) for mark in _TORCH_WRITE_FAILED):
        # torch.save into an open file: the file's OSError is often the context of torch's own error.
        context = err.__cause__ or err.__context__
        return True, context.errno if isinstance(context, OSError) else None
    return False, None


@contextmanager
def writing(path: str | Path, *, remove_on_failure: str | Path | None = None) -> Iterator[None]:
    """Turn an OS-level failure of the writes inside into one WriteError naming `path`.

    `remove_on_failure`: a temporary file or folder to delete when the write fails (a partial
    file must not be left behind, and deleting it gives back the space it took)."""
    try:
        yield
    except WriteError:
        _remove(remove_on_failure)
        raise
    except Exception as err:
        _remove(remove_on_failure)
        is_write, code = failed_write_errno(err)
        if not is_write:
            raise
        if code == errno_codes.ENOENT and isinstance(err, OSError) and err.filename:
            path = err.filename  # a missing parent folder: name what is missing
        raise WriteError(path, code, " ".join(str(err).split())[:120]) from err


def _remove(path: str | Path | None) -> None:
    if path is None:
        return
    path = Path(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # the write error is the one to report


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (damaged?)") from None


def read_json_file(path: str | Path) -> Any:
    """json.load of `path`; a damaged or missing file raises UserError naming it."""
    path = Path(path)
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: damaged JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None


def read_jsonl_file(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON Lines file; a damaged line or missing file raises UserError naming both."""
    path = Path(path)
    text = _read_text(path)
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: line {number} is damaged ({err.msg}); the file was cut or edited") from None
    return rows
