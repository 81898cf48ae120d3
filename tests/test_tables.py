"""Results as data: the long scores file, tables derived from it, intervals from scipy, costs,
paired comparisons, the minimum detectable effect and the published numbers beside ours."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reporting_fixture import BENCHMARKS, METHODS, SEEDS, make_runs, pass_curve, write_run
from scipy import stats as st

from dynamo.methods import get_method
from dynamo.reporting import load_metrics, load_scores, reference, tables
from dynamo.reporting import stats as rstats
from dynamo.reporting.scores import SCORE_COLUMNS, collect_scores, write_scores

FIXTURES = Path(__file__).parent / "fixtures"


def report(**kw) -> int:
    args = dict(
        runs_root=None,
        scores=None,
        write_scores=None,
        seeds=None,
        experiment=None,
        baseline=None,
        paper_reference=None,
        out=None,
        compare=[],
    )
    args.update(kw)
    return tables.run(argparse.Namespace(**args))


# -- statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize("df, printed", [(1, 12.7062), (2, 4.3027), (40, 2.0211), (120, 1.9799)])
def test_t_quantile_is_scipys_for_any_df(df, printed):
    assert rstats.t_quantile(df) == pytest.approx(st.t.ppf(0.975, df), rel=1e-12)
    assert rstats.t_quantile(df) == pytest.approx(printed, abs=1e-4)  # the printed t-table


def test_no_hand_typed_quantile_table():
    """Anywhere in the package (the probes had their own t-table, with a wrong fallback for df 10-29)."""
    package = Path(tables.__file__).parent.parent
    src = "".join(p.read_text() for p in package.rglob("*.py"))
    printed_quantiles = ("12.706", "4.303", "3.182", "2.776", "2.571", "2.262", "2.228", "2.201", "2.042", "1.96")
    for printed in (*printed_quantiles, "1.645", "0.8416"):
        assert printed not in src, printed


def test_intervals_equal_scipys_tests():
    rng = np.random.default_rng(1)
    a, b = list(rng.normal(0.4, 0.05, 5)), list(rng.normal(0.35, 0.08, 5))
    mean, half = rstats.mean_ci(a)
    lo, hi = st.ttest_1samp(a, 0.0).confidence_interval(0.95)
    assert (mean - half, mean + half) == pytest.approx((lo, hi), rel=1e-10)
    diff, half = rstats.paired_difference_ci(a, b)
    lo, hi = st.ttest_rel(a, b).confidence_interval(0.95)
    assert (diff - half, diff + half) == pytest.approx((lo, hi), rel=1e-10)
    diff, half = rstats.welch_difference_ci(a, b)
    lo, hi = st.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (diff - half, diff + half) == pytest.approx((lo, hi), rel=1e-10)
    assert math.isnan(rstats.mean_ci([0.5])[1])


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_mde_has_the_stated_power(seeds):
    """At a true difference equal to the MDE, the two-sided 95% paired t-test rejects ~80% of the time."""
    sd = 0.03
    mde = rstats.minimum_detectable_effect(sd, seeds, paired=True)
    df, nc = seeds - 1, mde / (sd / math.sqrt(seeds))
    t = st.t.ppf(0.975, df)
    power = 1 - st.nct.cdf(t, df, nc) + st.nct.cdf(-t, df, nc)
    assert power == pytest.approx(0.80, abs=0.04)
    assert math.isnan(rstats.minimum_detectable_effect(sd, 1))


def test_sampling_mde_matches_simulated_evaluation_noise():
    """Independent re-evaluations of one fixed model: the spread of their difference is what the bound covers."""
    rng = np.random.default_rng(0)
    p_problem = rng.uniform(0.0, 1.0, 100)  # one benchmark, heterogeneous problems
    n = 8
    scores = rng.binomial(n, p_problem, size=(4000, 100)).mean(axis=1) / n
    diffs = scores[::2] - scores[1::2]
    z = st.norm.ppf(0.975) + st.norm.ppf(0.8)
    bound = rstats.sampling_mde([p_problem.mean()], [100], [n], seeds=1)
    assert z * diffs.std() <= bound <= 1.6 * z * diffs.std()  # an upper bound, and not a loose one


def test_mde_leaves_out_methods_identical_to_the_baseline(tmp_path):
    """A method whose runs equal the baseline's in every seed adds zeros, not spread, to the MDE."""
    make_runs(tmp_path)
    df = collect_scores(tmp_path, METHODS, SEEDS, BENCHMARKS)
    _, info = tables.derive_table(df, METHODS, BENCHMARKS, "grpo")
    twin = df[df.method == "grpo"].assign(method="grpo-twin")
    _, with_twin = tables.derive_table(pd.concat([df, twin]), [*METHODS, "grpo-twin"], BENCHMARKS, "grpo")
    assert with_twin["mde"] == pytest.approx(info["mde"], rel=1e-12) and info["mde"] > 0
    _, only_twin = tables.derive_table(pd.concat([df, twin]), ["grpo", "grpo-twin"], BENCHMARKS, "grpo")
    assert only_twin["mde"] == 0.0  # nothing but identical runs: no spread seen at all


