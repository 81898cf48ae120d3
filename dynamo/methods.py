"""Methods as data: a typed spec per method, registered by name, overridable from YAML.

A method says *how to allocate* rollouts across prompts, *how to turn rewards into
advantages*, *which groups to keep*, *how to weight tokens* and *which policy loss to
use*. Both engines (local and OpenRLHF) read the same spec; neither hard-codes a method.

DynaMO and its ablations are defined here; the baselines (GRPO, DAPO, ...) live in
`baselines/`, one module each, and register themselves through `all_methods()`.

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
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class AllocationSpec:
    kind: Literal["uniform", "dynamo"] = field(
        default="uniform",
        metadata={
            "help": "uniform: every prompt gets n rollouts (GRPO). dynamo: variance-minimising "
            "allocation n_i proportional to w_i within [n_low, n_high], sum n_i = B (DynaMO sec. 3.1)."
        },
    )
    weight: Literal["p", "sqrt_p"] = field(
        default="p",
        metadata={
            "help": "p: w_i = P_i = k(G-k)/(G(G-1)) as in the paper and released code; "
            "sqrt_p: w_i = sqrt(P_i) (Neyman allocation with the Bernoulli std)."
        },
    )
    n_low: int | None = field(default=None, metadata={"help": "Fewest rollouts per prompt; None = n // 2."})
    n_high: int | None = field(default=None, metadata={"help": "Most rollouts per prompt; None = n + n // 2."})
    min_history: int = field(
        default=4,
        metadata={
            "help": "Cold start: prompts with fewer past responses than this get the largest "
            "possible weight (an exploration share) instead of their noisy P_i."
        },
    )
    cold_start: Literal["explore", "n_low"] = field(
        default="explore",
        metadata={
            "help": "Weight of a prompt with fewer than min_history past responses. explore: the largest "
            "possible weight (0.25 / 0.5), an exploration share (this project); n_low: the floor weight, "
            "so an unseen prompt gets about n_low rollouts (released code)."
        },
    )
    mastery_threshold: float | None = field(
        default=None,
        metadata={
            "help": "Released-code compatibility: prompts whose historical accuracy is >= this "
            "get the floor weight `weight_floor` (released code: 0.85). None = off."
        },
    )
    weight_floor: float = field(
        default=0.0,
        metadata={"help": "Lower bound on every weight (released code: 0.01). 0 = paper."},
    )

    def bounds(self, n: int) -> tuple[int, int]:
        """(n_low, n_high) for a uniform per-prompt count n."""
        n_low = self.n_low if self.n_low is not None else n // 2
        n_high = self.n_high if self.n_high is not None else n + n // 2
        return n_low, n_high


@dataclass(frozen=True)
class AdvantageSpec:
    estimator: Literal["grpo", "mean_only"] = field(
        default="grpo",
        metadata={
            "help": "grpo: (r - mean) / (std + eps) per group, unbiased std (Shao et al. 2024); "
            "mean_only: r - mean (Dr. GRPO, Liu et al. 2025)."
        },
    )
    eps: float = field(default=1e-6, metadata={"help": "Added to the group std before dividing."})


@dataclass(frozen=True)
class GroupFilterSpec:
    kind: Literal["none", "dynamic_sampling"] = field(
        default="none",
        metadata={
            "help": "dynamic_sampling: drop groups whose rewards are all equal and refill the batch "
            "with fresh prompts (DAPO, Yu et al. 2025)."
        },
    )
    max_refill_rounds: int = field(
        default=3,
        metadata={"help": "Generation rounds at most per step when refilling (DAPO's max_num_gen_batches)."},
    )


@dataclass(frozen=True)
class ModulationSpec:
    compensation: bool = field(
        default=False,
        metadata={
            "help": "beta_comp = 1 + alpha (H_max - H)/(H_max - H_min) on tokens with A > 0 (DynaMO sec. 3.2)."
        },
    )
    stabilization: bool = field(
        default=False,
        metadata={
            "help": "beta_stab = lambda_min + (1 - lambda_min)/(1 + exp(gamma (x - tau))), x = normalised "
            "|entropy change| (DynaMO sec. 3.2)."
        },
    )
    alpha: float = field(
        default=0.2, metadata={"help": "Compensation strength (released code: mu_max = 1 + alpha)."}
    )
    lambda_min: float = field(default=0.6, metadata={"help": "Floor of the stabilisation factor."})
    gamma: float = field(default=50.0, metadata={"help": "Steepness of the stabilisation sigmoid."})
    tau: float = field(default=0.99, metadata={"help": "Centre of the stabilisation sigmoid on x in [0, 1]."})
    norm_set: Literal["micro_batch", "mini_batch"] = field(
        default="micro_batch",
        metadata={
            "help": "Set over which H_min/H_max and max|dH| are taken. micro_batch = released code "
            "(results then depend on batch layout); mini_batch = whole optimiser mini-batch."
        },
    )


@dataclass(frozen=True)
class LossSpec:
    eps_low: float = field(default=0.2, metadata={"help": "Lower PPO clip: ratio >= 1 - eps_low."})
    eps_high: float = field(
        default=0.2, metadata={"help": "Upper PPO clip: ratio <= 1 + eps_high (0.28 = Clip-Higher)."}
    )
    dual_clip: float | None = field(
        default=10.0, metadata={"help": "Dual-clip constant c for A < 0 (Ye et al. 2020); None = off."}
    )
    aggregation: Literal["token-mean", "seq-mean-token-mean"] = field(
        default="token-mean",
        metadata={
            "help": "token-mean: mean over all valid tokens of the mini-batch (DAPO); "
            "seq-mean-token-mean: mean over sequences of per-sequence token means (GRPO paper)."
        },
    )
    entropy_coef: float = field(default=0.0, metadata={"help": "Entropy bonus coefficient (0 = none)."})
    kl_coef: float = field(
        default=0.0, metadata={"help": "KL-to-reference loss coefficient, k3 estimator (0 = no reference model)."}
    )


@dataclass(frozen=True)
class RewardShapingSpec:
    overlong_buffer_fraction: float = field(
        default=0.0,
        metadata={
            "help": "DAPO overlong shaping: the last fraction of max_new_tokens is a soft buffer; a response "
            "reaching into it gets a linear penalty growing to -overlong_penalty at the limit "
            "(Yu et al. 2025 use 4096 of 20480 tokens = 0.2). 0 = off."
        },
    )
    overlong_penalty: float = field(default=1.0, metadata={"help": "Penalty at the length limit."})


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str = ""
    allocation: AllocationSpec = AllocationSpec()
    advantage: AdvantageSpec = AdvantageSpec()
    group_filter: GroupFilterSpec = GroupFilterSpec()
    modulation: ModulationSpec = ModulationSpec()
    loss: LossSpec = LossSpec()
    reward_shaping: RewardShapingSpec = RewardShapingSpec()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Released-code modulation presets (verl recipe `dynamo`, ALGORITHM.md sec. 2).
MODULATION_PRESETS: dict[str, dict[str, float]] = {
    "decay6": {"alpha": 0.2, "lambda_min": 0.6, "gamma": 50.0, "tau": 0.99},
    "decay5": {"alpha": 0.4, "lambda_min": 0.6, "gamma": 50.0, "tau": 0.9},
}

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
        *_released_code_switches(),
    ]


def _released_code_switches() -> list[MethodSpec]:
    """One variant per place where the paper and the authors' released code differ (table 2)."""
    alloc, mod, loss = DYNAMO.allocation, DYNAMO.modulation, DYNAMO.loss
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
            modulation=dataclasses.replace(mod, norm_set="mini_batch"),
            description="DynaMO switch: modulation statistics over the whole mini-batch, not each micro-batch.",
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
    from baselines import BASELINES

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
    return apply_overrides(spec, overrides) if overrides else spec


def apply_overrides(spec: Any, overrides: dict[str, Any], where: str = "method") -> Any:
    """Return a copy of the (nested) dataclass `spec` with `overrides` applied, checking names and types."""
    hints = typing.get_type_hints(type(spec))
    known = [f.name for f in dataclasses.fields(spec)]
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"unknown field {where}.{key}; known: {', '.join(known)}")
        current = getattr(spec, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{key} must be a mapping, got {value!r}")
            changes[key] = apply_overrides(current, value, f"{where}.{key}")
        else:
            changes[key] = _checked(f"{where}.{key}", hints[key], value)
    return dataclasses.replace(spec, **changes)


def _checked(where: str, hint: Any, value: Any) -> Any:
    """`value` converted to the field type `hint` (str, bool, int, float, Literal, Optional), or a ValueError."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if type(None) in args:  # Optional[X]
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {value!r}")
        return [_checked(f"{where}[{i}]", typing.get_args(hint)[0], v) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and hint is int and float(value).is_integer():
            value = int(value)
        ok = ok and isinstance(value, hint if hint is int else (int, float))
        value = hint(value) if ok else value
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ValueError(f"{where} must be of type {getattr(hint, '__name__', hint)}, got {value!r}")
    return value
