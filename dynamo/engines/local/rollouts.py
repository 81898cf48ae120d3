"""Rollout batches for the local engine: generate, grade, shape rewards, keep alignment.

Every sample carries the index of its prompt in the step's prompt list (`group_ids`), the
prompt's stable id and its gold answers, so non-uniform allocation can never join a
response to another prompt's answer (the released DynaMO code's alignment bug).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from dynamo.core.rules import PoolCounts
from dynamo.core.shaping import overlong_buffer_tokens, overlong_penalty
from dynamo.generation import Generation


@dataclass
class RolloutBatch:
    """Samples of one step, sample s belonging to group `group_ids[s]` (= its prompt's position)."""

    group_ids: torch.Tensor  # int64 [S]
    prompt_ids: list[str]  # stable prompt id per sample
    input_ids: torch.Tensor  # int64 [S, L]: prompt + response, right-padded
    attention_mask: torch.Tensor  # int64 [S, L]
    response_mask: torch.Tensor  # float [S, L]: 1 on positions holding a response token
    correct: torch.Tensor  # float [S]: 1 if the final answer graded correct
    rewards: torch.Tensor  # float [S]: correct, minus any overlong penalty
    response_lengths: torch.Tensor  # int64 [S]
    truncated: torch.Tensor  # bool [S]
    pool: PoolCounts | None = None  # per sample, its group's counts before a down-selection (`with_pool`)

    @property
    def num_samples(self) -> int:
        return int(self.group_ids.numel())

    def select(self, keep: torch.Tensor) -> RolloutBatch:
        """The samples where the boolean mask `keep` is true, in their original order."""
        idx = keep.nonzero().squeeze(1)
        return RolloutBatch(
            group_ids=self.group_ids[idx],
            prompt_ids=[self.prompt_ids[i] for i in idx.tolist()],
            input_ids=self.input_ids[idx],
            attention_mask=self.attention_mask[idx],
            response_mask=self.response_mask[idx],
            correct=self.correct[idx],
            rewards=self.rewards[idx],
            response_lengths=self.response_lengths[idx],
            truncated=self.truncated[idx],
            pool=None if self.pool is None else PoolCounts(self.pool.correct[idx], self.pool.size[idx]),
        )

    def with_pool(self) -> RolloutBatch:
        """This batch with `pool` set from its own groups: per sample, its group's correct and total
        samples (taken before a down-selection, so the counts survive `select`)."""
        _, inverse, sizes = torch.unique(self.group_ids, return_inverse=True, return_counts=True)
        right = torch.zeros(sizes.numel(), dtype=torch.long).index_add(0, inverse, (self.correct > 0.5).long())
        return dataclasses.replace(self, pool=PoolCounts(right[inverse], sizes[inverse]))


def build_batch(
    generations: list[Generation],
    prompt_ids: list[str],
    correct: list[bool],
    *,
    pad_token_id: int,
    max_new_tokens: int,
    overlong_buffer_fraction: float = 0.0,
    overlong_penalty_value: float = 1.0,
    group_offset: int = 0,
) -> RolloutBatch:
    """Pack generations (each tagged with its prompt index) into right-padded training tensors."""
    if len(generations) != len(correct):
        raise ValueError(f"{len(generations)} generations but {len(correct)} verdicts")
    seqs = [list(g.prompt_ids) + list(g.response_ids) for g in generations]
    width = max(len(s) for s in seqs)
    n = len(seqs)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    response_mask = torch.zeros((n, width), dtype=torch.float32)
    for i, (g, seq) in enumerate(zip(generations, seqs)):
        input_ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[i, : len(seq)] = 1
        response_mask[i, len(g.prompt_ids) : len(seq)] = 1.0
    lengths = torch.tensor([len(g.response_ids) for g in generations], dtype=torch.long)
    correct_t = torch.tensor(correct, dtype=torch.float32)
    buffer = overlong_buffer_tokens(overlong_buffer_fraction, max_new_tokens)
    penalty = overlong_penalty(lengths, max_new_tokens, buffer, overlong_penalty_value)
    return RolloutBatch(
        group_ids=torch.tensor([g.prompt_index + group_offset for g in generations], dtype=torch.long),
        prompt_ids=[prompt_ids[g.prompt_index] for g in generations],
        input_ids=input_ids,
        attention_mask=attention_mask,
        response_mask=response_mask,
        correct=correct_t,
        rewards=correct_t + penalty,
        response_lengths=lengths,
        truncated=torch.tensor([g.truncated for g in generations], dtype=torch.bool),
    )


def concat_batches(batches: list[RolloutBatch], pad_token_id: int) -> RolloutBatch:
    """Concatenate rollout batches (group ids must already be distinct across them)."""
    if len(batches) == 1:
        return batches[0]
    width = max(b.input_ids.shape[1] for b in batches)

    def pad(t: torch.Tensor, value: float) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    return RolloutBatch(
        group_ids=torch.cat([b.group_ids for b in batches]),
        prompt_ids=[p for b in batches for p in b.prompt_ids],
        input_ids=torch.cat([pad(b.input_ids, pad_token_id) for b in batches]),
        attention_mask=torch.cat([pad(b.attention_mask, 0) for b in batches]),
        response_mask=torch.cat([pad(b.response_mask, 0.0) for b in batches]),
        correct=torch.cat([b.correct for b in batches]),
        rewards=torch.cat([b.rewards for b in batches]),
        response_lengths=torch.cat([b.response_lengths for b in batches]),
        truncated=torch.cat([b.truncated for b in batches]),
        pool=None
        if any(b.pool is None for b in batches)
        else PoolCounts(torch.cat([b.pool.correct for b in batches]), torch.cat([b.pool.size for b in batches])),
    )
