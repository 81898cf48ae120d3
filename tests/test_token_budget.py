"""Table 4 at equal generated tokens: the step read off each run, the plan, and the table from synthetic runs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml
from reporting_fixture import BENCHMARKS, SEEDS, make_runs, write_run

from dynamo import metrics_names as M
from dynamo.methods import get_method
from dynamo.reporting import load_metrics
from dynamo.reporting.allocation_table import derive_token_table, held_out_points, token_markdown
from dynamo.reporting.scores import collect_scores
from dynamo.reporting.token_budget import (
    cumulative_tokens,
    equal_token_scores,
    main,
    matched_step,
    reruns,
    steps_config,
    token_plan,
)

# tokens generated per step (times 1 + 0.01 seed): grpo 10, dapo twice that, dynamo a hair over grpo
PER_STEP = {"grpo": 10.0, "dapo": 20.0, "dynamo": 10.01}
STEPS = 10


def metrics_frame(per_step: dict[str, float], steps: int = STEPS) -> pd.DataFrame:
    rows = [
        {"method": m, "seed": s, M.STEP: t, M.TOKENS_GENERATED: tokens * (1 + 0.01 * s)}
        for m, tokens in per_step.items()
        for s in SEEDS
        for t in range(1, steps + 1)
    ]
    return pd.DataFrame(rows)


def test_matched_step_is_the_closest_cumulative_count_the_earlier_on_a_tie():
    cumulative = pd.Series([100.0, 200.0, 300.0, 400.0], index=[1, 2, 3, 4])
    assert matched_step(cumulative, 250.0) == 2  # 200 and 300 are both 50 away
    assert matched_step(cumulative, 260.0) == 3
    assert matched_step(cumulative, 40.0) == 1
    assert matched_step(cumulative, 10_000.0) == 4  # more than the run generated: its last step
    with pytest.raises(ValueError, match="positive"):
        matched_step(cumulative, 0.0)


def test_cumulative_tokens_keeps_the_last_row_of_a_repeated_step_and_refuses_gaps():
    rows = [
        {"method": "g", "seed": 1, M.STEP: 1, M.TOKENS_GENERATED: 5.0},
        {"method": "g", "seed": 1, M.STEP: 2, M.TOKENS_GENERATED: 99.0},  # superseded (a resumed run)
        {"method": "g", "seed": 1, M.STEP: 2, M.TOKENS_GENERATED: 7.0},
        {"method": "g", "seed": 1, M.STEP: 3, M.TOKENS_GENERATED: 1.0},
    ]
    assert list(cumulative_tokens(pd.DataFrame(rows), "g", 1)) == [5.0, 12.0, 13.0]
    with pytest.raises(ValueError, match="not 1..2"):
        cumulative_tokens(pd.DataFrame([rows[0], rows[3]]), "g", 1)
    with pytest.raises(ValueError, match="no metrics.jsonl rows"):
        cumulative_tokens(pd.DataFrame(rows), "g", 2)


def test_plan_gives_every_method_the_baselines_tokens_of_the_same_seed():
    per_step = {**PER_STEP, "short": 5.0}
    plan = token_plan(metrics_frame(per_step), [*per_step], SEEDS, "grpo")
    runs = {(r["method"], r["seed"]): r for r in plan["runs"]}
    for s in SEEDS:
        target = STEPS * 10.0 * (1 + 0.01 * s)
        assert runs[("grpo", s)]["target_tokens"] == pytest.approx(target)
        assert not runs[("grpo", s)]["rerun"] and runs[("grpo", s)]["steps"] == STEPS
        # dapo: twice grpo's tokens per step, so grpo's total after 5 of its 10 steps
        dapo = runs[("dapo", s)]
        assert dapo["steps"] == 5 and dapo["rerun"] and dapo["tokens_at_steps"] == pytest.approx(target)
        # within a step's tokens of the baseline: the equal-rollout run is the equal-token run
        assert runs[("dynamo", s)]["steps"] == STEPS and not runs[("dynamo", s)]["rerun"]
        # generated less: read at its last step, not extended
        short = runs[("short", s)]
        assert short["steps"] == STEPS and not short["rerun"] and short["tokens_at_steps"] < target
    assert reruns(plan) == [("dapo", s, 5) for s in SEEDS]


def test_plan_refuses_a_baseline_outside_the_methods():
    with pytest.raises(ValueError, match="baseline 'grpo'"):
        token_plan(metrics_frame(PER_STEP), ["dapo"], SEEDS, "grpo")


def write_metrics(root: Path, per_step: dict[str, float]) -> None:
    for (method, seed), rows in metrics_frame(per_step).groupby(["method", "seed"]):
        path = root / method / f"seed{seed}" / "metrics.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        records = [{M.STEP: int(r[M.STEP]), M.TOKENS_GENERATED: r[M.TOKENS_GENERATED]} for _, r in rows.iterrows()]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def token_runs(tmp_path):
    """Equal-rollout runs (reporting_fixture: grpo, dapo at 1.5x grpo's tokens, dynamo) with metrics, and
    token-matched dapo runs whose Pass@1 is half the equal-rollout run's on every benchmark."""
    root, matched_root = tmp_path / "runs" / "exp", tmp_path / "runs" / "exp-token-matched"
    values = make_runs(root)
    write_metrics(root, PER_STEP)
    for s in SEEDS:
        tokens = 5 * 20.0 * (1 + 0.01 * s)
        cost = {
            "prompts_seen": 80,
            "responses_generated": 10,
            "tokens_generated": tokens,
            "tokens_trained": tokens,
        }
        scores = {b: 0.5 * values[("dapo", s, b)] for b in BENCHMARKS}
        write_run(matched_root, "dapo", s, scores, cost=cost)
    methods = ["grpo", "dapo", "dynamo"]
    plan = token_plan(load_metrics(root), methods, SEEDS, "grpo")
    rollout = collect_scores(root, ["base", *methods], SEEDS, BENCHMARKS)
    matched = collect_scores(matched_root, ["dapo"], SEEDS, BENCHMARKS, experiment="exp")
    return plan, rollout, matched, values


def test_equal_token_table_reads_the_token_matched_runs_where_the_plan_has_them(token_runs):
    plan, rollout, matched, values = token_runs
    methods = ["grpo", "dapo", "dynamo"]
    scores = equal_token_scores(rollout, matched, plan)
    assert set(scores.loc[scores["method"] == "dapo", "run_dir"]) == set(matched["run_dir"])
    table, info = derive_token_table(scores, plan, methods, BENCHMARKS, "grpo")
    rows = table.set_index("method")

    def avg(method: str, scale: float = 1.0) -> list[float]:
        return [statistics.fmean(scale * values[(method, s, b)] for b in BENCHMARKS) for s in SEEDS]

    assert rows.loc["dapo", "avg/pass@1"] == pytest.approx(statistics.fmean(avg("dapo", 0.5)))
    assert rows.loc["dynamo", "avg/pass@1"] == pytest.approx(statistics.fmean(avg("dynamo")))
    diffs = [a - b for a, b in zip(avg("dapo", 0.5), avg("grpo"))]
    assert rows.loc["dapo", "delta_avg_pass@1_vs_grpo"] == pytest.approx(statistics.fmean(diffs))
    assert rows.loc["dapo", "steps"] == 5 and rows.loc["dapo", "token_matched_runs"] == len(SEEDS)
    assert rows.loc["grpo", "steps"] == STEPS and rows.loc["grpo", "token_matched_runs"] == 0
    # tokens: what the runs read here generated (the token-matched runs' summaries), against grpo's
    dapo_tokens = statistics.fmean(100 * (1 + 0.01 * s) for s in SEEDS)
    assert rows.loc["dapo", "tokens_generated"] == pytest.approx(dapo_tokens)
    grpo_tokens = statistics.fmean(1000 * (1 + 0.01 * s) for s in SEEDS)
    assert rows.loc["dapo", "tokens_generated_vs_grpo"] == pytest.approx(dapo_tokens / grpo_tokens)
    md = token_markdown(table, {**info, "provenance": ""}, "runs/exp-token-matched", "t4.md")
    assert "| dapo | 5 of 10 |" in md and "| grpo | 10 of 10 |" in md


def test_equal_token_scores_name_a_missing_run(token_runs):
    plan, rollout, matched, _ = token_runs
    with pytest.raises(ValueError, match=r"token-matched run \('dapo', 2\)"):
        equal_token_scores(rollout, matched[matched["seed"] != 2], plan)


def test_figure_points_are_the_evaluated_models_in_token_order(token_runs):
    plan, rollout, matched, values = token_runs
    points = held_out_points(rollout, equal_token_scores(rollout, matched, plan), ["grpo", "dapo"], BENCHMARKS)
    base = statistics.fmean(statistics.fmean(values[("base", s, b)] for b in BENCHMARKS) for s in SEEDS)
    assert points["grpo"][0][:2] == pytest.approx((0.0, base))  # the start model at 0 tokens
    assert len(points["grpo"]) == 2  # start and final: its equal-token model is the final one
    tokens = [t for t, _, _ in points["dapo"]]
    assert len(tokens) == 3 and tokens == sorted(tokens)
    assert tokens[1] == pytest.approx(statistics.fmean(100 * (1 + 0.01 * s) for s in SEEDS))


def test_cli_writes_the_plan_and_each_token_matched_runs_step_count(tmp_path):
    root = tmp_path / "runs" / "exp"
    write_metrics(root, PER_STEP)
    out = tmp_path / "plan.json"
    args = ["plan", "--runs-root", str(root), "--methods", "grpo,dapo,dynamo", "--seeds", "1,2,3"]
    assert main([*args, "--baseline", "grpo", "--out", str(out)]) == 0
    plan = json.loads(out.read_text())
    assert reruns(plan) == [("dapo", s, 5) for s in SEEDS]
    overlay = tmp_path / "dapo_seed2.yaml"
    assert main(["config", "--plan", str(out), "--method", "dapo", "--seed", "2", "--out", str(overlay)]) == 0
    assert yaml.safe_load(overlay.read_text()) == {"train": {"steps": 5}}
    with pytest.raises(ValueError, match="no token-matched run of \\('grpo', 2\\)"):
        steps_config(plan, "grpo", 2)


def test_a_token_matched_run_is_the_first_steps_of_the_equal_rollout_run(tmp_path):
    """What the equal-token table relies on: training a method for s* steps reproduces the first s* steps
    of its longer run (constant learning rate, same seed), metrics and weights, DAPO's refills included."""
    import torch
    from test_trainer import make_cfg, run

    from dynamo.config import config_from_dict
    from dynamo.models.tiny import write_tiny_model

    model = tmp_path / "tiny"
    write_tiny_model(model, seed=0, layers=1, hidden=32, heads=2)
    dapo = get_method("dapo")
    long_cfg = config_from_dict({**_as_dict(make_cfg(steps=4, snapshot_steps=[2])), "probe": {"method": "dapo"}})
    rows_long, _ = run(tmp_path, str(model), dapo, cfg=long_cfg, name="long")
    rows_short, weights_short = run(tmp_path, str(model), dapo, cfg=make_cfg(steps=2), name="short")
    assert len(rows_long) == 4 and rows_short == rows_long[:2]
    snapshot = tmp_path / "long" / "snapshots" / "step2" / "model"
    from transformers import AutoModelForCausalLM

    weights_at_2 = AutoModelForCausalLM.from_pretrained(snapshot).state_dict()
    for key, value in weights_short.items():
        assert torch.equal(value, weights_at_2[key]), key


def _as_dict(cfg) -> dict:
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "fresh_runs"}
