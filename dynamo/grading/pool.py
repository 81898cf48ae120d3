"""A small persistent pool of grading worker processes with a hard time bound per grade.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot kill one hung task -- the only way
out is to break the whole pool. Here each worker is a plain subprocess
(`python -m dynamo.grading._worker`) talking over a socket pair; the parent streams it chunks
of tasks and gets their results back in small batches. If a worker makes no progress for
`timeout` seconds it is killed and a fresh one started; its unanswered tasks are re-run one by
one, so that the one that hung fails alone ("killed") and the others are graded. Workers are
plain subprocesses (not multiprocessing "spawn" children) so they never re-import the caller's
`__main__`, and they exit on their own when the parent goes away (their socket reads EOF).

The parent side imports nothing heavy (no sympy, no math-verify).
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

# Seconds a fresh worker may take to import math-verify and warm up before we give up on it.
STARTUP_TIMEOUT_S = 180.0

# (task id, response, golds), or (task id, boxed answer, golds, "answer"): see _worker.
Task = tuple[int, str, tuple[str, ...]] | tuple[int, str, tuple[str, ...], str]
Result = tuple["bool | None", "str | None", "str | None"]  # (correct, extracted, failure)


@dataclass
class _Worker:
    proc: subprocess.Popen
    conn: Connection
    started: float
    ready: bool = False
    chunk: list[Task] = field(default_factory=list)  # tasks sent and not yet answered, in order
    last_progress: float = 0.0


class WorkerPool:
    """Lazily started grading workers; `run` grades a list of tasks with per-task time bound."""

    def __init__(self, memory_mb: int = 4096, soft_timeout: int = 5) -> None:
        self.memory_mb = memory_mb
        self.soft_timeout = soft_timeout
        self.pid = os.getpid()  # a forked child must not talk to its parent's workers
        self.workers: list[_Worker] = []
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- process management
    def _spawn(self) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # the directory holding `dynamo/`
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dynamo.grading._worker",
                    str(child_sock.fileno()),
                    str(self.memory_mb),
                    str(self.soft_timeout),
                ],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
            )
        finally:
            child_sock.close()
        self.stats["workers_started"] += 1
        return _Worker(proc=proc, conn=Connection(parent_sock.detach()), started=time.monotonic())

    @staticmethod
    def _kill(worker: _Worker) -> None:
        try:
            worker.proc.kill()
        except OSError:
            pass
        worker.proc.wait()
        worker.conn.close()

    def close(self) -> None:
        """Stop all workers (closing the socket makes them exit; kill stragglers)."""
        if os.getpid() != self.pid:
            self.workers = []
            return
        for worker in self.workers:
            worker.conn.close()
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._kill(worker)
        self.workers = []

    # ----------------------------------------------------------------- grading
    def run(self, tasks: list[Task], workers: int, timeout: float) -> dict[int, Result]:
        """Grade `tasks` on up to `workers` processes; every task gets a result, none raises."""
        with self._lock:
            return self._run(tasks, workers, timeout)

    def _run(self, tasks: list[Task], workers: int, timeout: float) -> dict[int, Result]:
        results: dict[int, Result] = {}
        if not tasks:
            return results
        # Several chunks per worker balance the load; contiguous chunks keep tasks that share a
        # gold answer (callers sort by gold) on one worker, whose caches then serve them.
        n_workers = max(1, min(workers, len(tasks)))
        size = max(1, min(256, math.ceil(len(tasks) / (4 * n_workers))))
        pending: deque[list[Task]] = deque(tasks[i : i + size] for i in range(0, len(tasks), size))
        # A worker still busy from an interrupted earlier run (e.g. KeyboardInterrupt) would send
        # stale results: replace it.
        for i, worker in enumerate(self.workers):
            if worker.chunk:
                self._kill(worker)
                self.workers[i] = self._spawn()
        while len(self.workers) < n_workers:
            self.workers.append(self._spawn())
        active = self.workers[:n_workers]
        startup_failures = 0

        def replace(worker: _Worker, failure: str | None) -> None:
            # failure None: the worker never saw its chunk, which goes back to the queue whole.
            # Otherwise it hung or died on one of its unanswered tasks -- which one is unknown, as
            # results come in batches -- so a lone task fails, and several are re-queued one per
            # chunk: the culprit then fails alone, the others are graded.
            nonlocal startup_failures
            self._kill(worker)
            if worker.chunk:
                if failure is None:
                    pending.appendleft(worker.chunk)
                elif len(worker.chunk) == 1:
                    results[worker.chunk[0][0]] = (False, None, failure)
                    self.stats[failure] += 1
                else:
                    pending.extendleft([task] for task in reversed(worker.chunk))
            elif not worker.ready:
                startup_failures += 1
                if startup_failures >= 3:
                    raise RuntimeError("grading workers fail to start (see their stderr above)")
            fresh = self._spawn()
            self.workers[self.workers.index(worker)] = fresh
            active[active.index(worker)] = fresh
            self.stats["worker_restarts"] += 1

        while len(results) < len(tasks):
            now = time.monotonic()
            for worker in list(active):
                if worker.ready and not worker.chunk and pending:
                    worker.chunk = pending.popleft()
                    worker.last_progress = now
                    try:
                        worker.conn.send(("grade", worker.chunk))
                    except OSError:  # died since its last message, before seeing this chunk
                        replace(worker, None)
            # Wait for a message or for the earliest deadline.
            deadlines = [
                (w.last_progress + timeout) if w.ready else (w.started + STARTUP_TIMEOUT_S)
                for w in active
                if w.chunk or not w.ready
            ]
            wait_for = max(0.0, min(deadlines) - now) if deadlines else 0.0
            for conn in wait([w.conn for w in active], timeout=wait_for):
                worker = next(w for w in active if w.conn is conn)
                try:
                    while conn.poll():
                        message = conn.recv()
                        if message[0] == "ready":
                            worker.ready = True
                        else:  # ("results", batch): the next tasks of its chunk, in order
                            for task_id, correct, extracted, failure in message[1]:
                                if not worker.chunk or task_id != worker.chunk[0][0]:
                                    break  # not ours (cannot happen with a live chunk)
                                results[task_id] = (correct, extracted, failure)
                                if failure:
                                    self.stats[failure] += 1
                                worker.chunk.pop(0)
                            worker.last_progress = time.monotonic()
                except (EOFError, OSError):
                    replace(worker, "crash")
            now = time.monotonic()
            for worker in list(active):
                if worker.ready and worker.chunk and now - worker.last_progress > timeout:
                    replace(worker, "killed")
                elif not worker.ready and now - worker.started > STARTUP_TIMEOUT_S:
                    replace(worker, "crash")
        return results
