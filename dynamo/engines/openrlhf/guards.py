"""Version guard: every OpenRLHF function the engine copies, wraps, subclasses or relies on is pinned.

The patches are written against openrlhf==0.11.2 (the project's web checkout is older in these
parts: PolicyLoss there returns 4 values, 0.11.2 returns 5). Each target below is pinned by the
SHA-256 of its source (`inspect.getsource`); `verify_all()` compares them and raises
`OpenRLHFVersionError` naming every target that changed, so an upgrade fails loudly at start-up
(in the driver and again in every patched Ray actor) instead of training with silently wrong
groups or losses. After reviewing a new version, regenerate the table with
`python -m dynamo.engines.openrlhf.guards --print` and update the patches that need it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import sys
from collections.abc import Callable
from typing import Any

from dynamo.engines.openrlhf import OPENRLHF_VERSION


class OpenRLHFVersionError(RuntimeError):
    """The installed OpenRLHF is not the code the DynaMO patches were written against."""


# target -> (why it is pinned, sha256 of its source in openrlhf 0.11.2)
TARGETS: dict[str, tuple[str, str]] = {
    "openrlhf.trainer.ppo_utils.samples_generator:SamplesGenerator.generate_samples": (
        "wrapped; slices the buffer at batch_size * n",
        "7bf3f3e95631452b6365da5d0a5c3569d8851f6a34b87009c7158303a114e595",
    ),
    "openrlhf.trainer.ppo_utils.samples_generator:SamplesGenerator._generate_vllm": (
        "copied with per-prompt counts and group tags",
        "e31c2c4b19657950c152565988088aef296ddfcaa63a18f21f4a39871bb197bc",
    ),
    "openrlhf.trainer.ppo_utils.samples_generator:SamplesGenerator._dispatch_prompts_to_vllm": (
        "copied with per-prompt counts",
        "253997a0f8267a9764328cefd8cb4bb869755d49e93f9eea8a60cdc44bc46c78",
    ),
    "openrlhf.trainer.ppo_utils.samples_generator:SamplesGenerator._process_response_into_experience": (
        "relied on: one single-sample Experience per response, scores kept",
        "f99fc0dd86a8ebb55dee357d85485fc77ca4d54865100bbfd22b8597b1c139f0",
    ),
    "openrlhf.trainer.ppo_utils.samples_generator:_collect_prompt_batch": (
        "called by the copy",
        "d86482264c1559b790d84d870deacb4e1c11438978699b1c79fc626ffa401be8",
    ),
    "openrlhf.trainer.ppo_utils.experience_maker:RemoteExperienceMaker.compute_advantages_and_returns": (
        "copied with group advantages by id",
        "43a58ae8e1c4aea23791886472b6bbc23aefbdc85b0088da2d7f6638d4ec85c6",
    ),
    "openrlhf.trainer.ppo_utils.experience_maker:RemoteExperienceMaker.split_rollout_samples": (
        "relied on: index = position in the rollout batch",
        "c7286645b395b71a0233d63d0f77926b6e5eca098f7d869cc87e7bf184d76123",
    ),
    "openrlhf.trainer.ppo_utils.experience_maker:RemoteExperienceMaker.get_cumulative_returns": (
        "called by the copy",
        "e10aa1131ffe1f643bd57f3dc3d0364d05eff402d4562621b28c39e425be294b",
    ),
    "openrlhf.trainer.ppo_utils.length_penalty:apply_length_penalties": (
        "copied: its overlong part replaced by dynamo.core.shaping, the rest kept",
        "ad9556ae3e6d4be399f88c8b77d19c622614b3f373d7436d199601b7051cf6c3",
    ),
    "openrlhf.trainer.ppo_utils.length_penalty:apply_stop_properly_penalty": (
        "called by the copy",
        "e5545f810cb26fdd37b2a44f22ed2c2bace082cfd24521f6ce24be6830060356",
    ),
    "openrlhf.models.utils:compute_reward": (
        "called by the copy: reward at the last response token",
        "8970a8ea6dda571690c94d84d8726ee2a5e01943fe0a6a9e93bff1a42f7da198",
    ),
    "openrlhf.trainer.ppo_trainer:BasePPOTrainer.train_step": (
        "wrapped: experience making, then PPO on the actors",
        "82f2cc733e64f4a44727a3c116e999b6d516805476c30549621d840d4e3ba762",
    ),
    "openrlhf.trainer.ppo_trainer:BasePPOTrainer.save_logs_and_checkpoints": (
        "wrapped: client_states reach the actor's save_checkpoint",
        "0ea42915023820ea4d98178002e8345e27507fc345215ed3b920837c99b101cf",
    ),
    "openrlhf.trainer.ppo_trainer:BasePPOTrainer.init_checkpoint_states": (
        "wrapped: restored client_states",
        "a4040b46b5ffd2835ab88890a24bdb4d320a753a1ca82f5f5874a8e2930e8314",
    ),
    "openrlhf.trainer.ppo_trainer:PPOTrainer.__init__": (
        "subclassed: builds samples_generator, experience_maker, max_steps",
        "6e163e479d0621f62b91100c342c8889f2a4d5d9345bab80cc1b642eef35af5c",
    ),
    "openrlhf.trainer.ppo_trainer:PPOTrainer.fit": (
        "relied on: generate_samples / train_step / save_logs_and_checkpoints loop",
        "e73798a6309d024de8666f9c5e2a6054003e6fd09b60cf26e407b2e553e3948e",
    ),
    "openrlhf.trainer.ray.ppo_actor:ActorPPOTrainer.training_step": (
        "copied with entropy and the token objective (dynamo.core.objective)",
        "ffa1acd4a5a21e377be2bab4abd30c3f069fe7a620daa3b446625de3cc630a6a",
    ),
    "openrlhf.trainer.ray.ppo_actor:ActorPPOTrainer.ppo_train": (
        "relied on: calls iter_grad_accum_global_norm per step window",
        "589ff8a5f9c34ad52f280b55d4a97755c7b275824a9d93fd5fd63629b67a748a",
    ),
    "openrlhf.trainer.ray.ppo_actor:PolicyModelActor.init_model_from_pretrained": (
        "subclassed: self.trainer is swapped afterwards",
        "e472b193eeab8255ecbe317bfd7a7e20eb3b7a6181ec95f89aa8b96a76475722",
    ),
    "openrlhf.trainer.ray.ppo_actor:PolicyModelActor.save_checkpoint": (
        "subclassed: the objective generator's states added to client_states",
        "d70f4eb203f41c6539a91f6cf69461d9dde038009278faeb887ad7ff2c75351c",
    ),
    "openrlhf.utils.loss_utils:iter_grad_accum_global_norm": (
        "wrapped for window statistics over the optimizer step",
        "db75ebf9521a8f75e8af96ed7fc6cf5879393f03a26b6131db4b8e70e0116027",
    ),
    "openrlhf.utils.loss_utils:get_loss_batch_info": (
        "called by the copy (dynamic batch path)",
        "3a242874dc3265af49556336a5d73b5fa806fcac2e304ec6d873964b942806d6",
    ),
    "openrlhf.utils.loss_utils:_get_dp_group": (
        "called by the mini-batch reduction",
        "36eabf87cf38e3b3395865d4cefe60657f9d4637bdab7ac581e1385f9364d3cb",
    ),
    "openrlhf.models.loss:aggregate_loss": (
        "its normaliser is reproduced by actor.global_norm_scale",
        "cfc652fc72b86752409788335a1751d0b21e63e7867e476c18c02e019e0fd87d",
    ),
    "openrlhf.models.actor:Actor.forward": (
        "relied on: fp32 temperature-scaled logits, entropy layout",
        "e455e46bd10d459208e442fab52e86efc115e5c6204eff0f0a4de8e27548db87",
    ),
    "openrlhf.utils.agent:SingleTurnAgentExecutor.execute": (
        "relied on: reward_func(queries, prompts, labels) -> rewards/scores",
        "4d19de59a801ceb18b4b5720fc6988b382ea0569f783576a8fd4ab21f8b5d52e",
    ),
    "openrlhf.cli.train_ppo_ray:train": (
        "relied on: ray.init only if not running; trainer classes looked up on their modules",
        "b0047c66d0497de6a276528596d8ceb4a94ef8c375e3a5c033e07fbcece91646",
    ),
}


def resolve(target: str) -> Any:
    """The object named 'module:Qualified.name' (a Ray actor class is unwrapped to its class)."""
    module_name, qualname = target.split(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
        obj = getattr(obj, "__ray_actor_class__", obj)
        while isinstance(obj, type) and obj.__dict__.get("_dynamo_patched", False):
            obj = obj.__bases__[0]  # our installed subclass: check the stock class under it
    return obj


def source_hash(obj: Callable) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()


def stock_actor_class(module: Any, name: str) -> type:
    """The class under OpenRLHF's `@ray.remote` actor `module.name` (its stock base if ours is installed)."""
    cls = getattr(module, name).__ray_actor_class__
    while cls.__dict__.get("_dynamo_patched", False):
        cls = cls.__bases__[0]
    return cls


