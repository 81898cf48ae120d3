"""Token mechanisms: each per-token change a method can make to its advantages or loss, as one object.

A mechanism reads one section of the method spec (`section`), says whether it is on and whether it
reads the per-token entropy, computes the statistics it takes over the window (`window`, returning
`WindowStats` fields, through a `Reducer` so that one process and many ranks agree), and applies
itself to a micro-batch's `TokenObjective` (`apply`). `MECHANISMS` lists them in the order they act:

1. entropy advantage (Cheng et al. 2025): A += min(alpha H, |A| / kappa); it *shapes* the advantages,
   so the later mechanisms' window statistics see the shaped A;
2. DynaMO modulation: A *= beta_comp * beta_stab;
3. Fork Tokens (Wang et al. 2025): the loss keeps only the window's top-rho highest-entropy tokens;
4. Clip-Cov (Cui et al. 2025): token weight 0 on a random pick of high-covariance tokens that the
   policy loss has not clipped (the registered loss's own clip mask, `dynamo.core.losses`);
5. KL-Cov (Cui et al. 2025): penalty kl_coef |logp - old_logp| on the top-covariance tokens.

The ratio/clip term is not a mechanism but a registered policy loss (`dynamo.core.losses`).
Methods combine mechanisms in an order no single source prescribes: DynaMO's factors are not applied
to the covariance, which sees the shaped advantages. Pure: no I/O, no global state; the only
randomness is the generator passed in (Clip-Cov).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from dynamo.core.advantages import entropy_advantage
from dynamo.core.losses import get_policy_loss, token_log_ratio
from dynamo.core.modulation import entropy_change, modulation_factors
from dynamo.core.reduce import Reducer, window_count, window_max, window_random_pick, window_sum, window_top_k

if TYPE_CHECKING:
    from dynamo.core.objective import TokenBatch, TokenObjective
    from dynamo.spec import MethodSpec


@dataclass(frozen=True)
class WindowInput:
    """What a mechanism's window statistics are taken over: this rank's parts (micro-batches) of the
    window with their shaped advantages (detached), the window's valid-token count over every rank,
    the reducer spanning the ranks, and the seeded generator (Clip-Cov's pick)."""

    parts: Sequence[TokenBatch]
    advantages: Sequence[torch.Tensor]
    num_tokens: int
    reducer: Reducer
    generator: torch.Generator | None

    @property
    def masks(self) -> list[torch.Tensor]:
        return [p.mask for p in self.parts]


class Mechanism:
    """Base: a mechanism that is off does nothing. Subclasses override what they use."""

    name: str = ""
    section: str = ""  # the MethodSpec field (a sub-spec) the mechanism reads
    window_fields: tuple[str, ...] = ()  # the WindowStats fields `window` fills

    def on(self, spec: MethodSpec) -> bool:
        raise NotImplementedError

    def reads_entropy(self, spec: MethodSpec) -> bool:
        return self.on(spec)

    def takes_window(self, spec: MethodSpec) -> bool:
        """True when the mechanism takes statistics over more than one token."""
        return bool(self.window_fields) and self.on(spec)

    def shape(self, spec: MethodSpec, batch: TokenBatch, advantages: torch.Tensor) -> torch.Tensor:
        """Advantages before any window statistic is taken (detached)."""
        return advantages

    def window(self, spec: MethodSpec, data: WindowInput) -> dict[str, Any]:
        """WindowStats fields (a subset of `window_fields`); collective: every rank calls it."""
        return {}

    def apply(
        self, spec: MethodSpec, batch: TokenBatch, obj: TokenObjective, part: int, given: bool
    ) -> TokenObjective:
        """`obj` with this mechanism applied; `batch` is part `part` of `obj.window`; `given`: the window came
        from the engine (False: it is this micro-batch alone, computed by `token_objective`)."""
        return obj


def entropy_of(batch: TokenBatch) -> torch.Tensor:
    """The batch's per-token entropy, detached, or a ValueError if the engine did not compute it."""
    if batch.entropy is None:
        raise ValueError("this method needs the per-token entropy (TokenBatch.entropy is None)")
    return batch.entropy.detach()


class EntropyAdvantage(Mechanism):
    name, section = "entropy_advantage", "entropy_advantage"

    def on(self, spec):
        return spec.entropy_advantage.alpha > 0

    def shape(self, spec, batch, advantages):
        if not self.on(spec):
            return advantages
        ea = spec.entropy_advantage
        return entropy_advantage(advantages, entropy_of(batch), batch.mask, alpha=ea.alpha, kappa=ea.kappa)


class Modulation(Mechanism):
    name, section = "modulation", "modulation"
    window_fields = ("entropy_range", "max_change")

    def on(self, spec):
        mod = spec.modulation
        return bool(mod.compensation or mod.stabilization or mod.positive_scale != 1.0)

    def reads_entropy(self, spec):
        return bool(spec.modulation.compensation or spec.modulation.stabilization)

    def takes_window(self, spec):
        return self.reads_entropy(spec)

    def window(self, spec, data):
        mod, masks, fields = spec.modulation, data.masks, {}
        if mod.compensation:
            entropies = [entropy_of(p) for p in data.parts]
            h_max = window_max(entropies, masks, data.reducer)
            h_min = -window_max([-h for h in entropies], masks, data.reducer)
            fields["entropy_range"] = (h_min, h_max)
        if mod.stabilization:
            changes = [
                entropy_change(
                    p.logp,
                    p.old_logp,
                    a,
                    entropy_of(p),
                    p.mask,
                    eps_low=spec.loss.eps_low,
                    eps_high=spec.loss.eps_high,
                ).abs()
                for p, a in zip(data.parts, data.advantages)
            ]
            fields["max_change"] = max(window_max(changes, masks, data.reducer), 0.0)
        return fields

    def apply(self, spec, batch, obj, part, given):
        if not self.on(spec):
            return obj
        entropy = entropy_of(batch) if self.reads_entropy(spec) else torch.zeros_like(batch.logp).detach()
        # A micro-batch window computed by token_objective: modulation_factors takes the same min/max
        # itself (bitwise the released behaviour); a window from the engine passes its reduced values.
        ranges = {"entropy_range": obj.window.entropy_range, "max_change": obj.window.max_change} if given else {}
        beta_comp, beta_stab = modulation_factors(
            batch.logp.detach(),
            batch.old_logp.detach(),
            obj.advantages,
            entropy,
            batch.mask.detach(),
            spec.modulation,
            eps_low=spec.loss.eps_low,
            eps_high=spec.loss.eps_high,
            **ranges,
        )
        return dataclasses.replace(
            obj, advantages=obj.advantages * beta_comp * beta_stab, beta_comp=beta_comp, beta_stab=beta_stab
        )


def fork_k(spec: MethodSpec, num_tokens: int) -> int:
    """Number of top-entropy tokens Fork Tokens keeps out of `num_tokens` (0 for an empty window).

    ceil: int(rho N + 0.9999), the reference's spelling of the ceiling, kept because it differs from
    math.ceil where rho N is an integer up to rounding (0.2 * 15 = 3.0000000000000004: 3, not 4);
    floor: int(rho N). At least 1 either way.
    """
    if num_tokens == 0:
        return 0
    rho = spec.fork_tokens.top_fraction
    raw = int(rho * num_tokens + 0.9999) if spec.fork_tokens.rounding == "ceil" else int(rho * num_tokens)
    return max(1, raw)


class ForkTokens(Mechanism):
    name, section = "fork", "fork_tokens"
    window_fields = ("fork_masks", "loss_tokens")

    def on(self, spec):
        return spec.fork_tokens.top_fraction > 0

    def window(self, spec, data):
        # Exactly k tokens, as the reference's topk indices (ties broken by torch.topk).
        entropies = [entropy_of(p) for p in data.parts]
        fork = window_top_k(entropies, data.masks, fork_k(spec, data.num_tokens), data.reducer)
        return {"fork_masks": tuple(fork), "loss_tokens": window_count(fork, data.reducer)}

    def apply(self, spec, batch, obj, part, given):
        valid = batch.mask.detach().bool()
        fork = obj.window.fork_masks[part].to(valid.device) & valid
        return dataclasses.replace(
            obj, loss_mask=fork.to(obj.loss_mask.dtype), selected={**obj.selected, self.name: fork}
        )


def token_covariance(data: WindowInput) -> tuple[tuple[float, float], list[torch.Tensor]]:
    """((mean A, mean logp) over the window, per part cov_t = (A_t - mean A)(logp_t - mean logp)), float64."""
    n = max(data.num_tokens, 1)
    adv_mean = window_sum(data.advantages, data.masks, data.reducer) / n
    logp_mean = window_sum([p.logp for p in data.parts], data.masks, data.reducer) / n
    covs = [
        (a.detach().to(torch.float64) - adv_mean) * (p.logp.detach().to(torch.float64) - logp_mean)
        for p, a in zip(data.parts, data.advantages)
    ]
    return (adv_mean, logp_mean), covs


def loss_clipped(spec: MethodSpec, batch: TokenBatch, advantages: torch.Tensor) -> torch.Tensor:
    """Valid tokens whose policy-loss term is clipped, by the registered loss itself (float64)."""
    valid = batch.mask.bool()
    log_ratio = token_log_ratio(batch.logp.detach(), batch.old_logp.detach()).to(torch.float64)
    log_ratio = torch.where(valid, log_ratio, 0.0)  # padding may hold -inf - -inf = NaN
    adv = torch.where(valid, advantages.to(torch.float64), 0.0)
    term = get_policy_loss(spec.loss.policy_loss)(log_ratio, adv, batch.mask.to(torch.float64), spec.loss)
    return term.clipped & valid


class _Covariance(Mechanism):
    section = "covariance"
    window_fields = ("cov_means", "cov_masks")

    def on(self, spec):
        return spec.covariance.kind == self.name

    def reads_entropy(self, spec):
        return False

    def pick(self, spec, data, covs, k):
        raise NotImplementedError

    def window(self, spec, data):
        means, covs = token_covariance(data)
        k = max(1, int(spec.covariance.ratio * data.num_tokens))
        return {"cov_means": means, "cov_masks": tuple(self.pick(spec, data, covs, k))}

    def picked(self, batch, window, part):
        return window.cov_masks[part].to(batch.mask.device) & batch.mask.detach().bool()


class ClipCov(_Covariance):
    name = "clip_cov"

    def pick(self, spec, data, covs, k):
        if data.generator is None:
            raise ValueError("clip_cov picks tokens at random: pass the run's seeded generator")
        cov = spec.covariance
        band = [
            (c > cov.clip_lb) & (c < cov.clip_ub) & ~loss_clipped(spec, p, a)
            for c, p, a in zip(covs, data.parts, data.advantages)
        ]
        return window_random_pick(band, data.masks, k, data.generator, data.reducer)

    def apply(self, spec, batch, obj, part, given):
        picked = self.picked(batch, obj.window, part)
        weight = (~picked).to(batch.logp.dtype)
        return dataclasses.replace(obj, token_weight=weight, selected={**obj.selected, self.name: picked})


class KLCov(_Covariance):
    name = "kl_cov"

    def pick(self, spec, data, covs, k):
        return window_top_k(covs, data.masks, k, data.reducer)

    def apply(self, spec, batch, obj, part, given):
        picked = self.picked(batch, obj.window, part)
        # |logp - old_logp| with its gradient sign(logp - old_logp), on the picked tokens.
        abs_kl = (batch.logp - batch.old_logp.detach()).abs()
        penalty = torch.where(picked, spec.covariance.kl_coef * abs_kl, 0.0)
        return dataclasses.replace(obj, token_penalty=penalty, selected={**obj.selected, self.name: picked})


MECHANISMS: tuple[Mechanism, ...] = (EntropyAdvantage(), Modulation(), ForkTokens(), ClipCov(), KLCov())


def active(spec: MethodSpec) -> list[Mechanism]:
    """The mechanisms `spec` switches on, in the order they act."""
    return [m for m in MECHANISMS if m.on(spec)]


def spec_sections() -> frozenset[str]:
    """The MethodSpec fields the token objective carries out: every mechanism's section, the loss and
    the window (what an engine running `dynamo.core.objective` supports without further code)."""
    return frozenset({"loss", "window", *(m.section for m in MECHANISMS)})
