"""Group advantages by group id: a subclass of OpenRLHF 0.11.2's `RemoteExperienceMaker`.

Stock `compute_advantages_and_returns` sorts the rewards back into rollout order and reshapes
them to (-1, n_samples_per_prompt). With DynaMO's unequal groups that silently regroups
samples across prompts (groups of 3 and 5 with n = 4 become 4 + 4) and only fails when the total
is not divisible by n. This copy replaces exactly that block: every sample's group id (set by
the trainer from the tags of `rollout.py`, looked up by the sample's rollout position
`experience.index`) keys the allocation rule's `advantages(spec, rewards, group ids, correct, pool)`,
the same call the local engine makes: the core's `sequence_advantages` for every rule but
Reinforce-Ada's global baseline (so also the same eps, 1e-6 by default, where stock `group_norm`
adds 1e-9, and exactly 0 for groups without reward spread; W-REINFORCE reads the correctness, the
reward function's score). `pool` holds each sample's prompt's correct and generated counts before
any down-selection (`pool_of_samples`, set by the trainer next to the group ids). Length
penalties before it: DAPO's overlong penalty from the method spec through `dynamo.core.shaping`
(the local engine's function and buffer rounding; OpenRLHF's own --reward.overlong_* flags are
not used), then stock's stop-properly penalty if set. The rest is stock: the reward at the last
response token, cumulative returns with gamma = 1, advantages = returns.
"""

from __future__ import annotations

import itertools

import torch
from openrlhf.models.utils import compute_reward
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
from openrlhf.trainer.ppo_utils.length_penalty import apply_stop_properly_penalty

from dynamo.core.rules import AllocationRule, PoolCounts
from dynamo.core.shaping import group_std, overlong_buffer_tokens, overlong_penalty
from dynamo.spec import AdvantageSpec, MethodSpec, RewardShapingSpec


class DynamoExperienceMaker(RemoteExperienceMaker):
    advantage_spec: AdvantageSpec
    shaping: RewardShapingSpec
    rule: AllocationRule  # the trainer's rule object (same process): its advantages
    group_of_position: torch.Tensor | None  # group id of rollout sample i, set by the trainer each step
    pool_of_position: PoolCounts | None  # pool counts of rollout sample i, set with the group ids
    advantage_abs_mean: float  # mean |A_i| of the last step's samples (metrics contract)

    def configure(self, spec: MethodSpec, rule: AllocationRule) -> None:
        """Called once after the stock __init__ (the object's class is swapped in place)."""
        self.advantage_spec = spec.advantage
        self.shaping = spec.reward_shaping
        self.rule = rule
        self.group_of_position = None
        self.pool_of_position = None
        self.advantage_abs_mean = 0.0

    @torch.no_grad()
    def compute_advantages_and_returns(self, experiences):
        args = self.strategy.args
        if self.group_of_position is None or self.pool_of_position is None:
            raise RuntimeError(
                "group ids and pool counts of this step's samples were not set (DynamoPPOTrainer.train_step does)"
            )

        for experience in experiences:
            dtype = torch.promote_types(experience.rewards.dtype, torch.float32)
            experience.rewards = experience.rewards.to(dtype)
        self._apply_length_penalties(experiences)

        # -- replaces the stock reshape(-1, n) block: groups keyed by id, any sizes, any order --
        exp_len = [len(experience.index) for experience in experiences]
        positions = torch.tensor(list(itertools.chain.from_iterable(e.index for e in experiences)))
        rewards = torch.cat([experience.rewards for experience in experiences], dim=0)
        group_ids = self.group_of_position[positions]
        pool = PoolCounts(self.pool_of_position.correct[positions], self.pool_of_position.size[positions])
        advantages = self.rule.advantages(self.advantage_spec, rewards, group_ids, _correct(experiences), pool)
        self.advantage_abs_mean = float(advantages.abs().mean())  # the step's metric (trainer.py)
        stds = group_std(group_ids, rewards)
        for experience, std in zip(experiences, stds.split(exp_len)):
            experience.info["group_reward_std"] = std
        per_sample = advantages.to(rewards.dtype).split(exp_len)
        # -- end of the replaced block --

        for experience, reward in zip(experiences, per_sample):
            reward = compute_reward(
                reward,
                self.kl_ctl.value,
                experience.kl,
                action_mask=experience.action_mask,
                reward_clip_range=args.reward.clip_range,
            )
            experience.returns = self.get_cumulative_returns(reward, experience.action_mask, 1.0)
            experience.advantages = experience.returns.clone()
            experience.info["return"] = reward.sum(dim=-1)
            experience.kl = None
        return experiences

    def _max_new_tokens(self) -> int:
        return getattr(self.args.rollout, "max_new_tokens", None) or self.args.data.max_len

    def _apply_length_penalties(self, experiences) -> None:
        """Stock `apply_length_penalties` with the overlong part from the core (same formula, one rounding)."""
        max_new = self._max_new_tokens()
        buffer = overlong_buffer_tokens(self.shaping.overlong_buffer_fraction, max_new)
        for experience in experiences:
            if buffer:
                penalty = overlong_penalty(
                    experience.response_length, max_new, buffer, self.shaping.overlong_penalty
                )
                experience.rewards = experience.rewards + penalty.to(experience.rewards.dtype)
        coef = getattr(self.args.reward, "stop_properly_penalty_coef", None)
        if coef is not None:
            apply_stop_properly_penalty(experiences, coef)
        for experience in experiences:  # as stock: logged rewards include the penalties
            if "reward" in experience.info:
                experience.info["reward"] = experience.rewards.clone()


def _correct(experiences) -> torch.Tensor | None:
    """Per-sample correctness (the reward function's score, before any length penalty), or None."""
    if any(getattr(e, "scores", None) is None for e in experiences):
        return None
    return torch.cat([e.scores for e in experiences]).reshape(-1) > 0.5


def pool_of_samples(samples) -> PoolCounts:
    """Per rollout sample: its prompt's correct (score > 0.5) and generated responses this step before any
    down-selection, from the `dynamo_pool` tag a selecting rule's generator set; untagged samples (rules
    that keep every sample) count their own group in `samples`, as the local engine's `with_pool`."""
    groups = torch.tensor([s.dynamo_group for s in samples], dtype=torch.long)
    right = torch.tensor([float(s.scores[0]) > 0.5 for s in samples], dtype=torch.long)
    _, inverse, sizes = torch.unique(groups, return_inverse=True, return_counts=True)
    group_right = torch.zeros(sizes.numel(), dtype=torch.long).index_add(0, inverse, right)
    correct, size = group_right[inverse], sizes[inverse]
    for i, s in enumerate(samples):
        if getattr(s, "dynamo_pool", None) is not None:
            correct[i], size[i] = s.dynamo_pool
    return PoolCounts(correct, size)
