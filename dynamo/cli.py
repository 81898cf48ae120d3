"""`dynamo` command line: one subcommand per pipeline step, each usable on its own.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args)`;
modules are imported only when their subcommand runs, so `dynamo grade` does not import
torch and `dynamo --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import textwrap

from dynamo.errors import UserError

# Errors that mean "the input is wrong" rather than "the code is wrong": printed as one line.
# ValueError covers bad values and formats (config checks, BenchmarkFormatError, JSON, YAML via
# its own class below, Hugging Face's bad repo ids); OSError covers missing/unreadable files.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ValueError, OSError)

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "make-task": (
        "dynamo.tasks.arithmetic",
        "write the embedded arithmetic task: training pool + held-out splits",
    ),
    "build-model": ("dynamo.models.tiny", "build and save the tiny character-level causal LM (no hub)"),
    "warmstart": (
        "dynamo.engines.sft",
        "supervised warm start of a model on a task's SFT file (disjoint from the RL pool)",
    ),
    "train": ("dynamo.engines.train", "RL-train a model with a registered method (local or openrlhf engine)"),
    "evaluate": ("dynamo.evaluation.evaluate", "sample k answers per benchmark problem, grade, Pass@1/Pass@k"),
    "grade": ("dynamo.grading.cli", "grade a JSONL of {response, answer} lines without any model"),
    "verify": (
        "dynamo.reporting.verify",
        "recompute every score from its samples (and scores tables from score files); non-zero on a difference",
    ),
    "report": ("dynamo.reporting.tables", "aggregate per-run scores into results tables (csv + md)"),
    "table4": (
        "dynamo.reporting.allocation_table",
        "table 4: allocation methods at equal rollouts with their generation cost, and its figure",
    ),
    "figures": ("dynamo.reporting.figures", "draw training curves and allocation figures from runs"),
    "methods": ("dynamo.reporting.methods", "list the registered methods and their specs"),
    "stage": ("dynamo.stage", "download an experiment's hub inputs into cache/ for offline compute nodes"),
    "doctor": (
        "dynamo.doctor",
        "check this machine against a config: versions, GPUs, offline inputs, what to fix",
    ),
    "plan": ("dynamo.plan", "estimate per-GPU memory of an openrlhf config and pick micro-batch sizes that fit"),
    "probe": ("dynamo.probes.cli", "mechanism checks of DynaMO's claims at saved policy snapshots (table 3)"),
}


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, wrapped without breaking at hyphens: names such as arith-easy=data/x/arith-easy.jsonl
    stay whole, so they can be copied from --help."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(re.sub(r"\s+", " ", text).strip(), width, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynamo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Arguments are added lazily (below) so that `dynamo --help` imports nothing heavy.
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # anywhere on the line: show the traceback of a user error
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints help / the error for an unknown command
        return 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    sub = argparse.ArgumentParser(
        prog=f"dynamo {argv[0]}", description=SUBCOMMANDS[argv[0]][1], formatter_class=HelpFormatter
    )
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except Exception as err:
        if debug or not _is_user_error(err):
            raise
        print(f"dynamo {argv[0]}: error: {_one_line(err)} (--debug shows the traceback)", file=sys.stderr)
        return 1


def _is_user_error(err: BaseException) -> bool:
    if isinstance(err, USER_ERRORS):
        return True
    yaml = sys.modules.get("yaml")
    return yaml is not None and isinstance(err, yaml.YAMLError)


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    if isinstance(err, UnicodeDecodeError):
        return "a file is not UTF-8 text (binary or damaged?)"
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
