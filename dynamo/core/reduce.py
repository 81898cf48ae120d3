"""Exact reductions over a window's tokens, in one process or across data-parallel ranks.

A *window* is the set of valid tokens a statistic is taken over (`dynamo.core.window`). Every such
statistic goes through a `Reducer`, so that one code path serves one process and many:

- sums and maxima (token counts, covariance means, entropy min/max, max |dH|) by all-reduce;
- order statistics (top-k, random picks) by all-gather of the per-token values, then the same exact
  selection on every rank. Gathering is exact and simple; the per-token values are one float per
  response token, small next to logits.

Pure: no I/O, no global state; the only randomness is the generator passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch

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
