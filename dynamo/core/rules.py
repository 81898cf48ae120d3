"""Rollout allocation as a plug-in: the one interface both engines call, and the rules by name.

For one RL step an allocation rule answers, from the step's prompts and their history (k_i
successes in G_i past responses, `dynamo.core.stats.PromptStats`, kept by the engine):

- `skip(ids, k, G)`: which of the drawn prompts not to roll out at all (a pre-rollout filter; the
  engines draw replacements until N prompts remain, so the rollout budget is unchanged);
- `counts(ids, k, G, n)`: how many samples each prompt gets, summing to exactly B = N n and within
  the rule's bounds (checked here, in `planned_counts`, for every rule);
- `keep(correct)`: which of one group's graded samples to train on (post-rollout down-selection),
  the group's samples in generation order (round by round, each round's in the order generated);
- `trained_per_prompt(n)`: how many samples per prompt a step trains on (n; PODS fewer), which sizes
  the engines' optimizer mini-batches;
- `more(ids, correct_so_far, n)`: for sequential rules only (`sequential`, Reinforce-Ada), how many
  more samples each prompt gets, given the graded samples it got so far this step; the engines
  call it before every generation round (first with no samples) until it answers all zero, each
  prompt's total held within the rule's bounds (`planned_more`). `counts` is not used then;
- `advantages(spec, rewards, group ids, correct, pool)`: the advantages of the kept samples; the
  method's advantage spec unless the rule takes its baseline from the whole pool it generated;
- `observe(ids, correct)`: what the rule learns from every graded sample (rules with state);
- `state_dict()` / `load_state_dict()`: that state, JSON-safe, saved in the checkpoint.

Engines build one rule per run with `make_rule(spec.allocation, seed)` and never name a method:
the spec's `allocation.kind` is looked up in `RULES`. `uniform` and DynaMO's rule are defined
here; the rules of other papers live in `baselines/`, one module each, and register themselves
with `@register` when `baselines` is imported (which `make_rule` does on a name it lacks).
"""

from __future__ import annotations

import importlib
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from dynamo.core.advantages import sequence_advantages
from dynamo.core.allocation import (
    allocate_rollouts,
    allocation_weights,
    check_allocation_feasible,
    uniform_allocation,
)

if TYPE_CHECKING:
    from dynamo.spec import AdvantageSpec, AllocationSpec


# A skipping rule (GRESO): once this many draws of N prompts were looked at in one generation round,
# the engines keep the rest whatever the rule says (a rule that skips everything cannot stall a step).
MAX_SKIP_DRAWS = 8


class AllocationRule:
    """Base rule: n_i = n for every prompt, nothing skipped, every sample kept, no state.

    Subclasses set `name` and override what they change. Flags the engines read:
    `skips` (pre-rollout filter), `selects` (post-rollout down-selection), `varies_counts`
    (n_i can differ from n, so a refilled prompt could not simply get n), `sequential` (samples in
    rounds through `more`; the step's generation is then bounded, not fixed: `bounds(n)` per prompt).
    """

    name: ClassVar[str] = ""
    skips: ClassVar[bool] = False
    selects: ClassVar[bool] = False
    varies_counts: ClassVar[bool] = False
    sequential: ClassVar[bool] = False
    settings_class: ClassVar[type | None] = None  # typed settings read from `allocation.params`

    def __init__(self, spec: AllocationSpec, seed: int = 0) -> None:
        self.spec = spec
        self.settings = _settings(self.settings_class, spec, self.name)

    def bounds(self, n: int) -> tuple[int, int]:
        """(fewest, most) samples a prompt may get this step, for the budget check."""
        return (n, n) if not self.varies_counts else self.spec.bounds(n)

    def check_feasible(self, num_prompts: int, n: int) -> None:
        """Raise ValueError before any compute if the bounds cannot hold the budget N n (rules whose
        n_i may differ from n; n_i = n always fits)."""
        if not self.varies_counts:
            return
        n_low, n_high = self.bounds(n)
        check_allocation_feasible(num_prompts, num_prompts * n, n_low, n_high, min_group=2)

    def skip(self, prompt_ids: Sequence[str], k: np.ndarray, G: np.ndarray) -> np.ndarray:
        return np.zeros(len(prompt_ids), dtype=bool)

    def counts(self, prompt_ids: Sequence[str], k: np.ndarray, G: np.ndarray, n: int) -> np.ndarray:
        return uniform_allocation(len(prompt_ids), len(prompt_ids) * n)

    def keep(self, correct: np.ndarray) -> np.ndarray:
        return np.ones(len(correct), dtype=bool)

    def trained_per_prompt(self, n: int) -> int:
        """Samples per prompt that a step trains on when each prompt gets n (on average, for rules whose
        counts vary): n unless `keep` keeps a fixed smaller share (PODS). The engines size the optimizer
        mini-batches with it, so a step takes the same number of optimizer updates under every rule."""
        return n

    def more(self, prompt_ids: Sequence[str], correct_so_far: Sequence[np.ndarray], n: int) -> np.ndarray:
        raise NotImplementedError(f"allocation rule {self.name!r} is not sequential")

    def advantages(
        self,
        spec: AdvantageSpec,
        rewards: torch.Tensor,
        group_ids: torch.Tensor,
        correct: torch.Tensor,
        pool: PoolCounts,
    ) -> torch.Tensor:
        """Advantages of the kept samples; `pool` holds, per sample, its prompt's correct and generated
        counts before any down-selection. Here: the method's advantage spec, on the kept samples only."""
        return sequence_advantages(spec, rewards, group_ids, correct)

    def observe(self, prompt_ids: Sequence[str], correct: np.ndarray) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"allocation rule {self.name!r} keeps no state, got keys {sorted(state)}")


