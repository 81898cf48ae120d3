"""One figure per DynaMO claim, from table-3 rows and the probe files (paper_figures/probe_*.{pdf,png})."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dynamo.core.modulation import decay
from dynamo.io import read_jsonl
from dynamo.methods import MODULATION_PRESETS
from dynamo.probes.report import ALLOCATION_ROWS, ALLOCATION_SCHEMES, ENTROPY_KEY
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


def _estimate_panel(ax, rows, claim: str, ylabel: str, title: str, quantities=None, null: float = 0.0) -> None:
    """The claim's estimates per snapshot with their 95% intervals (one series per quantity); dashed: no effect."""
    quantities = quantities or sorted({r["quantity"] for r in rows if r["claim"] == claim})
    for k, quantity in enumerate(quantities):
        sel = [r for r in rows if r["claim"] == claim and r["quantity"] == quantity]
        if not sel:
            continue
        est, err = _err(sel)
        offset = (k - (len(quantities) - 1) / 2) * 0.15
        ax.errorbar(np.arange(len(sel)) + offset, est, yerr=err, fmt="os^v"[k % 4], capsize=3, label=quantity)
        _snapshot_axis(ax, [r["snapshot"] for r in sel])
    ax.axhline(null, color="0.3", lw=0.8, ls="--")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def allocation_figure(rows, out: Path, source: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(ALLOCATION_ROWS), figsize=(3.3 * len(ALLOCATION_ROWS), 3.6))
    for ax, (_, label, _side) in zip(axes, ALLOCATION_ROWS):
        snaps = []
        for k, (scheme, marker) in enumerate(zip([s for _, s in ALLOCATION_SCHEMES], "os")):
            sel = [
                r for r in rows if r["claim"] == "allocation" and r["quantity"] == f"{label}: {scheme} / uniform"
            ]
            if not sel:
                continue
            snaps = [r["snapshot"] for r in sel]
            est, err = _err(sel)
            ax.errorbar(np.arange(len(sel)) + (k - 0.5) * 0.2, est, yerr=err, fmt=marker, capsize=3, label=scheme)
        ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
        _snapshot_axis(ax, snaps)
        ax.set_ylabel("ratio to uniform allocation")
        ax.set_title(label.replace(": ", ":\n", 1), fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    finish(
        fig,
        out,
        caption="Allocation at equal rollout budget, ratio to uniform allocation (dashed: no difference); bars: "
        "95% interval over snapshot x prompt-set cells. First panel: the paper's fixed-target (per-prompt mean, "
        "group advantages) estimator, the test of the claim. Next two: the engine's token-mean estimator "
        "measured on one common reference direction. Fourth: the per-prompt mean with a constant pool baseline "
        "(diagnostic). Last two: diagnostics of the token-mean estimator against its own target, which "
        "rise with allocation through dilution alone (fewer tokens in zero-advantage groups).",
        source=source,
    )


def indicator_figure(rows, probe_files: list[dict[str, Any]], out: Path, source: str) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    last = max(s["step"] for p in probe_files for s in p["one_step"])
    points = [s["indicator_points"] for p in probe_files for s in p["one_step"] if s["step"] == last]
    real = np.abs(np.concatenate([q["realised"] for q in points]))
    pred = np.abs(np.concatenate([q["predicted"] for q in points]))
    h0 = np.concatenate([q.get("entropy", [np.nan] * len(q["realised"])) for q in points])
    a.scatter(pred, real, s=3, alpha=0.3, color="C0", rasterized=True, label="|predicted dH|")
    if np.isfinite(h0).any():
        a2 = a.twiny()
        a2.scatter(h0, real, s=3, alpha=0.2, color="C1", rasterized=True)
        a2.set_xlabel("entropy H0 before the step (nats), orange", color="C1")
    a.set_xlabel("|predicted first-order entropy change dH| (nats), blue", color="C0")
    a.set_ylabel("|realised entropy change| after one step")
    a.set_title(f"tokens with A != 0, snapshot step {last}", fontsize=9, pad=28)
    a.grid(alpha=0.3)
    _estimate_panel(b, rows, "indicator", "Spearman / share", "indicator vs its trivial baseline (H0)")
    b.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), fontsize=7, frameon=False)
    finish(
        fig,
        out,
        caption="Entropy change as an indicator. Left: per token, the realised |entropy change| after one "
        "optimiser step (no modulation) against DynaMO's predicted |dH| (blue) and against the token's own "
        "entropy H0 "
        "(orange, the trivial baseline). Right: rank correlations, the partial correlation given H0 (what the "
        "indicator adds) and sign agreement (null 0.5); 95% t-intervals over snapshots.",
        source=source,
    )


