"""The method spec: typed, frozen dataclasses, and `apply_overrides` for YAML overrides.

A leaf module (standard library, pydantic through `dynamo.schema`): `dynamo.core`, the engines and
`baselines/` import it without importing the registry (`dynamo.methods`), which itself imports
`baselines/`. What each field means for the math is explained in docs/METHODS.md. Each field's valid
range sits in its metadata (`ge`, `gt`, `le`, `lt`: pydantic's names, checked by `apply_overrides` and
the config check through `dynamo.schema`); checks across fields are the classes' `__post_init__`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import with_config

from dynamo.schema import FIELDS, ConfigError, checked_build


@with_config(FIELDS)
@dataclass(frozen=True)
class AllocationSpec:
    kind: str = field(
        default="uniform",
        metadata={
            "help": "Registered allocation rule (dynamo.core.rules; `dynamo methods` lists them). uniform: "
            "every prompt gets n rollouts (GRPO). dynamo: variance-minimising allocation n_i proportional "
            "to w_i within [n_low, n_high], sum n_i = B (DynaMO sec. 3.1). Others: baselines/."
        },
    )
    params: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Settings of a rule from baselines/ (its module lists them, defaults as released); "
            "empty for uniform and dynamo, whose settings are the fields below."
        },
    )
    weight: Literal["p", "sqrt_p"] = field(
        default="p",
        metadata={
            "help": "p: w_i = P_i = k(G-k)/(G(G-1)) as in the paper and released code; "
            "sqrt_p: w_i = sqrt(P_i) (Neyman allocation with the Bernoulli std)."
        },
    )
    n_low: int | None = field(
        default=None, metadata={"help": "Fewest rollouts per prompt; None = n // 2.", "ge": 1}
    )
    n_high: int | None = field(
        default=None, metadata={"help": "Most rollouts per prompt; None = n + n // 2.", "ge": 1}
    )
    min_history: int = field(
        default=4,
        metadata={
            "help": "Cold start: prompts with fewer past responses than this get the largest "
            "possible weight (an exploration share) instead of their noisy P_i.",
            "ge": 0,
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
            "get the floor weight `weight_floor` (released code: 0.85). None = off.",
            "ge": 0,
            "le": 1,
        },
    )
    weight_floor: float = field(
        default=0.0,
        metadata={"help": "Lower bound on every weight (released code: 0.01). 0 = paper.", "ge": 0},
    )
    budget_scale: float = field(
        default=1.0,
        metadata={
            "help": "Rollout budget relative to the experiment's: the per-prompt count becomes "
            "n * budget_scale (a whole number), B = N * n * budget_scale. 1 = every method spends the "
            "same; 1.5 is the allocation study's positive control (grpo-1.5x: what more samples buy).",
            "gt": 0,
        },
    )

    def per_prompt(self, n: int) -> int:
        """This method's uniform per-prompt count for the experiment's n (n * budget_scale, exact)."""
        scaled = n * self.budget_scale
        if scaled < 1 or scaled != round(scaled):
            raise ValueError(
                f"allocation.budget_scale={self.budget_scale} times train.rollouts_per_prompt={n} "
                f"must be a whole number >= 1, got {scaled}"
            )
        return int(round(scaled))

    def bounds(self, n: int) -> tuple[int, int]:
        """(n_low, n_high) for a uniform per-prompt count n."""
        n_low = self.n_low if self.n_low is not None else n // 2
        n_high = self.n_high if self.n_high is not None else n + n // 2
        return n_low, n_high


@with_config(FIELDS)
@dataclass(frozen=True)
class AdvantageSpec:
    estimator: Literal["grpo", "mean_only", "w_reinforce"] = field(
        default="grpo",
        metadata={
            "help": "grpo: (r - mean) / (std + eps) per group, unbiased std (Shao et al. 2024); "
            "mean_only: r - mean (Dr. GRPO, Liu et al. 2025); w_reinforce: A = positive_weight if the "
            "response is correct, -1 if not, no group baseline (W-REINFORCE, Zhu et al. 2025)."
        },
    )
    eps: float = field(default=1e-6, metadata={"help": "Added to the group std before dividing.", "ge": 0})
    positive_weight: float = field(
        default=0.1,
        metadata={
            "help": "w_reinforce only: advantage of a correct response (lambda; Zhu et al. 2025 use 0.1). "
            "Keyed on correctness, not on the raw reward."
        },
    )


@with_config(FIELDS)
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
        metadata={
            "help": "Generation rounds at most per step when refilling (DAPO's max_num_gen_batches).",
            "ge": 1,
            "le": 1000,
        },
    )


@with_config(FIELDS)
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
        default=0.2, metadata={"help": "Compensation strength (released code: mu_max = 1 + alpha).", "ge": 0}
    )
    lambda_min: float = field(
        default=0.6, metadata={"help": "Floor of the stabilisation factor.", "gt": 0, "le": 1}
    )
    gamma: float = field(default=50.0, metadata={"help": "Steepness of the stabilisation sigmoid.", "ge": 0})
    tau: float = field(
        default=0.99, metadata={"help": "Centre of the stabilisation sigmoid on x in [0, 1].", "ge": 0, "le": 1}
    )
    positive_scale: float = field(
        default=1.0,
        metadata={
            "help": "Null model of beta_comp (dynamo-posscale): every token with A > 0 is scaled by this "
            "constant, whatever its entropy; 1 = off. Replaces beta_comp, so compensation must be false.",
            "gt": 0,
        },
    )

    def __post_init__(self):
        if self.compensation and self.positive_scale != 1.0:
            raise ValueError("positive_scale replaces beta_comp: set compensation to false")


@with_config(FIELDS)
@dataclass(frozen=True)
class LossSpec:
    eps_low: float = field(
        default=0.2,
        metadata={
            "help": "Lower PPO clip: ratio >= 1 - eps_low (in [0, 1]; 1 = no lower clip).",
            "ge": 0,
            "le": 1,
        },
    )
    eps_high: float = field(
        default=0.2, metadata={"help": "Upper PPO clip: ratio <= 1 + eps_high (0.28 = Clip-Higher).", "ge": 0}
    )
    policy_loss: str = field(
        default="ppo_clip",
        metadata={
            "help": "Registered ratio/clip term (dynamo.core.losses.POLICY_LOSSES; `dynamo methods --losses` "
            "lists them). ppo_clip: token PPO-clip with eps_low/eps_high; reinforce: no clip, l = -A r "
            "(W-REINFORCE's and KL-Cov's reference losses); others from dynamo/core (gspo: sequence-level "
            "ratio). The dual clip still applies if set. Old configs may write clip: true/false."
        },
    )
    dual_clip: float | None = field(
        default=10.0, metadata={"help": "Dual-clip constant c for A < 0 (Ye et al. 2020); None = off.", "gt": 1}
    )
    aggregation: Literal["token-mean", "seq-mean-token-mean"] = field(
        default="token-mean",
        metadata={
            "help": "token-mean: mean over all valid tokens of the mini-batch (DAPO); "
            "seq-mean-token-mean: mean over sequences of per-sequence token means (GRPO paper)."
        },
    )
    entropy_coef: float = field(default=0.0, metadata={"help": "Entropy bonus coefficient (0 = none).", "ge": 0})
    kl_coef: float = field(
        default=0.0,
        metadata={"help": "KL-to-reference loss coefficient, k3 estimator (0 = no reference model).", "ge": 0},
    )

    @property
    def clip(self) -> bool:
        """False for the clip-free REINFORCE loss (the old field `loss.clip`, kept readable)."""
        return self.policy_loss != "reinforce"


@with_config(FIELDS)
@dataclass(frozen=True)
class RewardShapingSpec:
    overlong_buffer_fraction: float = field(
        default=0.0,
        metadata={
            "help": "DAPO overlong shaping: the last fraction of max_new_tokens is a soft buffer; a response "
            "reaching into it gets a linear penalty growing to -overlong_penalty at the limit "
            "(Yu et al. 2025 use 4096 of 20480 tokens = 0.2). 0 = off.",
            "ge": 0,
            "lt": 1,
        },
    )
    overlong_penalty: float = field(default=1.0, metadata={"help": "Penalty at the length limit.", "ge": 0})


@with_config(FIELDS)
@dataclass(frozen=True)
class EntropyAdvantageSpec:
    alpha: float = field(
        default=0.0,
        metadata={
            "help": "A' = A + min(alpha H, |A| / kappa) with H detached (Cheng et al. 2025, arXiv 2506.14758). "
            "0 = off. 0.4 is the value of public reimplementations, not checked against the paper.",
            "ge": 0,
        },
    )
    kappa: float = field(
        default=2.0,
        metadata={
            "help": "Cap: the entropy term is at most |A| / kappa, so it never flips the sign of A "
            "(2 = public reimplementations, not checked against the paper).",
            "gt": 0,
        },
    )


@with_config(FIELDS)
@dataclass(frozen=True)
class ForkTokensSpec:
    top_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Fork Tokens (Wang et al. 2025, 'Beyond the 80/20 rule'): policy gradient only on the "
            "rho = top_fraction highest-entropy valid tokens of the window; the loss is averaged over "
            "those tokens only. 0 = off (every token); the paper uses 0.2.",
            "ge": 0,
            "le": 1,
        },
    )
    rounding: Literal["ceil", "floor"] = field(
        default="ceil",
        metadata={
            "help": "ceil: k = int(rho N + 0.9999) (the reference repo from commit 137d8d1 on); floor: "
            "k = int(rho N) (earlier commits, TRL-style reimplementations); at least 1 either way. Exactly k "
            "tokens are kept (ties broken by torch.topk, as the reference)."
        },
    )


@with_config(FIELDS)
@dataclass(frozen=True)
class CovarianceSpec:
    kind: Literal["none", "clip_cov", "kl_cov"] = field(
        default="none",
        metadata={
            "help": "Covariance-based entropy control (Cui et al. 2025, 'The Entropy Mechanism of RL for "
            "Reasoning LMs'), cov_t = (A_t - mean A)(logp_t - mean logp) over the window's valid tokens. "
            "clip_cov: among tokens not clipped by PPO with clip_lb < cov < clip_ub, detach a uniformly "
            "random max(1, int(ratio N)) (their loss term becomes 0). kl_cov: the max(1, int(ratio N)) "
            "tokens of largest cov get + kl_coef |logp - old_logp|."
        },
    )
    ratio: float = field(
        default=2e-4,
        metadata={
            "help": "Fraction of the window's valid tokens to act on. Clip-Cov: 2e-4 (reference scripts). "
            "KL-Cov: 2e-3 (verl recipe script) vs 2e-4 (verl config default); Cui et al.'s repo writes "
            "0.2 meaning percent.",
            "gt": 0,
            "le": 1,
        },
    )
    clip_lb: float = field(default=1.0, metadata={"help": "Clip-Cov: lower bound of the covariance band."})
    clip_ub: float = field(default=5.0, metadata={"help": "Clip-Cov: upper bound of the covariance band."})
    kl_coef: float = field(
        default=1.0,
        metadata={
            "help": "KL-Cov: coefficient of |logp - old_logp| (1 = reference scripts; verl YAML default 0.1).",
            "ge": 0,
        },
    )

    def __post_init__(self):
        if not self.clip_lb < self.clip_ub:
            raise ValueError(f"needs clip_lb < clip_ub, got {self.clip_lb}, {self.clip_ub}")


@with_config(FIELDS)
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
    entropy_advantage: EntropyAdvantageSpec = EntropyAdvantageSpec()
    fork_tokens: ForkTokensSpec = ForkTokensSpec()
    covariance: CovarianceSpec = CovarianceSpec()
    window: Literal["micro_batch", "mini_batch"] = field(
        default="micro_batch",
        metadata={
            "help": "Set over which window statistics are taken (DynaMO's H_min/H_max and max |dH|, the "
            "Fork-Tokens entropy threshold, Clip-Cov/KL-Cov covariance means and picks). micro_batch: "
            "one forward on one rank, as the reference codes do (results then depend on the batch "
            "layout); mini_batch: every micro-batch of the optimiser step on every data-parallel rank. "
            "Old configs may still write modulation.norm_set."
        },
    )

    def __post_init__(self):
        # beta_stab's entropy-change estimate (dynamo.core.modulation.entropy_change) uses the token PPO clip
        # indicator I_clip with eps_low / eps_high; under another policy loss (a sequence ratio, no clip) that
        # indicator would not be the loss's clip, so the factor would silently describe a different update.
        if self.modulation.stabilization and self.loss.policy_loss != "ppo_clip":
            raise ValueError(
                f"modulation.stabilization needs loss.policy_loss 'ppo_clip' (its entropy-change estimate uses "
                f"the token PPO clip), got {self.loss.policy_loss!r}"
            )
        # GSPO's clip acts on a sequence ratio averaged over the loss's tokens (Fork Tokens narrows them),
        # while Clip-Cov asks the same loss which tokens are clipped over the whole response: the two would
        # disagree silently, so the combination is refused rather than computed.
        fork_on, clip_cov = self.fork_tokens.top_fraction > 0, self.covariance.kind == "clip_cov"
        if self.loss.policy_loss == "gspo" and fork_on and clip_cov:
            raise ValueError(
                "loss.policy_loss 'gspo' with fork_tokens and covariance.kind 'clip_cov': Clip-Cov's clip test "
                "would average the sequence ratio over other tokens than the loss does"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _legacy_method_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Old spellings still accepted in configs: modulation.norm_set is now the method's `window`;
    loss.clip: false / true is now loss.policy_loss: reinforce / ppo_clip."""
    if not isinstance(overrides, dict):
        return overrides  # not a mapping: the validation says so
    loss = overrides.get("loss")
    if isinstance(loss, dict) and "clip" in loss:
        if not isinstance(loss["clip"], bool):
            raise ValueError(f"method.loss.clip must be of type bool, got {loss['clip']!r}")
        named = "ppo_clip" if loss["clip"] else "reinforce"
        if loss.get("policy_loss", named) != named:
            raise ValueError(
                f"method.loss.clip={loss['clip']!r} contradicts loss.policy_loss={loss['policy_loss']!r}"
            )
        overrides = {**overrides, "loss": {**{k: v for k, v in loss.items() if k != "clip"}, "policy_loss": named}}
    mod = overrides.get("modulation")
    if not (isinstance(mod, dict) and "norm_set" in mod):
        return overrides
    out = {**overrides, "modulation": {k: v for k, v in mod.items() if k != "norm_set"}}
    if "window" in overrides and overrides["window"] != mod["norm_set"]:
        raise ValueError(
            f"method.window={overrides['window']!r} contradicts modulation.norm_set={mod['norm_set']!r}"
        )
    out["window"] = mod["norm_set"]
    if not out["modulation"]:
        del out["modulation"]
    return out


def apply_overrides(spec: Any, overrides: dict[str, Any], where: str = "method") -> Any:
    """A copy of the (nested) dataclass `spec` with `overrides` applied and the result validated: names,
    types, ranges and the `__post_init__` checks, every problem at once (ConfigError, a ValueError).

    For a MethodSpec the old name `modulation.norm_set` is read as `window`.
    """
    if isinstance(spec, MethodSpec):
        overrides = _legacy_method_overrides(overrides)
    built, problems = checked_build(type(spec), _merged(spec, overrides), where)
    if problems:
        raise ConfigError(problems)
    return built


def _merged(spec: Any, overrides: Any) -> Any:
    """`spec` as a dict with `overrides` written over it; nested only where `spec` has a nested dataclass
    (a dict-valued field such as allocation.params is replaced whole)."""
    if not (dataclasses.is_dataclass(spec) and isinstance(overrides, dict)):
        return overrides
    out = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if key in out else value
    return {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in out.items()}
