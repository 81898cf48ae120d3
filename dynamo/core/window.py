"""Window statistics: what a method takes over a set of tokens larger than one token, reduced exactly.

A *window* is the set of valid tokens a statistic is taken over: one micro-batch (one forward on
one rank, as the reference codes do) or the whole optimiser mini-batch on every data-parallel rank
(`MethodSpec.window`). Every such statistic goes through a `Reducer`, so that one code path serves
one process and many:

- sums and maxima (token counts, covariance means, entropy min/max, max |dH|) by all-reduce;
- order statistics (the Fork-Tokens top-entropy tokens, KL-Cov's top-k, Clip-Cov's random pick) by
  all-gather of the per-token values, then the same exact selection on every rank. Gathering is
  exact and simple; the per-token values are one float per response token, small next to logits.

`window_stats(spec, parts, ...)` computes everything a method needs over the parts (micro-batches)
this rank holds, reduced over the ranks the reducer spans, and returns a `WindowStats` that
`dynamo.core.objective.token_objective` consumes part by part. Pure: no I/O, no global state; the
only randomness is the generator passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from dynamo.core.advantages import entropy_advantage
from dynamo.core.modulation import entropy_change

if TYPE_CHECKING:
    from dynamo.core.objective import TokenBatch
    from dynamo.spec import MethodSpec

_LOG_RATIO_CLAMP = 20.0  # as in dynamo.core.losses: the ratio the loss sees


# -- reducers ------------------------------------------------------------------------------------


class Reducer(Protocol):
    """Reductions over the data-parallel ranks of a window. Every rank calls the same methods in
    the same order (collectives); every rank gets the same result."""

    rank: int
    world_size: int

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over ranks (same shape on every rank)."""
        ...

    def max(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise maximum over ranks (same shape on every rank)."""
        ...

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """1-D tensors of any length per rank -> their concatenation in rank order."""
        ...


class LocalReducer:
    """One process: every reduction is the identity."""

    rank = 0
    world_size = 1

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def max(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1)


class DistributedReducer:
    """torch.distributed over `group` (None = the default group): all_reduce for sums and maxima,
    all_gather (sizes first, then padded values) for the concatenation. Works with gloo and NCCL;
    tensors must live where the backend expects them (CPU for gloo, the rank's GPU for NCCL)."""

    def __init__(self, group=None):
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("DistributedReducer needs an initialised torch.distributed process group")
        self._dist, self.group = dist, group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        self._dist.all_reduce(out, op=self._dist.ReduceOp.SUM, group=self.group)
        return out

    def max(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        self._dist.all_reduce(out, op=self._dist.ReduceOp.MAX, group=self.group)
        return out

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1)
        size = torch.tensor([x.numel()], dtype=torch.int64, device=x.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        self._dist.all_gather(sizes, size, group=self.group)
        counts = [int(s) for s in sizes]
        if max(counts) == 0:  # nothing anywhere: skip a zero-size collective
            return x.new_zeros(0)
        # all_gather needs equal shapes: pad to the longest, then cut each rank's piece back out.
        padded = x.new_zeros(max(counts))
        padded[: x.numel()] = x
        pieces = [torch.empty_like(padded) for _ in range(self.world_size)]
        self._dist.all_gather(pieces, padded, group=self.group)
        return torch.cat([p[:n] for p, n in zip(pieces, counts)])


LOCAL = LocalReducer()


# -- exact reductions over the parts of a window --------------------------------------------------


def _flat_valid(values: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """The valid entries of every part, flattened and concatenated in part order (float64)."""
    pieces = [v.detach().to(torch.float64)[m.bool()] for v, m in zip(values, masks)]
    ref = values[0] if values else torch.zeros(0)
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.float64, device=ref.device)


def window_sum(values: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], reducer: Reducer = LOCAL) -> float:
    """Sum of the valid entries over every part and rank."""
    # torch.where, not v * m: padding may hold -inf (log-probs), and -inf * 0 is NaN.
    local = sum(torch.where(m.bool(), v.detach().to(torch.float64), 0.0).sum() for v, m in zip(values, masks))
    return float(reducer.sum(torch.as_tensor(local, dtype=torch.float64, device=_device(values)).reshape(1))[0])


def window_count(masks: Sequence[torch.Tensor], reducer: Reducer = LOCAL) -> int:
    """Number of valid tokens over every part and rank."""
    local = sum(int(m.bool().sum()) for m in masks)
    return int(reducer.sum(torch.tensor([local], dtype=torch.int64, device=_device(masks)))[0])


def window_max(values: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], reducer: Reducer = LOCAL) -> float:
    """Maximum of the valid entries over every part and rank; -inf for an empty window."""
    local = torch.full((1,), -math.inf, dtype=torch.float64, device=_device(values))
    for v, m in zip(values, masks):
        if m.bool().any():
            local = torch.maximum(local, v.detach().to(torch.float64)[m.bool()].amax().reshape(1))
    return float(reducer.max(local)[0])


def window_kth_largest(
    values: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], k: int, reducer: Reducer = LOCAL
) -> float:
    """The k-th largest valid entry over every part and rank (1-based k, clamped to the count);
    +inf for an empty window (so that `value >= threshold` selects nothing)."""
    everything = reducer.gather(_flat_valid(values, masks))
    if everything.numel() == 0:
        return math.inf
    k = min(max(k, 1), everything.numel())
    return float(torch.topk(everything, k).values[-1])


