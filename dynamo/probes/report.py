"""results/table3.{csv,md} and one figure per claim from the probe files (and the runs' entropy curves).

Every row states a measured quantity, its 95% interval, the value that means "no effect"
(`null`), the side the claim predicts and a verdict: "supports" (interval entirely on the
claimed side), "contradicts" (entirely on the other side), "insensitive by construction" (the
mechanism, as measured, cannot move the row; `reason` says why, from the data) or "not distinguishable".
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from dynamo.io import read_jsonl, write_text_atomic
from dynamo.probes.stats import cluster_interval, mean_interval, pooled_log_ratio, tail_tokens_needed, verdict

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
    "reason",
]
# Metric names read from the runs' metrics.jsonl (kept local so a rename elsewhere is one edit here).
ENTROPY_KEY = "actor/entropy"
DIAGNOSTIC = "diagnostic"
INSENSITIVE = "insensitive by construction"
# A row cannot move by construction when the largest effect the mechanism can have on it (to first order,
# the relative change it makes to the update) is below this fraction of the row's resolution.
INSENSITIVE_FRACTION = 0.1

# Allocation rows: (key in the probe file's log_ratios, label, side that supports the claim or None for a
# diagnostic). The fixed-target row (the per-prompt mean with the method's group advantages) is the test of
# the claim as the paper states it.
ALLOCATION_ROWS = (
    (
        "per_prompt_mean_trace",
        "fixed-target (paper's estimator: per-prompt mean, group advantages): trace of gradient covariance",
        "below",
    ),
    ("projection_variance", "token-mean estimator: variance of the gradient along a common reference", "below"),
    ("reference_cosine", "token-mean estimator: mean cosine to a common reference", "above"),
    (
        "pool_baseline_trace",
        "diagnostic, per-prompt mean with a constant pool baseline r - p_i: trace of gradient covariance",
        None,
    ),
    ("trace", "diagnostic, token-mean estimator: raw trace of gradient covariance", None),
    ("mean_norm", "diagnostic, token-mean estimator: norm of its own mean gradient", None),
)
ALLOCATION_SCHEMES = (("p", "w=P"), ("sqrt_p", "w=sqrt(P)"))


def _row(
    claim, quantity, snapshot, est, lo, hi, null, side, n, unit, verdict_text=None, reason=""
) -> dict[str, Any]:
    """One table row; side None makes a diagnostic row (no claim, no verdict). `reason`: why an
    "insensitive by construction" verdict holds, from the measurements."""
    if side is None:
        predicts, text = "", DIAGNOSTIC
    else:
        predicts = f"{side} {null:g}"
        text = verdict_text or verdict(lo, hi, supports_if=side, null=null)
    return {
        "claim": claim,
        "quantity": quantity,
        "snapshot": snapshot,
        "estimate": est,
        "ci_low": lo,
        "ci_high": hi,
        "null": null if side is not None else "",
        "claim_predicts": predicts,
        "verdict": text,
        "n": n,
        "unit": unit,
        "reason": reason,
    }


def sensitivity_verdict(
    low: float, high: float, *, supports_if: str, null: float, resolution: float, producible: float
) -> tuple[str, str]:
    """(verdict, reason): `verdict`, except that an interval containing the null reads "insensitive by
    construction" when the largest effect the mechanism can produce on the row (`producible`, an upper bound)
    is below INSENSITIVE_FRACTION of what the row resolves (`resolution`, the half-width of its interval, on
    the same relative scale): the row could not have moved whatever the mechanism does."""
    text = verdict(low, high, supports_if=supports_if, null=null)
    if (
        text == "not distinguishable"
        and math.isfinite(resolution)
        and math.isfinite(producible)
        and producible < INSENSITIVE_FRACTION * resolution
    ):
        reason = (
            f"the factor changes the update by at most {producible:.2g} (relative, upper 95% bound), below "
            f"{INSENSITIVE_FRACTION:g} x the row's resolution {resolution:.2g}"
        )
        return INSENSITIVE, reason
    return text, ""


def tail_verdict(
    low: float, high: float, checks: list[tuple[float, float]], *, statistic: str, factor: str, producible: float
) -> tuple[str, str]:
    """(verdict, reason) of a row comparing a tail statistic of per-token |dH| (max, a high quantile) with
    and without a selective factor. `checks`: per batch, (tokens of the statistic's band the factor changes,
    tokens needed to move it by the row's resolution), from `tail_tokens_needed`. An interval containing the
    null reads "insensitive by construction" when, in every batch, the factor changes fewer of the tokens
    that set the statistic than moving it by the row's resolution needs: its selective effect cannot reach
    the row. What it does to the other tokens goes through the shared update, so the claim also needs that
    route bounded: `producible` (upper bound of the factor's relative change of the update) below
    INSENSITIVE_FRACTION of the row's relative resolution, as in `sensitivity_verdict`."""
    text = verdict(low, high, supports_if="below", null=0.0)
    finite = [(c, n) for c, n in checks if math.isfinite(c) and math.isfinite(n)]
    if text != "not distinguishable" or not finite or len(finite) < len(checks):
        return text, ""
    resolution = math.exp((high - low) / 2) - 1
    indirect_bounded = math.isfinite(producible) and producible < INSENSITIVE_FRACTION * resolution
    if indirect_bounded and all(c < n for c, n in finite):
        changed = _span([c for c, _ in finite])
        needed = _span([n for _, n in finite])
        reason = (
            f"{factor} changes (factor < 0.99) {changed} of the tokens that set the {statistic} per batch, "
            f"fewer than the {needed} needed to move it by its resolution ({100 * resolution:.2g}%), "
            f"in all {len(finite)} batches, and the update by at most {producible:.2g} (relative)"
        )
        return INSENSITIVE, reason
    return text, ""


def _span(values: list[float]) -> str:
    """'3' or '1-4': the range of per-batch counts."""
    lo, hi = int(min(values)), int(max(values))
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _cluster(sel: list[dict[str, Any]]):
    """Cluster id of a one-step measurement: its run and snapshot (batches of one snapshot share the policy)."""
    return [(s.get("run_dir", ""), s["step"]) for s in sel]


def _log(x: float) -> float:
    return math.log(x) if x > 0 and math.isfinite(x) else math.nan


def _exp(values):
    return [math.exp(x) if math.isfinite(x) else x for x in values]


def cell_log_ratio(estimates: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Allocation ratio and 95% interval: a t-interval over the cells' log ratios (each cell, a snapshot
    and an independent prompt set, is one unit; its own rollout noise is inside its estimate); a single
    cell falls back to its paired jackknife interval (rollout noise for that cell only)."""
    if len(estimates) >= 2:
        return tuple(_exp(mean_interval([e[0] for e in estimates])))
    return pooled_log_ratio(estimates)


def allocation_rows(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    steps = sorted({c["step"] for c in cells})
    for key, label, side in ALLOCATION_ROWS:
        for scheme, scheme_label in ALLOCATION_SCHEMES:
            for snap in ["all", *steps]:
                sel = [c for c in cells if (snap == "all" or c["step"] == snap) and key in c["log_ratios"][scheme]]
                if not sel:
                    continue
                est, lo, hi = cell_log_ratio([tuple(c["log_ratios"][scheme][key]) for c in sel])
                quantity = f"{label}: {scheme_label} / uniform"
                rows.append(_row("allocation", quantity, snap, est, lo, hi, 1.0, side, len(sel), "ratio"))
    return rows


def _by_snapshot(steps_data: list[dict[str, Any]]):
    snaps = sorted({s["step"] for s in steps_data})
    return [("all", steps_data)] + [(k, [s for s in steps_data if s["step"] == k]) for k in snaps]


def _interval(values: list[float], sel) -> tuple[float, float, float, int]:
    return cluster_interval(values, _cluster(sel))


INDICATOR_ROWS = (
    ("rho_pred", "diagnostic: Spearman(|predicted dH|, |realised dH|), A != 0 tokens", None, 0.0),
    ("rho_entropy", "diagnostic, trivial baseline: Spearman(H0, |realised dH|), A != 0 tokens", None, 0.0),
    ("partial", "partial Spearman(|predicted dH|, |realised dH| given H0): information beyond H0", "above", 0.0),
    ("sign_agreement", "sign agreement of predicted and realised dH (0.5 = chance)", "above", 0.5),
)


def indicator_rows(steps_data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for key, label, side, null in INDICATOR_ROWS:
        for snap, sel in _by_snapshot(steps_data):
            est, lo, hi, n = _interval([s["indicator"][key] for s in sel], sel)
            rows.append(
                _row("indicator", label, snap, est, lo, hi, null, side, n, "rho" if null == 0 else "share")
            )
    return rows


def stabilization_rows(steps_data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for mode in ("decay6", "decay5"):
        for key, label, unit in (
            ("share_below_099", "share of response tokens with beta_stab < 0.99", "share"),
            ("mean_beta", "mean beta_stab over response tokens", "factor"),
            (
                "relative_change",
                "|g_stab - g_none| / |g_none|: relative change of the update (gradient space)",
                "ratio",
            ),
        ):
            for snap, sel in _by_snapshot(steps_data):
                est, lo, hi, n = _interval([s["stab_modes"][mode][key] for s in sel], sel)
                rows.append(
                    _row("stabilization", f"diagnostic ({mode}): {label}", snap, est, lo, hi, 0.0, None, n, unit)
                )
    # Whether beta_stab (the probed method's own setting) reaches the tokens that set each tail statistic.
    for key, label, quantile in (("max_abs_dH", "max", 1.0), ("p99_abs_dH", "99th percentile", 0.99)):
        for snap, sel in _by_snapshot(steps_data):
            logs = [_log(s["stab"][key] / s["none"][key]) if s["none"][key] > 0 else math.nan for s in sel]
            m, lo, hi, n = _interval(logs, sel)
            checks = [
                tail_tokens_needed(
                    s["tail"]["abs_dH"], s["tail"]["changed"], s["tail"]["tokens"], quantile, (hi - lo) / 2
                )
                for s in sel
            ]
            producible = _interval([s["stab_relative_change"] for s in sel], sel)[2]
            text, reason = tail_verdict(
                lo, hi, checks, statistic=f"{label} |dH|", factor="beta_stab", producible=producible
            )
            quantity = f"{label} per-token |entropy change| in one optimiser step: with / without beta_stab"
            rows.append(
                _row("stabilization", quantity, snap, *_exp((m, lo, hi)), 1.0, "below", n, "ratio", text, reason)
            )
    return rows


def compensation_rows(steps_data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for snap, sel in _by_snapshot(steps_data):
        est, lo, hi, n = _interval([s["comp_mean_beta_positive"] for s in sel], sel)
        label = "diagnostic: mean beta_comp on A > 0 tokens (dynamo-posscale's constant)"
        rows.append(_row("compensation", label, snap, est, lo, hi, 1.0, None, n, "factor"))
    projection = "projection of the update (gradient space) on grad log p of confident correct tokens"
    for num, den, label, side in (
        ("comp", "none", "with / without beta_comp", "above"),
        (
            "posscale",
            "none",
            "diagnostic, null model: constant scale (c = mean beta_comp on A > 0) / without",
            None,
        ),
        ("comp", "posscale", "beta_comp / constant scale of the same mean: beyond the null model", "above"),
    ):
        for snap, sel in _by_snapshot(steps_data):
            logs = [
                _log(s["confident_projection"][num] / s["confident_projection"][den])
                if s["confident_projection"][den] > 0
                else math.nan
                for s in sel
            ]
            m, lo, hi, n = _interval(logs, sel)
            rows.append(
                _row("compensation", f"{projection}: {label}", snap, *_exp((m, lo, hi)), 1.0, side, n, "ratio")
            )
    for snap, sel in _by_snapshot(steps_data):
        diffs = [s["comp"]["confident_dlogp"] - s["none"]["confident_dlogp"] for s in sel]
        est, lo, hi, n = _interval(diffs, sel)
        scale = abs(np.nanmean([s["none"]["confident_dlogp"] for s in sel]))
        producible = _interval([s["comp_relative_change"] for s in sel], sel)[2]
        text, reason = sensitivity_verdict(
            lo,
            hi,
            supports_if="above",
            null=0.0,
            resolution=(hi - lo) / 2 / scale if scale > 0 else math.nan,
            producible=producible,
        )
        quantity = "log-prob change of confident correct tokens in one optimiser step: with - without beta_comp"
        rows.append(_row("compensation", quantity, snap, est, lo, hi, 0.0, "above", n, "nats", text, reason))
    return rows


def one_step_rows(steps_data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return indicator_rows(steps_data) + stabilization_rows(steps_data) + compensation_rows(steps_data)


def entropy_roughness(metrics_path: Path) -> float:
    """Mean |H_{t+1} - H_t| of the logged mean token entropy: how jumpy the entropy trajectory is."""
    h = [r[ENTROPY_KEY] for r in read_jsonl(metrics_path) if ENTROPY_KEY in r]
    return float(np.abs(np.diff(h)).mean()) if len(h) > 1 else math.nan


def stab_producible(steps_data: list[dict[str, Any]]) -> float:
    """Upper 95% bound of beta_stab's relative change of the update (the probed method's preset), over
    every snapshot: the largest first-order effect it can have on anything measured downstream."""
    return _interval([s["stab_relative_change"] for s in steps_data], steps_data)[2]


def trajectory_row(
    runs_root: Path, with_stab: str, without_stab: str, seeds: list[int], producible: float = math.nan
) -> dict[str, Any]:
    """Entropy roughness over training, paired by seed (seeds are the independent units)."""
    logs = []
    for seed in seeds:
        a = entropy_roughness(runs_root / with_stab / f"seed{seed}" / "metrics.jsonl")
        b = entropy_roughness(runs_root / without_stab / f"seed{seed}" / "metrics.jsonl")
        if a > 0 and b > 0:
            logs.append(math.log(a / b))
    m, lo, hi = mean_interval(logs)
    text, reason = sensitivity_verdict(
        lo, hi, supports_if="below", null=0.0, resolution=(hi - lo) / 2, producible=producible
    )
    quantity = f"entropy trajectory roughness mean|H(t+1)-H(t)|: {with_stab} / {without_stab} (paired by seed)"
    return _row(
        "stabilization", quantity, "training", *_exp((m, lo, hi)), 1.0, "below", len(logs), "ratio", text, reason
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
        text = r["verdict"] + (f": {r['reason']}" if r.get("reason") else "")
        text = text.replace("|", "\\|")
        lines.append(f"| {r['claim']} | {quantity} | {ci} | {r['claim_predicts']} | {text} | {r['n']} |")
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
