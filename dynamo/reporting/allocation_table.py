"""`dynamo table4`: rollout-allocation methods side by side at equal rollouts, with what each one cost.

    dynamo table4 --scores results/scores_allocation.csv --runs-root runs/embedded \
        --methods grpo,dapo,dynamo-nomod,vip,knapsack-rl,greso,pods --benchmarks arith-easy,arith-id \
        --baseline grpo --out results/table4 --figure paper_figures/allocation_cost

Every method's run spends the same number of rollouts per step in its first generation round
(N prompts x n samples: each allocation rule's budget is exact); they differ in how many tokens
those rollouts are (longer or shorter answers on the prompts a rule favours), in DAPO's refill
rounds (dapo, greso), and in what share of the samples lands in groups whose rewards differ (the
only groups with a GRPO gradient). Columns per method:

- held-out average Pass@1 (mean over seeds, 95% t-interval) and its per-seed paired difference to
  the baseline (the same arithmetic as tables 1 and 2: `dynamo.reporting.tables.derive_table`);
- share of samples, and of groups, with reward spread: the first generation round of each step
  (before DAPO's filter and PODS's down-selection), mean over steps, then over seeds;
- responses and tokens generated in training (refills included) and the run's wall-clock seconds,
  from summary.json["cost"], mean over seeds.

The figure: training accuracy of each step's first round against cumulative generated tokens (the
cost axis the methods differ on), and the held-out average Pass@1 at the end against the run's
total generated tokens. Held-out accuracy is measured only on the final model, so the left panel's
curve is the training-prompt accuracy, not held-out accuracy over training.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from dynamo import metrics_names as M
from dynamo.evaluation.verify import check_scores_table, require_verified
from dynamo.io import write_text_atomic
from dynamo.reporting.scores import load_metrics, load_scores
from dynamo.reporting.tables import _delta_cell, _pct, derive_table, to_csv

MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*"]
SHARE_COLUMNS = {M.INFORMATIVE_SAMPLE_SHARE: "spread_sample_share", M.INFORMATIVE_SHARE: "spread_group_share"}


def run_metrics(metrics: pd.DataFrame, methods: list[str], seeds: list[int]) -> pd.DataFrame:
    """The metrics rows of the table's runs, one per (method, seed, step): the last one written."""
    df = metrics[metrics["method"].isin(methods) & metrics["seed"].isin(seeds)]
    df = df.drop_duplicates(["method", "seed", M.STEP], keep="last").sort_values(["method", "seed", M.STEP])
    missing = sorted({(m, s) for m in methods for s in seeds} - set(zip(df["method"], df["seed"])))
    if missing:
        raise ValueError(f"no metrics.jsonl rows for run(s) {missing}")
    return df


def derive_allocation_table(
    scores: pd.DataFrame, metrics: pd.DataFrame, methods: list[str], benchmarks: list[str], baseline: str | None
) -> tuple[pd.DataFrame, dict]:
    """Table 4 (one row per method) and the notes' inputs; `metrics` as `load_metrics` returns it."""
    table, info = derive_table(scores, methods, benchmarks, baseline)
    seeds = sorted(scores.loc[scores["method"].isin(methods), "seed"].unique())
    steps = run_metrics(metrics, methods, [int(s) for s in seeds])
    costs = scores[scores["method"].isin(methods)].groupby(["method", "seed"]).first()
    keep = ["method", "seeds", "avg/pass@1", "avg/pass@1_ci95"]
    if baseline:
        keep += [f"delta_avg_pass@1_vs_{baseline}", f"delta_ci95_vs_{baseline}", f"vs_{baseline}"]
        keep += [f"delta_test_vs_{baseline}", f"mde_vs_{baseline}"]
    out = table[[c for c in keep if c in table.columns]].copy()
    for key, column in SHARE_COLUMNS.items():
        if key not in steps.columns:
            out[column] = math.nan
            continue
        per_run = steps.groupby(["method", "seed"])[key].mean()
        out[column] = [
            float(per_run.loc[m].mean()) if m in per_run.index.get_level_values(0) else math.nan for m in methods
        ]
    for field in ("responses_generated", "tokens_generated", "seconds_total"):
        col = f"cost_{field}"
        values = costs[col] if col in costs.columns else pd.Series(math.nan, index=costs.index)
        out[field] = [float(values.loc[m].mean()) for m in methods]
    if baseline:
        base = out.set_index("method").loc[baseline]
        for field in ("responses_generated", "tokens_generated"):
            out.insert(out.columns.get_loc(field) + 1, f"{field}_vs_{baseline}", out[field] / base[field])
    return out.reset_index(drop=True), info


