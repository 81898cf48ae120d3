"""Per-prompt reward history: successes k_i and attempts G_i, keyed by a stable prompt id.

DynaMO's allocation weight P_i = k_i (G_i - k_i) / (G_i (G_i - 1)) is computed from this
history (all past steps, not only the current group).

Departures from the released code (docs/METHODS.md sec. 1):
- Statistics are keyed by the prompt's stable string id and updated from (id, reward) pairs
  that travel together, so a non-uniform allocation can never pair a prompt with another
  prompt's rewards (the released loop did, once allocation was non-uniform).
- Each prompt is credited with the number of responses it actually received this step (n_i),
  not with the uniform n.
- Counts are cumulative and never decayed, as in the released code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

_FORMAT = "dynamo.prompt_stats/1"


class PromptStats:
    """Immutable map prompt id -> (k successes, G attempts); `updated` returns a new object."""

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping[str, tuple[int, int]] | None = None) -> None:
        checked: dict[str, tuple[int, int]] = {}
        for pid, (k, g) in (counts or {}).items():
            k, g = int(k), int(g)
            if not isinstance(pid, str):
                raise ValueError(f"prompt ids must be strings, got {pid!r}")
            if not 0 <= k <= g:
                raise ValueError(f"prompt {pid!r}: need 0 <= successes <= attempts, got k={k}, G={g}")
            checked[pid] = (k, g)
        self._counts = checked

    def updated(self, prompt_ids: Sequence[str], rewards: Iterable[float], threshold: float = 0.5) -> PromptStats:
        """New stats with one (prompt id, reward) pair per *sample* added.

        k_i += #{j : id_j = i, r_j > threshold},  G_i += #{j : id_j = i}

        A prompt that received n_i responses appears n_i times, so it is credited with exactly
        the responses it got; the pairs may come in any order.
        """
        ids = list(prompt_ids)
        r = np.asarray(rewards if hasattr(rewards, "__array__") else list(rewards), dtype=np.float64)
        if r.ndim != 1 or r.shape[0] != len(ids):
            raise ValueError(f"need one reward per prompt id: {len(ids)} ids, rewards of shape {r.shape}")
        if np.isnan(r).any():
            raise ValueError(f"rewards contain NaN at positions {np.flatnonzero(np.isnan(r))[:10].tolist()}")
        new = dict(self._counts)
        if not ids:
            return PromptStats(new)
        for pid in ids:
            if not isinstance(pid, str):
                raise ValueError(f"prompt ids must be strings, got {pid!r}")
        # np.unique sorts the ids, so the insertion order of new prompts is deterministic too.
        unique, inverse = np.unique(np.asarray(ids, dtype=object), return_inverse=True)
        attempts = np.bincount(inverse, minlength=len(unique))
        successes = np.bincount(inverse, weights=(r > threshold).astype(np.float64), minlength=len(unique))
        for pid, k, g in zip(unique.tolist(), successes.astype(np.int64).tolist(), attempts.tolist()):
            k0, g0 = new.get(pid, (0, 0))
            new[pid] = (k0 + k, g0 + g)
        return PromptStats(new)

    def counts(self, prompt_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(k: int64[N], G: int64[N]) for the given ids, in that order; (0, 0) for unseen ids."""
        pairs = [self._counts.get(pid, (0, 0)) for pid in prompt_ids]
        arr = np.asarray(pairs, dtype=np.int64).reshape(len(pairs), 2)
        return arr[:, 0].copy(), arr[:, 1].copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe checkpoint form: {"format": ..., "counts": {id: [k, G]}}."""
        return {"format": _FORMAT, "counts": {pid: [k, g] for pid, (k, g) in self._counts.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PromptStats:
        """Inverse of `to_dict`."""
        if d.get("format") != _FORMAT or not isinstance(d.get("counts"), Mapping):
            raise ValueError(f"not a PromptStats checkpoint (expected format {_FORMAT!r}): keys {sorted(d)}")
        return cls({pid: (kg[0], kg[1]) for pid, kg in d["counts"].items()})

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._counts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptStats) and self._counts == other._counts

    def __repr__(self) -> str:
        return f"PromptStats({len(self._counts)} prompts)"