def stabilization_figure(
    rows, runs_root: Path, methods: tuple[str, str], seeds: list[int], out: Path, source: str, probe_files=()
) -> None:
    plt = pyplot()
    fig, (a, c, b) = plt.subplots(1, 3, figsize=(15, 3.8))
    for k, (label, marker) in enumerate((("max", "o"), ("99th percentile", "s"))):
        sel = [r for r in rows if r["claim"] == "stabilization" and r["quantity"].startswith(f"{label} per-token")]
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
    # f(x) of both presets over the x the runs actually produce.
    x = np.linspace(0.0, 1.0, 401)
    for mode, style in (("decay6", "-"), ("decay5", "--")):
        p = MODULATION_PRESETS[mode]
        c.plot(
            x,
            [decay(v, lambda_min=p["lambda_min"], gamma=p["gamma"], tau=p["tau"]) for v in x],
            style,
            label=f"f(x), {mode}",
        )
    hists = [s["stab_modes"]["decay6"]["x_hist"] for f in probe_files for s in f["one_step"] if "stab_modes" in s]
    if hists:
        counts = np.sum(hists, axis=0)
        edges = np.linspace(0.0, 1.0, len(counts) + 1)
        h = c.twinx()
        h.bar(edges[:-1], counts / counts.sum(), width=np.diff(edges), align="edge", color="0.6", alpha=0.5)
        h.set_yscale("log")
        h.set_ylabel("share of A != 0 tokens (grey)")
    c.set_xlabel("x = |dH| / max |dH| in the window")
    c.set_ylabel("beta_stab = f(x)")
    c.set_title("stabilisation factor and the observed x")
    c.grid(alpha=0.3)
    c.legend(loc="lower left", frameon=False)
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
        "over snapshots. Middle: beta_stab = f(x) for decay6 and decay5, over the distribution of x = |dH| / "
        "max |dH| on A != 0 tokens in the probed batches (grey, log scale): f departs from 1 only near x = 1. "
        f"Right: mean token entropy per step, line = mean over seeds {seeds}, band = min..max over those seeds.",
        source=source,
    )


def compensation_figure(rows, probe_files, out: Path, source: str) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
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
    a.set_title("confident correct tokens, one optimiser step")
    a.grid(alpha=0.3, axis="y")
    a.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), ncol=2, frameon=False)
    projections = sorted(
        {r["quantity"] for r in rows if r["claim"] == "compensation" and r["quantity"].startswith("projection")}
    )
    _estimate_panel(
        b,
        rows,
        "compensation",
        "ratio of projections",
        "update along grad log p of confident tokens",
        projections,
        null=1.0,
    )
    b.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), fontsize=6, frameon=False)
    finish(
        fig,
        out,
        caption="Compensation. Left: log-probability change, after one optimiser step, of confident correct "
        "tokens (A > 0, entropy in the lowest quantile of such tokens), with and without beta_comp from the same "
        "state and batch. Right: in gradient space (no optimiser), the projection of the update on the gradient "
        "of those tokens' log-probs: beta_comp vs none, the null model (a constant scale on every A > 0 token "
        "equal to the batch's mean beta_comp there) vs none, and beta_comp vs the null model; 95% t-intervals "
        "over snapshots.",
        source=source,
    )
