"""One writer per run directory: an OS file lock held for as long as a command writes there.

`dynamo train` (both engines) and `dynamo evaluate` take `hold(directory)` before they write
anything there. The lock is `flock` on `<directory>/.dynamo.lock`, which also records who holds
it (pid, host, start time, command), so that a second writer stops at once with one line naming
the holder. The kernel drops the lock when its process ends, however it ends (SIGKILL, OOM, a
node reboot), so a dead holder never blocks a rerun: no stale-lock clean-up is needed, and the
lock file itself is left in place (deleting it would let two writers lock two different files).
On NFS, flock is emulated with byte-range locks that the server arbitrates across nodes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dynamo.errors import UserError, writing

LOCK_FILE = ".dynamo.lock"


@contextmanager
def hold(directory: str | Path, *, what: str) -> Iterator[None]:
    """Hold the lock of `directory` (created if needed) for the `with` block; `what` names this
    writer ("dynamo train") in the refusal a second writer gets."""
    directory = Path(directory)
    path = directory / LOCK_FILE
    with writing(path):
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"{directory} is in use by {_holder(path)}; wait for it to end, or stop it and rerun"
            ) from None
        except OSError as err:  # a file system without locks (some FUSE mounts): run, but say so
            print(
                f"[dynamo] warning: {path}: no file locks here ({err.strerror}); a second writer is not stopped",
                file=sys.stderr,
            )
        holder = {
            "what": what,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": shlex.join(["dynamo", *sys.argv[1:]]) if sys.argv else "",
        }
        with writing(path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    """Who holds the lock, as the holder recorded it (it writes just after locking)."""
    try:
        info = json.loads(path.read_text())
        where = f"pid {info['pid']} on {info['host']}, started {info['started']}"
        return f"another {info['what']} ({where}: {info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process that has just started"