def to_markdown(table: pd.DataFrame, info: dict) -> str:
    baseline = info["baseline"]
    head = ["method", "avg P@1"]
    head += [f"vs {baseline} (avg P@1)"] if baseline else []
    head += ["samples in groups with spread", "groups with spread", "responses", "gen. tokens"]
    head += [f"tokens (x {baseline})"] if baseline else []
    head += ["wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def share(x: float) -> str:
        return "-" if math.isnan(x) else f"{100 * x:.1f}%"

    def number(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:,.0f}"

    for _, row in table.iterrows():
        cells = [row["method"], _pct(row["avg/pass@1"], row["avg/pass@1_ci95"])]
        cells += [_delta_cell(row, baseline)] if baseline else []
        cells += [share(row["spread_sample_share"]), share(row["spread_group_share"])]
        cells += [number(row["responses_generated"]), number(row["tokens_generated"])]
        if baseline:
            ratio = row[f"tokens_generated_vs_{baseline}"]
            cells.append("-" if math.isnan(ratio) else f"{ratio:.2f}")
        cells.append("-" if math.isnan(row["seconds_total"]) else f"{row['seconds_total']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    seeds = int(table["seeds"].max())
    averaged = [b for b in info["benchmarks"] if b not in info.get("floor", [])]
    note = (
        f"\nHeld-out average Pass@1 over {', '.join(averaged)} "
        f"in percent: mean over {seeds} seed(s) "
        "± half-width of the 95% t-interval"
        + (
            f"; the difference to {baseline} is the mean of the per-seed paired differences with its 95% "
            "interval ('within seed spread': the interval includes zero, no winner is claimed)"
            if baseline
            else ""
        )
        + ". Every method rolls out the same number of responses in each step's first round (N prompts x n: "
        "each rule's budget is exact); responses and tokens count every generated response in training, so "
        "DAPO's refill rounds (dapo, greso) show up there, and methods at equal rollouts still differ in tokens "
        "through the length of the answers they sample. Samples / groups with spread: share of the first "
        "round's samples (groups) whose group's rewards are not all equal, before DAPO's filter and PODS's "
        "down-selection, mean over steps then seeds. Wall time: the training run's seconds, mean over seeds "
        "(runs shared the machine's cores, so it is indicative only)."
    )
    if baseline and not math.isnan(info.get("mde", math.nan)):
        note += (
            f"\n\nMinimum detectable effect (95% two-sided, 80% power) on average Pass@1 vs {baseline}: "
            f"{100 * info['mde']:.1f} points with {info['mde_seeds']} seeds."
        )
    if info.get("floor"):
        note += f"\n\n{', '.join(info['floor'])}: Pass@k = 0 in every run: left out of the average."
    return "\n".join(lines) + "\n" + note + "\n" + info["provenance"]


def plot_cost(
    table: pd.DataFrame, metrics: pd.DataFrame, methods: list[str], seeds: list[int], path: Path, runs_root: str
) -> None:
    """Training accuracy against cumulative generated tokens, and held-out Pass@1 against total tokens."""
    from dynamo.reporting.figures import DASHES
    from dynamo.reporting.style import finish, pyplot

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    steps = run_metrics(metrics, methods, seeds)
    for i, method in enumerate(methods):
        runs = [steps[(steps["method"] == method) & (steps["seed"] == s)] for s in seeds]
        common = sorted(set.intersection(*(set(r[M.STEP]) for r in runs)))
        tokens = np.array([r.set_index(M.STEP).loc[common, M.TOKENS_GENERATED].cumsum() for r in runs])
        accuracy = np.array([r.set_index(M.STEP).loc[common, M.ACCURACY] for r in runs])
        x = tokens.mean(0)
        left.plot(x, accuracy.mean(0), color=f"C{i}", ls=DASHES[i % len(DASHES)], lw=1.3, label=method)
        if len(seeds) > 1:
            left.fill_between(x, accuracy.min(0), accuracy.max(0), color=f"C{i}", alpha=0.12, lw=0)
        row = table.set_index("method").loc[method]
        half = row["avg/pass@1_ci95"]
        # Open markers of different shapes: methods with equal cost and accuracy stay visible on top of each other.
        right.errorbar(
            row["tokens_generated"],
            100 * row["avg/pass@1"],
            yerr=None if math.isnan(half) else 100 * half,
            fmt=MARKERS[i % len(MARKERS)],
            mfc="none",
            ms=5 + 2 * (len(methods) - i),
            color=f"C{i}",
            capsize=3,
            label=method,
        )
    left.set_title("training accuracy (first round of each step)")
    left.set_xlabel("cumulative generated tokens in training")
    left.set_ylabel("share of rollouts correct")
    right.set_title("held-out accuracy of the final model")
    right.set_xlabel("generated tokens in training (total)")
    right.set_ylabel("average Pass@1 (%)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(loc="best", frameon=False, title="method", markerscale=0.5)
    band = f"band = min..max over seeds {seeds}" if len(seeds) > 1 else "one seed, no band"
    finish(
        fig,
        path,
        caption=(
            "Rollout allocation at equal rollouts per step: accuracy against generation cost. Left: training "
            f"accuracy per step against cumulative generated tokens (mean over seeds; {band}). Right: held-out "
            "average Pass@1 of the final model (mean over seeds, 95% t-interval) against the run's total "
            "generated tokens. Held-out accuracy is measured only at the end of training."
        ),
        source=f"runs: {runs_root}/<method>/seed{{{','.join(map(str, seeds))}}}/metrics.jsonl, eval/",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scores", required=True, help="long scores file of the table's runs (dynamo report --write-scores)"
    )
    p.add_argument("--runs-root", required=True, help="runs/<experiment>: read the runs' metrics.jsonl")
    p.add_argument("--methods", required=True, help="comma-separated, in table order")
    p.add_argument("--benchmarks", required=True, help="comma-separated benchmark labels")
    p.add_argument("--baseline", help="method every other is compared with (e.g. grpo); one of --methods")
    p.add_argument("--out", required=True, help="output prefix: writes PREFIX.csv and PREFIX.md")
    p.add_argument("--figure", help="figure path without extension: writes .pdf and .png")


def run(args: argparse.Namespace) -> int:
    methods, benchmarks = args.methods.split(","), args.benchmarks.split(",")
    scores = load_scores(args.scores)
    require_verified(check_scores_table(scores, args.scores)[0])
    metrics = load_metrics(args.runs_root)
    table, info = derive_allocation_table(scores, metrics, methods, benchmarks, args.baseline)
    md = to_markdown(table, info)
    write_text_atomic(f"{args.out}.csv", to_csv(table))
    write_text_atomic(f"{args.out}.md", md)
    if args.figure:
        seeds = sorted(int(s) for s in scores.loc[scores["method"].isin(methods), "seed"].unique())
        plot_cost(table, metrics, methods, seeds, Path(args.figure), args.runs_root)
    print(md)
    return 0
