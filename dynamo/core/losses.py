"""The policy loss per token: a registered ratio/clip term, then the terms every method shares.

The ratio/clip term is chosen by name (`LossSpec.policy_loss`) from `POLICY_LOSSES`; each is a pure
function (log_ratio, advantages, mask, loss spec) -> `RatioTerm`, registered with
`@register_policy_loss(name)`. Registered here: `ppo_clip` (token PPO-clip; the one PPO clip of the
code base: Clip-Cov's band and the metrics read its `clipped` mask) and `reinforce` (no clip); other
modules of `dynamo.core` may register more (`gspo`), found by `get_policy_loss`. `policy_loss` then
adds what every method shares: dual clip, per-token weight and penalty, aggregation, entropy bonus
and KL to the reference. DynaMO's modulation enters only through the advantages the caller passes
(A * beta_comp * beta_stab); with factors of 1 this is exactly the GRPO/DAPO loss.

Departures from the textbook PPO objective (Schulman et al. 2017), as in verl's
`compute_policy_loss`, which the DynaMO authors' code uses:
- asymmetric clip range (1 - eps_low, 1 + eps_high) (DAPO's Clip-Higher when eps_high > eps_low);
- dual clip (Ye et al. 2020): for A < 0 the loss is capped at -c A, so a huge ratio on a
  negative-advantage token cannot produce an unbounded update;
- the log-ratio is clamped to [-20, 20] before exp, and the k3 KL estimate to [-10, 10] (verl);
- the loss is *minimised*, so it is the negative surrogate; metrics are token means over the
  valid tokens whatever the loss aggregation.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from dynamo.spec import LossSpec

_LOG_RATIO_CLAMP = 20.0
_KL_CLAMP = 10.0


@dataclass(frozen=True)
class RatioTerm:
    """A registered policy loss's per-token output, all [B, T].

    loss: the per-token surrogate loss, carrying the graph through the log-ratio.
    ratio: the importance ratio each token's term uses (values; for metrics).
    clipped: bool, tokens whose term the clip holds constant (no gradient through the ratio).
    """

    loss: torch.Tensor
    ratio: torch.Tensor
    clipped: torch.Tensor


PolicyLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "LossSpec"], RatioTerm]
POLICY_LOSSES: dict[str, PolicyLoss] = {}


def register_policy_loss(name: str) -> Callable[[PolicyLoss], PolicyLoss]:
    """Decorator: register `fn(log_ratio, advantages, mask, loss_spec) -> RatioTerm` as `name`.

    log_ratio: clamped log(pi / pi_old) per token, carrying the graph (0 at padding); advantages:
    detached (0 at padding); mask: {0, 1} tokens of the loss. The function must not read padding.
    """

    def register(fn: PolicyLoss) -> PolicyLoss:
        if name in POLICY_LOSSES and POLICY_LOSSES[name] is not fn:
            raise ValueError(f"policy loss {name!r} is registered twice")
        POLICY_LOSSES[name] = fn
        return fn

    return register


def policy_losses() -> dict[str, PolicyLoss]:
    """Every registered policy loss by name. The modules of `dynamo.core` register theirs when imported;
    all are imported here, so that an engine given a spec as data finds a loss no one imported yet."""
    import dynamo.core

    for module in pkgutil.iter_modules(dynamo.core.__path__):
        importlib.import_module(f"dynamo.core.{module.name}")
    return dict(POLICY_LOSSES)


def get_policy_loss(name: str) -> PolicyLoss:
    """The registered policy loss `name`, or a ValueError naming the registered ones."""
    known = POLICY_LOSSES if name in POLICY_LOSSES else policy_losses()
    if name not in known:
        raise ValueError(f"unknown loss.policy_loss {name!r}; registered: {', '.join(sorted(known))}")
    return known[name]


def token_log_ratio(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """log(pi / pi_old) per token, clamped to [-20, 20] so that exp cannot overflow."""
    return (logp - old_logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)


@register_policy_loss("ppo_clip")
def ppo_clip(log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, loss: LossSpec) -> RatioTerm:
    """Token PPO-clip: l_t = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high)), r = exp(log_ratio)."""
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - loss.eps_low, 1.0 + loss.eps_high)
    return RatioTerm(torch.maximum(unclipped, clipped), ratio, clipped > unclipped)


@register_policy_loss("reinforce")
def reinforce(log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, loss: LossSpec) -> RatioTerm:
    """REINFORCE in ratio form, no clip: l_t = -A r (its gradient at r = 1 is -A grad log pi)."""
    ratio = torch.exp(log_ratio)
    return RatioTerm(-advantages * ratio, ratio, torch.zeros(ratio.shape, dtype=torch.bool, device=ratio.device))


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    loss_spec: LossSpec,
    *,
    entropy: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    token_weight: torch.Tensor | None = None,
    token_penalty: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, metrics) for per-token tensors [B, T] and a {0, 1} mask of valid tokens.

        l_t = the registered policy loss `loss_spec.policy_loss` (ppo_clip: max(-A r, -A clip(r, 1 - eps_low,
              1 + eps_high)), r = exp(logp - old_logp); reinforce: -A r)
        l_t = min(l_t, -c A)                       where A < 0, if loss_spec.dual_clip = c is set
        l_t = w_t l_t + p_t                        token_weight w (detached), token_penalty p
        loss = agg(l) - entropy_coef * agg(H) + kl_coef * agg(k3),
        k3  = exp(ref_logp - logp) - (ref_logp - logp) - 1

    agg = "token-mean": sum over all valid tokens / number of valid tokens (DAPO);
          "seq-mean-token-mean": mean over sequences (with >= 1 valid token) of each sequence's
          token mean (GRPO paper).
    Gradients flow through logp (and through `entropy`, if it carries a graph, for the bonus, and
    through `token_penalty`, which the caller builds from logp); old_logp, advantages, ref_logp and
    token_weight are detached. w = 0 removes a token's policy-gradient term but keeps it in the
    denominator (Clip-Cov's detach); the penalty is KL-Cov's per-token term.
    metrics: loss, pg_loss, pg_clipfrac, pg_clipfrac_lower, approx_kl (mean of old_logp - logp),
    ratio_mean, ratio_max, and entropy / kl when given; all Python floats.
    """
    eps_low, eps_high, dual_clip = loss_spec.eps_low, loss_spec.eps_high, loss_spec.dual_clip
    aggregation, entropy_coef, kl_coef = loss_spec.aggregation, loss_spec.entropy_coef, loss_spec.kl_coef
    ratio_term = get_policy_loss(loss_spec.policy_loss)
    tensors = {"logp": logp, "old_logp": old_logp, "advantages": advantages, "mask": mask}
    if entropy is not None:
        tensors["entropy"] = entropy
    if ref_logp is not None:
        tensors["ref_logp"] = ref_logp
    if token_weight is not None:
        tensors["token_weight"] = token_weight
    if token_penalty is not None:
        tensors["token_penalty"] = token_penalty
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"per-token tensors must share one shape, got {shapes}")
    if not (0.0 <= eps_low <= 1.0 and eps_high >= 0.0):
        raise ValueError(f"need 0 <= eps_low <= 1 and eps_high >= 0, got eps_low={eps_low}, eps_high={eps_high}")
    if dual_clip is not None and not dual_clip > 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip!r}")
    if aggregation not in ("token-mean", "seq-mean-token-mean"):
        raise ValueError(f"aggregation must be 'token-mean' or 'seq-mean-token-mean', got {aggregation!r}")
    if aggregation == "seq-mean-token-mean" and logp.ndim < 2:
        raise ValueError(f"seq-mean-token-mean needs [B, T] tensors, got shape {tuple(logp.shape)}")
    if entropy_coef != 0.0 and entropy is None:
        raise ValueError("entropy_coef != 0 needs the per-token entropy")
    if kl_coef != 0.0 and ref_logp is None:
        raise ValueError("kl_coef != 0 needs ref_logp")

    m = mask.detach().to(logp.dtype)
    valid = m > 0
    # Padding may hold anything (e.g. -inf log-probs): zero it *before* any arithmetic, since
    # 0 * inf = NaN would otherwise leak into the loss and, through the backward pass, the gradient.
    logp = torch.where(valid, logp, 0.0)
    old_logp, adv = torch.where(valid, old_logp.detach(), 0.0), torch.where(valid, advantages.detach(), 0.0)
    if entropy is not None:
        entropy = torch.where(valid, entropy, 0.0)
    if ref_logp is not None:
        ref_logp = torch.where(valid, ref_logp.detach(), 0.0)
    log_ratio = token_log_ratio(logp, old_logp)
    term = ratio_term(log_ratio, adv, m, loss_spec)
    ratio, ppo = term.ratio, term.loss
    per_token = ppo
    if dual_clip is not None:
        per_token = torch.where(adv < 0, torch.minimum(ppo, -adv * dual_clip), ppo)
    pg_terms = per_token
    if token_weight is not None:
        pg_terms = pg_terms * torch.where(valid, token_weight.detach().to(logp.dtype), 0.0)
    if token_penalty is not None:
        pg_terms = pg_terms + torch.where(valid, token_penalty, 0.0)
    pg_loss = _aggregate(pg_terms, m, aggregation)
    loss = pg_loss
    if entropy is not None and entropy_coef != 0.0:
        loss = loss - entropy_coef * _aggregate(entropy, m, aggregation)
    k3 = None
    if ref_logp is not None:
        kl = (ref_logp - logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
        k3 = (torch.exp(kl) - kl - 1.0).clamp(-_KL_CLAMP, _KL_CLAMP)
        if kl_coef != 0.0:
            loss = loss + kl_coef * _aggregate(k3, m, aggregation)

    with torch.no_grad():

        def token_mean(x: torch.Tensor) -> float:
            return float((x.detach().to(m.dtype) * m).sum() / m.sum().clamp(min=1.0))

        metrics = {
            "loss": float(loss.detach()),
            "pg_loss": float(pg_loss.detach()),
            "pg_clipfrac": token_mean(term.clipped),
            "pg_clipfrac_lower": token_mean(per_token < ppo),  # dual clip active
            "approx_kl": token_mean(-log_ratio),
            "ratio_mean": token_mean(ratio),
            "ratio_max": float(torch.where(valid, ratio.detach(), 0.0).amax()) if valid.any() else 1.0,
        }
        if entropy is not None:
            metrics["entropy"] = token_mean(entropy)
        if k3 is not None:
            metrics["kl"] = token_mean(k3)
    return loss, metrics


def _aggregate(values: torch.Tensor, mask: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Masked token-mean, or mean over non-empty sequences of per-sequence masked token means."""
    if aggregation == "token-mean":
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    tokens = mask.sum(-1)
    seq_means = (values * mask).sum(-1) / tokens.clamp(min=1.0)
    nonempty = (tokens > 0).to(values.dtype)
    # Empty sequences contribute 0 with weight 0 (verl would divide by zero).
    return (seq_means * nonempty).sum() / nonempty.sum().clamp(min=1.0)
