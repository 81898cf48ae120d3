"""Shared look of every figure: readable on its own, a footer naming the run and commit, PDF + PNG."""

from __future__ import annotations

from pathlib import Path

from dynamo.errors import writing
from dynamo.provenance_info import git_commit


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8})
    return plt


def finish(fig, path: Path, *, caption: str, source: str, right: float = 1.0) -> None:
    """Caption under the panels, footer (source + commit) at the bottom, saved atomically as PDF and PNG."""
    import textwrap

    width_chars = int(fig.get_figwidth() * 15)
    wrapped = "\n".join(textwrap.wrap(caption, width_chars))
    n_lines = wrapped.count("\n") + 2
    bottom = min(0.45, (n_lines * 0.16 + 0.15) / fig.get_figheight())
    fig.tight_layout(rect=(0, bottom, right, 1))
    fig.text(0.01, bottom - 0.02, wrapped, fontsize=8, va="top", ha="left")
    fig.text(
        0.01,
        0.005,
        f"{source} | commit {git_commit(short=True)}",
        fontsize=6.5,
        color="0.4",
        va="bottom",
        ha="left",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    for ext in ("pdf", "png"):
        tmp = path.with_name(f".{path.name}.tmp.{ext}")
        with writing(path.with_suffix(f".{ext}"), remove_on_failure=tmp):  # disk full: one line, no tmp left
            fig.savefig(tmp, dpi=150, format=ext)
            tmp.replace(path.with_suffix(f".{ext}"))
    import matplotlib.pyplot as plt

    plt.close(fig)
