"""One figure per DynaMO claim, from table-3 rows and the probe files (paper_figures/probe_*.{pdf,png})."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dynamo.io import read_jsonl
from dynamo.probes.report import ENTROPY_KEY, MEASURE_LABEL
from dynamo.reporting.style import finish, pyplot

NAMES = ["probe_allocation", "probe_indicator", "probe_stabilization", "probe_compensation"]


def _err(rows: list[dict[str, Any]]):
    est = np.array([r["estimate"] for r in rows], dtype=float)
    lo = np.array([r["ci_low"] for r in rows], dtype=float)
    hi = np.array([r["ci_high"] for r in rows], dtype=float)
    return est, np.vstack([np.nan_to_num(est - lo), np.nan_to_num(hi - est)])


def _snapshot_axis(ax, snaps):
    ax.set_xticks(range(len(snaps)))
    ax.set_xticklabels(["pooled" if s == "all" else f"step {s}" for s in snaps])
    ax.set_xlabel("policy snapshot (RL step)")


def _estimate_panel(ax, rows, claim: str, ylabel: str, title: str) -> None:
    """The claim's estimate per snapshot with its 95% interval; dashed: no effect (0)."""
    sel = [r for r in rows if r["claim"] == claim]
    est, err = _err(sel)
    ax.errorbar(range(len(sel)), est, yerr=err, fmt="o", capsize=3)
    ax.axhline(0.0, color="0.3", lw=0.8, ls="--")
    _snapshot_axis(ax, [r["snapshot"] for r in sel])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def allocation_figure(rows, out: Path, source: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    for ax, measure in zip(axes, MEASURE_LABEL):
        for k, (scheme, label, marker) in enumerate(
            (("w=P", "w = P_i", "o"), ("w=sqrt(P)", "w = sqrt(P_i)", "s"))
        ):
            sel = [
                r
                for r in rows
                if r["claim"] == "allocation"
                and r["quantity"].startswith(MEASURE_LABEL[measure])
                and f": {scheme} /" in r["quantity"]
            ]
            snaps = [r["snapshot"] for r in sel]
            est, err = _err(sel)
            ax.errorbar(np.arange(len(sel)) + (k - 0.5) * 0.2, est, yerr=err, fmt=marker, capsize=3, label=label)
        ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
        _snapshot_axis(ax, snaps)
        ax.set_ylabel("ratio to uniform allocation")
        ax.set_title(MEASURE_LABEL[measure])
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    finish(
        fig,
        out,
        caption="Allocation at equal rollout budget. Each point: a measure of the flattened policy gradient "
        "under the allocation scheme divided by the same measure under uniform allocation (dashed line: no "
        "difference); bars: 95% interval (paired delete-one jackknife over rollout batches, pooled over prompt "
        "sets). Lower trace / relative noise and higher cosine mean a less noisy gradient estimate.",
        source=source,
    )


def indicator_figure(rows, probe_files: list[dict[str, Any]], out: Path, source: str) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    last = max(s["step"] for p in probe_files for s in p["one_step"])
    pred = np.concatenate(
        [s["indicator_points"]["predicted"] for p in probe_files for s in p["one_step"] if s["step"] == last]
    )
    real = np.concatenate(
        [s["indicator_points"]["realised"] for p in probe_files for s in p["one_step"] if s["step"] == last]
    )
    a.scatter(pred, real, s=3, alpha=0.3, color="C0", rasterized=True)
    a.axhline(0, color="0.5", lw=0.6)
    a.axvline(0, color="0.5", lw=0.6)
    a.set_xlabel("predicted first-order entropy change dH (nats)")
    a.set_ylabel("realised entropy change after one step (nats)")
    a.set_title(f"tokens with A != 0, snapshot step {last}")
    a.grid(alpha=0.3)
    _estimate_panel(b, rows, "indicator", "Spearman rank correlation", "prediction vs realisation")
    finish(
        fig,
        out,
        caption="Entropy change as an indicator. Left: per-token predicted dH (DynaMO's first-order formula) "
        "against the entropy change measured at the same position after one optimiser step (no modulation). "
        "Right: rank correlation, mean over rollout batches with 95% t-interval; dashed: no association.",
        source=source,
    )


def stabilization_figure(
    rows, runs_root: Path, methods: tuple[str, str], seeds: list[int], out: Path, source: str
) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, (label, marker) in enumerate((("max", "o"), ("99th percentile", "s"))):
        sel = [r for r in rows if r["claim"] == "stabilization" and r["quantity"].startswith(label)]
        est, err = _err(sel)
        a.errorbar(
            np.arange(len(sel)) + (k - 0.5) * 0.2, est, yerr=err, fmt=marker, capsize=3, label=f"{label} |dH|"
        )
        _snapshot_axis(a, [r["snapshot"] for r in sel])
    a.axhline(1.0, color="0.3", lw=0.8, ls="--")
    a.set_ylabel("with / without beta_stab")
    a.set_title("largest per-token entropy changes in one step")
    a.grid(alpha=0.3)
    a.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), ncol=2, frameon=False)
    for method in methods:
        curves = []
        for seed in seeds:
            rows_m = read_jsonl(runs_root / method / f"seed{seed}" / "metrics.jsonl")
            curves.append({r["step"]: r[ENTROPY_KEY] for r in rows_m if ENTROPY_KEY in r})
        common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        if not common:
            continue
        values = np.array([[c[s] for s in common] for c in curves])
        line = b.plot(common, values.mean(0), label=method)[0]
        if len(seeds) > 1:
            b.fill_between(common, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)
    b.set_xlabel("RL step")
    b.set_ylabel("mean token entropy (nats)")
    b.set_title("entropy trajectory during training")
    b.grid(alpha=0.3)
    b.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    finish(
        fig,
        out,
        caption="Stabilization. Left: ratio of the largest (max, 99th percentile) per-token entropy changes "
        "caused by one optimiser step with beta_stab to those without it, same state and batch; 95% t-interval "
        f"over rollout batches. Right: mean token entropy per step, line = mean over seeds {seeds}, "
        "band = min..max over those seeds.",
        source=source,
    )


def compensation_figure(rows, probe_files, out: Path, source: str) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    snaps = sorted({s["step"] for p in probe_files for s in p["one_step"]})
    for k, arm in enumerate(("none", "comp")):
        means = []
        for snap in snaps:
            vals = [s[arm]["confident_dlogp"] for p in probe_files for s in p["one_step"] if s["step"] == snap]
            means.append(np.nanmean(vals))
        a.bar(
            np.arange(len(snaps)) + (k - 0.5) * 0.35,
            means,
            width=0.35,
            label="with beta_comp" if arm == "comp" else "without",
        )
    a.set_xticks(range(len(snaps)))
    a.set_xticklabels([f"step {s}" for s in snaps])
    a.set_xlabel("policy snapshot (RL step)")
    a.set_ylabel("mean log-prob change (nats)")
    a.set_title("confident correct tokens, one step")
    a.grid(alpha=0.3, axis="y")
    a.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), ncol=2, frameon=False)
    _estimate_panel(b, rows, "compensation", "with - without beta_comp (nats)", "paired difference")
    finish(
        fig,
        out,
        caption="Compensation. Log-probability change, after one optimiser step, of confident correct tokens "
        "(A > 0 and entropy in the lowest quantile of such tokens), with and without beta_comp from the same "
        "state and batch. Right: paired difference, mean over rollout batches with 95% t-interval.",
        source=source,
    )
