"""Group advantages by group id: a subclass of OpenRLHF 0.11.2's `RemoteExperienceMaker`.

Stock `compute_advantages_and_returns` sorts the rewards back into rollout order and reshapes
them to (-1, n_samples_per_prompt). With DynaMO's unequal groups that silently regroups
samples across prompts (groups of 3 and 5 with n = 4 become 4 + 4) and only fails when the total
is not divisible by n. This copy replaces exactly that block: every sample's group id (set by
the trainer from the tags of `rollout.py`, looked up by the sample's rollout position
`experience.index`) keys `dynamo.core.advantages.group_advantages`, the same function the local
engine calls (so also the same eps, 1e-6 by default, where stock `group_norm` adds 1e-9, and
exactly 0 for groups without reward spread). The rest is stock: length penalties before, then
the reward at the last response token, cumulative returns with gamma = 1, advantages = returns.
"""

from __future__ import annotations

import itertools

import torch
from openrlhf.models.utils import compute_reward
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
from openrlhf.trainer.ppo_utils.length_penalty import apply_length_penalties

from dynamo.core.advantages import group_advantages
from dynamo.methods import AdvantageSpec

# OpenRLHF estimators whose stock code path (returns = rewards at the last token, gamma 1, no
# whitening) is the one this copy keeps; the launcher passes the one matching the spec.
ESTIMATOR_FLAG = {"grpo": "group_norm", "mean_only": "dr_grpo"}


class DynamoExperienceMaker(RemoteExperienceMaker):
    advantage_spec: AdvantageSpec
    group_of_position: torch.Tensor | None  # group id of rollout sample i, set by the trainer each step

    def configure(self, advantage_spec: AdvantageSpec) -> None:
        self.advantage_spec = advantage_spec
        self.group_of_position = None
        expected = ESTIMATOR_FLAG[advantage_spec.estimator]
        if self.args.algo.advantage.estimator != expected:
            raise ValueError(
                f"advantage estimator {advantage_spec.estimator!r} runs on OpenRLHF's "
                f"--algo.advantage.estimator {expected}, got {self.args.algo.advantage.estimator}"
            )

    @torch.no_grad()
    def compute_advantages_and_returns(self, experiences):
        args = self.strategy.args
        if self.group_of_position is None:
            raise RuntimeError("group ids of this step's samples were not set (DynamoPPOTrainer.train_step does)")

        for experience in experiences:
            dtype = torch.promote_types(experience.rewards.dtype, torch.float32)
            experience.rewards = experience.rewards.to(dtype)
        apply_length_penalties(experiences, args)

        # -- replaces the stock reshape(-1, n) block: groups keyed by id, any sizes, any order --
        exp_len = [len(experience.index) for experience in experiences]
        positions = torch.tensor(list(itertools.chain.from_iterable(e.index for e in experiences)))
        rewards = torch.cat([experience.rewards for experience in experiences], dim=0)
        group_ids = self.group_of_position[positions]
        advantages = group_advantages(
            rewards, group_ids, estimator=self.advantage_spec.estimator, eps=self.advantage_spec.eps
        )
        group_std = _group_std(rewards, group_ids)
        for experience, std in zip(experiences, group_std.split(exp_len)):
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


def _group_std(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Unbiased std of each sample's group (0 for singletons), for the stock `group_reward_std` log."""
    _, inverse, sizes = torch.unique(group_ids, return_inverse=True, return_counts=True)
    r = rewards.double()
    mean = torch.zeros(sizes.numel(), dtype=r.dtype).index_add(0, inverse, r) / sizes
    var = torch.zeros_like(mean).index_add(0, inverse, (r - mean[inverse]) ** 2) / (sizes - 1).clamp(min=1)
    return var.sqrt()[inverse].to(rewards.dtype)
