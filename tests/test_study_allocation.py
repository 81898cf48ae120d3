"""The allocation study: its statistics on synthetic runs with a known effect, its DAG, its config and arms."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from repo_copy import ROOT
from scipy import stats as st

from dynamo.config import config_from_dict
from dynamo.core.rules import rollout_counts
from dynamo.methods import get_method
from dynamo.reporting.study import (
    eval_sampling_variance,
    gain_sentence,
    markdown,
    paired_comparison,
    pooled_mde,
    study_table,
    training_gain,
)

SEEDS = list(range(1, 13))


def _runs(effects: dict[str, list[float]]) -> pd.DataFrame:
    """Synthetic runs: a shared per-seed level (cancels in the pairing) plus each arm's own per-seed offset."""
    seed_level = 40 + 5 * np.sin(np.arange(len(SEEDS)))  # large, seed-dependent, common to every arm
    rows = []
    for arm, offsets in effects.items():
        for i, seed in enumerate(SEEDS):
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "endpoint": seed_level[i] + offsets[i],
                    "informative_share": 0.5,
                    "tokens": 1.5e4 if arm == "grpo-1.5x" else 1e4,
                }
            )
    return pd.DataFrame(rows)


ALTERNATING = [0.6 if i % 2 else -0.6 for i in range(len(SEEDS))]  # mean exactly 0, sd ~0.63