def mismatches() -> list[str]:
    """One line per target whose source differs from 0.11.2 (empty when everything matches)."""
    problems = []
    try:
        version = importlib.metadata.version("openrlhf")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != OPENRLHF_VERSION:
        problems.append(f"openrlhf version is {version}, the patches need {OPENRLHF_VERSION}")
    for target, (why, expected) in TARGETS.items():
        try:
            actual = source_hash(resolve(target))
        except (AttributeError, ImportError, OSError, TypeError) as err:
            problems.append(f"{target} ({why}): cannot be read: {err}")
            continue
        if actual != expected:
            problems.append(f"{target} ({why}): source changed (sha256 {actual[:12]}, expected {expected[:12]})")
    return problems


def verify_all() -> None:
    problems = mismatches()
    if problems:
        raise OpenRLHFVersionError(
            f"DynaMO's OpenRLHF patches were written for openrlhf=={OPENRLHF_VERSION}; install it "
            "(`pip install --no-deps openrlhf==0.11.2`) or port the patches. Mismatches:\n  - "
            + "\n  - ".join(problems)
        )


if __name__ == "__main__":
    if "--print" in sys.argv:
        for target in TARGETS:
            print(f"{target}  {source_hash(resolve(target))}")
    else:
        verify_all()
        print(f"openrlhf {OPENRLHF_VERSION}: all {len(TARGETS)} patch targets match")
