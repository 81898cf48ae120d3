"""The allocation study's table and figure: results/study_allocation.{csv,md}, paper_figures/study_allocation.*

    python -m dynamo.reporting.study --config runs/study-allocation/config.yaml \\
        --runs-root runs/study-allocation --start runs/study-allocation/start/pool/samples.jsonl \\
        --out results/study_allocation --figure paper_figures/study_allocation

One number per run, the pre-registered endpoint (config.study_allocation.endpoint); every arm is
compared with the baseline by per-seed paired differences (scipy.stats.ttest_rel's interval), each
with its own minimum detectable effect. The positive control (the baseline with 1.5x the rollout
budget) decides whether the study can see an effect at all: if its interval includes zero the study
calls itself underpowered and no arm's "not distinguishable" counts as evidence of no effect.
docs/STUDY_ALLOCATION.md explains the design.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats as st

from dynamo import metrics_names as M
from dynamo.errors import read_json_file
from dynamo.io import write_text_atomic
from dynamo.reporting.stats import LEVEL, minimum_detectable_effect
from dynamo.reporting.style import finish, pyplot

ENDPOINT_BENCHMARK = {"final_id_pass1": "arith-id"}


def paired_comparison(arm: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """Mean paired difference arm - baseline (same seeds, same order), its 95% interval and its MDE."""
    d = np.asarray(arm, float) - np.asarray(baseline, float)
    if d.size < 2:
        raise ValueError(f"a paired interval needs at least 2 seeds, got {d.size}")
    if np.all(d == d[0]):  # no spread (an arm identical to the baseline): no interval, no MDE
        return {"diff": float(d[0]), "diff_low": float(d[0]), "diff_high": float(d[0]), "mde": math.nan}
    lo, hi = st.ttest_rel(arm, baseline).confidence_interval(LEVEL)
    return {
        "diff": float(d.mean()),
        "diff_low": float(lo),
        "diff_high": float(hi),
        "mde": minimum_detectable_effect(float(d.std(ddof=1)), int(d.size), paired=True),
    }


def verdict(row: dict, role: str, control_resolved: bool) -> str:
    """better / worse / not distinguishable, from the interval of the paired difference."""
    if role == "baseline":
        return "baseline"
    if role == "positive control":
        return "resolved" if row["diff_low"] > 0 else "not resolved: the study is underpowered"
    if math.isnan(row["mde"]) and row["diff"] == 0:
        out = "identical to the baseline in every seed (no spread)"
    elif row["diff_low"] > 0:
        out = "better"
    elif row["diff_high"] < 0:
        out = "worse"
    else:
        out = f"not distinguishable (MDE {row['mde']:.1f} points)"
    return out if control_resolved else f"{out}; underpowered (positive control not resolved)"


def study_table(runs: pd.DataFrame, baseline: str, positive_control: str) -> pd.DataFrame:
    """One row per arm from one row per run (columns arm, seed, endpoint, informative_share, tokens).

    Every arm must have run the baseline's seeds (the comparison is paired)."""
    wide = runs.pivot(index="seed", columns="arm", values="endpoint")
    if wide.isna().any().any():
        gaps = wide.isna().stack()
        missing = sorted(f"{arm}/seed{seed}" for seed, arm in gaps[gaps].index)
        raise ValueError(f"the paired comparison needs every arm at every seed; missing: {', '.join(missing)}")
    means = runs.groupby("arm")[["endpoint", "informative_share", "tokens"]].mean()
    base = wide[baseline].to_numpy()
    rows = []
    control = paired_comparison(wide[positive_control], base)
    control_resolved = control["diff_low"] > 0
    for arm in dict.fromkeys(runs["arm"]):
        role = "baseline" if arm == baseline else "positive control" if arm == positive_control else "compared arm"
        row = {
            "arm": arm,
            "role": role,
            "seeds": int(wide[arm].size),
            "endpoint": float(means.loc[arm, "endpoint"]),
        }
        nan = {"diff": math.nan, "diff_low": math.nan, "diff_high": math.nan, "mde": math.nan}
        row.update(nan if arm == baseline else paired_comparison(wide[arm], base))
        row["informative_share"] = float(means.loc[arm, "informative_share"])
        row["tokens_vs_baseline"] = float(means.loc[arm, "tokens"] / means.loc[baseline, "tokens"])
        row["verdict"] = verdict(row, role, control_resolved)
        rows.append(row)
    return pd.DataFrame(rows)


def mde_factor(seeds: int) -> float:
    """MDE / sd of the paired differences for `seeds` seeds (t_.975 + t_.80) / sqrt(m)."""
    return minimum_detectable_effect(1.0, seeds, paired=True)