def test_positive_control_detected_and_zero_effect_not():
    runs = _runs(
        {
            "grpo": [0.0] * len(SEEDS),
            "same": ALTERNATING,  # true effect 0
            "grpo-1.5x": [3.0 + x for x in ALTERNATING],  # true effect +3
            "worse": [-2.0 + x for x in ALTERNATING],
        }
    )
    table = study_table(runs, "grpo", "grpo-1.5x").set_index("arm")
    assert table.loc["grpo-1.5x", "verdict"] == "resolved"
    assert table.loc["grpo-1.5x", "diff"] == pytest.approx(3.0)
    assert table.loc["same", "diff"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["same", "verdict"].startswith("not distinguishable (MDE")
    assert table.loc["worse", "verdict"] == "worse"
    assert table.loc["grpo-1.5x", "tokens_vs_baseline"] == pytest.approx(1.5)
    # the interval is the paired t-interval: checked against the textbook formula
    d = np.array(ALTERNATING)
    half = st.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert table.loc["same", "diff_low"] == pytest.approx(-half)
    assert table.loc["same", "diff_high"] == pytest.approx(half)
    # MDE from the spread of the paired differences: (t_.975 + t_.80) sd / sqrt(m)
    mde = (st.t.ppf(0.975, 11) + st.t.ppf(0.8, 11)) * d.std(ddof=1) / math.sqrt(12)
    assert table.loc["same", "mde"] == pytest.approx(mde)
    assert pooled_mde(runs, "grpo") == pytest.approx(mde)  # every arm has the same spread here


def test_unresolved_positive_control_marks_the_study_underpowered():
    noisy = [4.0 * x for x in ALTERNATING]
    runs = _runs({"grpo": [0.0] * len(SEEDS), "dynamo": [0.5 + x for x in noisy], "grpo-1.5x": noisy})
    table = study_table(runs, "grpo", "grpo-1.5x").set_index("arm")
    assert table.loc["grpo-1.5x", "verdict"] == "not resolved: the study is underpowered"
    assert "underpowered" in table.loc["dynamo", "verdict"]


def test_null_model_rejects_at_the_nominal_rate_and_detects_the_mde_with_its_power():
    """Paired differences with no true effect are called 'better'/'worse' ~5% of the time; a true effect
    equal to the MDE computed from the true spread is detected ~80% of the time (12 seeds)."""
    rng = np.random.default_rng(0)
    sd, m, reps = 1.0, len(SEEDS), 2000
    mde = (st.t.ppf(0.975, m - 1) + st.t.ppf(0.8, m - 1)) * sd / math.sqrt(m)
    base = np.zeros(m)
    null = [paired_comparison(rng.normal(0, sd, m), base) for _ in range(reps)]
    false_calls = np.mean([r["diff_low"] > 0 or r["diff_high"] < 0 for r in null])
    assert 0.035 < false_calls < 0.065
    power = np.mean([paired_comparison(rng.normal(mde, sd, m), base)["diff_low"] > 0 for _ in range(reps)])
    assert 0.74 < power < 0.84  # the t-approximation of the noncentral-t power, 0.77-0.80


def test_missing_run_is_named():
    runs = _runs({"grpo": [0.0] * len(SEEDS), "grpo-1.5x": ALTERNATING})
    runs = runs[~((runs["arm"] == "grpo-1.5x") & (runs["seed"] == 3))]
    with pytest.raises(ValueError, match="grpo-1.5x/seed3"):
        study_table(runs, "grpo", "grpo-1.5x")


def test_positive_control_spends_one_and_a_half_times_the_budget():
    spec = get_method("grpo-1.5x")
    k, g = np.zeros(32, dtype=np.int64), np.zeros(32, dtype=np.int64)
    assert rollout_counts(spec.allocation, k, g, 4).tolist() == [6] * 32
    assert rollout_counts(get_method("grpo").allocation, k, g, 4).sum() == 128
    # same method otherwise
    assert {**spec.to_dict(), "name": "", "description": "", "allocation": None} == {
        **get_method("grpo").to_dict(),
        "name": "",
        "description": "",
        "allocation": None,
    }


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"study_allocation": {"positive_control": "dapo"}}, "positive_control 'dapo' is not one of the arms"),
        ({"study_allocation": {"arms": ["grpo", "grpo-2x"]}}, "unknown method 'grpo-2x'"),
        ({"study_allocation": {"seeds": [1]}}, "at least two distinct"),
        ({"study_allocation": {"eval_size": 5000}}, "distinct problems"),
        ({"method_overrides": {"grpo": {"allocation": {"budget_scale": 1.1}}}}, "whole number"),
    ],
)
def test_bad_study_settings_fail_before_compute(bad, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(bad)


def _dry_run(target: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", target, "--quiet", "rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def _job_counts(text: str) -> dict[str, int]:
    return {
        ln.split()[0]: int(ln.split()[1])
        for ln in text.splitlines()
        if len(ln.split()) == 2 and ln.split()[1].isdigit()
    }


def test_study_dag_runs_every_arm_and_seed_and_stays_out_of_rule_all():
    study = config_from_dict({}).study_allocation
    counts = _job_counts(_dry_run("results/study_allocation.csv"))
    runs = len(study.arms) * len(study.seeds)
    assert counts.get("study_train") == runs and counts.get("study_evaluate") == runs, counts
    assert counts.get("study_table") == 1 and counts.get("study_start_rates") == 1, counts
    assert counts.get("study_evaluate_start") == len(study.seeds), counts
    assert len(study.seeds) >= 10
    assert not any(rule.startswith("study") for rule in _job_counts(_dry_run("all")))


def test_eval_sampling_variance_is_unbiased():
    """The per-run estimate of evaluation-sampling variance matches the variance of simulated scores."""
    rng = np.random.default_rng(1)
    p_true = rng.choice([0.0, 1.0, 0.3, 0.7, 0.5], size=200)
    draws = rng.random((4000, 200, 8)) < p_true[None, :, None]
    scores = 100 * draws.mean(axis=(1, 2))
    estimates = [eval_sampling_variance(list(run)) for run in draws[:200]]
    assert np.mean(estimates) == pytest.approx(scores.var(ddof=1), rel=0.1)


def test_study_experiment_must_differ_from_the_main_one(tmp_path):
    clash = tmp_path / "clash.yaml"
    clash.write_text("study_allocation: {experiment: embedded}\n")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "results/study_allocation.csv"]
        + ["--configfile", "config/config.yaml", str(clash)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "study_allocation.experiment must differ from experiment ('embedded')" in out.stdout + out.stderr


def test_arm_identical_to_the_baseline_gets_no_mde_and_is_left_out_of_the_pool():
    runs = _runs({"grpo": [0.0] * len(SEEDS), "dynamo-nomod": [0.0] * len(SEEDS), "grpo-1.5x": ALTERNATING})
    table = study_table(runs, "grpo", "grpo-1.5x").set_index("arm")
    assert table.loc["dynamo-nomod", "verdict"].startswith("identical to the baseline in every seed")
    assert math.isnan(table.loc["dynamo-nomod", "mde"])
    assert pooled_mde(runs, "grpo") == pytest.approx(table.loc["grpo-1.5x", "mde"])


def test_report_states_the_verdicts_the_mde_and_the_start_share():
    runs = _runs({"grpo": [0.0] * len(SEEDS), "dynamo": ALTERNATING, "grpo-1.5x": [3.0 + x for x in ALTERNATING]})
    runs = runs.assign(num_problems=500, samples=16, eval_var=0.09)
    table = study_table(runs, "grpo", "grpo-1.5x")
    study = {"baseline": "grpo", "positive_control": "grpo-1.5x", "endpoint": "final_id_pass1"}
    study |= {"mde_target": 1.0, "extreme_band": 0.1}
    start = {"prompts": 10, "samples_per_prompt": 16, "extreme": 0.6, "near_solved": 0.1, "unsolvable": 0.5}
    start |= {
        "pass_rate": 0.3,
        "expected_informative": 0.35,
        "per_level": {4: {"share": 1, "pass_rate": 0, "extreme": 1}},
    }
    text = markdown(table, runs, study, start, pooled_mde(runs, "grpo"))
    mde = pooled_mde(runs, "grpo")
    assert f"Study MDE (pooled over the compared arms): {mde:.2f} points with 12 seeds" in text
    assert ("(met)" if mde <= 1.0 else "(NOT met)") in text
    assert "Positive control (grpo-1.5x, 1.5x the rollout budget): resolved (+3.00 points)" in text
    assert "| dynamo | compared arm |" in text and "not distinguishable (MDE" in text
    assert "60.0% of prompts near-solved or unsolvable" in text
    # evaluation sampling: sqrt(2 * 0.09) = 0.42 points of a paired difference's sd
    assert "predicts at most 0.42" in text


def test_training_gain_is_the_baselines_paired_gain_over_its_start_model_and_says_what_it_means():
    runs = _runs({"grpo": ALTERNATING, "dynamo": ALTERNATING})
    base = runs[runs["arm"] == "grpo"]["endpoint"].to_numpy()
    cases = [(-2.0, "Training raises the endpoint"), (+2.0, "Training LOWERS"), (0.0, "does not measurably")]
    for shift, phrase in cases:
        start = pd.Series([b + shift + 0.5 * (i % 3) - 0.5 for i, b in enumerate(base)], index=SEEDS)
        gain = training_gain(runs, "grpo", start)
        assert gain["diff"] == pytest.approx(np.mean(base - start.to_numpy()))
        assert phrase in gain_sentence(gain, "grpo", float(start.mean()))
