"""Grading worker process: `python -m dynamo.grading._worker FD MEMORY_MB SOFT_TIMEOUT`.

Started by `dynamo.grading.pool` with one end of a socket pair as file descriptor FD. Speaks
pickled tuples over it (multiprocessing's Connection framing):

    parent -> worker: ("grade", [(task_id, text, golds[, "answer"]), ...])
    worker -> parent: ("ready", pid) once, then ("result", task_id, correct, extracted, failure)
                      per task, in order.

A task's text is a whole response, or with "answer" the `text.boxed_answer` of one; then
`correct` is None when that shortcut does not apply (`Grader.grade_answer`).

Runs math-verify in this process's main thread so its signal-based timeouts work; the parent
kills the whole process if a grade overruns anyway (e.g. a C-level computation that signals
cannot interrupt). Exits on EOF, i.e. when the parent closes its end or dies.
"""

from __future__ import annotations

import logging
import sys


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
            for task_id, text, golds, *kind in message[1]:
                try:
                    if kind == ["answer"]:
                        graded = grader.grade_answer(text, golds)
                        correct, extracted, failure = graded if graded is not None else (None, None, None)
                    else:
                        correct, extracted, failure = grader.grade(text, golds)
                except Exception:  # Grader already catches math-verify's errors; this is a last resort
                    correct, extracted, failure = False, None, "error"
                conn.send(("result", task_id, correct, extracted, failure))
    except (EOFError, OSError):  # the parent closed its end or went away
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