def pooled_mde(runs: pd.DataFrame, baseline: str) -> float:
    """The study's MDE: the spread of paired differences pooled over every arm compared with the baseline."""
    wide = runs.pivot(index="seed", columns="arm", values="endpoint")
    diffs = wide.drop(columns=baseline).sub(wide[baseline], axis=0)
    # an arm identical to the baseline in every seed has no spread to pool (docs/STATISTICS.md)
    diffs = diffs.loc[:, (diffs != 0).any()]
    if diffs.empty:
        return math.nan
    return minimum_detectable_effect(math.sqrt(float(diffs.var(ddof=1).mean())), len(wide), paired=True)


def eval_sampling_variance(correct: Sequence[Sequence[bool]]) -> float:
    """Variance (points^2) of a run's Pass@1 from sampling alone, for its fixed problems: the unbiased
    per-problem binomial variance p(1 - p) n / (n - 1) over n samples, / n, summed, / N^2."""
    terms = []
    for c in correct:
        n, p = len(c), float(np.mean(c))
        terms.append(p * (1 - p) / (n - 1) if n > 1 else math.nan)
    return 1e4 * float(np.sum(terms)) / len(terms) ** 2


def start_heterogeneity(samples_jsonl: Path, pool_jsonl: Path, band: float, n: int) -> dict:
    """Per-prompt pass rates of the start model on the pool: near-solved / unsolvable shares, per level,
    and the expected share of samples in groups with spread for uniform groups of n."""
    correct: dict[str, list[bool]] = {}
    for line in samples_jsonl.read_text().splitlines():
        rec = json.loads(line)
        correct.setdefault(rec["id"], []).append(bool(rec["correct"]))
    level = {r["id"]: r["level"] for r in map(json.loads, pool_jsonl.read_text().splitlines())}
    p = pd.Series({pid: float(np.mean(c)) for pid, c in correct.items()})
    lv = pd.Series({pid: level[pid] for pid in p.index})
    extreme = (p >= 1 - band) | (p <= band)
    return {
        "prompts": int(p.size),
        "samples_per_prompt": int(min(len(c) for c in correct.values())),
        "near_solved": float((p >= 1 - band).mean()),
        "unsolvable": float((p <= band).mean()),
        "extreme": float(extreme.mean()),
        "pass_rate": float(p.mean()),
        "expected_informative": float((1 - p**n - (1 - p) ** n).mean()),
        "per_level": {
            int(k): {
                "share": float(g.size / p.size),
                "pass_rate": float(g.mean()),
                "extreme": float(extreme[g.index].mean()),
            }
            for k, g in p.groupby(lv)
        },
    }


def load_runs(runs_root: Path, arms: Sequence[str], seeds: Sequence[int], benchmark: str) -> pd.DataFrame:
    """One row per run: the endpoint (percent), the mean sample-weighted informative share, tokens generated."""
    rows = []
    for arm in arms:
        for seed in seeds:
            run = runs_root / arm / f"seed{seed}"
            scores = read_json_file(run / "eval" / benchmark / "scores.json")
            summary = read_json_file(run / "summary.json")
            metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
            correct: dict[str, list[bool]] = {}
            for line in (run / "eval" / benchmark / "samples.jsonl").read_text().splitlines():
                rec = json.loads(line)
                correct.setdefault(rec["id"], []).append(bool(rec["correct"]))
            share = [m[M.INFORMATIVE_SAMPLE_SHARE] for m in metrics if M.INFORMATIVE_SAMPLE_SHARE in m]
            if not share:
                raise ValueError(
                    f"{run}/metrics.jsonl has no {M.INFORMATIVE_SAMPLE_SHARE}: rerun it with this code"
                )
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "endpoint": 100.0 * float(scores["pass_at_1"]),
                    "informative_share": float(np.mean(share)),
                    "tokens": float(summary[M.SUMMARY_COST]["tokens_generated"]),
                    "num_problems": int(scores["num_problems"]),
                    "samples": int(scores["samples_per_problem"]),
                    "eval_var": eval_sampling_variance(list(correct.values())),
                }
            )
    return pd.DataFrame(rows)


def load_start_endpoints(start_root: Path, seeds: Sequence[int], benchmark: str) -> pd.Series:
    """The start model's endpoint (percent) per seed: the same problems and evaluation sampling seed as each
    seed's arms, no training."""
    return pd.Series(
        {
            seed: 100.0
            * float(read_json_file(start_root / f"seed{seed}" / "eval" / benchmark / "scores.json")["pass_at_1"])
            for seed in seeds
        },
        name="endpoint",
    )


