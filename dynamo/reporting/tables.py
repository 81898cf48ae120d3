"""`dynamo report`: the long scores file (results/scores.csv) and the results tables derived from it.

    dynamo report --runs-root runs/embedded --methods base,grpo,dynamo --seeds 1,2,3 \
        --benchmarks arith-easy,arith-hard --write-scores results/scores.csv
    dynamo report --scores results/scores.csv --methods base,grpo,dynamo \
        --benchmarks arith-easy,arith-hard --baseline grpo --out results/table1

For every method and benchmark: Pass@1 and Pass@k (k = samples per problem) as the mean over
seeds with a 95% Student-t interval, plus the average over benchmarks (averaged per seed
first, so its interval reflects the seed spread of the average). The difference to the
baseline's average Pass@1 is paired by seed when both methods ran the same seeds (same start
model, prompt order and evaluation sampling), else Welch's unpaired interval; a method is only
called higher or lower when that 95% interval excludes zero. Under the table: the minimum
detectable effect of this design, and, with --paper-reference, the published numbers beside
ours. docs/STATISTICS.md explains the formulas. Without --out (and without --write-scores) the
table is only printed; a --baseline that is not one of --methods is refused.

Both steps refuse unverified input, with one line naming the file: the scores step verifies every
score file against its samples, the table step (--scores) every row against the score file of its
run (see `dynamo.evaluation.verify`; rows whose run directory is absent are counted, not checked).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from dynamo.evaluation.verify import check_scores_table, require_verified
from dynamo.io import write_text_atomic
from dynamo.reporting import stats
from dynamo.reporting.scores import METRIC, collect_scores, load_scores, write_scores

# Kept importable under their old names (tests and notebooks used tables.mean_ci etc.).
t_quantile, mean_ci, verdict = stats.t_quantile, stats.mean_ci, stats.verdict


def _select(scores: pd.DataFrame, methods: list[str], benchmarks: list[str], experiment: str | None):
    df = scores[scores["metric"] == METRIC]
    experiments = sorted(df["experiment"].unique())
    if experiment is None and len(experiments) > 1:
        raise ValueError(f"scores hold several experiments {experiments}: pass --experiment")
    if experiment is not None:
        df = df[df["experiment"] == experiment]
    df = df[df["method"].isin(methods) & df["benchmark"].isin(benchmarks)]
    missing = [m for m in methods if m not in set(df["method"])]
    if missing:
        raise ValueError(f"no scores for method(s) {missing} (runs not evaluated, or another scores file?)")
    have = df.groupby(["method", "seed"])["benchmark"].agg(lambda s: set(s))
    for (method, seed), got in have.items():
        if lost := [b for b in benchmarks if b not in got]:
            raise ValueError(f"{method} seed {seed}: no scores for benchmark(s) {lost}")
    ks = sorted(df["samples_per_problem"].unique())
    if len(ks) != 1:
        raise ValueError(f"score files disagree on samples per problem: {ks}")
    return df, int(ks[0])


def per_seed(df: pd.DataFrame, benchmarks: list[str], k: int, averaged: list[str] | None = None) -> pd.DataFrame:
    """Pass@k per (method, seed) and benchmark, plus "avg": the mean over the `averaged` benchmarks
    (default: all) of each seed."""
    wide = df[df["k"] == k].pivot_table(index=["method", "seed"], columns="benchmark", values="value")[benchmarks]
    return wide.assign(avg=wide[averaged or benchmarks].mean(axis=1))


def floor_benchmarks(df: pd.DataFrame, benchmarks: list[str], k: int) -> list[str]:
    """Benchmarks on which no sample of any run in the table is correct (Pass@k = 0 everywhere): they are
    reported but left out of the average, where they would only shrink every difference towards 0.
    When every benchmark is at the floor, none is left out."""
    top = df[df["k"] == k]
    floor = [b for b in benchmarks if (top.loc[top["benchmark"] == b, "value"] == 0).all()]
    return floor if len(floor) < len(benchmarks) else []


def evaluation_variance(df: pd.DataFrame, benchmarks: list[str]) -> pd.Series:
    """Per (method, seed): the variance of its average Pass@1 that evaluation sampling alone causes.

    For a problem solved with probability p, E[Pass@2 - Pass@1] = (1 - (1 - p)^2) - p = p (1 - p), both
    estimators being unbiased; so benchmark b's sampling variance, sum_j p_j (1 - p_j) / (n_b N_b^2), is
    estimated without bias by (Pass@2 - Pass@1) / (n_b N_b), and the average over B benchmarks divides
    the sum by B^2. NaN with fewer than 2 samples per problem.
    """
    if df["samples_per_problem"].min() < 2:
        return pd.Series(math.nan, index=per_seed(df, benchmarks, 1).index)
    p1, p2 = per_seed(df, benchmarks, 1), per_seed(df, benchmarks, 2)
    sizes = df.groupby("benchmark")[["num_problems", "samples_per_problem"]].first()
    terms = [
        (p2[b] - p1[b]).clip(lower=0) / (sizes.loc[b, "num_problems"] * sizes.loc[b, "samples_per_problem"])
        for b in benchmarks
    ]
    return sum(terms) / len(benchmarks) ** 2


def identical_runs(p1: pd.DataFrame, pk: pd.DataFrame, method: str, other: str) -> bool:
    """True when `method` ran the same seeds as `other` with every score equal: a switch that changes
    nothing in this config (the runs are identical by construction, not a measured zero effect)."""
    a, b = p1.loc[method], p1.loc[other]
    if set(a.index) != set(b.index):
        return False
    return all(t.loc[method].sort_index().equals(t.loc[other].sort_index()) for t in (p1, pk))


def run_costs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, seed) with its cost_* columns (constant over a run's score rows)."""
    cols = [c for c in df.columns if c.startswith("cost_")]
    return df.groupby(["method", "seed"])[cols].first()


