"""`dynamo figures`: training curves and allocation figures from the runs' metrics.jsonl.

Each curve is the mean over seeds of a per-step metric, with a band for the min..max over
seeds (said in the caption under the panels); every figure carries a footer naming the runs
and the commit it came from, and is written as PDF and PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dynamo import metrics_names as M
from dynamo.errors import read_json_file
from dynamo.reporting.style import finish, pyplot

# (metric, panel title, y-axis label with unit)
CURVES = [
    (M.ACCURACY, "training accuracy", "share of rollouts correct"),
    (M.ENTROPY, "token entropy", "mean entropy (nats / token)"),
    (M.INFORMATIVE_SHARE, "groups with reward spread", "share of prompts"),
    (M.BETA_COMP, "compensation factor", "mean beta_comp (unitless)"),
    (M.BETA_STAB, "stabilisation factor", "mean beta_stab (unitless)"),
    (M.GRAD_NORM, "gradient norm", "L2 norm before clipping"),
]
ALLOCATION = [
    (M.N_MIN, "fewest rollouts given to a prompt", "rollouts per prompt"),
    (M.N_MAX, "most rollouts given to a prompt", "rollouts per prompt"),
    (M.N_STD, "spread of per-prompt rollout counts", "std of rollouts per prompt"),
]


def load_curves(runs_root: Path, method: str, seeds: list[int], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values[seed, step]) over the steps every seed logged; None when no seed logged `key`."""
    series = []
    for seed in seeds:
        rows = _run_metrics(runs_root / method / f"seed{seed}")
        series.append({r["step"]: r[key] for r in rows if key in r})
    common = sorted(set.intersection(*(set(s) for s in series))) if series else []
    if not common:
        return None
    return np.array(common), np.array([[s[step] for step in common] for s in series])


def _run_metrics(run: Path) -> list[dict]:
    """metrics.jsonl of a run; a damaged or cut-short file (fewer steps than summary.json says) is named."""
    from dynamo.checkpoint import require_complete_metrics

    summary = run / "summary.json"
    steps = read_json_file(summary).get("steps") if summary.exists() else None
    return require_complete_metrics(run / "metrics.jsonl", steps)


DASHES = ["-", "--", ":", "-."]


def _plot_grid(
    runs_root: Path,
    methods: list[str],
    seeds: list[int],
    panels: list[tuple[str, str, str]],
    path: Path,
    caption: str,
) -> None:
    plt = pyplot()
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols + 1.6, 3.0 * rows + 0.9), squeeze=False)
    handles = {}
    for ax, (key, title, ylabel) in zip(axes.flat, panels):
        for i, method in enumerate(methods):
            curve = load_curves(runs_root, method, seeds, key)
            if curve is None:
                continue
            steps, values = curve
            # A dash pattern per method as well as a colour: methods whose curves coincide (every
            # uniform allocation, every factor fixed at 1) stay visible on top of each other.
            line = ax.plot(steps, values.mean(0), color=f"C{i}", ls=DASHES[i % len(DASHES)], lw=1.4)[0]
            handles[method] = line
            if len(seeds) > 1:
                ax.fill_between(steps, values.min(0), values.max(0), color=f"C{i}", alpha=0.15, lw=0)
        ax.set_title(title)
        ax.set_xlabel("RL step (one rollout batch)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="upper left",
        bbox_to_anchor=(1.0 - 1.5 / fig.get_figwidth(), 0.97),
        frameon=False,
        title="method",
    )
    band = f"band = min..max over the {len(seeds)} seeds" if len(seeds) > 1 else "one seed, no band"
    finish(
        fig,
        path,
        caption=f"{caption} Line = mean over seeds {seeds}; {band}.",
        source=f"runs: {runs_root}/<method>/seed{{{','.join(map(str, seeds))}}}/metrics.jsonl",
        right=1.0 - 1.7 / fig.get_figwidth(),
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-root", required=True, help="runs/<experiment>")
    p.add_argument("--methods", required=True, help="comma-separated")
    p.add_argument("--seeds", required=True, help="comma-separated")
    p.add_argument("--out", default="paper_figures", help="output directory")


def run(args: argparse.Namespace) -> int:
    runs_root, out = Path(args.runs_root), Path(args.out)
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    _plot_grid(
        runs_root,
        methods,
        seeds,
        CURVES,
        out / "training_curves",
        "Training curves of each method: rollout accuracy on the training prompts, policy entropy, share of "
        "prompt groups whose rewards differ (the only groups with a gradient), mean modulation factors over "
        "response tokens (1 = off) and the gradient norm, per RL step.",
    )
    _plot_grid(
        runs_root,
        methods,
        seeds,
        ALLOCATION,
        out / "allocation",
        "Rollout allocation per RL step at a fixed budget (prompts x rollouts): uniform methods give every "
        "prompt the same count (std 0); DynaMO moves rollouts to prompts with high Bernoulli variance "
        "within its bounds.",
    )
    print(f"wrote {out}/training_curves.{{pdf,png}} and {out}/allocation.{{pdf,png}}")
    return 0
