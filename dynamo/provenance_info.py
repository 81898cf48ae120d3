"""Where a result came from: the code's commit and the hashes of files (standard library only).

A leaf module on purpose: run fingerprints, checkpoint manifests, run summaries, score tables and
figure footers all record provenance, and none of them should have to import another to get it.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def git_commit(*, short: bool = False) -> str:
    """HEAD of the checkout running this code (12 characters when `short`), '-dirty' when tracked code
    has uncommitted changes, or 'unknown' outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", *(["--short=12"] if short else []), "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            # Pipeline outputs are not code: rewriting them does not make the checkout dirty.
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!paper_figures"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def file_sha256(path: Path, *, partial: bool = False, chunk: int = 1 << 20) -> str:
    """sha256 of a file; with `partial`, of its size, first and last `chunk` bytes only (for weights
    too large to read whole on every resume), marked 'partial:'."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        if partial:
            size = path.stat().st_size
            digest.update(f"size={size};".encode())
            digest.update(fh.read(chunk))
            fh.seek(max(size - chunk, 0))
            digest.update(fh.read(chunk))
            return "partial:" + digest.hexdigest()
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