def window_top_k(
    scores: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], k: int, reducer: Reducer = LOCAL
) -> list[torch.Tensor]:
    """Boolean masks (one per part) of exactly min(k, N) valid tokens with the largest scores over
    every part and rank. Every rank gathers the same scores and runs the same `torch.topk`, so the
    ranks agree on the pick; ties are broken by topk, deterministically."""
    flat = _flat_valid(scores, masks)
    everything = reducer.gather(flat)
    chosen = torch.zeros(everything.numel(), dtype=torch.bool, device=everything.device)
    k = min(max(k, 0), everything.numel())
    if k:
        chosen[torch.topk(everything, k).indices] = True
    return _scatter_back(chosen, flat.numel(), masks, reducer)


def window_random_pick(
    candidates: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    k: int,
    generator: torch.Generator,
    reducer: Reducer = LOCAL,
) -> list[torch.Tensor]:
    """Boolean masks (one per part) of min(k, M) tokens drawn uniformly without replacement from
    the M candidate tokens (candidate and valid) of every part and rank.

    Each valid token gets a uniform key from `generator` (on CPU, float64, one draw per part of
    its full shape, so the generator advances by the same amount whatever the candidates are); the
    k candidates with the smallest keys are picked, which is a uniform random k-subset. Ranks
    should seed their generators differently (e.g. seed and rank), or they draw the same keys.
    """
    keys = [torch.rand(m.shape, generator=generator, dtype=torch.float64).to(m.device) for m in masks]
    cand = [c.bool() & m.bool() for c, m in zip(candidates, masks)]
    # Non-candidates get key 2 (> any uniform draw), so -key top-k never prefers them.
    scores = [torch.where(c, -k_, -2.0) for c, k_ in zip(cand, keys)]
    num_candidates = window_count(cand, reducer)
    return window_top_k(scores, masks, min(k, num_candidates), reducer)


def _scatter_back(
    chosen: torch.Tensor, local_count: int, masks: Sequence[torch.Tensor], reducer: Reducer
) -> list[torch.Tensor]:
    """Cut this rank's slice out of a gathered 1-D selection and put it back into part shapes."""
    counts = reducer.gather(torch.tensor([local_count], dtype=torch.int64, device=chosen.device))
    offset = int(counts[: reducer.rank].sum())
    mine = chosen[offset : offset + local_count]
    out, start = [], 0
    for m in masks:
        valid = m.bool()
        n = int(valid.sum())
        part = torch.zeros(m.shape, dtype=torch.bool, device=m.device)
        part[valid] = mine[start : start + n].to(m.device)
        out.append(part)
        start += n
    return out


def _device(tensors: Sequence[torch.Tensor]) -> torch.device:
    return tensors[0].device if len(tensors) else torch.device("cpu")


# -- the statistics a method needs ---------------------------------------------------------------


@dataclass(frozen=True)
class WindowStats:
    """What the token objective needs from the window, for each of this rank's parts.

    kind: "micro_batch" or "mini_batch" (what the engine built; recorded with the run).
    num_tokens: valid tokens of the window (all parts, all ranks).
    loss_tokens: tokens that enter the loss over the window (fewer than num_tokens with Fork Tokens);
      the denominator of a token-mean loss accumulated over the window's micro-batches.
    entropy_range: (H_min, H_max) over the window (DynaMO's compensation), or None.
    max_change: max |dH| over the window (DynaMO's stabilisation), or None.
    fork_masks: per part, the tokens Fork Tokens keeps (the window's k highest entropies), or None.
    cov_means: (mean A, mean logp) over the window (Clip-Cov, KL-Cov), or None.
    cov_masks: per part, the tokens Clip-Cov detaches or KL-Cov penalises, or None.
    """

    kind: str
    num_tokens: int
    loss_tokens: int
    entropy_range: tuple[float, float] | None = None
    max_change: float | None = None
    fork_masks: tuple[torch.Tensor, ...] | None = None
    cov_means: tuple[float, float] | None = None
    cov_masks: tuple[torch.Tensor, ...] | None = None


def needs_entropy(spec: MethodSpec) -> bool:
    """True when the method reads the per-token entropy (modulation, Fork Tokens, entropy
    advantage, entropy bonus); the engine may skip computing it otherwise."""
    mod = spec.modulation
    return bool(
        mod.compensation
        or mod.stabilization
        or spec.fork_tokens.top_fraction > 0
        or spec.entropy_advantage.alpha > 0
        or spec.loss.entropy_coef != 0
    )


