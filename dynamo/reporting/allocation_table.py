"""`dynamo table4`: rollout-allocation methods side by side at equal rollouts and at equal generated tokens.

    dynamo table4 --scores results/scores_allocation.csv --runs-root runs/embedded \
        --methods grpo,dapo,dynamo-nomod,vip,knapsack-rl,greso,pods,reinforce-ada \
        --benchmarks arith-easy,arith-id --baseline grpo --out results/table4 \
        --figure paper_figures/allocation_cost --token-plan runs/embedded-token-matched/plan.json \
        --token-runs-root runs/embedded-token-matched --token-out results/table4_tokens

Every budget-exact method's run spends the same number of rollouts per step in its first generation
round (N prompts x n samples); a sequential rule (Reinforce-Ada) samples in rounds until each prompt's
exit and generates more, which its cost columns show. They differ in how many tokens
those rollouts are (longer or shorter answers on the prompts a rule favours), in DAPO's refill
rounds (dapo, greso), and in what share of the samples lands in groups whose rewards differ (the
only groups with a GRPO gradient). Columns per method of the equal-rollout table (PREFIX):

- held-out average Pass@1 (mean over seeds, 95% t-interval) and its per-seed paired difference to
  the baseline (the same arithmetic as tables 1 and 2: `dynamo.reporting.tables.derive_table`);
- share of samples, and of groups, with reward spread: the first generation round of each step
  (before DAPO's filter and PODS's down-selection), mean over steps, then over seeds;
- responses and tokens generated in training (refills included) and the run's wall-clock seconds,
  from summary.json["cost"], mean over seeds.

The equal-token table (--token-out) holds every method at the baseline's total generated tokens
(same seed): its equal-rollout run where that run already generated about as much, else its
token-matched run (the first s* steps, `dynamo.reporting.token_budget`), evaluated on the same
benchmarks; the same Pass@1 arithmetic, plus the steps trained and the tokens actually generated.

The figure: held-out average Pass@1 against cumulative generated tokens, one line per method
through the models that were evaluated (the start model at 0 tokens, the token-matched run where
there is one, the end of the equal-rollout run); and, per step, the training accuracy of the
first round against cumulative tokens. Held-out accuracy is not measured between those points:
the lines join measurements, the training panel is training-prompt accuracy.
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
from dynamo.reporting import stats, token_budget
from dynamo.reporting.scores import METRIC, collect_scores, load_metrics, load_scores
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
    table, info = _with_start_model(scores, methods, benchmarks, baseline)
    seeds = sorted(scores.loc[scores["method"].isin(methods), "seed"].unique())
    steps = run_metrics(metrics, methods, [int(s) for s in seeds])
    costs = scores[scores["method"].isin(methods)].groupby(["method", "seed"]).first()
    out = _pass1_columns(table, baseline)
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
        _add_cost_ratios(out, baseline)
    return out.reset_index(drop=True), info


def _pass1_columns(table: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """`derive_table`'s Pass@1 columns that both tables 4 show (with a baseline: the paired comparisons)."""
    keep = ["method", "seeds", "avg/pass@1", "avg/pass@1_ci95"]
    if baseline:
        keep += [f"delta_avg_pass@1_vs_{baseline}", f"delta_ci95_vs_{baseline}", f"vs_{baseline}"]
        keep += [f"delta_test_vs_{baseline}", f"mde_vs_{baseline}", *START_COLUMNS]
    return table[[c for c in keep if c in table.columns]].copy()


def _add_cost_ratios(out: pd.DataFrame, baseline: str) -> None:
    """Responses and tokens as multiples of the baseline's, each right after its column (in place)."""
    base = out.set_index("method").loc[baseline]
    for field in ("responses_generated", "tokens_generated"):
        out.insert(out.columns.get_loc(field) + 1, f"{field}_vs_{baseline}", out[field] / base[field])


START = "base"  # the start model's rows in the scores (the figure's first point)
START_COLUMNS = ["delta_avg_pass@1_vs_base", "delta_ci95_vs_base", "vs_base"]


