"""The token objective: one function from a method spec and a micro-batch to the policy loss.

Every per-token change a method makes to the policy-gradient objective lives here, once, and both
engines (local and OpenRLHF) call it; an engine only gathers tensors, calls `objective_loss`, and
steps the optimiser. In the order they are applied (docs/METHODS.md explains each):

1. advantages  A: the per-token advantages given (sequence advantages broadcast; W-REINFORCE's come
   from `dynamo.core.advantages.sequence_advantages` before this);
2. the token mechanisms the spec switches on, each one object of `dynamo.core.mechanisms.MECHANISMS`
   (entropy advantage, DynaMO's modulation, Fork Tokens, Clip-Cov, KL-Cov), in that order;
3. `dynamo.core.losses.policy_loss` with the LossSpec: the registered ratio/clip term
   (`loss.policy_loss`), dual clip, aggregation, entropy bonus, KL to the reference.

Statistics over more than one token come from a `WindowStats` (`dynamo.core.window`): the engine
computes one over the optimiser step's micro-batches on all ranks for `window: mini_batch`, or
passes none and the micro-batch is its own window. Pure: no I/O, no global state; the only
randomness is the generator passed in (Clip-Cov).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from dynamo.core.losses import policy_loss
from dynamo.core.mechanisms import active
from dynamo.core.window import WindowStats, needs_entropy, shaped_advantages, window_stats
from dynamo.spec import MethodSpec


@dataclass(frozen=True)
class TokenBatch:
    """One micro-batch of per-token tensors, all [B, T] (response tokens, padded).

    logp: log-probs of the sampled tokens under the current policy, carrying the graph.
    old_logp: log-probs under the behaviour policy (detached).
    advantages: per-token advantages (the sequence advantage broadcast over its tokens).
    mask: {0, 1} valid response tokens.
    entropy: full-vocabulary entropy per token; with a graph only if the method has an entropy
      bonus (loss.entropy_coef != 0); may be None when `needs_entropy(spec)` is False.
    ref_logp: reference-model log-probs, only for loss.kl_coef != 0.
    """

    logp: torch.Tensor
    old_logp: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    entropy: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None

    def detached(self) -> TokenBatch:
        """The same batch without graphs (for the window pre-pass)."""
        return TokenBatch(
            *(
                t.detach() if t is not None else None
                for t in (self.logp, self.old_logp, self.advantages, self.mask)
            ),
            entropy=None if self.entropy is None else self.entropy.detach(),
            ref_logp=None if self.ref_logp is None else self.ref_logp.detach(),
        )


@dataclass(frozen=True)
class TokenObjective:
    """What `policy_loss` needs for one micro-batch, per token [B, T].

    advantages: final advantages (after the entropy advantage and DynaMO's factors), detached.
    loss_mask: tokens averaged over by the loss (the valid mask; only the selected tokens under
      Fork Tokens). Engines weighting micro-batch losses by token counts count this mask.
    token_weight: per-token multiplier of the policy-gradient term (Clip-Cov: 0 on detached tokens),
      or None for 1 everywhere.
    token_penalty: per-token extra loss term carrying the graph (KL-Cov), or None.
    beta_comp, beta_stab: DynaMO's factors (exactly 1 when off), for metrics.
    selected: {"fork": mask, "clip_cov": mask, "kl_cov": mask} for the mechanisms that are on.
    window: the statistics used.
    """

    advantages: torch.Tensor
    loss_mask: torch.Tensor
    token_weight: torch.Tensor | None
    token_penalty: torch.Tensor | None
    beta_comp: torch.Tensor
    beta_stab: torch.Tensor
    selected: dict[str, torch.Tensor]
    window: WindowStats


def token_objective(
    spec: MethodSpec,
    batch: TokenBatch,
    window: WindowStats | None = None,
    *,
    part: int = 0,
    generator: torch.Generator | None = None,
) -> TokenObjective:
    """The method's per-token advantages, masks, weights and extra terms for `batch`.

    window: statistics over the window `batch` belongs to, from `window_stats(spec, parts, ...)`
      with `batch` as `parts[part]` (window mini_batch); None = the batch is its own window
      (window micro_batch, as the reference codes): computed here, which draws from `generator`
      for Clip-Cov.
    """
    if needs_entropy(spec) and batch.entropy is None:
        raise ValueError(f"method {spec.name!r} needs the per-token entropy (TokenBatch.entropy)")
    given = window is not None
    if window is None:
        window = window_stats(spec, [batch.detached()], generator=generator, kind="micro_batch")
        part = 0
    adv = shaped_advantages(spec, batch)
    ones = torch.ones(adv.shape, dtype=torch.promote_types(adv.dtype, torch.float32), device=adv.device)
    obj = TokenObjective(
        adv, batch.mask.detach(), None, None, beta_comp=ones, beta_stab=ones, selected={}, window=window
    )
    for mechanism in active(spec):
        obj = mechanism.apply(spec, batch, obj, part, given)
    return dataclasses.replace(obj, advantages=obj.advantages.detach())


def objective_loss(
    spec: MethodSpec,
    batch: TokenBatch,
    window: WindowStats | None = None,
    *,
    part: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float], TokenObjective]:
    """(loss, metrics, objective) for one micro-batch: `token_objective` composed with `policy_loss`.

    The loss is this micro-batch's own aggregate (token-mean over `objective.loss_mask`, or
    seq-mean-token-mean); an engine accumulating micro-batches weights it by its share of the
    window (`objective.loss_mask` tokens / `window.loss_tokens` for token-mean).
    metrics: policy_loss's (loss, pg_loss, pg_clipfrac, pg_clipfrac_lower, approx_kl, ratio_mean,
    ratio_max, kl when a reference is given) plus token means over the *valid* tokens: entropy
    (when given), beta_comp, beta_stab, positive_share (tokens with A > 0), and the fraction of valid
    tokens each mechanism selected (fork_frac, clip_cov_frac, kl_cov_frac) when on; loss_tokens = tokens
    in the loss. Floats.
    """
    obj = token_objective(spec, batch, window, part=part, generator=generator)
    loss_spec = spec.loss
    loss, metrics = policy_loss(
        batch.logp,
        batch.old_logp,
        obj.advantages,
        obj.loss_mask,
        loss_spec,
        entropy=batch.entropy if loss_spec.entropy_coef != 0.0 else None,
        ref_logp=batch.ref_logp if loss_spec.kl_coef else None,
        token_weight=obj.token_weight,
        token_penalty=obj.token_penalty,
    )
    with torch.no_grad():
        valid = batch.mask.bool()
        n = valid.sum().clamp(min=1)

        def mean(x: torch.Tensor) -> float:
            return float(torch.where(valid, x.detach().to(torch.float64), 0.0).sum() / n)

        metrics.pop("entropy", None)  # policy_loss's is over the loss mask; report the valid tokens
        if batch.entropy is not None:
            metrics["entropy"] = mean(batch.entropy)
        metrics["beta_comp"] = mean(obj.beta_comp)
        metrics["beta_stab"] = mean(obj.beta_stab)
        # Share of valid tokens with A > 0 (where beta_comp acts): mean beta_comp on those tokens is
        # 1 + (beta_comp - 1) / positive_share, since beta_comp = 1 on every other token.
        metrics["positive_share"] = mean((obj.advantages > 0).to(torch.float64))
        for name, picked in obj.selected.items():
            metrics[f"{name}_frac"] = mean(picked)
        metrics["loss_tokens"] = float(obj.loss_mask.sum())
    return loss, metrics, obj