def needs_window(spec: MethodSpec) -> bool:
    """True when the method takes any statistic over more than one token; for window mini_batch
    the engine then runs a no-grad pre-pass over the optimiser step and calls `window_stats`."""
    mod = spec.modulation
    return bool(
        mod.compensation
        or mod.stabilization
        or spec.fork_tokens.top_fraction > 0
        or spec.covariance.kind != "none"
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


def window_stats(
    spec: MethodSpec,
    parts: Sequence[TokenBatch],
    *,
    generator: torch.Generator | None = None,
    reducer: Reducer = LOCAL,
    kind: str | None = None,
) -> WindowStats:
    """The window statistics of `spec` over `parts` (this rank's micro-batches of the window),
    reduced over the ranks of `reducer`. Collective: every rank calls it with its own parts.

    Per-token inputs are read detached. Advantages are shaped as the objective shapes them (the
    entropy advantage, if on) before dH and the covariance are taken; DynaMO's factors are not
    applied to the covariance (the methods are not combined in any source; this is our order).
    `generator` is needed for Clip-Cov only (its random pick) and is advanced by it.
    `kind` defaults to "micro_batch" for one part on one rank, else "mini_batch".
    """
    masks = [p.mask for p in parts]
    num_tokens = window_count(masks, reducer)
    if kind is None:
        kind = "micro_batch" if len(parts) == 1 and reducer.world_size == 1 else "mini_batch"
    if not needs_window(spec):
        return WindowStats(kind=kind, num_tokens=num_tokens, loss_tokens=num_tokens)
    fields: dict = {}
    mod = spec.modulation
    advantages = [shaped_advantages(spec, p) for p in parts]
    if mod.compensation:
        entropies = [_need_entropy(p) for p in parts]
        h_max = window_max(entropies, masks, reducer)
        h_min = -window_max([-h for h in entropies], masks, reducer)
        fields["entropy_range"] = (h_min, h_max)
    if mod.stabilization:
        changes = [
            entropy_change(
                p.logp,
                p.old_logp,
                a,
                _need_entropy(p),
                p.mask,
                eps_low=spec.loss.eps_low,
                eps_high=spec.loss.eps_high,
            ).abs()
            for p, a in zip(parts, advantages)
        ]
        fields["max_change"] = max(window_max(changes, masks, reducer), 0.0)
    loss_tokens = num_tokens
    if spec.fork_tokens.top_fraction > 0:
        # Exactly k tokens, as the reference's topk indices (ties broken by torch.topk).
        entropies = [_need_entropy(p) for p in parts]
        fork = window_top_k(entropies, masks, fork_k(spec, num_tokens), reducer)
        fields["fork_masks"] = tuple(fork)
        loss_tokens = window_count(fork, reducer)
    cov = spec.covariance
    if cov.kind != "none":
        adv_mean = window_sum(advantages, masks, reducer) / max(num_tokens, 1)
        logp_mean = window_sum([p.logp for p in parts], masks, reducer) / max(num_tokens, 1)
        fields["cov_means"] = (adv_mean, logp_mean)
        covs = [
            (a.detach().to(torch.float64) - adv_mean) * (p.logp.detach().to(torch.float64) - logp_mean)
            for p, a in zip(parts, advantages)
        ]
        k = max(1, int(cov.ratio * num_tokens))
        if cov.kind == "kl_cov":
            picked = window_top_k(covs, masks, k, reducer)
        else:
            if generator is None:
                raise ValueError("clip_cov picks tokens at random: pass the run's seeded generator")
            band = [
                (c > cov.clip_lb) & (c < cov.clip_ub) & ~_ppo_clipped(spec, p, a)
                for c, p, a in zip(covs, parts, advantages)
            ]
            picked = window_random_pick(band, masks, k, generator, reducer)
        fields["cov_masks"] = tuple(picked)
    return WindowStats(kind=kind, num_tokens=num_tokens, loss_tokens=loss_tokens, **fields)


def shaped_advantages(spec: MethodSpec, batch: TokenBatch) -> torch.Tensor:
    """Per-token advantages after the method's per-token shaping, before DynaMO's factors (detached):
    the entropy advantage when `spec.entropy_advantage.alpha > 0`, else the advantages given."""
    adv = batch.advantages.detach()
    ea = spec.entropy_advantage
    if ea.alpha > 0:
        adv = entropy_advantage(adv, _need_entropy(batch), batch.mask, alpha=ea.alpha, kappa=ea.kappa)
    return adv


def _ppo_clipped(spec: MethodSpec, batch: TokenBatch, advantages: torch.Tensor) -> torch.Tensor:
    """Tokens whose PPO surrogate is clipped (the clipped term is the larger loss), as Clip-Cov's
    reference excludes them from its band."""
    if not spec.loss.clip:
        return torch.zeros(batch.mask.shape, dtype=torch.bool, device=batch.mask.device)
    log_ratio = (batch.logp.detach() - batch.old_logp.detach()).to(torch.float64)
    ratio = log_ratio.clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP).exp()
    adv = advantages.to(torch.float64)
    clipped = -adv * ratio.clamp(1.0 - spec.loss.eps_low, 1.0 + spec.loss.eps_high)
    return (clipped > -adv * ratio) & batch.mask.bool()


def _need_entropy(batch: TokenBatch) -> torch.Tensor:
    if batch.entropy is None:
        raise ValueError("this method needs the per-token entropy (TokenBatch.entropy is None)")
    return batch.entropy.detach()
