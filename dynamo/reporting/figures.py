"""`dynamo figures`: training curves and allocation figures from the runs' metrics.jsonl.

Each curve is the mean over seeds of a per-step metric, with a band for the min..max over
seeds; every figure carries a footer naming the runs it came from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dynamo import metrics_names as M
from dynamo.errors import read_json_file

CURVES = [
    (M.ACCURACY, "training accuracy"),
    (M.ENTROPY, "token entropy"),
    (M.INFORMATIVE_SHARE, "share of groups with reward spread"),
    (M.BETA_COMP, "mean beta_comp"),
    (M.BETA_STAB, "mean beta_stab"),
    (M.GRAD_NORM, "gradient norm"),
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


def _plot_grid(runs_root: Path, methods: list[str], seeds: list[int], panels: list[tuple[str, str]], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels):
        for method in methods:
            curve = load_curves(runs_root, method, seeds, key)
            if curve is None:
                continue
            steps, values = curve
            line = ax.plot(steps, values.mean(0), label=method)[0]
            if len(seeds) > 1:
                ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.text(
        0.01,
        0.005,
        f"runs: {runs_root}/<method>/seed{{{','.join(map(str, seeds))}}}; mean over seeds, band = min..max",
        fontsize=7,
        color="gray",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    for ext in ("pdf", "png"):
        tmp = path.with_name(f".{path.name}.tmp.{ext}")
        fig.savefig(tmp, dpi=130)
        tmp.replace(path.with_suffix(f".{ext}"))
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-root", required=True, help="runs/<experiment>")
    p.add_argument("--methods", required=True, help="comma-separated")
    p.add_argument("--seeds", required=True, help="comma-separated")
    p.add_argument("--out", default="paper_figures", help="output directory")


def run(args: argparse.Namespace) -> int:
    runs_root, out = Path(args.runs_root), Path(args.out)
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    _plot_grid(runs_root, methods, seeds, CURVES, out / "training_curves")
    allocation = [
        (M.N_MIN, "fewest rollouts given to a prompt"),
        (M.N_MAX, "most rollouts given to a prompt"),
        (M.N_STD, "std of per-prompt rollout counts"),
    ]
    _plot_grid(runs_root, methods, seeds, allocation, out / "allocation")
    print(f"wrote {out}/training_curves.{{pdf,png}} and {out}/allocation.{{pdf,png}}")
    return 0