def derive_table(
    scores: pd.DataFrame,
    methods: list[str],
    benchmarks: list[str],
    baseline: str | None = None,
    *,
    experiment: str | None = None,
    compare: list[tuple[str, str]] = (),
) -> tuple[pd.DataFrame, dict]:
    """The wide results table (one row per method) and what the notes under it need. `compare`: extra
    direct comparisons (method, other), reported on the method's row in columns `..._vs_<other>`."""
    check_baseline(baseline, methods)
    check_compare(compare, methods, baseline)
    df, k = _select(scores, methods, benchmarks, experiment)
    cols = [*benchmarks, "avg"]
    floor = floor_benchmarks(df, benchmarks, k)
    averaged = [b for b in benchmarks if b not in floor]
    p1, pk = per_seed(df, benchmarks, 1, averaged), per_seed(df, benchmarks, k, averaged)
    eval_var = evaluation_variance(df, averaged)
    costs = run_costs(df)
    rows, paired_diffs, unpaired = [], [], False
    # RL methods are also compared with the model they all start from: did training help at all?
    start = "base" if "base" in methods and baseline else None
    for method in methods:
        row: dict = {"method": method, "seeds": len(p1.loc[method])}
        for bench in cols:
            for kk, table in ((1, p1), (k, pk)):
                mean, half = stats.mean_ci(list(table.loc[method, bench]))
                row[f"{bench}/pass@{kk}"], row[f"{bench}/pass@{kk}_ci95"] = mean, half
        if baseline:
            diff, half, test = math.nan, math.nan, ""
            if method == "base":  # the model every run starts from: a reference point, not a contender
                word = "start model"
            elif method == baseline:
                word = "baseline"
            elif identical_runs(p1, pk, method, baseline):
                diff, half, test, word = 0.0, 0.0, "identical runs in every seed", IDENTICAL
                paired_diffs.append([0.0] * len(p1.loc[method]))
            else:
                diff, half, test, pairs = _difference(p1, method, baseline)
                unpaired |= test.startswith("Welch")
                if pairs:
                    paired_diffs.append(pairs)
                    row.update(_comparison_power(pairs, eval_var, method, baseline, p1))
                word = stats.verdict(diff, half)
            row[f"delta_avg_pass@1_vs_{baseline}"] = diff
            row[f"delta_ci95_vs_{baseline}"] = half
            row[f"vs_{baseline}"] = word
            row[f"delta_test_vs_{baseline}"] = test
        if start:
            diff, half, word = math.nan, math.nan, "-"
            if method != start:
                diff, half, test, _ = _difference(p1, method, start)
                unpaired |= test.startswith("Welch")
                word = stats.verdict(diff, half)
            row["delta_avg_pass@1_vs_base"], row["delta_ci95_vs_base"], row["vs_base"] = diff, half, word
        tokens = costs.loc[method, "cost_tokens_generated"] if "cost_tokens_generated" in costs else None
        row["tokens_generated"] = float(tokens.mean()) if tokens is not None else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    if baseline:
        base_tokens = table.loc[table["method"] == baseline, "tokens_generated"].iloc[0]
        table[f"tokens_generated_vs_{baseline}"] = table["tokens_generated"] / base_tokens
    for method, other in compare:
        _add_comparison(table, p1, pk, eval_var, method, other)
    info = {"k": k, "benchmarks": benchmarks, "baseline": baseline, **_detectable(df, p1, baseline, paired_diffs)}
    info["compare"] = list(compare)
    info["floor"] = floor
    info["unpaired"] = unpaired
    info["provenance"] = _provenance(df)
    info["means"] = _means_long(p1, pk, k)
    return table, info