def _with_start_model(
    scores: pd.DataFrame, methods: list[str], benchmarks: list[str], baseline: str | None
) -> tuple[pd.DataFrame, dict]:
    """`derive_table` for `methods`, each also compared with the start model (per-seed paired difference,
    columns START_COLUMNS) when the scores hold it and there is a baseline: the null model for "trained
    fewer steps" (a method read early stays closer to where every run began)."""
    with_start = baseline is not None and START in set(scores["method"]) and START not in methods
    table, info = derive_table(scores, [START, *methods] if with_start else methods, benchmarks, baseline)
    info["start"] = with_start
    if with_start:
        row = table.set_index("method").loc[baseline]
        info["baseline_vs_start"] = (row["delta_avg_pass@1_vs_base"], row["delta_ci95_vs_base"], row["vs_base"])
    return table[table["method"] != START].reset_index(drop=True), info


def _start_note(info: dict) -> str:
    """What the start-model column says, and a warning when training lowered the baseline below it."""
    if not info.get("start"):
        return ""
    baseline = info["baseline"]
    note = " vs start model: the same paired difference to the model every run starts from (trained for 0 steps)."
    diff, half, word = info["baseline_vs_start"]
    if word == "lower":
        note += (
            f" Here {baseline} itself ends {100 * diff:+.1f} ± {100 * half:.1f} points below the start model: "
            f"training lowered held-out accuracy, so a method that trained fewer steps, or moved less, can beat "
            f"{baseline} without improving on the start model; read a gain over {baseline} together with the "
            "start-model column."
        )
    return note


def to_markdown(table: pd.DataFrame, info: dict, token_table: str | None = None) -> str:
    baseline = info["baseline"]
    head = ["method", "avg P@1"]
    head += [f"vs {baseline} (avg P@1)"] if baseline else []
    head += ["vs start model (avg P@1)"] if info.get("start") else []
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
        cells += [_delta_cell(row, START)] if info.get("start") else []
        cells += [share(row["spread_sample_share"]), share(row["spread_group_share"])]
        cells += [number(row["responses_generated"]), number(row["tokens_generated"])]
        if baseline:
            ratio = row[f"tokens_generated_vs_{baseline}"]
            cells.append("-" if math.isnan(ratio) else f"{ratio:.2f}")
        cells.append("-" if math.isnan(row["seconds_total"]) else f"{row['seconds_total']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "\n"
        + _pass1_note(table, info)
        + " Every budget-exact rule rolls out the same number of responses in each step's first round (N "
        "prompts x n); a sequential rule (reinforce-ada) samples in rounds until each prompt's exit, so it "
        "generates more and its cost columns show how much; responses and tokens count every generated "
        "response in training, so DAPO's refill rounds (dapo, greso) show up there, and methods at equal "
        "rollouts still differ in tokens through the length of the answers they sample. Samples / groups "
        "with spread: share of the first round's samples (groups; for a sequential rule, all of a prompt's "
        "samples of the step) whose group's rewards are not all equal, before DAPO's filter and "
        "down-selection (pods, reinforce-ada), mean over steps then seeds. Wall time: the training run's "
        "seconds, mean over seeds (runs shared the machine's cores, so it is indicative only)."
        + (f" At equal generated tokens: {token_table}." if token_table else "")
    )
    return "\n".join(lines) + "\n" + note + _closing_notes(info)


def _pass1_note(table: pd.DataFrame, info: dict) -> str:
    """What the Pass@1 columns hold (both tables 4), with the start-model note."""
    baseline = info["baseline"]
    averaged = [b for b in info["benchmarks"] if b not in info.get("floor", [])]
    paired = (
        f"; the difference to {baseline} is the mean of the per-seed paired differences with its 95% interval "
        "('within seed spread': the interval includes zero, no winner is claimed)"
        if baseline
        else ""
    )
    return (
        f"Held-out average Pass@1 over {', '.join(averaged)} in percent: mean over {int(table['seeds'].max())} "
        f"seed(s) ± half-width of the 95% t-interval{paired}.{_start_note(info)}"
    )


def _closing_notes(info: dict) -> str:
    """The minimum detectable effect (with a baseline), the benchmarks left out of the average, provenance."""
    notes = ""
    if info["baseline"] and not math.isnan(info.get("mde", math.nan)):
        notes += (
            f"\n\nMinimum detectable effect (95% two-sided, 80% power) on average Pass@1 vs {info['baseline']}: "
            f"{100 * info['mde']:.1f} points with {info['mde_seeds']} seeds."
        )
    if info.get("floor"):
        notes += f"\n\n{', '.join(info['floor'])}: Pass@k = 0 in every run: left out of the average."
    return notes + "\n" + info["provenance"]


