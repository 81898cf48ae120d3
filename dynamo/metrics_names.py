"""The metrics contract: per-step metric names and summary.json keys, declared once.

Both engines write these names and only these: the local trainer directly, the OpenRLHF
controller through `openrlhf_row` (stock status keys renamed by `OPENRLHF_STATUS`, every other
stock key dropped: OpenRLHF still prints them in its own per-step log line). Tables and figures
read only these constants, so a figure of a GPU run shows the same panels as one of a CPU run.
A name that one engine cannot write is declared in `ENGINE_ONLY` with the reason; every other
name is written by both engines whenever the method exercises it (e.g. `rollout/kept_groups`
only under DAPO's filter). tests/test_metrics_contract.py runs both engines' CPU paths on the
same methods and checks their key sets against this.

metrics.jsonl: one JSON object per RL step, `{"step": int, <name>: float, ...}`. A resumed
OpenRLHF run may repeat a step; readers keep the last row of each step (`last_row_per_step`).
Experiment trackers (TensorBoard, W&B) get the same rows (OpenRLHF's own loggers put `train/`
in front of each name).

summary.json (both engines): `method`, `seed`, `engine`, `base_model`, `config`, `git_commit`,
`window` (the set window statistics were taken over: "micro_batch" or "mini_batch") and `cost`
(`COST_FIELDS`, see `run_cost`); OpenRLHF adds `method_sha256` (launcher.write_summary).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

STEP = "step"

# -- rollouts (the first generation round of a step: before DAPO's filter and refills) --------
REWARD_MEAN = "reward/mean"  # mean shaped reward
ACCURACY = "reward/accuracy"  # share of responses graded correct
MISSING_REWARDS = "reward/missing"  # responses whose reward function failed (scored 0)
INFORMATIVE_SHARE = "rollout/informative_share"  # share of groups whose correctness is not all equal
# Share of samples in such groups: what allocation can raise by moving samples; with per-prompt
# n_i it differs from the share of groups (the allocation study, table 4).
INFORMATIVE_SAMPLE_SHARE = "rollout/informative_sample_share"
RESPONSE_LENGTH = "rollout/response_length"  # mean response length in tokens
TRUNCATED_SHARE = "rollout/truncated_share"  # share of responses cut at max_new_tokens
KEPT_GROUPS = "rollout/kept_groups"  # DAPO: groups kept for the update
GENERATION_ROUNDS = "rollout/generation_rounds"  # DAPO's draws of prompts this step (refill rounds)
SAMPLING_ROUNDS = "rollout/sampling_rounds"  # a sequential rule's generation rounds this step (Reinforce-Ada)
SKIPPED_PROMPTS = "rollout/skipped_prompts"  # pre-rollout skips this step (GRESO)
PROMPTS_WITH_HISTORY = "rollout/prompts_with_history"  # distinct prompts graded so far (the statistics' size)

# -- allocation (`allocation_metrics`) --------------------------------------------------------
N_TOTAL = "rollout/n_total"  # sum n_i (the budget)
N_MIN = "rollout/n_min"
N_MAX = "rollout/n_max"
N_STD = "rollout/n_std"
COLD_SHARE = "rollout/cold_share"  # prompts with fewer than min_history past responses
ZERO_VARIANCE_SHARE = "rollout/zero_variance_share"  # prompts with history and P_i = 0

# -- policy update (token-weighted means over the step) ---------------------------------------
ACTOR_LOSS = "actor/loss"  # the optimised loss (policy loss + extra terms)
PG_LOSS = "actor/pg_loss"
CLIPFRAC = "actor/pg_clipfrac"
APPROX_KL = "actor/approx_kl"
CLIPFRAC_LOWER = "actor/pg_clipfrac_lower"
RATIO_MEAN = "actor/ratio_mean"
RATIO_MAX = "actor/ratio_max"
KL = "actor/kl"  # KL to the reference (methods with loss.kl_coef)
ENTROPY = "actor/entropy"
GRAD_NORM = "actor/grad_norm"  # of the step's last optimizer step, before clipping
LR = "actor/lr"
ADVANTAGE_ABS_MEAN = "actor/advantage_abs_mean"  # mean |A_i| over the update batch's responses
BETA_COMP = "modulation/beta_comp"
BETA_STAB = "modulation/beta_stab"
# Share of valid tokens with A > 0; mean beta_comp on them = 1 + (BETA_COMP - 1) / POSITIVE_SHARE.
POSITIVE_SHARE = "modulation/positive_share"
FORK_SHARE = "objective/fork_share"  # Fork Tokens: share of valid tokens in the loss
CLIP_COV_SHARE = "objective/clip_cov_share"  # Clip-Cov: share of valid tokens detached
KL_COV_SHARE = "objective/kl_cov_share"  # KL-Cov: share of valid tokens penalised

# -- cost of the step (summed by `run_cost`) --------------------------------------------------
PROMPTS = "cost/prompts"  # prompts generated for, refills included
RESPONSES = "cost/responses"  # responses generated, refills included
TOKENS_GENERATED = "cost/tokens_generated"  # response tokens generated, refills included
TOKENS_TRAINED = "cost/tokens_trained"  # response tokens in the update batch (each counted once)

# -- wall-clock seconds of the step, by phase -------------------------------------------------
TIME_PREFIX = "time/"
TIME_ROLLOUT = "time/rollout"  # generation (OpenRLHF: grading runs inside it, in the vLLM actors)
TIME_GRADING = "time/grading"
TIME_ALLOCATE = "time/allocate"  # the allocation rule (pre-rollout skips included); not a cost phase
TIME_EXPERIENCE = "time/experience"  # old log-probs (and OpenRLHF's experience making)
TIME_TRAIN = "time/train"  # the policy update
TIME_SYNC = "time/sync"  # weights broadcast to the vLLM engines
TIME_STEP = "time/step"  # the whole RL step
PHASES = ("rollout", "grading", "experience", "train", "sync")

# -- the declared set -------------------------------------------------------------------------
METRIC_NAMES = frozenset(
    {
        STEP,
        *(REWARD_MEAN, ACCURACY, MISSING_REWARDS),
        *(INFORMATIVE_SHARE, INFORMATIVE_SAMPLE_SHARE, RESPONSE_LENGTH, TRUNCATED_SHARE, KEPT_GROUPS),
        *(GENERATION_ROUNDS, SAMPLING_ROUNDS, SKIPPED_PROMPTS, PROMPTS_WITH_HISTORY),
        *(N_TOTAL, N_MIN, N_MAX, N_STD, COLD_SHARE, ZERO_VARIANCE_SHARE),
        *(ACTOR_LOSS, PG_LOSS, CLIPFRAC, APPROX_KL, CLIPFRAC_LOWER, RATIO_MEAN, RATIO_MAX, KL, ENTROPY),
        *(GRAD_NORM, LR, ADVANTAGE_ABS_MEAN, BETA_COMP, BETA_STAB, POSITIVE_SHARE),
        *(FORK_SHARE, CLIP_COV_SHARE, KL_COV_SHARE),
        *(PROMPTS, RESPONSES, TOKENS_GENERATED, TOKENS_TRAINED),
        *(TIME_ROLLOUT, TIME_GRADING, TIME_ALLOCATE, TIME_EXPERIENCE, TIME_TRAIN, TIME_SYNC, TIME_STEP),
    }
)
ENGINES = ("local", "openrlhf")
# Names only one engine writes: (that engine, why the other cannot). Kept small on purpose.
ENGINE_ONLY = {
    TIME_GRADING: (
        "local",
        "OpenRLHF grades inside the vLLM actors while they generate: its grading time is in time/rollout",
    ),
    TIME_SYNC: (
        "openrlhf",
        "weights broadcast to the vLLM engines; the local engine samples from the model it trains",
    ),
    MISSING_REWARDS: (
        "openrlhf",
        "the reward function runs in remote vLLM actors, where it can fail and the response is scored 0; "
        "local grading runs in the trainer and a failure stops the run",
    ),
    GENERATION_ROUNDS: (
        "local",
        "OpenRLHF refills each group DAPO's filter drops with one new prompt as results arrive, not in "
        "rounds (cost/prompts counts the refills in both engines)",
    ),
}


def engine_names(engine: str) -> frozenset[str]:
    """The names `engine` may write: every declared name but those only the other engine writes."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    return frozenset(name for name in METRIC_NAMES if ENGINE_ONLY.get(name, (engine,))[0] == engine)