def check_baseline(baseline: str | None, methods: list[str]) -> None:
    """A baseline outside the table's methods would silently drop the comparison columns: refuse it."""
    if baseline is not None and baseline not in methods:
        raise ValueError(f"--baseline {baseline!r} is not one of the table's methods: {', '.join(methods)}")


def check_compare(compare: list[tuple[str, str]], methods: list[str], baseline: str | None) -> None:
    """Each direct comparison names two different methods of the table, and not the baseline as the other."""
    for method, other in compare:
        if method not in methods or other not in methods or method == other:
            raise ValueError(
                f"--compare {method}:{other}: needs two different methods of the table ({', '.join(methods)})"
            )
        if other == baseline:
            raise ValueError(f"--compare {method}:{other}: every row is already compared with the baseline")
    if len(set(compare)) != len(compare):
        raise ValueError("--compare: a comparison is given twice")


def _add_comparison(table: pd.DataFrame, p1, pk, eval_var, method: str, other: str) -> None:
    """The difference of `method` to `other` in average Pass@1 (paired by seed, as for the baseline), its
    verdict and its own MDE, in columns ..._vs_<other> of `method`'s row (empty on the other rows)."""
    columns = {
        f"delta_avg_pass@1_vs_{other}": math.nan,
        f"delta_ci95_vs_{other}": math.nan,
        f"vs_{other}": "",
        f"delta_test_vs_{other}": "",
        f"mde_vs_{other}": math.nan,
        f"eval_var_share_vs_{other}": math.nan,
    }
    if identical_runs(p1, pk, method, other):
        diff, half, test, word, power = 0.0, 0.0, "identical runs in every seed", IDENTICAL, {}
    else:
        diff, half, test, pairs = _difference(p1, method, other)
        power = _comparison_power(pairs, eval_var, method, other, p1) if pairs else {}
        word = stats.verdict(diff, half)
    values = {
        f"delta_avg_pass@1_vs_{other}": diff,
        f"delta_ci95_vs_{other}": half,
        f"vs_{other}": word,
        f"delta_test_vs_{other}": test,
        **power,
    }
    row = table.index[table["method"] == method][0]
    for column, empty in columns.items():
        table[column] = table.get(column, empty)
        table.loc[row, column] = values.get(column, empty)


def _difference(p1: pd.DataFrame, method: str, other: str) -> tuple[float, float, str, list[float]]:
    """(difference, 95% half-width, test, per-seed paired differences) in average Pass@1.

    Paired by seed when both ran the same seeds (same start model, prompt order and evaluation
    sampling), else Welch's unpaired interval; no interval with fewer than 2 seeds on a side."""
    mine, theirs = p1.loc[method, "avg"], p1.loc[other, "avg"]
    if len(mine) < 2 or len(theirs) < 2:
        return float(mine.mean() - theirs.mean()), math.nan, "", []
    if set(mine.index) == set(theirs.index):
        a, c = list(mine.sort_index()), list(theirs.sort_index())
        diff, half = stats.paired_difference_ci(a, c)
        return diff, half, f"paired, {len(a)} seeds", [x - y for x, y in zip(a, c)]
    diff, half = stats.welch_difference_ci(list(mine), list(theirs))
    return diff, half, "Welch, unpaired", []


IDENTICAL = "identical runs"


def _comparison_power(pairs: list[float], eval_var: pd.Series, method: str, other: str, p1) -> dict:
    """This comparison's own MDE (from its per-seed differences) and the share of their variance that
    evaluation sampling explains (the rest: training seed). Seeds are the units."""
    m = len(pairs)
    var_d = pd.Series(pairs).var()
    seeds = sorted(p1.loc[method].index)
    eval_d = float(sum(eval_var.loc[(method, s)] + eval_var.loc[(other, s)] for s in seeds) / m)
    return {
        f"mde_vs_{other}": stats.minimum_detectable_effect(math.sqrt(var_d), m, paired=True),
        f"eval_var_share_vs_{other}": eval_d / var_d if var_d > 0 else math.nan,
    }