@dataclass(frozen=True)
class PoolCounts:
    """Per kept sample: correct (`correct`) and generated (`size`) responses of its prompt this step,
    counted before down-selection (what a sequential rule saw; for other rules, the whole group)."""

    correct: torch.Tensor  # int64 [S]
    size: torch.Tensor  # int64 [S]


RULES: dict[str, type[AllocationRule]] = {}


def register(cls: type[AllocationRule]) -> type[AllocationRule]:
    """Class decorator: make `cls` the rule for `allocation.kind == cls.name`."""
    if not cls.name or (cls.name in RULES and RULES[cls.name] is not cls):
        raise ValueError(f"allocation rule name {cls.name!r} is empty or taken by {RULES.get(cls.name)}")
    RULES[cls.name] = cls
    return cls


def rule_class(kind: str) -> type[AllocationRule]:
    if kind not in RULES:
        importlib.import_module("baselines")  # the papers' rules register on import
    if kind not in RULES:
        raise ValueError(f"method.allocation.kind must be one of {sorted(RULES)} (registered rules), got {kind!r}")
    return RULES[kind]


def make_rule(spec: AllocationSpec, seed: int = 0) -> AllocationRule:
    """The run's rule for `spec.allocation` (settings checked now, before any compute)."""
    return rule_class(spec.kind)(spec, seed)


def planned_counts(rule: AllocationRule, prompt_ids: Sequence[str], k: np.ndarray, G: np.ndarray, n: int):
    """`rule.counts`, checked: one whole count per prompt, sum exactly N n, each within the rule's bounds."""
    counts = np.asarray(rule.counts(prompt_ids, k, G, n))
    budget = len(prompt_ids) * operator.index(n)
    n_low, n_high = rule.bounds(n)
    if counts.shape != (len(prompt_ids),) or counts.dtype.kind not in "iu":
        raise RuntimeError(f"rule {rule.name!r} returned counts of shape {counts.shape}, dtype {counts.dtype}")
    if int(counts.sum()) != budget or (counts < n_low).any() or (counts > n_high).any():
        raise RuntimeError(
            f"rule {rule.name!r} broke the budget: sum {int(counts.sum())} (want {budget}), "
            f"range [{counts.min()}, {counts.max()}] (bounds [{n_low}, {n_high}])"
        )
    return counts.astype(np.int64)


def planned_more(
    rule: AllocationRule, prompt_ids: Sequence[str], correct_so_far: Sequence[np.ndarray], n: int
) -> np.ndarray:
    """`rule.more`, checked: one whole count >= 0 per prompt, each prompt's total so far plus this
    round's at most the rule's bound (so a step generates at most N * bounds(n)[1] samples)."""
    more = np.asarray(rule.more(prompt_ids, correct_so_far, n))
    if more.shape != (len(prompt_ids),) or more.dtype.kind not in "iu" or (more < 0).any():
        raise RuntimeError(f"rule {rule.name!r} returned round counts {more!r} (want {len(prompt_ids)} ints >= 0)")
    totals = more + np.array([len(c) for c in correct_so_far], dtype=np.int64)
    n_high = rule.bounds(n)[1]
    if (totals > n_high).any():
        raise RuntimeError(
            f"rule {rule.name!r} went past its cap: {int(totals.max())} samples > {n_high} for a prompt"
        )
    return more.astype(np.int64)


