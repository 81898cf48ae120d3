"""results/table3.{csv,md} and one figure per claim from the probe files (and the runs' entropy curves).

Every row states a measured quantity, its 95% interval, the value that means "no effect"
(`null`), the side the claim predicts and a verdict: "supports" (interval entirely on the
claimed side), "contradicts" (entirely on the other side) or "not distinguishable".
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from dynamo.io import read_jsonl, write_text_atomic
from dynamo.probes.measure import MEASURES
from dynamo.probes.stats import mean_interval, pooled_log_ratio, verdict

COLUMNS = [
    "claim",
    "quantity",
    "snapshot",
    "estimate",
    "ci_low",
    "ci_high",
    "null",
    "claim_predicts",
    "verdict",
    "n",
    "unit",
]
# Metric names read from the runs' metrics.jsonl (kept local so a rename elsewhere is one edit here).
ENTROPY_KEY = "actor/entropy"
MEASURE_LABEL = {
    "trace": "trace of gradient covariance",
    "mean_norm": "norm of mean gradient",
    "relative_noise": "relative noise (trace / |mean|^2)",
    "cosine": "mean cosine to expected gradient",
}
# Which side of 1 supports the allocation claim for each measure: less noise, more signal.
ALLOCATION_SIDE = {"trace": "below", "mean_norm": "above", "relative_noise": "below", "cosine": "above"}


def _row(claim, quantity, snapshot, est, lo, hi, null, side, n, unit) -> dict[str, Any]:
    return {
        "claim": claim,
        "quantity": quantity,
        "snapshot": snapshot,
        "estimate": est,
        "ci_low": lo,
        "ci_high": hi,
        "null": null,
        "claim_predicts": f"{side} {null:g}",
        "verdict": verdict(lo, hi, supports_if=side, null=null),
        "n": n,
        "unit": unit,
    }


def _ratio_below_one(quantity: str, snapshot, logs: list[float]) -> dict[str, Any]:
    """A stabilization row: the t-interval of per-sample log ratios, reported as a ratio (claim: < 1)."""
    m, lo, hi = mean_interval(logs)
    ratio = [math.exp(x) if math.isfinite(x) else x for x in (m, lo, hi)]
    return _row("stabilization", quantity, snapshot, *ratio, 1.0, "below", len(logs), "ratio")


def allocation_rows(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    steps = sorted({c["step"] for c in cells})
    for scheme, label in (("p", "w=P"), ("sqrt_p", "w=sqrt(P)")):
        for measure in MEASURES:
            for snap in ["all", *steps]:
                sel = [c for c in cells if snap == "all" or c["step"] == snap]
                est, lo, hi = pooled_log_ratio([tuple(c["log_ratios"][scheme][measure]) for c in sel])
                rows.append(
                    _row(
                        "allocation",
                        f"{MEASURE_LABEL[measure]}: {label} / uniform",
                        snap,
                        est,
                        lo,
                        hi,
                        1.0,
                        ALLOCATION_SIDE[measure],
                        len(sel),
                        "ratio",
                    )
                )
    return rows


def _by_snapshot(steps_data: list[dict[str, Any]]):
    snaps = sorted({s["step"] for s in steps_data})
    return [("all", steps_data)] + [(k, [s for s in steps_data if s["step"] == k]) for k in snaps]


def one_step_rows(steps_data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for snap, sel in _by_snapshot(steps_data):
        est, lo, hi = mean_interval([s["indicator_spearman"] for s in sel])
        rows.append(
            _row(
                "indicator",
                "Spearman(predicted dH, realised dH), A != 0 tokens",
                snap,
                est,
                lo,
                hi,
                0.0,
                "above",
                len(sel),
                "rho",
            )
        )
    for key, label in (("max_abs_dH", "max"), ("p99_abs_dH", "99th percentile")):
        for snap, sel in _by_snapshot(steps_data):
            logs = [
                math.log(s["stab"][key] / s["none"][key]) for s in sel if s["none"][key] > 0 and s["stab"][key] > 0
            ]
            rows.append(
                _ratio_below_one(
                    f"{label} per-token |entropy change| in one step: with / without beta_stab", snap, logs
                )
            )
    for snap, sel in _by_snapshot(steps_data):
        diffs = [s["comp"]["confident_dlogp"] - s["none"]["confident_dlogp"] for s in sel]
        est, lo, hi = mean_interval(diffs)
        rows.append(
            _row(
                "compensation",
                "log-prob change of confident correct tokens in one step: with - without beta_comp",
                snap,
                est,
                lo,
                hi,
                0.0,
                "above",
                len([d for d in diffs if math.isfinite(d)]),
                "nats",
            )
        )
    return rows


def entropy_roughness(metrics_path: Path) -> float:
    """Mean |H_{t+1} - H_t| of the logged mean token entropy: how jumpy the entropy trajectory is."""
    h = [r[ENTROPY_KEY] for r in read_jsonl(metrics_path) if ENTROPY_KEY in r]
    return float(np.abs(np.diff(h)).mean()) if len(h) > 1 else math.nan


def trajectory_row(runs_root: Path, with_stab: str, without_stab: str, seeds: list[int]) -> dict[str, Any]:
    logs = []
    for seed in seeds:
        a = entropy_roughness(runs_root / with_stab / f"seed{seed}" / "metrics.jsonl")
        b = entropy_roughness(runs_root / without_stab / f"seed{seed}" / "metrics.jsonl")
        if a > 0 and b > 0:
            logs.append(math.log(a / b))
    return _ratio_below_one(
        f"entropy trajectory roughness mean|H(t+1)-H(t)|: {with_stab} / {without_stab} (paired by seed)",
        "training",
        logs,
    )


CLAIMS = ("allocation", "indicator", "stabilization", "compensation")


def write_table(rows: list[dict[str, Any]], out: Path, note: str) -> None:
    rows = sorted(rows, key=lambda r: CLAIMS.index(r["claim"]))  # stable: keeps the order within a claim
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(out.with_suffix(".csv"), buf.getvalue())
    lines = [
        "# Table 3: mechanism checks",
        "",
        note,
        "",
        "| claim | quantity | estimate [95% CI] | claim predicts | verdict | n |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["snapshot"] not in ("all", "training"):
            continue  # per-snapshot rows are in the CSV
        ci = f"{r['estimate']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
        quantity = r["quantity"].replace("|", "\\|")  # a bare | would split the Markdown cell
        lines.append(f"| {r['claim']} | {quantity} | {ci} | {r['claim_predicts']} | {r['verdict']} | {r['n']} |")
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
