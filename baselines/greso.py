"""GRESO (Zheng et al. 2025, "Act Only When It Pays: Efficient Reinforcement Learning for LLM Reasoning
via Selective Rollouts", arXiv 2506.02177; code github.com/Infini-AI-Lab/GRESO,
verl/trainer/ttis/presampling_selector.py and verl/trainer/ppo/ray_trainer.py, read at caf63f4).

Before rollout, a prompt whose last z consecutive groups all had zero reward spread is skipped
with probability

    P(skip) = 1 - max(p^z, 0.01),   p = p_easy if those groups were all correct, p_hard if all wrong

and the engine draws the next prompt instead (the rollout budget N n is unchanged). p_easy and
p_hard adapt after every step: each moves by 0.01 within [0.05, 0.95], down (skip more) when the
step's share of all-correct (all-wrong) groups is at or above its target, up otherwise; targets
are target_zero_variance / 3 for easy and 2 target_zero_variance / 3 for hard prompts (released:
more exploration on hard prompts). Released settings: p_easy = p_hard = 0.5 at the start,
target_zero_variance = 0.25. GRESO runs on top of DAPO's dynamic sampling (drop zero-spread groups,
refill), as in the released scripts.

Departures: the released trace holds each group's mean reward and calls a group easy at mean >=
0.98 and hard at <= 0.11; here easy / hard is all correct / all wrong (the same for n < 9). The
released code adapts p only from the second epoch on; here p adapts on steps where at least one
rolled-out prompt had history (the same once every prompt has been seen; with an epoch-wise
shuffled pool, from the second epoch). The released adaptation counts every group a step
generated; so does the OpenRLHF engine (one update per step), while the local engine adapts p once
per generation round (a DAPO refill round too). In the OpenRLHF engine DAPO's one-prompt refills
are not checked for skips. Skip draws come
from the rule's own generator, seeded from the run seed and saved in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynamo.core.rules import AllocationRule, register
from dynamo.spec import AllocationSpec, GroupFilterSpec, MethodSpec


@dataclass(frozen=True)
class GresoSettings:
    p_easy: float = field(default=0.5, metadata={"help": "Initial keep base for all-correct prompts."})
    p_hard: float = field(default=0.5, metadata={"help": "Initial keep base for all-wrong prompts."})
    target_zero_variance: float = field(
        default=0.25, metadata={"help": "Target share of zero-spread groups (1/3 easy, 2/3 hard)."}
    )
    step: float = field(default=0.01, metadata={"help": "Change of p_easy / p_hard per step."})
    min_p: float = field(default=0.05, metadata={"help": "Lower bound of p_easy / p_hard."})
    max_p: float = field(default=0.95, metadata={"help": "Upper bound of p_easy / p_hard."})
    min_keep: float = field(default=0.01, metadata={"help": "Smallest keep probability, max(p^z, min_keep)."})


def skip_probability(runs: np.ndarray, p: float, min_keep: float) -> np.ndarray:
    """1 - max(p^z, min_keep) for z consecutive zero-spread groups (0 where z = 0)."""
    z = np.asarray(runs, dtype=np.float64)
    return np.where(z > 0, 1.0 - np.maximum(p**z, min_keep), 0.0)


def adapted(p: float, share: float, target: float, s: GresoSettings) -> float:
    """p - step (skip more) if share >= target, else p + step, clipped to [min_p, max_p]."""
    return float(np.clip(p - s.step if share >= target else p + s.step, s.min_p, s.max_p))


@register
class Greso(AllocationRule):
    """n_i = n; skips prompts by their run of zero-spread groups (state: runs, p_easy, p_hard, generator)."""

    name = "greso"
    skips = True
    settings_class = GresoSettings

    def __init__(self, spec, seed=0):
        super().__init__(spec, seed)
        s = self.settings
        self.p_easy, self.p_hard = s.p_easy, s.p_hard
        self.easy_run: dict[str, int] = {}  # consecutive all-correct groups, most recent last
        self.hard_run: dict[str, int] = {}  # consecutive all-wrong groups
        self.rng = np.random.default_rng([seed, 0x67E50])

    def skip(self, prompt_ids, k, G):
        s = self.settings
        easy = skip_probability([self.easy_run.get(pid, 0) for pid in prompt_ids], self.p_easy, s.min_keep)
        hard = skip_probability([self.hard_run.get(pid, 0) for pid in prompt_ids], self.p_hard, s.min_keep)
        draws = self.rng.random(len(prompt_ids))
        return draws < np.maximum(easy, hard)  # at most one of the two is non-zero

    def observe(self, prompt_ids, correct):
        correct = np.asarray(correct, dtype=np.float64) > 0.5
        ids = np.asarray(list(prompt_ids), dtype=object)
        seen_before = False
        easy_groups = hard_groups = 0
        groups = list(dict.fromkeys(ids.tolist()))
        for pid in groups:
            right = correct[ids == pid]
            seen_before |= pid in self.easy_run
            all_right, all_wrong = bool(right.all()), not bool(right.any())
            self.easy_run[pid] = self.easy_run.get(pid, 0) + 1 if all_right else 0
            self.hard_run[pid] = self.hard_run.get(pid, 0) + 1 if all_wrong else 0
            easy_groups += all_right
            hard_groups += all_wrong
        if seen_before and groups:
            s = self.settings
            target = s.target_zero_variance
            self.p_easy = adapted(self.p_easy, easy_groups / len(groups), target / 3, s)
            self.p_hard = adapted(self.p_hard, hard_groups / len(groups), target * 2 / 3, s)

    def state_dict(self):
        return {
            "p_easy": self.p_easy,
            "p_hard": self.p_hard,
            "easy_run": dict(self.easy_run),
            "hard_run": dict(self.hard_run),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state):
        self.p_easy, self.p_hard = float(state["p_easy"]), float(state["p_hard"])
        self.easy_run = {pid: int(z) for pid, z in state["easy_run"].items()}
        self.hard_run = {pid: int(z) for pid, z in state["hard_run"].items()}
        self.rng.bit_generator.state = state["rng"]


GRESO = MethodSpec(
    name="greso",
    description="GRESO (Zheng et al. 2025, arXiv 2506.02177): skip prompts with recent zero-spread groups "
    "before rollout "
    "(adaptive probability), on DAPO's dynamic sampling.",
    allocation=AllocationSpec(kind="greso"),
    group_filter=GroupFilterSpec(kind="dynamic_sampling"),
)

METHODS = [GRESO]  # registered by name (baselines/__init__.py)
