"""Ray-safe installation of the patched actor classes (run in the driver, before `train()` starts).

Patching a class in the driver does not reach Ray actors, and `@ray.remote` copies methods into
`X.__ray_metadata__.modified_class` when the class is defined, so patching the stock base later
has no effect either. What works: subclass the class under the Ray wrapper
(`X.__ray_actor_class__`, see trainer.py), wrap the subclass with `ray.remote(...)` using the
stock decorator's options, and assign it back to the module attribute that `train_ppo_ray.train`
looks up (`from openrlhf.trainer.ppo_trainer import PPOTrainer` runs inside `train`, and the
`PolicyModelActor` import runs when runpy executes the CLI module, after this). Workers import
the subclasses by module path, so `dynamo` must be importable on every node: the entry point
ships it with the job's runtime_env (`py_modules`).
"""

from __future__ import annotations

import ray


def install() -> None:
    """Replace OpenRLHF's PPOTrainer and PolicyModelActor Ray classes by DynaMO's (idempotent)."""
    import openrlhf.trainer.ppo_trainer as ppo_trainer_module
    import openrlhf.trainer.ray.ppo_actor as ppo_actor_module

    from dynamo.engines.openrlhf.trainer import DynamoPolicyActor, DynamoPPOTrainer

    if ppo_trainer_module.PPOTrainer.__ray_actor_class__ is not DynamoPPOTrainer:
        ppo_trainer_module.PPOTrainer = ray.remote(DynamoPPOTrainer)  # stock: bare @ray.remote
    if ppo_actor_module.PolicyModelActor.__ray_actor_class__ is not DynamoPolicyActor:
        ppo_actor_module.PolicyModelActor = ray.remote(num_gpus=1)(DynamoPolicyActor)  # stock: num_gpus=1


def runtime_env(options_json: str, env_var: str) -> dict:
    """The job's runtime_env: the project's packages on every node, the DynaMO options, stock env vars."""
    import os

    import baselines
    import dynamo

    return {
        "py_modules": [dynamo, baselines],
        "env_vars": {
            env_var: options_json,
            # The defaults train_ppo_ray.train would pass had it called ray.init itself.
            "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "true"),
            "NCCL_DEBUG": os.environ.get("NCCL_DEBUG", "WARN"),
            "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": os.environ.get("RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"),
            # W&B mode, directory and key (config logger.wandb) reach the trainer actor that logs.
            **{k: v for k, v in os.environ.items() if k.startswith("WANDB_")},
        },
    }
