"""Grading worker process: `python -m dynamo.grading._worker FD MEMORY_MB SOFT_TIMEOUT`.

Started by `dynamo.grading.pool` with one end of a socket pair as file descriptor FD. Speaks
pickled tuples over it (multiprocessing's Connection framing):

    parent -> worker: ("grade", [(task_id, text, golds[, "answer"]), ...])
    worker -> parent: ("ready", None) once, then ("results", [(task_id, correct, extracted,
                      failure), ...]) in task order: a batch when the chunk is done, or
                      earlier once FLUSH_S has passed since the last batch (progress for the
                      parent's timeout; one message per task would cost the parent more
                      CPU than the cheap tasks themselves).

A task's text is a whole response, or with "answer" the `text.boxed_answer` of one; then
`correct` is None when that shortcut does not apply (`Grader.grade_answer`).

Runs math-verify in this process's main thread so its signal-based timeouts work; the parent
kills the whole process if a grade overruns anyway (e.g. a C-level computation that signals
cannot interrupt). Exits on EOF, i.e. when the parent closes its end or dies.
"""

from __future__ import annotations

import logging
import sys
import time

FLUSH_S = 0.05


def _limit_memory(megabytes: int) -> None:
    # An address-space cap turns a memory bomb (e.g. a huge integer power) into a MemoryError
    # inside this worker instead of swapping the machine.
    if megabytes <= 0:
        return
    try:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass


def main(argv: list[str]) -> int:
    fd, memory_mb, soft_timeout = int(argv[1]), int(argv[2]), int(argv[3])
    _limit_memory(memory_mb)
    # math-verify logs every timeout with the full offending text; the parent counts failures.
    logging.disable(logging.CRITICAL)

    from multiprocessing.connection import Connection

    from dynamo.grading.engine import WARMUP_ANSWERS, Grader

    conn = Connection(fd)
    grader = Grader(soft_timeout=soft_timeout or None)
    for answer in WARMUP_ANSWERS:  # pay ANTLR's first-parse costs before the first real batch
        grader.grade(f"The answer is $\\boxed{{{answer}}}$.", ("7", answer))
    try:
        conn.send(("ready", None))
        while True:
            message = conn.recv()
            if message[0] != "grade":
                return 0
            batch, flushed = [], time.monotonic()
            for task_id, text, golds, *kind in message[1]:
                try:
                    if kind == ["answer"]:
                        graded = grader.grade_answer(text, golds)
                        correct, extracted, failure = graded if graded is not None else (None, None, None)
                    else:
                        correct, extracted, failure = grader.grade(text, golds)
                except Exception:  # Grader already catches math-verify's errors; this is a last resort
                    correct, extracted, failure = False, None, "error"
                batch.append((task_id, correct, extracted, failure))
                if time.monotonic() - flushed > FLUSH_S:
                    conn.send(("results", batch))
                    batch, flushed = [], time.monotonic()
            if batch:
                conn.send(("results", batch))
    except (EOFError, OSError):  # the parent closed its end or went away
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