def training_gain(runs: pd.DataFrame, baseline: str, start: pd.Series) -> dict[str, float]:
    """The baseline's paired gain over its own start model (same seeds): what training moved at all."""
    base = runs[runs["arm"] == baseline].set_index("seed")["endpoint"]
    return paired_comparison(base.loc[start.index].to_numpy(), start.to_numpy())


def gain_sentence(gain: dict[str, float], baseline: str, start_mean: float) -> str:
    """What the training gain says about the study: an arm can only beat the baseline by training better."""
    moved = f"{gain['diff']:+.2f} points [{gain['diff_low']:+.2f}, {gain['diff_high']:+.2f}]"
    head = (
        f"Training itself: the start model scores {start_mean:.2f}; {baseline}'s paired gain over it is {moved}. "
    )
    if gain["diff_low"] > 0:
        return head + "Training raises the endpoint, so the arms' differences are about how well they train."
    if gain["diff_high"] < 0:
        return head + (
            "Training LOWERS the endpoint on this pool: more or better-placed samples of a process that does not "
            "improve it cannot be expected to show here, so the study says nothing about allocation either way."
        )
    return head + (
        "Training does not measurably move the endpoint: more or better-placed samples cannot be expected to "
        "show here, so the study says nothing about allocation either way."
    )


