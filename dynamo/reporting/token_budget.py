"""Table 4 at equal generated tokens: where each method's run has generated what the baseline's did.

    python -m dynamo.reporting.token_budget plan --runs-root runs/embedded --methods grpo,dapo,greso \
        --seeds 1,2,3 --baseline grpo --out runs/embedded-token-matched/plan.json

The budget-exact allocation rules spend exactly N x n rollouts in a step's first round, so table 4
compares them at equal rollouts. They do not spend equal tokens: DAPO's refill rounds (`dapo`,
`greso`) generate about twice GRPO's tokens, Reinforce-Ada's sampling rounds (`reinforce-ada`) more
still, and answer lengths differ with the prompts a rule favours. The equal-token comparison gives
every method the tokens the baseline generated in its whole run (same seed), T:

- from the method's equal-rollout run, the step s* whose cumulative generated tokens are closest to
  T (`matched_step`);
- if s* is the run's last step, the run itself is the equal-token run (every budget-exact rule on
  the embedded task: within 0.1% of GRPO's tokens); a method that generated less than T is read at
  its last step too, not extended, and the table shows its token ratio below 1;
- else the method is trained again, same seed, for s* steps (a *token-matched run*): both engines
  hold the learning rate constant after warm-up, so this is the first s* steps of the equal-rollout
  run (on the local engine exactly, being deterministic), and its final model is evaluated like
  any other. The table reports the tokens that run actually generated.

Held-out accuracy exists only for evaluated models, so the comparison needs the rerun; reading an
intermediate step off the training reward would compare training-prompt accuracy instead.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import yaml

from dynamo import metrics_names as M
from dynamo.errors import read_json_file
from dynamo.io import write_json_atomic, write_text_atomic

FORMAT = "dynamo.token_plan/1"


def cumulative_tokens(metrics: pd.DataFrame, method: str, seed: int) -> pd.Series:
    """Generated tokens up to and including each step of one run (index: step), from its metrics rows
    (the last row of a repeated step wins, as `run_metrics` keeps it)."""
    rows = metrics[(metrics["method"] == method) & (metrics["seed"] == seed)]
    if rows.empty:
        raise ValueError(f"no metrics.jsonl rows for run ({method!r}, {seed})")
    rows = rows.drop_duplicates(M.STEP, keep="last").sort_values(M.STEP)
    steps = rows[M.STEP].astype(int).to_numpy()
    if list(steps) != list(range(1, len(steps) + 1)):
        raise ValueError(
            f"run ({method!r}, {seed}): metrics.jsonl steps are not 1..{len(steps)} (unfinished run?)"
        )
    tokens = rows[M.TOKENS_GENERATED].astype(float)
    if tokens.isna().any():
        raise ValueError(f"run ({method!r}, {seed}): {M.TOKENS_GENERATED} missing at some step")
    return pd.Series(tokens.cumsum().to_numpy(), index=steps, name="cumulative_tokens")


def matched_step(cumulative: pd.Series, target: float) -> int:
    """The step whose cumulative tokens are closest to `target` (the earlier one on a tie)."""
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target tokens must be positive, got {target}")
    gaps = (cumulative - target).abs().to_numpy()
    return int(cumulative.index[int(np.argmin(gaps))])


def token_plan(metrics: pd.DataFrame, methods: list[str], seeds: list[int], baseline: str) -> dict:
    """Per (method, seed): the equal-token step, the tokens there, and whether a token-matched run is needed."""
    if baseline not in methods:
        raise ValueError(f"baseline {baseline!r} is not one of the methods: {', '.join(methods)}")
    runs = []
    for seed in seeds:
        target = float(cumulative_tokens(metrics, baseline, seed).iloc[-1])
        for method in methods:
            cumulative = cumulative_tokens(metrics, method, seed)
            step = matched_step(cumulative, target)
            last = int(cumulative.index[-1])
            runs.append(
                {
                    "method": method,
                    "seed": int(seed),
                    "target_tokens": target,
                    "steps": step,
                    "run_steps": last,
                    "tokens_at_steps": float(cumulative.loc[step]),
                    "rerun": step < last,
                }
            )
    return {
        "format": FORMAT,
        "baseline": baseline,
        "methods": methods,
        "seeds": [int(s) for s in seeds],
        "runs": runs,
    }


def read_plan(path: str) -> dict:
    plan = read_json_file(path)
    if plan.get("format") != FORMAT:
        raise ValueError(f"{path}: not a token plan (format {plan.get('format')!r}, expected {FORMAT!r})")
    return plan


def reruns(plan: dict) -> list[tuple[str, int, int]]:
    """(method, seed, steps) of every token-matched run the plan asks for."""
    return [(r["method"], r["seed"], r["steps"]) for r in plan["runs"] if r["rerun"]]


def equal_token_scores(rollout_scores: pd.DataFrame, rerun_scores: pd.DataFrame, plan: dict) -> pd.DataFrame:
    """The scores at equal tokens: each (method, seed)'s token-matched run where it has one, else its
    equal-rollout run. Rows of both are kept as written (their run_dir names the run they came from)."""
    parts = []
    for run in plan["runs"]:
        source = rerun_scores if run["rerun"] else rollout_scores
        rows = source[(source["method"] == run["method"]) & (source["seed"] == run["seed"])]
        if rows.empty:
            kind = "token-matched" if run["rerun"] else "equal-rollout"
            raise ValueError(f"no scores of the {kind} run ({run['method']!r}, {run['seed']})")
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def steps_config(plan: dict, method: str, seed: int) -> str:
    """The config overlay of one token-matched run: its step count (YAML, merged over the experiment's)."""
    steps = {(m, s): n for m, s, n in reruns(plan)}
    if (method, seed) not in steps:
        raise ValueError(f"the plan asks for no token-matched run of ({method!r}, {seed})")
    return yaml.safe_dump({"train": {"steps": steps[(method, seed)]}})


def main(argv: list[str] | None = None) -> int:
    from dynamo.reporting.scores import load_metrics

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    make = sub.add_parser("plan", help="write the plan from the equal-rollout runs' metrics")
    make.add_argument(
        "--runs-root", required=True, help="runs/<experiment>: the equal-rollout runs' metrics.jsonl"
    )
    make.add_argument("--methods", required=True, help="comma-separated")
    make.add_argument("--seeds", required=True, help="comma-separated")
    make.add_argument("--baseline", required=True, help="the method whose total generated tokens every other gets")
    make.add_argument("--out", required=True, help="the plan (JSON)")
    overlay = sub.add_parser("config", help="write one token-matched run's config overlay (train.steps)")
    overlay.add_argument("--plan", required=True)
    overlay.add_argument("--method", required=True)
    overlay.add_argument("--seed", type=int, required=True)
    overlay.add_argument(
        "--out", required=True, help="YAML file, given to `dynamo train --config` after the config"
    )
    args = p.parse_args(argv)
    if args.command == "config":
        write_text_atomic(args.out, steps_config(read_plan(args.plan), args.method, args.seed))
        return 0
    methods, seeds = args.methods.split(","), [int(s) for s in args.seeds.split(",")]
    plan = token_plan(load_metrics(args.runs_root), methods, seeds, args.baseline)
    write_json_atomic(args.out, plan)
    for method, seed, steps in reruns(plan):
        print(f"token-matched run: {method} seed {seed}, {steps} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
