"""A copy of the working tree without generated outputs, for tests that run the pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = {
    ".venv",
    ".git",
    "runs",
    "data",
    "models",
    "cache",
    "logs",
    ".snakemake",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "__pycache__",
}
# Output folders: copied with their README only, as a fresh clone has them.
OUTPUTS = {ROOT / "results", ROOT / "paper_figures"}


def _ignored(directory: str, names: list[str]) -> list[str]:
    if Path(directory) in OUTPUTS:
        return [n for n in names if n != "README.md"]
    return [n for n in names if n in GENERATED or n.endswith(".egg-info")]


def copy_repo(dest: Path) -> Path:
    """Copy the project to `dest` so that a test never touches ./results or ./runs."""
    shutil.copytree(ROOT, dest, ignore=_ignored)
    return dest