def derive_token_table(
    scores: pd.DataFrame, plan: dict, methods: list[str], benchmarks: list[str], baseline: str
) -> tuple[pd.DataFrame, dict]:
    """The equal-token table (one row per method); `scores` as `token_budget.equal_token_scores` returns it,
    plus the start model's rows when there are any (its column, as in the equal-rollout table)."""
    table, info = _with_start_model(scores, methods, benchmarks, baseline)
    out = _pass1_columns(table, baseline)
    runs = pd.DataFrame(plan["runs"])
    runs = runs[runs["method"].isin(methods)].groupby("method")
    out.insert(2, "steps", [float(runs.get_group(m)["steps"].mean()) for m in methods])
    out.insert(3, "run_steps", [float(runs.get_group(m)["run_steps"].mean()) for m in methods])
    out.insert(4, "token_matched_runs", [int(runs.get_group(m)["rerun"].sum()) for m in methods])
    costs = scores[scores["method"].isin(methods)].groupby(["method", "seed"]).first()
    for field in ("responses_generated", "tokens_generated"):
        out[field] = [float(costs.loc[m, f"cost_{field}"].mean()) for m in methods]
    _add_cost_ratios(out, baseline)
    return out.reset_index(drop=True), info


def token_markdown(table: pd.DataFrame, info: dict, token_root: str, rollout_table: str) -> str:
    baseline = info["baseline"]
    head = ["method", "steps trained", "avg P@1", f"vs {baseline} (avg P@1)"]
    head += ["vs start model (avg P@1)"] if info.get("start") else []
    head += ["responses", "gen. tokens", f"tokens (x {baseline})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        steps = f"{row['steps']:.0f}" if row["steps"] == round(row["steps"]) else f"{row['steps']:.1f}"
        cells = [
            row["method"],
            f"{steps} of {row['run_steps']:.0f}",
            _pct(row["avg/pass@1"], row["avg/pass@1_ci95"]),
        ]
        cells += [_delta_cell(row, baseline)]
        cells += [_delta_cell(row, START)] if info.get("start") else []
        cells += [
            f"{row['responses_generated']:,.0f}",
            f"{row['tokens_generated']:,.0f}",
        ]
        cells.append(f"{row[f'tokens_generated_vs_{baseline}']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\nEqual generated tokens: every method gets the tokens {baseline} generated in its whole run (same "
        "seed). A method is read at the step of its equal-rollout run whose cumulative generated tokens are "
        "closest to that; where that is not the run's last step, the method was trained again for that many "
        f"steps (a token-matched run, `{token_root}/<method>/seed<seed>`: with a constant learning rate after "
        "warm-up, the first steps of the same run) and that model evaluated. A method that generated less "
        f"than {baseline} is read at its last step, not extended (tokens x {baseline} below 1). Steps trained: "
        "mean over seeds. Responses and tokens: what the runs read here generated (refills included), mean "
        f"over seeds. {_pass1_note(table, info)} Equal rollouts per step: {rollout_table}."
    )
    return "\n".join(lines) + "\n" + note + _closing_notes(info)


def _average_pass1(scores: pd.DataFrame, method: str, averaged: list[str]) -> tuple[float, float, float]:
    """(mean over seeds of the average Pass@1, 95% half-width, mean generated tokens) of one method's runs."""
    rows = scores[(scores["method"] == method) & (scores["metric"] == METRIC) & (scores["k"] == 1)]
    per_seed = rows[rows["benchmark"].isin(averaged)].groupby("seed")["value"].mean()
    mean, half = stats.mean_ci(list(per_seed))
    tokens = rows.groupby("seed")["cost_tokens_generated"].first() if "cost_tokens_generated" in rows else None
    return mean, half, (0.0 if method == "base" else float(tokens.mean()))


def held_out_points(
    scores: pd.DataFrame, token_scores: pd.DataFrame | None, methods: list[str], averaged: list[str]
) -> dict[str, list[tuple[float, float, float]]]:
    """Per method, its evaluated models as (mean generated tokens, avg Pass@1, 95% half-width), by tokens:
    the start model ("base" rows of `scores`, 0 tokens) when present, the equal-token model when it is
    not the final one, and the final model of the equal-rollout run."""
    start = [_average_pass1(scores, "base", averaged)] if "base" in set(scores["method"]) else []
    points = {}
    for method in methods:
        final = _average_pass1(scores, method, averaged)
        mine = [final]
        if token_scores is not None:
            matched = _average_pass1(token_scores, method, averaged)
            if not math.isclose(matched[2], final[2]):
                mine.append(matched)
        points[method] = [(t, a, h) for a, h, t in start] + sorted((t, a, h) for a, h, t in mine)
    return points


def plot_cost(
    metrics: pd.DataFrame,
    methods: list[str],
    seeds: list[int],
    points: dict[str, list[tuple[float, float, float]]],
    path: Path,
    runs_root: str,
    baseline: str | None = None,
) -> None:
    """Held-out Pass@1 at the evaluated models, and training accuracy per step, against cumulative tokens;
    a vertical line at the baseline's total tokens (the equal-token budget)."""
    from dynamo.reporting.figures import DASHES
    from dynamo.reporting.style import finish, pyplot

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    steps = run_metrics(metrics, methods, seeds)
    for i, method in enumerate(methods):
        x, y, half = (np.array(v, dtype=float) for v in zip(*points[method]))
        # Open markers of different sizes: methods with equal cost and accuracy stay visible on top of each other.
        left.errorbar(
            x,
            100 * y,
            yerr=None if np.isnan(half).all() else 100 * np.nan_to_num(half),
            fmt=MARKERS[i % len(MARKERS)],
            ls=DASHES[i % len(DASHES)],
            lw=1.1,
            mfc="none",
            ms=5 + 1.5 * (len(methods) - i),
            color=f"C{i}",
            capsize=3,
            label=method,
        )
        runs = [steps[(steps["method"] == method) & (steps["seed"] == s)] for s in seeds]
        common = sorted(set.intersection(*(set(r[M.STEP]) for r in runs)))
        tokens = np.array([r.set_index(M.STEP).loc[common, M.TOKENS_GENERATED].cumsum() for r in runs])
        accuracy = np.array([r.set_index(M.STEP).loc[common, M.ACCURACY] for r in runs])
        right.plot(
            tokens.mean(0), accuracy.mean(0), color=f"C{i}", ls=DASHES[i % len(DASHES)], lw=1.3, label=method
        )
        if len(seeds) > 1:
            right.fill_between(tokens.mean(0), accuracy.min(0), accuracy.max(0), color=f"C{i}", alpha=0.12, lw=0)
    if baseline:
        for ax in (left, right):
            ax.axvline(points[baseline][-1][0], color="0.5", ls=":", lw=1.0)
    left.set_title("held-out accuracy of the evaluated models")
    left.set_xlabel("cumulative generated tokens in training")
    left.set_ylabel("average Pass@1 (%)")
    right.set_title("training accuracy (first round of each step)")
    right.set_xlabel("cumulative generated tokens in training")
    right.set_ylabel("share of rollouts correct")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(loc="best", frameon=False, title="method", markerscale=0.5)
    band = f"band = min..max over seeds {seeds}" if len(seeds) > 1 else "one seed, no band"
    finish(
        fig,
        path,
        caption=(
            "Rollout allocation: accuracy against generation cost. Left: held-out average Pass@1 (mean over "
            "seeds, 95% t-interval) of the models that were evaluated, at their mean cumulative generated "
            "tokens: the start model (0), the token-matched run at the baseline's total tokens where a method "
            "needed one, and the end of the equal-rollout run; lines join these measurements, held-out "
            "accuracy between them was not measured."
            + (f" Dotted: {baseline}'s total generated tokens (mean over seeds)." if baseline else "")
            + " Right: training accuracy of each step's first "
            f"generation round against cumulative generated tokens (mean over seeds; {band})."
        ),
        source=f"runs: {runs_root}/<method>/seed{{{','.join(map(str, seeds))}}}/metrics.jsonl, eval/",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scores",
        required=True,
        help="long scores file of the table's runs (dynamo report --write-scores); 'base' rows, when there, "
        "give the figure its start point",
    )
    p.add_argument("--runs-root", required=True, help="runs/<experiment>: read the runs' metrics.jsonl")
    p.add_argument("--methods", required=True, help="comma-separated, in table order")
    p.add_argument("--benchmarks", required=True, help="comma-separated benchmark labels")
    p.add_argument("--baseline", help="method every other is compared with (e.g. grpo); one of --methods")
    p.add_argument("--out", required=True, help="output prefix: writes PREFIX.csv and PREFIX.md")
    p.add_argument("--figure", help="figure path without extension: writes .pdf and .png")
    p.add_argument(
        "--token-plan",
        help="equal generated tokens: the plan of `python -m dynamo.reporting.token_budget` (needs --baseline, "
        "--token-runs-root and --token-out)",
    )
    p.add_argument("--token-runs-root", help="where the plan's token-matched runs are (<root>/<method>/seed<s>)")
    p.add_argument("--token-out", help="output prefix of the equal-token table: PREFIX.csv and PREFIX.md")


def token_scores(args: argparse.Namespace, scores: pd.DataFrame, methods: list[str]) -> tuple[pd.DataFrame, dict]:
    """The scores at equal tokens (token-matched runs' score files, verified, else the equal-rollout rows)."""
    plan = token_budget.read_plan(args.token_plan)
    if plan["baseline"] != args.baseline or not set(methods) <= set(plan["methods"]):
        raise ValueError(f"{args.token_plan}: made for baseline {plan['baseline']!r} and {plan['methods']}")
    experiment = scores["experiment"].iloc[0]
    reruns = [
        collect_scores(args.token_runs_root, [m], [seed], args.benchmarks.split(","), experiment=experiment)
        for m, seed, _ in token_budget.reruns(plan)
        if m in methods
    ]
    rerun_scores = pd.concat(reruns, ignore_index=True) if reruns else scores.iloc[:0]
    plan = {**plan, "runs": [r for r in plan["runs"] if r["method"] in methods]}
    matched = token_budget.equal_token_scores(scores, rerun_scores, plan)
    return pd.concat([matched, scores[scores["method"] == START]], ignore_index=True), plan


def run(args: argparse.Namespace) -> int:
    methods, benchmarks = args.methods.split(","), args.benchmarks.split(",")
    if args.token_plan and not (args.baseline and args.token_runs_root and args.token_out):
        raise ValueError("--token-plan needs --baseline, --token-runs-root and --token-out")
    scores = load_scores(args.scores)
    require_verified(check_scores_table(scores, args.scores)[0])
    metrics = load_metrics(args.runs_root)
    table, info = derive_allocation_table(scores, metrics, methods, benchmarks, args.baseline)
    md = to_markdown(table, info, f"{args.token_out}.md" if args.token_plan else None)
    tokens = None
    if args.token_plan:
        tokens, plan = token_scores(args, scores, methods)
        token_table, token_info = derive_token_table(tokens, plan, methods, benchmarks, args.baseline)
        token_info["provenance"] = (
            f"\nRuns: `{args.runs_root}/<method>/seed<seed>` and, token-matched, "
            f"`{args.token_runs_root}/<method>/seed<seed>`; plan: `{args.token_plan}`; code commit(s): "
            f"{', '.join(sorted(tokens['code_commit'].dropna().astype(str).unique())) or 'unknown'}.\n"
        )
        token_md = token_markdown(token_table, token_info, args.token_runs_root, f"{args.out}.md")
        write_text_atomic(f"{args.token_out}.csv", to_csv(token_table))
        write_text_atomic(f"{args.token_out}.md", token_md)
    write_text_atomic(f"{args.out}.csv", to_csv(table))
    write_text_atomic(f"{args.out}.md", md)
    if args.figure:
        seeds = sorted(int(s) for s in scores.loc[scores["method"].isin(methods), "seed"].unique())
        averaged = [b for b in benchmarks if b not in info.get("floor", [])]
        points = held_out_points(scores, tokens, methods, averaged)
        plot_cost(metrics, methods, seeds, points, Path(args.figure), args.runs_root, args.baseline)
    print(md)
    if args.token_plan:
        print(token_md)
    return 0
