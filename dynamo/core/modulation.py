"""DynaMO's token-level advantage modulation: A_final = A * beta_comp * beta_stab (docs/METHODS.md sec. 2).

Both factors are detached: they rescale each token's policy gradient, they are not
differentiated. All tensors are per token, [B, T], with a {0, 1} mask of valid response tokens;
a sequence's advantage is broadcast over its tokens. Masked-out tokens get factor 1.

Departures from the paper / released code, stated once:
- The normalisation set (H_min/H_max for beta_comp, max |dH| for beta_stab) is whatever the
  caller passes: by default the tensors given (the released code's micro-batch, which makes the
  factors depend on how the batch is split), or `entropy_range` / `max_change` computed by the
  engine over the whole mini-batch (MethodSpec.window = "mini_batch").
- Degenerate sets are guarded: H_max == H_min gives beta_comp = 1 and max |dH| == 0 gives x = 0.
  (H_max - H) / (H_max - H_min) is clamped to [0, 1], so a range passed in from outside that does
  not cover a token cannot push beta_comp outside [1, 1 + alpha].
- The log-ratio is clamped to [-20, 20] before exp (as verl's policy loss does), so an extreme
  ratio cannot make |dH| infinite and x = inf / inf.
- I_clip in `entropy_change` is the paper's indicator on the *token* ratio and (eps_low, eps_high),
  whatever the method's registered policy loss is: it is DynaMO's first-order model of the update,
  not the loss's clip. It agrees with `ppo_clip` (every DynaMO method's loss) except where A r and
  A (1 + eps) round to the same float; with a sequence-level loss (gspo) it would differ, and no
  registered method combines the two.
"""

from __future__ import annotations

import math

import torch

from dynamo.spec import ModulationSpec

_LOG_RATIO_CLAMP = 20.0