def markdown(
    table: pd.DataFrame, runs: pd.DataFrame, study: dict, start: dict, mde: float, gain_text: str = ""
) -> str:
    base = study["baseline"]
    m = int(table["seeds"].iloc[0])
    lines = [
        f"# Allocation study: {len(table)} arms x {m} seeds, endpoint `{study['endpoint']}`",
        "",
        "| arm | role | endpoint (Pass@1, %) | vs " + base + " (paired, 95% CI) | MDE | informative share "
        "| gen. tokens (x " + base + ") | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.to_dict("records"):
        if r["role"] == "baseline":
            diff = mde_cell = "-"
        elif math.isnan(r["mde"]):  # identical to the baseline in every seed
            diff, mde_cell = f"{r['diff']:+.2f} (no spread)", "-"
        else:
            diff = f"{r['diff']:+.2f} [{r['diff_low']:+.2f}, {r['diff_high']:+.2f}]"
            mde_cell = f"{r['mde']:.2f}"
        lines.append(
            f"| {r['arm']} | {r['role']} | {r['endpoint']:.2f} | {diff} | {mde_cell} "
            f"| {r['informative_share']:.3f} | {r['tokens_vs_baseline']:.2f} | {r['verdict']} |"
        )
    b = runs[runs["arm"] == base]
    # variance of a paired difference: observed (from the pooled MDE) vs evaluation sampling alone
    d_sd = mde / mde_factor(m)
    eval_sd = math.sqrt(2 * runs["eval_var"].mean())
    control = table[table["role"] == "positive control"].iloc[0]
    lines += [
        "",
        f"Endpoint: the final model's Pass@1 on arith-id ({int(b['num_problems'].iloc[0])} problems x "
        f"{int(b['samples'].iloc[0])} samples), fixed in config.study_allocation.endpoint before the study ran. "
        "Differences are per-seed paired (same start model, prompt order and evaluation sampling), 95% "
        "t-interval (scipy.stats.ttest_rel); MDE: smallest true difference detected with 80% power at the 95% "
        "level, from that arm's spread of paired differences.",
        "",
        f"Study MDE (pooled over the compared arms): {mde:.2f} points with {m} seeds; design target "
        f"{study['mde_target']:.2f} ({'met' if mde <= study['mde_target'] else 'NOT met'}). The paired "
        f"differences' sd is {d_sd:.2f} points; evaluation sampling alone (per-problem binomial variance of the "
        f"runs' samples, as if two paired runs sampled independently: an upper bound, since they share the "
        f"sampling seed) predicts at most {eval_sd:.2f}, which leaves at least "
        f"{math.sqrt(max(d_sd**2 - eval_sd**2, 0.0)):.2f} points for training (seed) variation.",
        "",
        f"Positive control ({study['positive_control']}, 1.5x the rollout budget): "
        + (
            f"resolved ({control['diff']:+.2f} points): the design can see an effect of this size."
            if control["diff_low"] > 0
            else "NOT resolved: the study is underpowered, and 'not distinguishable' is no evidence of no effect."
        ),
        "",
        *([gain_text, ""] if gain_text else []),
        "Informative share: share of rollout samples in groups whose correctness is not all equal "
        f"({M.INFORMATIVE_SAMPLE_SHARE}), mean over steps and seeds.",
        "",
        f"Start model on the study pool ({start['prompts']} prompts x {start['samples_per_prompt']} samples): "
        f"{100 * start['extreme']:.1f}% of prompts near-solved or unsolvable (pass rate >= "
        f"{1 - study['extreme_band']:.2f}: {100 * start['near_solved']:.1f}%, <= {study['extreme_band']:.2f}: "
        f"{100 * start['unsolvable']:.1f}%); mean pass rate {100 * start['pass_rate']:.1f}%; expected informative "
        f"share with uniform groups: {start['expected_informative']:.3f}.",
        "",
        "| level | share of pool | start pass rate | near-solved or unsolvable |",
        "|---|---|---|---|",
    ]
    for lv, d in start["per_level"].items():
        lines.append(
            f"| {lv} | {100 * d['share']:.1f}% | {100 * d['pass_rate']:.1f}% | {100 * d['extreme']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def figure(table: pd.DataFrame, runs: pd.DataFrame, study: dict, mde: float, path: Path) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    compared = table[table["role"] != "baseline"].reset_index(drop=True)
    y = np.arange(len(compared))
    ax1.errorbar(
        compared["diff"],
        y,
        xerr=[compared["diff"] - compared["diff_low"], compared["diff_high"] - compared["diff"]],
        fmt="o",
        color="k",
        capsize=3,
    )
    ax1.axvline(0, color="0.5", lw=0.8)
    for s in (-mde, mde):
        ax1.axvline(s, color="0.5", lw=0.8, ls="--")
    ax1.set_yticks(y, compared["arm"])
    ax1.set_xlabel(f"paired difference vs {study['baseline']} (Pass@1 points)")
    ax1.set_title("endpoint: difference with 95% interval")
    arms = list(table["arm"])
    for i, arm in enumerate(arms):
        vals = runs.loc[runs["arm"] == arm, "informative_share"]
        ax2.plot(np.full(len(vals), i), vals, "o", color="0.6", ms=3)
        ax2.plot([i - 0.25, i + 0.25], [vals.mean()] * 2, color="k", lw=2)
    ax2.set_xticks(range(len(arms)), arms, rotation=20)
    ax2.set_ylabel("share of samples")
    ax2.set_title("samples in groups with reward spread")
    seeds = int(table["seeds"].iloc[0])
    caption = (
        f"Left: per-seed paired difference of the endpoint ({study['endpoint']}) to {study['baseline']}, mean "
        f"and 95% t-interval over {seeds} seeds; dashed: +/- the study's MDE ({mde:.2f} points). "
        "Right: sample-weighted informative share per run (dots) and its mean over seeds (bar)."
    )
    finish(fig, path, caption=caption, source="results/study_allocation")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the study's resolved config (runs/<study>/config.yaml)")
    p.add_argument("--runs-root", required=True, help="runs/<study experiment>")
    p.add_argument("--start", required=True, help="samples.jsonl of the start model on the study pool")
    p.add_argument("--start-runs", required=True, help="runs/<study>/start: the start model's endpoint per seed")
    p.add_argument("--out", required=True, help="output prefix: writes PREFIX.csv and PREFIX.md")
    p.add_argument("--figure", required=True, help="figure path without extension (PDF and PNG)")
    args = p.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text())
    study = cfg["study_allocation"]
    runs = load_runs(Path(args.runs_root), study["arms"], study["seeds"], ENDPOINT_BENCHMARK[study["endpoint"]])
    table = study_table(runs, study["baseline"], study["positive_control"])
    mde = pooled_mde(runs, study["baseline"])
    start = start_heterogeneity(
        Path(args.start),
        Path(f"data/{cfg['experiment']}/train.jsonl"),
        study["extreme_band"],
        cfg["train"]["rollouts_per_prompt"],
    )
    start_endpoint = load_start_endpoints(
        Path(args.start_runs), study["seeds"], ENDPOINT_BENCHMARK[study["endpoint"]]
    )
    gain = training_gain(runs, study["baseline"], start_endpoint)
    out = Path(args.out)
    csv = table.assign(
        study_mde=mde,
        mde_target=study["mde_target"],
        start_extreme_share=start["extreme"],
        start_endpoint=float(start_endpoint.mean()),
        baseline_gain=gain["diff"],
        baseline_gain_low=gain["diff_low"],
        baseline_gain_high=gain["diff_high"],
    )
    write_text_atomic(out.with_suffix(".csv"), csv.to_csv(index=False, float_format="%.4f"))
    text = gain_sentence(gain, study["baseline"], float(start_endpoint.mean()))
    write_text_atomic(out.with_suffix(".md"), markdown(table, runs, study, start, mde, text))
    figure(table, runs, study, mde, Path(args.figure))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