def undeclared(row: dict[str, Any], engine: str) -> list[str]:
    """Keys of a metrics row that the contract does not allow for `engine` (empty when it fits)."""
    allowed = engine_names(engine)
    return sorted(key for key in row if key not in allowed)


# -- summary.json ----------------------------------------------------------------------------
SUMMARY_COST = "cost"
SUMMARY_WINDOW = "window"
COST_FIELDS = (
    "prompts_seen",
    "responses_generated",
    "tokens_generated",
    "tokens_trained",
    "seconds",
    "gpu_seconds",
)

# OpenRLHF 0.11.2 status keys -> contract names: only the numbers the stock code must see or writes
# under its own name. The policy actor reports the policy loss as "policy_loss" (stock ppo_train
# reads that key) and the gradient norm and lr as "actor_grad_norm"/"actor_lr" (stock ppo_train
# keeps the last value of those two, and averages every other key); the stock loop times its phases.
# Stock's own rollout means (rollout/reward_mean, rollout/response_length_mean, ...) are over the
# trained samples, not the first round the contract describes: dropped, like every unmapped key.
OPENRLHF_STATUS = {
    "policy_loss": PG_LOSS,
    "actor_grad_norm": GRAD_NORM,
    "actor_lr": LR,
    "timing/generation": TIME_ROLLOUT,
    "timing/make_experience": TIME_EXPERIENCE,
    "timing/ppo_train": TIME_TRAIN,
    "timing/broadcast": TIME_SYNC,
    "timing/step_total": TIME_STEP,
}
OPENRLHF_STOCK_NAME = {name: stock for stock, name in OPENRLHF_STATUS.items()}  # what the actor reports


