"""A missing OpenRLHF fails CI instead of skipping its tests quietly.

The OpenRLHF engine's tests (parity with the local engine included) skip themselves when
`openrlhf` cannot be imported, so that the suite runs on a machine without it. In CI (`CI=true`,
as .ci/run and most CI services set it) such a skip would hide that the engine went untested:
there, every skip whose reason says openrlhf is not importable or not installed is listed at the
end of the run and the run fails.
"""

from __future__ import annotations

import os
import re

import pytest

OPENRLHF_MISSING = re.compile(r"\bopenrlhf\b.*\bnot (importable|installed)\b", re.IGNORECASE)
_openrlhf_skips: list[str] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _note_skip(report) -> None:
    if report.skipped and OPENRLHF_MISSING.search(str(report.longrepr)):
        _openrlhf_skips.append(report.nodeid)


def pytest_collectreport(report):  # a module that skips at import
    _note_skip(report)


def pytest_runtest_logreport(report):  # a test that skips itself
    _note_skip(report)


def pytest_sessionfinish(session, exitstatus):
    if _openrlhf_skips and _in_ci() and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _openrlhf_skips and _in_ci():
        terminalreporter.section("openrlhf missing in CI", sep="=", red=True, bold=True)
        terminalreporter.line(
            f"CI=true, yet {len(_openrlhf_skips)} test(s) or module(s) skipped because openrlhf is not "
            "importable; install it as the README says. Failing the run:"
        )
        for nodeid in _openrlhf_skips:
            terminalreporter.line(f"  {nodeid}")
