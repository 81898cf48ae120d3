"""Table 4 (allocation methods at equal rollouts, with their cost) from synthetic finished runs, and its rule."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from repo_copy import ROOT
from reporting_fixture import SEEDS, make_runs

from dynamo import metrics_names as M
from dynamo.reporting import load_metrics
from dynamo.reporting.allocation_table import derive_allocation_table, held_out_points, plot_cost, to_markdown
from dynamo.reporting.scores import collect_scores

METHODS = ["grpo", "dapo", "dynamo"]
BENCHMARKS = ["a", "b", "c"]
STEPS = 5


def sample_share(method: str, seed: int, step: int) -> float:
    return {"grpo": 0.5, "dapo": 0.6, "dynamo": 0.7}[method] + 0.01 * seed - 0.02 * step


def write_metrics(root: Path) -> None:
    """metrics.jsonl per run; step 2 is written twice (a resumed run) and the last row must win."""
    for method in METHODS:
        for seed in SEEDS:
            rows = [
                {
                    M.STEP: step,
                    M.ACCURACY: 0.3 + 0.01 * step,
                    M.INFORMATIVE_SAMPLE_SHARE: sample_share(method, seed, step),
                    M.INFORMATIVE_SHARE: 0.4,
                    M.TOKENS_GENERATED: 100 + step,
                }
                for step in range(STEPS)
            ]
            rows.insert(2, {**rows[2], M.INFORMATIVE_SAMPLE_SHARE: 99.0})  # superseded by the row after it
            path = root / method / f"seed{seed}" / "metrics.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs" / "exp"
    values = make_runs(root)
    write_metrics(root)
    scores = collect_scores(root, METHODS, SEEDS, BENCHMARKS)
    return root, scores, values


def test_table4_columns_are_the_hand_computed_ones(runs):
    root, scores, values = runs
    table, info = derive_allocation_table(scores, load_metrics(root), METHODS, BENCHMARKS, "grpo")
    rows = table.set_index("method")
    assert list(table["method"]) == METHODS
    for method in METHODS:
        per_seed = [statistics.fmean(values[(method, s, b)] for b in BENCHMARKS) for s in SEEDS]
        assert rows.loc[method, "avg/pass@1"] == pytest.approx(statistics.fmean(per_seed))
        shares = [statistics.fmean(sample_share(method, s, t) for t in range(STEPS)) for s in SEEDS]
        assert rows.loc[method, "spread_sample_share"] == pytest.approx(statistics.fmean(shares))
        assert rows.loc[method, "spread_group_share"] == pytest.approx(0.4)
        base_tokens = {"grpo": 1000, "dapo": 1500, "dynamo": 1000}[method]
        tokens = statistics.fmean(base_tokens * (1 + 0.01 * s) for s in SEEDS)
        assert rows.loc[method, "tokens_generated"] == pytest.approx(tokens)
        assert rows.loc[method, "seconds_total"] == pytest.approx(17.5)
    # Paired by seed against grpo, as tables 1 and 2 compute it.
    diffs = [
        statistics.fmean(values[("dynamo", s, b)] - values[("grpo", s, b)] for b in BENCHMARKS) for s in SEEDS
    ]
    assert rows.loc["dynamo", "delta_avg_pass@1_vs_grpo"] == pytest.approx(statistics.fmean(diffs))
    assert rows.loc["dynamo", "delta_test_vs_grpo"] == "paired, 3 seeds"
    assert rows.loc["dapo", "tokens_generated_vs_grpo"] == pytest.approx(1.5)
    md = to_markdown(table, info)
    assert sum(line.startswith("| ") for line in md.splitlines()) == len(METHODS) + 1  # header + rows
    assert "| dapo |" in md and "1.50" in md


def test_start_model_column_and_the_warning_when_training_lowered_the_baseline(runs):
    """With the start model scored, every method also gets its paired difference to it (the null model for
    a method that trained fewer steps); when the baseline ends below the start model the note says so."""
    root, _, values = runs
    scores = collect_scores(root, ["base", *METHODS], SEEDS, BENCHMARKS)
    table, info = derive_allocation_table(scores, load_metrics(root), METHODS, BENCHMARKS, "grpo")
    rows = table.set_index("method")
    assert list(table["method"]) == METHODS  # the start model is a column, not a row
    diffs = [statistics.fmean(values[("grpo", s, b)] - values[("base", s, b)] for b in BENCHMARKS) for s in SEEDS]
    assert rows.loc["grpo", "delta_avg_pass@1_vs_base"] == pytest.approx(statistics.fmean(diffs))
    assert rows.loc["grpo", "vs_base"] == "higher"
    md = to_markdown(table, info)
    assert "vs start model (avg P@1)" in md and "below the start model" not in md
    # The same runs with the start model and grpo swapped: grpo (the baseline) now ends below it.
    swapped = scores.assign(method=scores["method"].replace({"base": "grpo", "grpo": "base"}))
    table, info = derive_allocation_table(swapped, load_metrics(root), METHODS, BENCHMARKS, "grpo")
    assert table.set_index("method").loc["grpo", "vs_base"] == "lower"
    assert f"Here grpo itself ends {-100 * statistics.fmean(diffs):+.1f} ± " in to_markdown(table, info)
    # No start model in the scores: no column, no note.
    table, info = derive_allocation_table(
        collect_scores(root, METHODS, SEEDS, BENCHMARKS), load_metrics(root), METHODS, BENCHMARKS, "grpo"
    )
    assert "vs_base" not in table.columns and "start model" not in to_markdown(table, info)


def test_a_run_without_metrics_is_named(runs):
    root, scores, _ = runs
    (root / "dapo" / "seed2" / "metrics.jsonl").unlink()
    with pytest.raises(ValueError, match=r"\('dapo', 2\)"):
        derive_allocation_table(scores, load_metrics(root), METHODS, BENCHMARKS, "grpo")


def test_cost_figure_is_written(runs, tmp_path):
    root, scores, _ = runs
    metrics = load_metrics(root)
    points = held_out_points(scores, None, METHODS, BENCHMARKS)
    plot_cost(metrics, METHODS, SEEDS, points, tmp_path / "fig" / "allocation_cost", str(root), "grpo")
    assert (tmp_path / "fig" / "allocation_cost.pdf").stat().st_size > 0
    assert (tmp_path / "fig" / "allocation_cost.png").stat().st_size > 0


def test_sample_share_weighs_groups_by_size_unlike_the_group_share():
    import torch

    from dynamo.core.shaping import informative_sample_share, informative_share

    groups = torch.tensor([0, 0, 1, 1, 1, 1, 1, 1])  # n_0 = 2 (both correct), n_1 = 6 (one correct)
    correct = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert informative_share(groups, correct) == 0.5  # 1 of 2 groups
    assert informative_sample_share(groups, correct) == 0.75  # 6 of 8 samples
    assert informative_sample_share(groups[:0], correct[:0]) == 0.0


def rule_counts(*args: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--nolock", *args, "--quiet", "rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    counts = {}
    for line in (out.stdout + out.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_table4_rule_trains_every_allocation_method_and_the_gpu_dag_has_it():
    # Default config: 8 methods x 3 seeds, each evaluated once, and the start model (the figure's first
    # point); the token-matched runs are planned once these have finished. Not part of the main job's DAG.
    counts = rule_counts("results/table4.csv")
    assert counts["train"] == 24 and counts["evaluate"] == 27 and counts["table4"] == 1
    assert counts["table4_token_plan"] == 1
    gpu = rule_counts("results/table4.csv", "--configfile", "config/experiments/qwen2.5-math-1.5b.yaml")
    assert gpu["train"] == 24 and gpu["table4"] == 1  # 8 methods x 3 seeds (pods and reinforce-ada included)


def test_table4_hetero_reuses_the_study_runs_of_its_arms_and_leaves_the_study_dag_alone():
    # 8 methods x 3 seeds on the study's pool: grpo and dynamo-nomod through the study's own train rule
    # (the same runs as the study's seeds 1-3), the 6 others through table4_hetero_train; the start
    # model is evaluated on the endpoint split too (the figure's first point).
    counts = rule_counts("results/table4_hetero.csv")
    assert counts["study_train"] == 6 and counts["table4_hetero_train"] == 18
    assert counts["study_evaluate"] == 6 and counts["table4_hetero_evaluate"] == 21
    assert counts["table4_hetero"] == 1 and "train" not in counts
    study = rule_counts("results/study_allocation.csv")
    assert study["study_train"] == 64 and "table4_hetero_train" not in study