def openrlhf_row(step: int, status: dict[str, Any]) -> dict[str, float]:
    """One metrics.jsonl row from the OpenRLHF controller's status: the numbers under contract names (stock
    keys renamed by OPENRLHF_STATUS); every other stock key is dropped. A non-finite value is kept (as NaN or
    inf, as the local engine writes it), so that a diverged step shows in the metrics instead of vanishing."""
    allowed = engine_names("openrlhf")
    row: dict[str, float] = {STEP: step}
    for key, value in status.items():
        name = OPENRLHF_STATUS.get(key, key)
        if name in allowed and name != STEP and _number(value):
            row[name] = float(value)
    return row


def _number(value: Any) -> bool:
    """A real number, numpy scalars included (not a bool, a string or a tensor)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def allocation_metrics(counts: np.ndarray, k: np.ndarray, g: np.ndarray, min_history: int) -> dict[str, float]:
    """Allocation statistics of one step (both engines): the counts n_i and the history (k_i, G_i)."""
    counts, k, g = (np.asarray(x) for x in (counts, k, g))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(g >= 2, k * (g - k) / (g * (g - 1.0)), 0.0)
    return {
        N_TOTAL: float(counts.sum()),
        N_MIN: float(counts.min()),
        N_MAX: float(counts.max()),
        N_STD: float(counts.std()),
        COLD_SHARE: float(np.mean(g < min_history)),
        ZERO_VARIANCE_SHARE: float(np.mean((p == 0) & (g >= 2))),
    }


def last_row_per_step(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """metrics.jsonl rows, one per step (the last one written), in step order."""
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        by_step[int(row[STEP])] = row
    return [by_step[s] for s in sorted(by_step)]


def run_cost(rows: list[dict[str, Any]], *, seconds_total: float, gpus: int) -> dict[str, Any]:
    """summary.json's "cost" from the run's metrics rows: sums over steps, seconds by phase.

    `seconds` sums each phase's per-step seconds (None for a phase the engine does not time
    separately) and `total` is the wall clock of the run's process(es) as measured by the caller;
    `gpu_seconds` = total x GPUs held by the run (0 without a GPU).
    """
    rows = last_row_per_step(rows)

    def total(name: str) -> int:
        return int(round(sum(float(r.get(name, 0.0)) for r in rows)))

    seconds: dict[str, float | None] = {}
    for phase in PHASES:
        key = TIME_PREFIX + phase
        seconds[phase] = sum(float(r[key]) for r in rows if key in r) if any(key in r for r in rows) else None
    seconds["total"] = float(seconds_total)
    return {
        "prompts_seen": total(PROMPTS),
        "responses_generated": total(RESPONSES),
        "tokens_generated": total(TOKENS_GENERATED),
        "tokens_trained": total(TOKENS_TRAINED),
        "seconds": seconds,
        "gpu_seconds": float(seconds_total) * gpus,
    }