# -- the long scores file ------------------------------------------------------------------


def test_scores_file_is_long_and_carries_costs(tmp_path):
    values = make_runs(tmp_path / "runs" / "exp")
    assert (
        report(
            runs_root=str(tmp_path / "runs" / "exp"),
            methods=",".join(METHODS),
            seeds="1,2,3",
            benchmarks=",".join(BENCHMARKS),
            write_scores=str(tmp_path / "scores.csv"),
        )
        == 0
    )
    df = load_scores(tmp_path / "scores.csv")
    assert list(df.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    assert len(df) == len(METHODS) * len(SEEDS) * len(BENCHMARKS) * 8  # k = 1..8
    key = ["experiment", "method", "seed", "benchmark", "metric", "k"]
    assert not df.duplicated(key).any()
    one = df[(df.method == "dapo") & (df.seed == 2) & (df.benchmark == "b")].set_index("k")
    assert one.loc[1, "value"] == pytest.approx(values[("dapo", 2, "b")])
    assert one.loc[8, "value"] == pytest.approx(pass_curve(values[("dapo", 2, "b")], 8)["8"])
    assert one.loc[1, "experiment"] == "exp" and one.loc[1, "num_problems"] == 50
    assert one.loc[1, "cost_tokens_generated"] == pytest.approx(1500 * 1.02)
    assert one.loc[1, "cost_seconds_rollout"] == 10.0 and one.loc[1, "cost_seconds_total"] == 17.5
    assert one.loc[1, "code_commit"] == "abc123"
    base = df[df.method == "base"]
    assert base["cost_tokens_generated"].isna().all()  # no training, no summary: NaN, not an error
    assert base["code_commit"].str.len().gt(0).all()  # the code that collected it, or its version


def test_runs_without_cost_or_commit_read_as_nan(tmp_path):
    make_runs(tmp_path, with_cost=False)
    write_run(tmp_path, "grpo", 1, {b: 0.5 for b in BENCHMARKS}, commit=None)
    df = collect_scores(tmp_path, METHODS, SEEDS, BENCHMARKS)
    assert df["cost_tokens_generated"].isna().all()
    assert df["code_commit"].notna().all()
    table, info = tables.derive_table(df, METHODS, BENCHMARKS, "grpo")
    assert table["tokens_generated_vs_grpo"].isna().all()
    assert "| - |" in tables.to_markdown(table, info)


def test_table1_equals_the_pandas_derivation_of_scores_csv(tmp_path):
    """The pipeline's two steps (runs -> scores.csv -> table1.csv) against a derivation written here."""
    make_runs(tmp_path / "runs" / "exp")
    common = dict(methods=",".join(METHODS), benchmarks=",".join(BENCHMARKS))
    report(runs_root=str(tmp_path / "runs" / "exp"), seeds="1,2,3", write_scores=str(tmp_path / "s.csv"), **common)
    report(scores=str(tmp_path / "s.csv"), baseline="grpo", out=str(tmp_path / "table1"), **common)
    table1 = pd.read_csv(tmp_path / "table1.csv").set_index("method")

    s = pd.read_csv(tmp_path / "s.csv")
    for k in (1, 8):
        wide = s[s.k == k].pivot_table(index=["method", "seed"], columns="benchmark", values="value")
        wide["avg"] = wide[BENCHMARKS].mean(axis=1)
        g = wide.groupby("method")
        half = g.std().mul(st.t.ppf(0.975, g.size() - 1) / np.sqrt(g.size()), axis=0)
        for col in [*BENCHMARKS, "avg"]:
            assert np.allclose(table1[f"{col}/pass@{k}"], g.mean().loc[table1.index, col], atol=1e-6)
            assert np.allclose(table1[f"{col}/pass@{k}_ci95"], half.loc[table1.index, col], atol=1e-6)
    per_run_tokens = s.groupby(["method", "seed"])["cost_tokens_generated"].first().groupby("method").mean()
    assert table1.loc["dapo", "tokens_generated_vs_grpo"] == pytest.approx(
        per_run_tokens["dapo"] / per_run_tokens["grpo"], abs=1e-6
    )
    md = (tmp_path / "table1.md").read_text()
    assert "paired" in md and "Minimum detectable effect" in md


def test_same_numbers_as_the_previous_table_code():
    """Means and seed intervals as the old hand-typed-table code wrote them (t 4.303 vs scipy's 4.3027)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        make_runs(Path(d), seed=0)
        table, _ = tables.derive_table(
            collect_scores(Path(d), METHODS, SEEDS, BENCHMARKS), METHODS, BENCHMARKS, "grpo"
        )
    old = pd.read_csv(FIXTURES / "table1_legacy.csv")
    for col in old.columns:
        if col.startswith("delta") or col == "vs_grpo":
            continue  # the difference is now paired by seed (below)
        if old[col].dtype.kind == "f":
            assert np.allclose(table[col], old[col], rtol=2e-4, atol=2e-6), col
        else:
            assert list(table[col]) == list(old[col]), col
    assert np.allclose(
        table["delta_avg_pass@1_vs_grpo"], old["delta_avg_pass@1_vs_grpo"], atol=2e-6, equal_nan=True
    )
    # The fixture's seeds share an offset across methods: pairing removes it.
    paired, welch = table["delta_ci95_vs_grpo"].iloc[2:], old["delta_ci95_vs_grpo"].iloc[2:]
    assert (paired.to_numpy() < 0.6 * welch.to_numpy()).all()


def test_verdicts_pairing_and_unpaired_fallback(tmp_path):
    # grpo ~0.30; "noisy" overlaps grpo; "better" is higher on every seed; "other" ran other seeds.
    data = {"grpo": [0.30, 0.31, 0.29], "noisy": [0.20, 0.45, 0.33], "better": [0.50, 0.51, 0.49]}
    for method, values in data.items():
        for seed, v in zip([1, 2, 3], values):
            write_run(tmp_path, method, seed, {"a": v, "b": v / 2})
    for seed, v in zip([7, 8, 9], [0.6, 0.62, 0.61]):
        write_run(tmp_path, "other", seed, {"a": v, "b": v / 2})
    df = pd.concat(
        [
            collect_scores(tmp_path, list(data), [1, 2, 3], ["a", "b"]),
            collect_scores(tmp_path, ["other"], [7, 8, 9], ["a", "b"]),
        ]
    )
    table, info = tables.derive_table(df, [*data, "other"], ["a", "b"], "grpo")
    by = table.set_index("method")
    assert by.loc["grpo", "a/pass@1"] == pytest.approx(0.30)
    assert by.loc["grpo", "avg/pass@1"] == pytest.approx((0.30 + 0.15) / 2)
    assert by.loc["noisy", "vs_grpo"] == "within seed spread"
    assert by.loc["better", "vs_grpo"] == "higher" and by.loc["grpo", "vs_grpo"] == "baseline"
    assert by.loc["better", "delta_test_vs_grpo"] == "paired, 3 seeds"
    assert by.loc["other", "delta_test_vs_grpo"] == "Welch, unpaired"
    assert info["unpaired"]
    md = tables.to_markdown(table, info)
    assert "within seed spread" in md and "| better |" in md and "Welch" in md
    single = collect_scores(tmp_path, ["grpo", "better"], [1], ["a", "b"])
    table, info = tables.derive_table(single, ["grpo", "better"], ["a", "b"], "grpo")
    assert table["vs_grpo"].iloc[1] == "single seed: no spread" and not info["unpaired"]
    assert "not estimable" in tables.to_markdown(table, info)


def test_single_seed_cells_show_no_interval_and_say_n_1(tmp_path):
    for method, v in {"grpo": 0.30, "better": 0.50}.items():
        write_run(tmp_path, method, 1, {"a": v, "b": v / 2})
    single = collect_scores(tmp_path, ["grpo", "better"], [1], ["a", "b"])
    md = tables.to_markdown(*tables.derive_table(single, ["grpo", "better"], ["a", "b"], "grpo"))
    assert "nan" not in md
    assert "| better | 50.0 / " in md and "+15.0: single seed: no spread" in md and "(n = 1)" in md


def test_report_without_out_prints_the_table_and_an_unknown_baseline_is_refused(tmp_path, capsys):
    make_runs(tmp_path / "runs")
    common = dict(methods=",".join(METHODS), benchmarks=",".join(BENCHMARKS), runs_root=str(tmp_path / "runs"))
    assert report(seeds="1,2,3", baseline="grpo", **common) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| method |") and "| dynamo |" in printed and "vs grpo" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # printed only, nothing written
    with pytest.raises(ValueError, match=r"--baseline 'gpro' is not one of the table's methods: base, grpo, dapo"):
        report(seeds="1,2,3", baseline="gpro", **common)


def test_every_trained_method_is_also_compared_with_the_start_model(tmp_path):
    data = {"base": [0.30, 0.31, 0.29], "grpo": [0.36, 0.36, 0.35], "noisy": [0.20, 0.45, 0.33]}
    for method, values in data.items():
        for seed, v in zip([1, 2, 3], values):
            write_run(tmp_path, method, seed, {"a": v, "b": v})
    table, info = tables.derive_table(
        collect_scores(tmp_path, list(data), [1, 2, 3], ["a", "b"]), list(data), ["a", "b"], "grpo"
    )
    by = table.set_index("method")
    assert by.loc["grpo", "vs_base"] == "higher" and by.loc["noisy", "vs_base"] == "within seed spread"
    assert by.loc["grpo", "delta_avg_pass@1_vs_base"] == pytest.approx((0.36 + 0.36 + 0.35) / 3 - 0.30)
    assert by.loc["base", "vs_base"] == "-"
    md = tables.to_markdown(table, info)
    assert "| vs base (avg P@1) |" in md
    # the rows that are registered methods say what they ran; base and unknown names are not listed
    assert f"- `grpo`: {get_method('grpo').description}" in md and "- `base`" not in md and "- `noisy`" not in md


def test_missing_and_inconsistent_scores_fail_clearly(tmp_path):
    write_run(tmp_path, "grpo", 1, {"a": 0.1})
    with pytest.raises(FileNotFoundError, match="seed2"):
        collect_scores(tmp_path, ["grpo"], [1, 2], ["a"])
    write_run(tmp_path, "dapo", 1, {"a": 0.1}, n=4)
    df = collect_scores(tmp_path, ["grpo", "dapo"], [1], ["a"])
    with pytest.raises(ValueError, match="samples per problem"):
        tables.derive_table(df, ["grpo", "dapo"], ["a"], "grpo")
    with pytest.raises(ValueError, match="dynamo"):
        tables.derive_table(df, ["grpo", "dynamo"], ["a"], "grpo")


def test_load_scores_concatenates_files(tmp_path):
    make_runs(tmp_path / "r")
    write_scores(collect_scores(tmp_path / "r", ["base", "grpo"], SEEDS, BENCHMARKS), tmp_path / "one.csv")
    write_scores(collect_scores(tmp_path / "r", ["grpo", "dynamo"], SEEDS, BENCHMARKS), tmp_path / "two.csv")
    df = load_scores([tmp_path / "one.csv", tmp_path / "two.csv"])
    assert sorted(df.method.unique()) == ["base", "dynamo", "grpo"]
    assert len(df) == 3 * len(SEEDS) * len(BENCHMARKS) * 8
    pivot = df[df.k == 1].pivot_table(index="method", columns="benchmark", values="value", aggfunc="mean")
    assert pivot.shape == (3, len(BENCHMARKS))


def test_load_metrics_adds_method_and_seed(tmp_path):
    for method, seed in [("grpo", 1), ("dynamo", 2)]:
        run = tmp_path / "exp" / method / f"seed{seed}"
        run.mkdir(parents=True)
        lines = [{"step": s, "reward/mean": 0.1 * s + seed, "actor/loss": 1.0} for s in (1, 2, 3)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    for root in (tmp_path, tmp_path / "exp"):
        df = load_metrics(root)
        assert len(df) == 6 and {"experiment", "method", "seed", "step", "reward/mean"} <= set(df.columns)
        assert set(df.experiment) == {"exp"}
        assert df[(df.method == "dynamo") & (df.step == 3)]["reward/mean"].item() == pytest.approx(2.3)
    with pytest.raises(FileNotFoundError):
        load_metrics(tmp_path / "nothing")


# -- published numbers ---------------------------------------------------------------------

PAPER_BENCH = ["aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench"]


def test_reference_table_ships_with_the_package_and_maps_every_name():
    ref = reference.load_reference()
    assert len(ref) == 2 * 9 * 7 * 2  # models x methods x (6 benchmarks + avg) x (P@1, P@32)
    assert ref["method"].notna().all() and ref["benchmark"].notna().all() and ref["k"].notna().all()
    assert set(ref["benchmark"]) == {*PAPER_BENCH, "avg"}
    seven_b = reference.load_reference("Qwen2.5-Math-7B").set_index(["method", "benchmark", "k"])
    assert seven_b.loc[("dynamo", "avg", 32), "published"] == 63.3
    assert seven_b.loc[("grpo", "olympiadbench", 1), "published"] == 28.6
    with pytest.raises(ValueError, match="Qwen2.5-Math-7B"):
        reference.load_reference("Qwen3")


def test_table1_md_shows_reproduced_next_to_published(tmp_path):
    """Synthetic runs at published + 1 point (P@1) and - 2 points (P@32): the differences must say so."""
    ref = reference.load_reference("Qwen2.5-Math-7B").set_index(["method", "benchmark", "k"])["published"]
    root = tmp_path / "runs" / "qwen"
    for method in ("grpo", "dynamo"):
        for seed in (1, 2):
            for bench in PAPER_BENCH:
                p1 = ref[(method, bench, 1)] / 100 + 0.01
                p32 = ref[(method, bench, 32)] / 100 - 0.02
                curve = {str(k): p1 + (p32 - p1) * (k - 1) / 31 for k in range(1, 33)}
                d = root / method / f"seed{seed}" / "eval" / bench
                d.mkdir(parents=True)
                (d / "scores.json").write_text(
                    json.dumps(
                        {"num_problems": 30, "samples_per_problem": 32, "pass_at_1": p1, "pass_at_k": curve}
                    )
                )
    common = dict(methods="grpo,dynamo", benchmarks=",".join(PAPER_BENCH))
    report(runs_root=str(root), seeds="1,2", write_scores=str(tmp_path / "s.csv"), **common)
    report(
        scores=str(tmp_path / "s.csv"),
        baseline="grpo",
        paper_reference="Qwen2.5-Math-7B",
        out=str(tmp_path / "t1"),
        **common,
    )
    md = (tmp_path / "t1.md").read_text()
    assert "Reproduced vs published (Qwen2.5-Math-7B" in md
    assert f"| dynamo (DynaMO) | {34.4 + 1:.1f} / 34.4 (+1.0) |" in md  # aime24, P@1
    assert f"{59.0 - 2:.1f} / 59.0 (-2.0)" in md  # dynamo aime24, P@32
    means = pd.DataFrame(
        [
            {"method": "dynamo", "benchmark": "avg", "k": 1, "value": 0.426},
            {"method": "x", "benchmark": "a", "k": 1, "value": 0.1},
        ]
    )
    comparison = reference.compare_with_reference(means, "Qwen2.5-Math-7B")
    assert len(comparison) == 1 and comparison["difference"].item() == pytest.approx(1.0)


# -- variance decomposition, identical runs, floor benchmarks ----------------------------------


def _long(rows):
    return pd.DataFrame(
        rows, columns=["method", "seed", "benchmark", "k", "value", "num_problems", "samples_per_problem"]
    )


def test_evaluation_variance_from_pass2_minus_pass1_matches_re_evaluation():
    """(Pass@2 - Pass@1) / (n N) estimates the sampling variance of one run's Pass@1 without bias."""
    rng = np.random.default_rng(4)
    N, n = 60, 8
    p_problem = rng.beta(0.7, 0.7, N)
    counts = rng.binomial(n, p_problem, size=(3000, N))  # re-evaluations of one fixed model
    p1 = counts.mean(1) / n
    p2 = (1 - (n - counts) * (n - counts - 1) / (n * (n - 1))).mean(1)
    rows = [("m", s, "b", k, v, N, n) for s in range(3000) for k, v in ((1, p1[s]), (2, p2[s]))]
    estimate = tables.evaluation_variance(_long(rows), ["b"])
    assert estimate.mean() == pytest.approx(p1.var(), rel=0.1)


def test_identical_runs_and_floor_benchmarks_are_reported_as_such(tmp_path):
    make_runs(tmp_path)
    df = collect_scores(tmp_path, METHODS, SEEDS, BENCHMARKS)
    zero = df[df.benchmark == "a"].assign(benchmark="z", value=0.0)
    with_zero = pd.concat([df, zero])
    both = pd.concat([with_zero, with_zero[with_zero.method == "grpo"].assign(method="grpo-twin")])
    benches = [*BENCHMARKS, "z"]
    table, info = tables.derive_table(both, [*METHODS, "grpo-twin"], benches, "grpo")
    by = table.set_index("method")
    assert by.loc["grpo-twin", "vs_grpo"] == tables.IDENTICAL
    md = tables.to_markdown(table, info)
    assert "= grpo (identical runs)" in md and "+0.0 ± 0.0" not in md
    # The floor benchmark is shown but left out of the average: the averages equal those without it.
    assert info["floor"] == ["z"] and "z: no sample of any run is correct" in md
    plain, _ = tables.derive_table(df, METHODS, BENCHMARKS, "grpo")
    assert np.allclose(by.loc[METHODS, "avg/pass@1"], plain.set_index("method").loc[METHODS, "avg/pass@1"])
    # Each paired comparison carries its own MDE, with the stated formula on its own differences.
    p1 = tables.per_seed(df[df.method.isin(["grpo", "dynamo"])], BENCHMARKS, 1)
    d = p1.loc["dynamo", "avg"] - p1.loc["grpo", "avg"]
    assert by.loc["dynamo", "mde_vs_grpo"] == pytest.approx(rstats.minimum_detectable_effect(d.std(), 3))
    assert 0 < by.loc["dynamo", "eval_var_share_vs_grpo"] and "Per comparison with grpo" in md


def test_direct_comparison_of_two_non_baseline_methods(tmp_path):
    """--compare A:B (table 2: dynamo-posscale vs dynamo-nostab): a paired t-interval over seeds on A's row,
    the same as scipy's paired test on the two methods' per-seed averages, with its own verdict and MDE."""
    data = {
        "dynamo": [0.50, 0.52, 0.48],
        "nostab": [0.40, 0.45, 0.35],
        "posscale": [0.46, 0.50, 0.41],  # nostab + ~0.05 in every seed: resolved although both vary a lot
        "twin": [0.40, 0.45, 0.35],
    }
    for method, values in data.items():
        for seed, v in zip([1, 2, 3], values):
            write_run(tmp_path, method, seed, {"a": v, "b": v / 2})
    df = collect_scores(tmp_path, list(data), [1, 2, 3], ["a", "b"])
    pairs = [("posscale", "nostab"), ("twin", "nostab")]
    table, info = tables.derive_table(df, list(data), ["a", "b"], "dynamo", compare=pairs)
    by = table.set_index("method")
    p1 = tables.per_seed(df, ["a", "b"], 1)
    lo, hi = st.ttest_rel(p1.loc["posscale", "avg"], p1.loc["nostab", "avg"]).confidence_interval(0.95)
    diff, half = by.loc["posscale", "delta_avg_pass@1_vs_nostab"], by.loc["posscale", "delta_ci95_vs_nostab"]
    assert (diff - half, diff + half) == pytest.approx((lo, hi), abs=1e-9)
    assert by.loc["posscale", "vs_nostab"] == "higher" and by.loc["posscale", "delta_test_vs_nostab"] == (
        "paired, 3 seeds"
    )
    assert by.loc["twin", "vs_nostab"] == tables.IDENTICAL
    assert by.loc["dynamo", "vs_nostab"] == "" and math.isnan(by.loc["dynamo", "delta_avg_pass@1_vs_nostab"])
    # Against the baseline the same difference is not resolved: the direct comparison is what answers it.
    assert by.loc["posscale", "vs_dynamo"] == "within seed spread"
    md = tables.to_markdown(table, info)
    assert md.splitlines()[0].count("vs nostab") == 1
    assert "| vs nostab (avg P@1) |" in md and f"{100 * diff:+.1f} ± {100 * half:.1f}: higher" in md
    assert f"Direct comparison, posscale vs nostab (avg Pass@1, paired, 3 seeds): {100 * diff:+.1f}" in md
    csv_text = tables.to_csv(table)
    assert "delta_avg_pass@1_vs_nostab" in csv_text.splitlines()[0]
    for bad in ([("posscale", "missing")], [("posscale", "dynamo")], [("nostab", "nostab")]):
        with pytest.raises(ValueError, match="--compare"):
            tables.derive_table(df, list(data), ["a", "b"], "dynamo", compare=bad)