def token_entropy(logits: torch.Tensor, *, chunk_elements: int | None = None) -> torch.Tensor:
    """H = -sum_v pi_v log pi_v over the last dim, with log pi = log_softmax(logits) (logsumexp-based).

    Logits of -inf (masked vocabulary) contribute 0. Rows are processed in chunks of about
    `chunk_elements` logits so that temporaries stay small; the default is 2^18 on CPU (small
    enough for the allocator to reuse cached memory instead of page-faulting fresh pages for every
    chunk, 2-3x faster at a 32k vocabulary) and 2^26 on accelerators (caching allocator; fewer
    kernel launches). Differentiable; call under torch.no_grad() where H is only a factor.
    """
    if logits.ndim < 1 or logits.shape[-1] == 0 or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be floating, last dim non-empty; got {logits.dtype} {tuple(logits.shape)}")
    if chunk_elements is None:
        chunk_elements = 1 << 18 if logits.device.type == "cpu" else 1 << 26
    flat = logits.reshape(-1, logits.shape[-1])
    rows = max(1, chunk_elements // flat.shape[1])
    floor = torch.finfo(logits.dtype).min
    parts = []
    for chunk in flat.split(rows):
        logp = torch.log_softmax(chunk, dim=-1)
        # pi = 0 where logp = -inf; clamping logp makes 0 * log 0 = 0 instead of NaN.
        parts.append(-(logp.exp() * logp.clamp(min=floor)).sum(-1))
    return torch.cat(parts).reshape(logits.shape[:-1]) if parts else flat.new_zeros(logits.shape[:-1])


def compensation_factor(
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    alpha: float,
    entropy_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """beta_comp = 1 + alpha (H_max - H) / (H_max - H_min) where A > 0 (and mask = 1), else 1.

    H_min, H_max: min/max of H over the valid tokens given, or `entropy_range = (H_min, H_max)`.
    Confident (low-entropy) tokens of correct responses get the largest boost, 1 + alpha, to make
    up for the softmax attenuating their gradient. Detached.
    """
    _check_shapes(advantages=advantages, entropy=entropy, mask=mask)
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    with torch.no_grad():
        dtype = _factor_dtype(advantages)
        valid = mask.bool()
        h = torch.where(valid, entropy.detach().to(dtype), 0.0)
        if h.numel() == 0:
            return torch.ones_like(h)
        if entropy_range is None:
            # torch.where + amin/amax rather than h[valid]: no boolean indexing, no device sync.
            h_min = torch.where(valid, h, math.inf).amin()
            h_max = torch.where(valid, h, -math.inf).amax()
        else:
            h_min, h_max = (torch.as_tensor(v, dtype=dtype, device=h.device) for v in entropy_range)
        span = h_max - h_min  # -inf without valid tokens; 0 for a flat set: both give factor 1
        beta = 1.0 + alpha * ((h_max - h) / span).clamp(0.0, 1.0)
        boost = valid & (advantages.detach() > 0) & (span > 0)
        return torch.where(boost, beta, torch.ones_like(beta))


def entropy_change(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
) -> torch.Tensor:
    """First-order entropy change dH caused by each token's update (0 at masked tokens). Detached.

        r      = exp(logp - old_logp)
        I_clip = 1 if (A > 0 and r <= 1 + eps_high) or (A < 0 and r >= 1 - eps_low), else 0
        xi     = I_clip * r * A
        Lambda = logp + H
        dH     = -xi * (pi * Lambda - E[pi * Lambda]),   pi = exp(logp)

    E[.] is the mean over the valid tokens of the same sequence (last dim). Engines that normalise
    over a whole mini-batch take max |dH| of this across micro-batches and pass it as `max_change`.
    """
    _check_shapes(logp=logp, old_logp=old_logp, advantages=advantages, entropy=entropy, mask=mask)
    with torch.no_grad():
        dtype = _factor_dtype(logp)
        m = mask.detach().to(dtype)
        valid = m > 0
        # Padding may hold anything (e.g. -inf log-probs); zero it so that 0 * inf cannot make NaN.
        logp, old_logp, adv, h = (
            torch.where(valid, t.detach().to(dtype), 0.0) for t in (logp, old_logp, advantages, entropy)
        )
        ratio = torch.exp((logp - old_logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))
        # I_clip: the token still receives gradient under PPO clipping (its surrogate is unclipped).
        active = ((adv > 0) & (ratio <= 1.0 + eps_high)) | ((adv < 0) & (ratio >= 1.0 - eps_low))
        xi = active.to(dtype) * ratio * adv
        pi_lambda = logp.exp() * (logp + h)
        seq_mean = (pi_lambda * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)
        return -xi * (pi_lambda - seq_mean) * m


def decay(x: torch.Tensor | float, *, lambda_min: float, gamma: float, tau: float) -> torch.Tensor | float:
    """f(x) = lambda_min + (1 - lambda_min) / (1 + exp(gamma (x - tau))), in [lambda_min, 1].

    Written with a sigmoid, 1 / (1 + exp(z)) = sigmoid(-z), which cannot overflow.
    decay6 (lambda_min 0.6, gamma 50, tau 0.99): f(1.0) = 0.751, f(0.99) = 0.80, f(0.9) = 0.996.
    """
    if isinstance(x, torch.Tensor):
        out = lambda_min + (1.0 - lambda_min) * torch.sigmoid(-gamma * (x - tau))
        # The clamp only removes rounding (lambda_min + (1 - lambda_min) may exceed 1 by an ulp).
        return out.clamp(min(lambda_min, 1.0), 1.0)
    z = -gamma * (float(x) - tau)
    sig = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return min(max(lambda_min + (1.0 - lambda_min) * sig, min(lambda_min, 1.0)), 1.0)


def stabilization_factor(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    lambda_min: float,
    gamma: float,
    tau: float,
    max_change: float | None = None,
) -> torch.Tensor:
    """beta_stab = decay(x) with x = |dH| / max |dH|, dH = `entropy_change(...)`; 1 where mask = 0.

    max |dH| is over the valid tokens given, or `max_change`; a zero (or absent) maximum gives
    x = 0. Only tokens whose entropy change is near the largest one are damped (towards
    lambda_min). Detached.
    """
    if not 0.0 <= lambda_min <= 1.0:
        raise ValueError(f"lambda_min must be in [0, 1], got {lambda_min!r}")
    change = entropy_change(logp, old_logp, advantages, entropy, mask, eps_low=eps_low, eps_high=eps_high)
    with torch.no_grad():
        magnitude = change.abs()  # already 0 at masked tokens
        if max_change is None:
            top = magnitude.amax() if magnitude.numel() else magnitude.new_zeros(())
        else:
            top = torch.as_tensor(max_change, dtype=magnitude.dtype, device=magnitude.device)
        x = torch.where(top > 0, magnitude / top, torch.zeros_like(magnitude))
        beta = decay(x, lambda_min=lambda_min, gamma=gamma, tau=tau)
        return torch.where(mask.bool(), beta, torch.ones_like(beta))


def modulation_factors(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    spec: ModulationSpec,
    *,
    eps_low: float,
    eps_high: float,
    entropy_range: tuple[float, float] | None = None,
    max_change: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(beta_comp, beta_stab) as configured by `spec`; a disabled factor is exactly 1. Detached.

    With compensation off and `spec.positive_scale` != 1, "beta_comp" is that constant on every A > 0
    token (dynamo-posscale, the null model of compensation).

    The window (MethodSpec.window) is the caller's business: for "mini_batch" it passes `entropy_range` and
    `max_change` computed over the whole mini-batch; otherwise the tensors given are the set.
    """
    ones = torch.ones(advantages.shape, dtype=_factor_dtype(advantages), device=advantages.device)
    if spec.compensation:
        comp = compensation_factor(advantages, entropy, mask, alpha=spec.alpha, entropy_range=entropy_range)
    elif spec.positive_scale != 1.0:
        # The null model of beta_comp: the same kind of boost on A > 0 tokens, but one constant.
        boost = mask.bool() & (advantages.detach() > 0)
        comp = torch.where(boost, torch.full_like(ones, spec.positive_scale), ones)
    else:
        comp = ones
    stab = (
        stabilization_factor(
            logp,
            old_logp,
            advantages,
            entropy,
            mask,
            eps_low=eps_low,
            eps_high=eps_high,
            lambda_min=spec.lambda_min,
            gamma=spec.gamma,
            tau=spec.tau,
            max_change=max_change,
        )
        if spec.stabilization
        else ones.clone()
    )
    return comp, stab


def _factor_dtype(t: torch.Tensor) -> torch.dtype:
    # At least float32: bf16 would round the factors (and the sigmoid near tau) too coarsely.
    return torch.promote_types(t.dtype, torch.float32) if t.dtype.is_floating_point else torch.float32


def _check_shapes(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"per-token tensors must share one shape [B, T], got {shapes}")
