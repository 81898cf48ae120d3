"""Window statistics: what a method takes over a set of tokens larger than one token, reduced exactly.

A *window* is the set of valid tokens a statistic is taken over: one micro-batch (one forward on
one rank, as the reference codes do) or the whole optimiser mini-batch on every data-parallel rank
(`MethodSpec.window`). Every statistic goes through a `Reducer` (`dynamo.core.reduce`: sums and
maxima by all-reduce, order statistics by all-gather and the same exact selection on every rank),
so that one code path serves one process and many; each mechanism declares and computes its own
(`dynamo.core.mechanisms`).

`window_stats(spec, parts, ...)` computes everything a method needs over the parts (micro-batches)
this rank holds, reduced over the ranks the reducer spans, and returns a `WindowStats` that
`dynamo.core.objective.token_objective` consumes part by part. Pure: no I/O, no global state; the
only randomness is the generator passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from dynamo.core.mechanisms import MECHANISMS, WindowInput, fork_k  # noqa: F401  (fork_k re-exported)
from dynamo.core.reduce import (  # noqa: F401  (re-exported: engines and tests import them from here)
    LOCAL,
    DistributedReducer,
    LocalReducer,
    Reducer,
    window_count,
    window_kth_largest,
    window_max,
    window_random_pick,
    window_sum,
    window_top_k,
)

if TYPE_CHECKING:
    from dynamo.core.objective import TokenBatch
    from dynamo.spec import MethodSpec


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
    return spec.loss.entropy_coef != 0 or any(m.reads_entropy(spec) for m in MECHANISMS)


def needs_window(spec: MethodSpec) -> bool:
    """True when the method takes any statistic over more than one token; for window mini_batch
    the engine then runs a no-grad pre-pass over the optimiser step and calls `window_stats`."""
    return any(m.takes_window(spec) for m in MECHANISMS)


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

    Each mechanism that takes window statistics computes its own (`dynamo.core.mechanisms`), in the
    mechanisms' order, over the parts' advantages as shaped (the entropy advantage, if on).
    Per-token inputs are read detached. `generator` is needed for Clip-Cov only (its random pick)
    and is advanced by it. `kind` defaults to "micro_batch" for one part on one rank, else "mini_batch".
    """
    num_tokens = window_count([p.mask for p in parts], reducer)
    if kind is None:
        kind = "micro_batch" if len(parts) == 1 and reducer.world_size == 1 else "mini_batch"
    fields: dict = {"loss_tokens": num_tokens}
    if needs_window(spec):
        data = WindowInput(parts, [shaped_advantages(spec, p) for p in parts], num_tokens, reducer, generator)
        for mechanism in MECHANISMS:
            if mechanism.takes_window(spec):
                fields.update(mechanism.window(spec, data))
    return WindowStats(kind=kind, num_tokens=num_tokens, **fields)


def shaped_advantages(spec: MethodSpec, batch: TokenBatch) -> torch.Tensor:
    """Per-token advantages after the method's per-token shaping, before DynaMO's factors (detached):
    the entropy advantage when `spec.entropy_advantage.alpha > 0`, else the advantages given."""
    adv = batch.advantages.detach()
    for mechanism in MECHANISMS:
        adv = mechanism.shape(spec, batch, adv)
    return adv
