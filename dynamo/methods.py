"""Methods as data: a typed spec per method, registered by name, overridable from YAML.

A method says *how to allocate* rollouts across prompts, *how to turn rewards into
advantages*, *which groups to keep*, *how to weight tokens* and *which policy loss to
use*. Both engines (local and OpenRLHF) read the same spec; neither hard-codes a method.

DynaMO and its ablations are defined here; the baselines (GRPO, DAPO, Clip-Higher, ...) live in
`baselines/`, one module each (its `METHODS`, found by `baselines.BASELINES`). The spec dataclasses are in
`dynamo.spec`; docs/METHODS.md explains the methods.

Departures from the textbook, stated once:
- `loss.eps_high` is explicit for every method. The authors' released actor silently
  raises eps_high from 0.2 to 0.28 (a hidden Clip-Higher); our `dynamo` uses the
  paper's 0.2 so that it differs from GRPO only by allocation and modulation.
- Allocation bounds default to n/2 .. 3n/2 of the uniform per-prompt count n (the
  authors' 8..24 for n = 16); set `allocation.n_low`/`n_high` to fix them.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from baselines import BASELINES
from dynamo.core.rules import make_rule

# The spec dataclasses live in the leaf module `dynamo.spec` (so that `baselines/`, which this
# registry imports, does not import the registry back); re-exported here for existing callers.
from dynamo.spec import (  # noqa: F401
    AdvantageSpec,
    AllocationSpec,
    CovarianceSpec,
    EntropyAdvantageSpec,
    ForkTokensSpec,
    GroupFilterSpec,
    LossSpec,
    MethodSpec,
    ModulationSpec,
    RewardShapingSpec,
    apply_overrides,
)

# Released-code modulation presets (verl recipe `dynamo`, docs/METHODS.md).
MODULATION_PRESETS: dict[str, dict[str, float]] = {
    "decay6": {"alpha": 0.2, "lambda_min": 0.6, "gamma": 50.0, "tau": 0.99},
    "decay5": {"alpha": 0.4, "lambda_min": 0.6, "gamma": 50.0, "tau": 0.9},
}

# dynamo-posscale's constant, a method setting: the mean beta_comp over the tokens with A > 0 in the
# embedded default's `dynamo` run. 1.19 is what the re-analysis of the shipped reference run (seed 1,
# snapshots at steps 0, 100 and 200) measured: 76-80% of its response tokens have entropy < 1e-3 nats, so
# nearly every A > 0 token gets close to the maximum 1 + alpha = 1.2. The reference regeneration that first
# shipped this method measured 1.191 [1.190, 1.193] (reference/results/table3.csv); every regeneration
# measures it again: table 3's row "mean beta_comp on A > 0 tokens"
# (per snapshot) and, per step, 1 + (modulation/beta_comp - 1) / modulation/positive_share in the runs'
# metrics.jsonl. Update the constant here if those disagree with it.
POSITIVE_SCALE = 1.19

DYNAMO = MethodSpec(
    name="dynamo",
    description="DynaMO: variance-minimising rollout allocation + gradient-aware advantage modulation (decay6).",
    allocation=AllocationSpec(kind="dynamo"),
    modulation=ModulationSpec(compensation=True, stabilization=True, **MODULATION_PRESETS["decay6"]),
)


def _dynamo_variants() -> list[MethodSpec]:
    mod = DYNAMO.modulation
    return [
        DYNAMO,
        dataclasses.replace(
            DYNAMO,
            name="dynamo-uniform",
            allocation=AllocationSpec(kind="uniform"),
            description="DynaMO ablation: uniform allocation (n_i = n), modulation on.",
        ),
        dataclasses.replace(
            DYNAMO,
            name="dynamo-nomod",
            modulation=dataclasses.replace(mod, compensation=False, stabilization=False),
            description="DynaMO ablation: allocation on, no modulation (beta = 1).",
        ),
        dataclasses.replace(
            DYNAMO,
            name="dynamo-nocomp",
            modulation=dataclasses.replace(mod, compensation=False),
            description="DynaMO ablation: without gradient compensation beta_comp.",
        ),
        dataclasses.replace(
            DYNAMO,
            name="dynamo-nostab",
            modulation=dataclasses.replace(mod, stabilization=False),
            description="DynaMO ablation: without update stabilisation beta_stab.",
        ),
        dataclasses.replace(
            DYNAMO,
            name="dynamo-posscale",
            modulation=dataclasses.replace(
                mod, compensation=False, stabilization=False, positive_scale=POSITIVE_SCALE
            ),
            description=f"DynaMO null model of beta_comp: allocation on, every A > 0 token scaled by a constant "
            f"{POSITIVE_SCALE} (the mean beta_comp on A > 0 tokens of the embedded default's dynamo run; see "
            "POSITIVE_SCALE), no entropy dependence, no beta_stab. Compare with dynamo-nostab (beta_comp alone).",
        ),
        *_released_code_switches(),
    ]


def _released_code_switches() -> list[MethodSpec]:
    """One variant per place where the paper and the authors' released code differ (table 2)."""
    alloc, loss = DYNAMO.allocation, DYNAMO.loss
    return [
        dataclasses.replace(
            DYNAMO,
            name="dynamo-sqrtp",
            allocation=dataclasses.replace(alloc, weight="sqrt_p"),
            description="DynaMO switch: weight sqrt(P_i) (Neyman allocation) instead of P_i.",
        ),
        dataclasses.replace(
            DYNAMO,
            name="dynamo-released-floors",
            allocation=dataclasses.replace(alloc, mastery_threshold=0.85, weight_floor=0.01),
            description="DynaMO switch: released mastery floor (accuracy >= 0.85 -> 0.01) and weight floor 0.01.",
        ),
        dataclasses.replace(
            DYNAMO,
            name="dynamo-coldstart",
            allocation=dataclasses.replace(alloc, cold_start="n_low"),
            description="DynaMO switch: released cold start (unseen prompts get the floor weight: n_low).",
        ),
        dataclasses.replace(
            DYNAMO,
            name="dynamo-minibatch",
            window="mini_batch",
            description="DynaMO switch: window statistics over the whole mini-batch, not each micro-batch.",
        ),
        dataclasses.replace(
            DYNAMO,
            name="dynamo-eps028",
            loss=dataclasses.replace(loss, eps_high=0.28),
            description="DynaMO switch: eps_high 0.28 as in the released actor (Clip-Higher).",
        ),
    ]


def all_methods() -> dict[str, MethodSpec]:
    """Every registered method by name: DynaMO variants here, baselines from `baselines/`."""
    methods = {m.name: m for m in [*BASELINES, *_dynamo_variants()]}
    assert len(methods) == len(BASELINES) + len(_dynamo_variants()), "duplicate method name"
    return methods


def get_method(name: str, overrides: dict[str, Any] | None = None) -> MethodSpec:
    """The registered method `name`, with nested `overrides` (e.g. {"loss": {"eps_high": 0.28}}) applied."""
    methods = all_methods()
    if name not in methods:
        close = difflib.get_close_matches(name, methods, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown method {name!r}.{hint} Known methods: {', '.join(sorted(methods))}")
    spec = methods[name]
    if not overrides:
        return spec
    spec = apply_overrides(spec, overrides)
    make_rule(spec.allocation)  # the allocation rule exists and takes these params, or ValueError
    if spec.loss.policy_loss != methods[name].loss.policy_loss:
        # Registered methods' losses are checked by the tests; this import (torch) only for a changed name.
        from dynamo.core.losses import get_policy_loss

        get_policy_loss(spec.loss.policy_loss)  # registered, or ValueError naming the registered ones
    return spec
