"""Rollout generation with per-prompt counts: a subclass of OpenRLHF 0.11.2's `SamplesGenerator`.

Departures from stock `openrlhf.trainer.ppo_utils.samples_generator.SamplesGenerator`:
- Training path only (`generate_samples`): prompt i is sent to vLLM with its own count n_i from
  `self.allocate(prompt_ids)` (DynaMO's allocation, computed in this same PPOTrainer process)
  instead of the fixed `--rollout.n_samples_per_prompt`; sum n_i must equal N * n exactly, so the
  stock buffer slice at `batch_size * n` takes the whole step. Evaluation keeps the stock path.
  (DAPO's dynamic sampling is not combined with a sequential or selecting rule: the launcher refuses.)
- Every sample is tagged with `dynamo_group` (its prompt's position in this step; refills get new
  numbers) and `dynamo_prompt_id` (a hash of prompt text and label, stable across steps and
  restarts). Results arrive in completion order and groups may differ in size, so boundaries can
  not be inferred afterwards: the tag travels with the sample.
- Every graded response, including groups that dynamic filtering drops and samples a selecting
  rule does not keep, is appended to `self.graded` as (prompt id, score) for the prompt
  statistics: the history counts all responses a prompt actually received.
- A sequential allocation rule (Reinforce-Ada, `self.more`) samples in rounds through
  `dynamo.core.rules.sample_in_rounds`, the local engine's loop: before each round the rule gives
  every prompt's further count from its graded samples so far; only prompts with a count > 0 are
  sent, the whole round is awaited, and each prompt's samples are appended in prompt order (round
  by round, each round's as vLLM returned them), keeping the prompt's group id. `counts` is not
  used then. Metrics as the local engine's: accuracy, reward and lengths over the first round, the
  informative shares over all of a prompt's samples of the step, `rollout/sampling_rounds`.
- A selecting rule (PODS, Reinforce-Ada, `self.keep`) keeps its choice of each whole group
  (non-sequential: when its result arrives; sequential: after the last round), seeing the group's
  correctness in generation order; each kept sample carries `dynamo_pool` = its prompt's (correct,
  generated) counts before the selection, for the rule's advantages. A step then holds fewer than
  N * n samples (PODS: N m); the stock buffer slice at N * n takes them all.
- Pre-rollout skips (an allocation rule with `skips`, GRESO): a prompt the rule skips is replaced by
  the next one from the loader before allocation (the local engine's rule); DAPO's single-prompt
  refills are not checked again (the local engine draws its refill rounds through the rule).
- DAPO refill is capped: at most (max_refill_rounds - 1) * N replacement prompts per step
  (DAPO's max_num_gen_batches); stock refills without bound.
- `max_steps`: after that many training batches the generator reports exhaustion, which ends
  `PPOTrainer.fit` (stock runs whole episodes over the prompt set).
- DAPO's group filter keys on correctness through `dynamo.core.shaping.groups_with_spread`, the
  local engine's function (stock: mean score strictly inside --algo.dynamic_filtering_range).
- `self.step_log`: the step's rollout metrics under the contract's names (dynamo.metrics_names),
  taken over the first round as the local engine does (accuracy, shaped reward, informative
  share, lengths), and the step's cost (prompts, responses, tokens generated, refills included).
- The short tail of an epoch (fewer than N prompts left, e.g. 12,000 % 512 = 224) is dropped
  unless `keep_tail`: stock trains on it as if it were a full step (a step of fewer samples,
  counted towards train.steps). The dropped prompts are not graded, so they leave no statistics.
- A response without a reward (the reward function raised inside the vLLM actor) gets reward
  and score 0, is counted in `missing_rewards` (the step's `reward/missing` metric) and logged as
  a warning; stock would carry the None on and fail later, far from the cause.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
import torch
from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator, _collect_prompt_batch
from vllm import SamplingParams

from dynamo import metrics_names as M
from dynamo.core.rules import MAX_SKIP_DRAWS, sample_in_rounds
from dynamo.core.shaping import groups_with_spread, informative_sample_share, informative_share
from dynamo.engines.openrlhf.reward_func import EXTRA_LOG_KEYS

log = logging.getLogger(__name__)


def prompt_id(prompt: str, label: Any) -> str:
    """Stable id of a prompt: OpenRLHF drops dataset ids, so hash what it keeps (text and label)."""
    return hashlib.sha1(f"{prompt}\x00{label}".encode()).hexdigest()[:20]


class DynamoSamplesGenerator(SamplesGenerator):
    allocate: Callable[[list[str]], list[int]]
    max_steps: int
    max_refill_rounds: int
    steps_done: int
    graded: list[tuple[str, float]]
    step_log: dict[str, float]
    keep_tail: bool
    missing_rewards: int
    tails_dropped: int

    def configure(
        self,
        allocate: Callable[[list[str]], list[int]],
        max_steps: int,
        max_refill_rounds: int,
        length_penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
        keep_tail: bool = False,
        skip: Callable[[list[str]], np.ndarray] | None = None,
        more: Callable[[list[str], list[np.ndarray]], np.ndarray] | None = None,
        keep: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """Called once after the stock __init__ (the object's class is swapped in place).

        `length_penalty(lengths)`: the method's overlong penalty (dynamo.core.shaping), only for the
        logged shaped-reward mean; the experience maker applies it to the rewards.
        `more(prompt ids, correctness so far)`: a sequential rule's counts for the next round (checked,
        `planned_more`); `keep(correctness)`: a selecting rule's mask over one whole group.
        """
        self.allocate = allocate
        self.skip = skip  # pre-rollout skips of the allocation rule (GRESO), or None
        self.more = more  # a sequential rule's round counts (Reinforce-Ada), or None
        self.keep = keep  # a selecting rule's down-selection of a group (PODS, Reinforce-Ada), or None
        self.max_steps = max_steps
        self.max_refill_rounds = max_refill_rounds
        self.length_penalty = length_penalty
        self.step_log = {}
        self.keep_tail = keep_tail
        self.steps_done = 0
        self.graded = []
        self.missing_rewards = 0  # since the last train step (the trainer reads and resets it)
        self.tails_dropped = 0
        self._training_call = False

    def generate_samples(self, **generate_kwargs):
        if self.max_steps and self.steps_done >= self.max_steps:
            return [], None, 0, True
        self._training_call = True  # tells _generate_vllm that this is the training path
        try:
            samples, pass_rate, consumed, exhausted = super().generate_samples(**generate_kwargs)
        finally:
            self._training_call = False
        if samples:
            self.steps_done += 1
        if self.max_steps and self.steps_done >= self.max_steps:
            exhausted = True
        return samples, pass_rate, consumed, exhausted

    def _generate_vllm(self, dataloader_iter, num_prompts: int, dynamic_filtering, **generate_kwargs):
        if not self._training_call:
            return super()._generate_vllm(dataloader_iter, num_prompts, dynamic_filtering, **generate_kwargs)
        n_default = generate_kwargs.get("n_samples_per_prompt", self.args.rollout.n_samples_per_prompt)
        accepted = []

        prompts, labels, images, exhausted = _collect_prompt_batch(dataloader_iter, num_prompts)
        if not prompts:
            return [], 0, True
        step_prompts = self.args.rollout.batch_size
        tail = len(prompts) % step_prompts if len(prompts) < num_prompts else 0
        dropped = 0
        if tail and not self.keep_tail:
            # The epoch's tail: fewer than N prompts left for the last step. Dropped: neither generated
            # nor counted as a step (whole steps collected with it, when vLLM batches > N, are kept).
            self.tails_dropped += 1
            log.info("dropping the epoch's last %d prompts (< N = %d); keep_tail keeps them", tail, step_prompts)
            prompts, labels, images = prompts[:-tail], labels[:-tail], images[:-tail]
            dropped = tail
            if not prompts:
                return [], tail, True
        skipped = 0
        if self.skip is not None:
            prompts, labels, images, skipped, exhausted = self._replace_skipped(
                dataloader_iter, prompts, labels, images, exhausted
            )
        ids = [prompt_id(p, lab) for p, lab in zip(prompts, labels)]
        if dynamic_filtering and (self.more is not None or self.keep is not None):
            raise RuntimeError(
                "a sequential or selecting allocation rule with DAPO's dynamic sampling (launcher refuses it)"
            )
        if self.more is not None:
            accepted = self._generate_in_rounds(prompts, labels, images, ids, **generate_kwargs)
            self.step_log[M.PROMPTS] = float(len(prompts) + dropped)  # as below: prompts consumed, less skips
            if self.skip is not None:
                self.step_log[M.SKIPPED_PROMPTS] = float(skipped)
            return accepted, len(prompts) + dropped + skipped, exhausted
        counts = [int(c) for c in self.allocate(ids)]
        if len(counts) != len(prompts) or sum(counts) != len(prompts) * n_default or min(counts) < 1:
            raise RuntimeError(
                f"allocation must give every one of the {len(prompts)} prompts >= 1 rollout and exactly "
                f"{len(prompts) * n_default} in total, got {counts}"
            )
        refs = self._dispatch_prompts_to_vllm(prompts, labels, images=images, counts=counts, **generate_kwargs)
        # ObjectRef -> (group id, prompt id): completion order says nothing about which prompt it was.
        tags = {ref: (group, pid) for group, (ref, pid) in enumerate(zip(refs, ids))}
        next_group = len(prompts)
        prompts_consumed = len(prompts) + dropped + skipped
        refills_left = (self.max_refill_rounds - 1) * len(prompts) if dynamic_filtering else 0

        first_round: list = []  # experiences of the first round's groups (before filtering)
        cost = {M.PROMPTS: float(len(prompts)), M.RESPONSES: 0.0, M.TOKENS_GENERATED: 0.0}
        kept_groups = 0
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=10.0)
            for ref in ready:
                group, pid = tags.pop(ref)
                experiences = self._graded_experiences(ray.get(ref), group, pid, cost, **generate_kwargs)
                if group < len(prompts):
                    first_round.extend(experiences)
                experiences = self._selected(experiences)  # the whole group is here: its kept samples

                # DAPO dynamic sampling: drop groups whose correctness (the score) is all equal.
                if dynamic_filtering and experiences:
                    scores = torch.tensor([float(e.scores[0]) for e in experiences])
                    if not bool(groups_with_spread(torch.zeros(len(scores), dtype=torch.long), scores).all()):
                        experiences = []

                if experiences:
                    accepted.extend(experiences)
                    kept_groups += 1
                elif dynamic_filtering and refills_left > 0:
                    new_prompts, new_labels, new_images, exhausted = _collect_prompt_batch(dataloader_iter, 1)
                    prompts_consumed += len(new_prompts)
                    if new_prompts:
                        refills_left -= 1
                        new_refs = self._dispatch_prompts_to_vllm(
                            new_prompts, new_labels, images=new_images, counts=[n_default], **generate_kwargs
                        )
                        tags[new_refs[0]] = (next_group, prompt_id(new_prompts[0], new_labels[0]))
                        next_group += 1
                        pending.extend(new_refs)

        cost[M.PROMPTS] = float(prompts_consumed - skipped)  # prompts generated for: not the skipped ones
        self.step_log = {**cost, **self._round_metrics(first_round)}
        if self.skip is not None:
            self.step_log[M.SKIPPED_PROMPTS] = float(skipped)
        if dynamic_filtering:
            self.step_log[M.KEPT_GROUPS] = float(kept_groups)
        return accepted, prompts_consumed, exhausted

    def _generate_in_rounds(self, prompts, labels, images, ids, **generate_kwargs) -> list:
        """A sequential rule's step (`dynamo.core.rules.sample_in_rounds`, the local engine's loop): before
        each round `self.more` gives every prompt's further count; the prompts with a count > 0 are sent
        with it and the whole round is awaited; each prompt's samples are appended in order (round by
        round, each round's as vLLM returned them), keeping its group id. After the last round each
        group keeps the rule's choice. Sets `self.step_log` (first-round metrics, cost, rounds)."""
        groups: list[list] = [[] for _ in prompts]
        rounds: list[list] = []  # each round's experiences
        cost = {M.RESPONSES: 0.0, M.TOKENS_GENERATED: 0.0}

        def generate_round(counts: np.ndarray) -> list[np.ndarray]:
            active = np.flatnonzero(counts).tolist()
            refs = self._dispatch_prompts_to_vllm(
                [prompts[i] for i in active],
                [labels[i] for i in active],
                images=[images[i] for i in active],
                counts=[int(counts[i]) for i in active],
                **generate_kwargs,
            )
            rounds.append([])
            got = [np.zeros(0, dtype=np.float32) for _ in prompts]
            for i, responses in zip(active, ray.get(refs)):  # the whole round, in prompt order
                experiences = self._graded_experiences(responses, i, ids[i], cost, **generate_kwargs)
                groups[i].extend(experiences)
                rounds[-1].extend(experiences)
                got[i] = _correctness(experiences)
            return got

        sample_in_rounds(lambda so_far: np.asarray(self.more(ids, so_far)), generate_round, len(prompts))
        everything = [e for group in groups for e in group]
        self.step_log = {
            **cost,
            **self._round_metrics(rounds[0], everything),
            M.SAMPLING_ROUNDS: float(len(rounds)),
        }
        return [e for group in groups for e in self._selected(group)]

    def _graded_experiences(
        self, responses, group: int, pid: str, cost: dict[str, float], **generate_kwargs
    ) -> list:
        """One prompt's responses as experiences tagged with its group and prompt id; every one graded into
        `self.graded` (the statistics count all responses received) and counted in the step's cost."""
        experiences = [
            self._process_response_into_experience(self._fill_missing_reward(r), **generate_kwargs)
            for r in responses
        ]
        for e in experiences:
            e.dynamo_group, e.dynamo_prompt_id = group, pid
            self.graded.append((pid, float(e.scores[0])))
            cost[M.RESPONSES] += 1
            cost[M.TOKENS_GENERATED] += float(e.response_length.sum())
        return experiences

    def _selected(self, experiences: list) -> list:
        """A selecting rule's choice from one whole group (generation order); each kept experience carries
        `dynamo_pool` = (correct, generated) of its group before the selection. Others: all, untagged."""
        if self.keep is None or not experiences:
            return experiences
        correct = _correctness(experiences)
        keep = self.keep(correct)
        pool = (int(np.count_nonzero(correct > 0.5)), len(correct))
        kept = [e for e, chosen in zip(experiences, keep.tolist()) if chosen]
        for e in kept:
            e.dynamo_pool = pool
        return kept

    def _replace_skipped(self, dataloader_iter, prompts, labels, images, exhausted):
        """Pre-rollout skips (GRESO): each prompt the rule skips is replaced by the next one from the
        loader, as the local engine does; once MAX_SKIP_DRAWS * N prompts were looked at, the rest are
        kept. Returns (prompts, labels, images, number skipped, exhausted)."""
        want = len(prompts)
        kept: tuple[list, list, list] = ([], [], [])
        looked = skipped = 0
        while prompts:
            drop = self.skip([prompt_id(p, lab) for p, lab in zip(prompts, labels)])
            looked += len(prompts)
            for item, skip_it in zip(zip(prompts, labels, images), drop.tolist()):
                if skip_it and looked < MAX_SKIP_DRAWS * want:
                    skipped += 1
                elif len(kept[0]) < want:
                    for column, value in zip(kept, item):
                        column.append(value)
            if len(kept[0]) == want or exhausted:
                break
            prompts, labels, images, exhausted = _collect_prompt_batch(dataloader_iter, want - len(kept[0]))
        return (*kept, skipped, exhausted)

    def _round_metrics(self, experiences: list, everything: list | None = None) -> dict[str, float]:
        """Accuracy, shaped reward and lengths of one round, as the local engine logs them; the informative
        shares over `everything` (a sequential rule: all of the step's samples of each prompt, before the
        down-selection), else over the same round."""
        if not experiences:
            return {}
        pooled = experiences if everything is None else everything
        pooled_correct = torch.tensor([float(e.scores[0]) for e in pooled], dtype=torch.float64)
        pooled_groups = torch.tensor([e.dynamo_group for e in pooled], dtype=torch.long)
        correct = torch.tensor([float(e.scores[0]) for e in experiences], dtype=torch.float64)
        lengths = torch.cat([e.response_length for e in experiences]).double()
        rewards = torch.tensor([float(e.rewards[0]) for e in experiences], dtype=torch.float64)
        if self.length_penalty is not None:
            rewards = rewards + self.length_penalty(lengths).double()
        truncated = [bool(e.truncated[0]) if e.truncated is not None else False for e in experiences]
        return {
            M.ACCURACY: float(correct.mean()),
            M.REWARD_MEAN: float(rewards.mean()),
            M.INFORMATIVE_SHARE: informative_share(pooled_groups, pooled_correct),
            M.INFORMATIVE_SAMPLE_SHARE: informative_sample_share(pooled_groups, pooled_correct),
            M.RESPONSE_LENGTH: float(lengths.mean()),
            M.TRUNCATED_SHARE: sum(truncated) / len(truncated),
        }

    def _fill_missing_reward(self, response: dict) -> dict:
        """Reward 0 for a response the reward function failed on (counted and logged)."""
        if response.get("reward") is not None and response.get("scores") is not None:
            return response
        self.missing_rewards += 1
        log.warning(
            "a response came back without a reward (the --reward.remote_url function failed; see the vLLM "
            "actor logs): scored 0 (%d so far this step)",
            self.missing_rewards,
        )
        extra = {key: 0.0 for key in EXTRA_LOG_KEYS}
        extra.update(response.get("extra_logs") or {})
        return {**response, "reward": 0.0, "scores": 0.0, "extra_logs": extra}

    def _dispatch_prompts_to_vllm(self, prompts, labels, *, images=None, counts=None, **generate_kwargs):
        """Stock dispatch, except that prompt i asks for counts[i] samples (stock: one n for all)."""
        sampling_params = SamplingParams(
            temperature=generate_kwargs.get("temperature", 1.0),
            top_p=generate_kwargs.get("top_p", 1.0),
            top_k=generate_kwargs.get("top_k", -1),
            max_tokens=generate_kwargs.get("max_new_tokens"),
            min_tokens=generate_kwargs.get("min_new_tokens", 1),
            skip_special_tokens=generate_kwargs.get("skip_special_tokens", False),
            logprobs=1 if self.args.algo.advantage.is_correction_level != "off" else None,
        )
        truncate_length = generate_kwargs.get("max_len", 2048)
        if counts is None:
            n_samples = generate_kwargs.get("n_samples_per_prompt", self.args.rollout.n_samples_per_prompt)
            counts = [n_samples] * len(prompts)

        # Load balancing as stock, but each prompt weighs its own count.
        pending_counts = ray.get([engine.get_num_unfinished_requests.remote() for engine in self.vllm_engines])
        engine_heap = [(count, idx) for idx, count in enumerate(pending_counts)]
        heapq.heapify(engine_heap)
        engine_indices = []
        for n_i in counts:
            load, idx = heapq.heappop(engine_heap)
            engine_indices.append(idx)
            heapq.heappush(engine_heap, (load + n_i, idx))

        if images is None:
            images = [None] * len(prompts)
        refs = []
        for i, (prompt, label, img) in enumerate(zip(prompts, labels, images)):
            refs.append(
                self.vllm_engines[engine_indices[i]].generate_responses.remote(
                    prompt=prompt,
                    label=label,
                    sampling_params=sampling_params,
                    max_length=truncate_length,
                    hf_tokenizer=self.tokenizer,
                    num_samples=counts[i],
                    images=img,
                )
            )
        return refs


def _correctness(experiences: list) -> np.ndarray:
    """0/1 correctness (the reward function's score > 0.5) of experiences, as float32 (the local engine's)."""
    return np.array([float(e.scores[0]) > 0.5 for e in experiences], dtype=np.float32)