def sample_in_rounds(
    more: Callable[[list[np.ndarray]], np.ndarray],
    generate_round: Callable[[np.ndarray], Sequence[np.ndarray]],
    num_prompts: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A sequential rule's sampling, for both engines: before every round `more(correct_so_far)` (the
    engine's call of `planned_more`) gives each prompt's further count; `generate_round(counts)`
    generates and grades them and returns each prompt's correctness in generation order (empty where
    the count is 0); repeated until `more` answers all zero. Returns each prompt's correctness over
    all rounds (round by round) and each round's counts."""
    so_far = [np.zeros(0, dtype=np.float32) for _ in range(num_prompts)]
    rounds: list[np.ndarray] = []
    while True:
        counts = more(so_far)
        if not counts.any():
            break
        got = generate_round(counts)
        if [len(c) for c in got] != counts.tolist():
            raise RuntimeError(
                f"a generation round returned {[len(c) for c in got]} samples, asked {counts.tolist()}"
            )
        for i in np.flatnonzero(counts):
            so_far[i] = np.concatenate([so_far[i], got[i]])
        rounds.append(counts)
    if not rounds:
        raise RuntimeError("the rule asked for no samples at all in a step")
    return so_far, rounds


def kept_mask(rule: AllocationRule, correct: np.ndarray) -> np.ndarray:
    """`rule.keep` on one group's correctness (generation order), checked: a boolean mask of its length."""
    keep = np.asarray(rule.keep(np.asarray(correct)))
    if keep.shape != (len(correct),) or keep.dtype != bool:
        raise RuntimeError(f"rule {rule.name!r} returned a keep mask of shape {keep.shape}, dtype {keep.dtype}")
    return keep


def _settings(settings_class: type | None, spec: AllocationSpec, name: str) -> Any:
    """The rule's typed settings: its dataclass defaults (as released) with `spec.params` applied."""
    from dynamo.spec import apply_overrides

    params = dict(spec.params)
    if settings_class is None:
        if params:
            raise ValueError(f"allocation rule {name!r} takes no params, got {sorted(params)}")
        return None
    assert is_dataclass(settings_class), settings_class
    known = {f.name for f in fields(settings_class)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown allocation.params {unknown} for rule {name!r}; known: {sorted(known)}")
    return apply_overrides(settings_class(), params, f"method.allocation.params[{name}]")


# -- the two rules of this project ---------------------------------------------------------------


@register
class Uniform(AllocationRule):
    """GRPO's allocation: n_i = n."""

    name = "uniform"


@register
class Dynamo(AllocationRule):
    """DynaMO: n_i = allocate_rollouts(w(k, G), B = N n, n_low, n_high), with the spec's weight, cold
    start, mastery floor and bounds (dynamo.core.allocation)."""

    name = "dynamo"
    varies_counts = True

    def counts(self, prompt_ids, k, G, n):
        spec = self.spec
        weights = allocation_weights(
            k,
            G,
            weight=spec.weight,
            min_history=spec.min_history,
            mastery_threshold=spec.mastery_threshold,
            weight_floor=spec.weight_floor,
            cold_start=spec.cold_start,
        )
        n_low, n_high = spec.bounds(n)
        return allocate_rollouts(weights, len(prompt_ids) * n, n_low, n_high)


def rollout_counts(spec: AllocationSpec, k: np.ndarray, G: np.ndarray, n: int) -> np.ndarray:
    """Per-prompt rollout counts of the registered rule `spec.kind` for a history without rule state
    (uniform: n_i = n; dynamo: its weights and bounds). Engines hold a rule object instead
    (`make_rule`), which also carries state, skips and down-selection. n is first scaled by the spec's
    budget_scale (1 for every method but the allocation study's positive control, grpo-1.5x)."""
    return planned_counts(make_rule(spec), [str(i) for i in range(len(k))], k, G, spec.per_prompt(n))
