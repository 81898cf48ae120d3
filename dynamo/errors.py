"""User errors: problems with what the user gave us (a missing file, a bad value, an unknown name).

`dynamo` subcommands raise `UserError` (or let an ordinary missing-file / bad-format error
through); `dynamo.cli.main` prints it as one line and exits non-zero, with the traceback only
under `dynamo --debug`. A bug in our code is not a UserError and keeps its traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class UserError(Exception):
    """An error the user can fix; its message is the whole story (it names the file or field)."""


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
