"""What both engines need around the token objective, besides gathering tensors (no method math).

- `objective_generator(seed, rank)`: the generator `dynamo.core.objective` draws from (Clip-Cov's
  random pick), seeded from the run seed and the data-parallel rank; the engines save its state
  in their checkpoints, so a resumed run picks the same tokens.
- `micro_loss_tokens(spec, mask)`: the tokens of a micro-batch that enter the loss when the
  micro-batch is its own window (spec `window: micro_batch`): all valid tokens, or the k tokens
  Fork Tokens keeps. Known from the mask alone, so an engine can normalise a token-mean loss over
  the optimiser step before any forward pass (mini_batch windows: `WindowStats.loss_tokens`).
- `needs_step_micro_batches(spec)`: does the step see the optimiser step's micro-batches together
  (mini_batch window statistics, or Fork Tokens' token count)? OpenRLHF's token-budgeted (dynamic)
  batching regroups them, so its launcher gives such methods fixed micro-batches instead.
- `OBJECTIVE_METRICS`: `objective_loss`'s metric keys -> the metrics contract's names, and which
  of them are means over valid tokens (the rest are means over the loss's tokens).
"""

from __future__ import annotations

import torch

from dynamo import metrics_names as M
from dynamo.core.window import fork_k, needs_window
from dynamo.spec import MethodSpec

_SEED_STRIDE = 1_000_003  # distinct streams for (seed, rank) pairs of any realistic size


def objective_generator(seed: int, rank: int = 0) -> torch.Generator:
    """CPU generator for the token objective's random choices, from the run seed and the DP rank."""
    return torch.Generator().manual_seed(int(seed) * _SEED_STRIDE + int(rank) + 1)


def needs_step_micro_batches(spec: MethodSpec) -> bool:
    """Does the step need the optimizer step's micro-batches (window stats or Fork's token count)?"""
    return (spec.window == "mini_batch" and needs_window(spec)) or spec.fork_tokens.top_fraction > 0


def micro_loss_tokens(spec: MethodSpec, mask: torch.Tensor) -> int:
    """Tokens of a micro-batch in the loss when it is its own window (Fork Tokens keeps exactly k)."""
    n = int(mask.sum())
    return min(fork_k(spec, n), n) if spec.fork_tokens.top_fraction > 0 else n


OBJECTIVE_METRICS = {
    "loss": M.ACTOR_LOSS,
    "pg_loss": M.PG_LOSS,
    "pg_clipfrac": M.CLIPFRAC,
    "pg_clipfrac_lower": M.CLIPFRAC_LOWER,
    "approx_kl": M.APPROX_KL,
    "ratio_mean": M.RATIO_MEAN,
    "ratio_max": M.RATIO_MAX,
    "kl": M.KL,
    "entropy": M.ENTROPY,
    "beta_comp": M.BETA_COMP,
    "beta_stab": M.BETA_STAB,
    "positive_share": M.POSITIVE_SHARE,
    "fork_frac": M.FORK_SHARE,
    "clip_cov_frac": M.CLIP_COV_SHARE,
    "kl_cov_frac": M.KL_COV_SHARE,
}
VALID_TOKEN_MEANS = {
    "entropy",
    "beta_comp",
    "beta_stab",
    "positive_share",
    "fork_frac",
    "clip_cov_frac",
    "kl_cov_frac",
}