def _detectable(df: pd.DataFrame, p1: pd.DataFrame, baseline: str | None, paired_diffs: list) -> dict:
    """Minimum detectable effect (95%, 80% power) on the average Pass@1 difference to the baseline."""
    if not baseline:
        return {"mde": math.nan, "mde_sampling": math.nan, "mde_seeds": 0}
    seeds = len(p1.loc[baseline])
    if paired_diffs:  # pooled spread of the per-seed differences over every compared method
        # A method equal to the baseline in every seed (a switch that changes nothing in this
        # config) has no spread to contribute: pooling its zeros would understate the MDE.
        informative = [d for d in paired_diffs if any(x != 0 for x in d)] or paired_diffs
        sd = math.sqrt(sum(pd.Series(d).var() for d in informative) / len(informative))
        mde = stats.minimum_detectable_effect(sd, seeds, paired=True)
    else:
        mde = stats.minimum_detectable_effect(p1.loc[baseline, "avg"].std(), seeds, paired=False)
    base = df[(df["method"] == baseline) & (df["k"] == 1) & df["benchmark"].isin(p1.columns.drop("avg"))]
    per_bench = base.groupby("benchmark").agg(p=("value", "mean"), n=("num_problems", "first"))
    per_bench["s"] = base.groupby("benchmark")["samples_per_problem"].first()
    sampling = stats.sampling_mde(list(per_bench["p"]), list(per_bench["n"]), list(per_bench["s"]), seeds)
    problems = ", ".join(f"{n:.0f}" for n in per_bench["n"])
    return {"mde": mde, "mde_sampling": sampling, "mde_seeds": seeds, "problems": problems}


def _means_long(p1: pd.DataFrame, pk: pd.DataFrame, k: int) -> pd.DataFrame:
    """Mean over seeds per (method, benchmark incl. avg, k): the cells the paper comparison needs."""
    frames = []
    for kk, table in ((1, p1), (k, pk)):
        m = table.groupby(level="method").mean().stack().rename("value").reset_index()
        frames.append(m.rename(columns={"level_1": "benchmark"}).assign(k=kk))
    return pd.concat(frames, ignore_index=True).drop_duplicates(["method", "benchmark", "k"])


def _provenance(df: pd.DataFrame) -> str:
    """Which runs, config and commits produced the numbers."""
    run_dirs = sorted(df["run_dir"].unique())
    root = Path(run_dirs[0]).parent.parent if run_dirs else Path(".")
    commits = sorted(df["code_commit"].dropna().astype(str).unique())
    return (
        f"\nRuns: `{root}/<method>/seed<seed>`; config: `{root}/config.yaml`; "
        f"code commit(s): {', '.join(commits) or 'unknown'}.\n"
    )


def to_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, float_format="%.6f", lineterminator="\n")


def _pct(mean: float, half: float) -> str:
    return f"{100 * mean:.1f}" + ("" if math.isnan(half) else f" ± {100 * half:.1f}")


def _delta_cell(row: pd.Series, other: str) -> str:
    """The difference to `other` in average Pass@1 with its interval and verdict, in points."""
    diff, half, word = row[f"delta_avg_pass@1_vs_{other}"], row[f"delta_ci95_vs_{other}"], row[f"vs_{other}"]
    if word == IDENTICAL:
        return f"= {other} (identical runs)"
    if math.isnan(diff):
        return word
    return f"{100 * diff:+.1f}" + ("" if math.isnan(half) else f" ± {100 * half:.1f}") + f": {word}"


def to_markdown(table: pd.DataFrame, info: dict, reference: str = "") -> str:
    k, benchmarks, baseline = info["k"], info["benchmarks"], info["baseline"]
    cols = [*benchmarks, "avg"]
    head = ["method"] + [f"{b} P@1 / P@{k}" for b in cols]
    start = "vs_base" in table.columns
    compare = info.get("compare", [])
    if baseline:
        head += (
            [f"vs {baseline} (avg P@1)"]
            + (["vs base (avg P@1)"] if start else [])
            + [f"gen. tokens (x {baseline})"]
        )
    others = list(dict.fromkeys(other for _, other in compare))  # one column per compared-with method
    head += [f"vs {other} (avg P@1)" for other in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells = [row["method"]]
        for b in cols:
            cells.append(
                f"{_pct(row[f'{b}/pass@1'], row[f'{b}/pass@1_ci95'])} / "
                f"{_pct(row[f'{b}/pass@{k}'], row[f'{b}/pass@{k}_ci95'])}"
            )
        if baseline:
            cells.append(_delta_cell(row, baseline))
            if start:
                cells.append(_delta_cell(row, "base"))
            ratio = row[f"tokens_generated_vs_{baseline}"]
            cells.append("-" if math.isnan(ratio) else f"{ratio:.2f}")
        cells += [_delta_cell(row, other) if row[f"vs_{other}"] else "" for other in others]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = int(table["seeds"].max())
    note = (
        f"\nPercent; mean over {seeds} seed(s) ± half-width of the 95% t-interval. Pass@{k} uses the "
        f"unbiased estimator with n = {k} samples per problem."
    )
    if int(table["seeds"].min()) < 2:
        note += " A value without ± comes from a single seed (n = 1): it has no interval."
    if baseline:
        pairing = (
            "per-seed paired differences (runs with the same seed share the start model, prompt order "
            "and evaluation sampling)"
            if not info["unpaired"]
            else "paired by seed where both methods ran the same seeds, else Welch's unpaired interval "
            "(the test column of the csv says which)"
        )
        note += (
            f" The difference to {baseline} in average Pass@1 uses {pairing}; 'within seed spread' means its "
            f"95% interval includes zero: no winner is claimed."
            + (
                " 'vs base' compares each trained model with the start model in the same way (did RL help?)."
                if start
                else ""
            )
            + f" Gen. tokens: tokens generated in training "
            f"(DAPO's refills included) relative to {baseline}, mean over seeds; '-' where a run did not "
            f"record it."
        )
        if math.isnan(info["mde"]):
            note += "\n\nMinimum detectable effect: not estimable (needs at least 2 seeds)."
        else:
            note += (
                f"\n\nMinimum detectable effect (95% two-sided, 80% power) on average Pass@1 vs {baseline}: "
                f"{100 * info['mde']:.1f} points with {info['mde_seeds']} seeds (from the observed seed spread); "
                f"with evaluation sampling as the only noise ({info['problems']} problems x {k} samples per "
                f"benchmark) it would be at most {100 * info['mde_sampling']:.1f} points. Smaller true "
                f"differences are likely to read 'within seed spread': that reading is not evidence of no "
                f"difference."
            )
        if f"mde_vs_{baseline}" in table.columns:
            parts = []
            for _, row in table.iterrows():
                mde, share = row[f"mde_vs_{baseline}"], row[f"eval_var_share_vs_{baseline}"]
                if isinstance(mde, float) and math.isfinite(mde):
                    share_text = ""
                    if math.isfinite(share):
                        # An upper bound (independent sampling assumed; a shared seed correlates the runs'
                        # samples), so above 1 it is a ratio, not a share: docs/STATISTICS.md.
                        share_text = (
                            f", evaluation sampling at most {100 * share:.0f}% of its variance"
                            if share <= 1
                            else f", evaluation sampling at most {share:.1f}x its variance (a loose bound here)"
                        )
                    parts.append(f"{row['method']} {100 * mde:.1f}{share_text}")
            if parts:
                note += (
                    f"\n\nPer comparison with {baseline}: its own MDE in points (from its per-seed differences) "
                    "and an upper bound on the share of their variance that evaluation sampling explains "
                    "(from Pass@2 - Pass@1, as if the two runs sampled independently; runs with the same seed "
                    "share their sampling seed, so for similar models the bound is loose; the rest is "
                    "training-seed variation; docs/STATISTICS.md): " + "; ".join(parts) + "."
                )
        identical = [r["method"] for _, r in table.iterrows() if r.get(f"vs_{baseline}") == IDENTICAL]
        if identical:
            note += (
                f"\n\n{', '.join(identical)}: every score equals {baseline}'s in every seed (the switch changes "
                "nothing in this config): identical by construction, not a measured zero effect."
            )
    for method, other in compare:
        row = table.loc[table["method"] == method].iloc[0]
        mde = row[f"mde_vs_{other}"]
        test = row[f"delta_test_vs_{other}"] or "no test"
        note += (
            f"\n\nDirect comparison, {method} vs {other} (avg Pass@1, {test}): {_delta_cell(row, other)}"
            + (f"; its MDE {100 * mde:.1f} points" if isinstance(mde, float) and math.isfinite(mde) else "")
            + "."
        )
    if info.get("floor"):
        note += (
            f"\n\n{', '.join(info['floor'])}: no sample of any run is correct (Pass@{k} = 0 throughout): "
            "reported, but left out of the average, where it would only shrink every difference."
        )
    note += _methods_note(list(table["method"]))
    return "\n".join(lines) + "\n" + note + "\n" + reference + info["provenance"]


def _methods_note(methods: list[str]) -> str:
    """What each row ran, in the registry's words: which reading of a method (W-REINFORCE as released
    or as written, a DynaMO switch) the table holds. Rows that are no registered method (base) are left out."""
    from dynamo.methods import all_methods

    known = all_methods()
    rows = [f"- `{m}`: {known[m].description}" for m in methods if m in known]
    if not rows:
        return ""
    return (
        "\n\nMethods as registered (`dynamo methods`; the config's method_overrides, if any, apply on top):\n"
        + "\n".join(rows)
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-root", help="runs/<experiment>: read the runs' score files")
    p.add_argument("--scores", help="read a long scores file (or several, comma-separated) instead of runs")
    p.add_argument("--write-scores", help="write the long scores file (csv) of --runs-root's runs here")
    p.add_argument("--methods", required=True, help="comma-separated, in table order")
    p.add_argument("--seeds", help="comma-separated (default with --scores: every seed in the file)")
    p.add_argument("--benchmarks", required=True, help="comma-separated benchmark labels")
    p.add_argument("--experiment", help="with --scores holding several experiments: which one")
    p.add_argument("--baseline", help="method to compare every other method against (e.g. grpo); one of --methods")
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="METHOD:OTHER",
        help="also compare METHOD with OTHER directly (paired by seed, like the baseline column), e.g. "
        "dynamo-posscale:dynamo-nostab; repeatable",
    )
    p.add_argument(
        "--paper-reference",
        help="paper model row (Qwen2.5-Math-1.5B or Qwen2.5-Math-7B) to print beside the reproduced cells",
    )
    p.add_argument(
        "--out",
        help="table output prefix: writes PREFIX.csv and PREFIX.md (without it, and without --write-scores, "
        "the table is printed only)",
    )


def _compare_pair(text: str) -> tuple[str, str]:
    method, sep, other = text.partition(":")
    if not sep or not method or not other:
        raise SystemExit(f"dynamo report: --compare {text!r}: expected METHOD:OTHER")
    return method, other


def run(args: argparse.Namespace) -> int:
    methods = args.methods.split(",")
    benchmarks = args.benchmarks.split(",")
    check_baseline(args.baseline, methods)  # before reading any scores
    compare = [_compare_pair(text) for text in args.compare]
    check_compare(compare, methods, args.baseline)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    if bool(args.runs_root) == bool(args.scores):
        raise SystemExit("dynamo report: give exactly one of --runs-root and --scores")
    if args.scores:
        scores = load_scores(args.scores.split(","))
        # Each row against the score file it was collected from (dynamo.evaluation.verify): refuse on a difference.
        problems, unchecked = check_scores_table(scores, args.scores)
        require_verified(problems)
        if unchecked:
            print(
                f"[dynamo report] {unchecked} rows of {args.scores} not checked: their run directories are absent"
            )
        if seeds is not None:
            scores = scores[scores["seed"].isin(seeds)]
    else:
        if seeds is None:
            raise SystemExit("dynamo report: --seeds is required with --runs-root")
        scores = collect_scores(args.runs_root, methods, seeds, benchmarks, experiment=args.experiment)
    if args.write_scores:
        write_scores(scores, args.write_scores)
        print(f"[dynamo report] {len(scores)} score rows -> {args.write_scores}")
        if not args.out:
            return 0
    table, info = derive_table(
        scores, methods, benchmarks, args.baseline, experiment=args.experiment, compare=compare
    )
    reference = ""
    if args.paper_reference:
        from dynamo.reporting.reference import compare_with_reference, reference_markdown

        comparison = compare_with_reference(info["means"], args.paper_reference)
        reference = reference_markdown(comparison, args.paper_reference)
    md = to_markdown(table, info, reference)
    if args.out:
        write_text_atomic(f"{args.out}.csv", to_csv(table))
        write_text_atomic(f"{args.out}.md", md)
    print(md)  # without --out (and --write-scores) this is the only output
    return 0
