"""The patched Ray actor classes: DynaMO's PPOTrainer (controller) and policy actor.

`DynamoPPOTrainer` subclasses the class under OpenRLHF 0.11.2's `@ray.remote class PPOTrainer`
(Ray copies methods at decoration time, so patching the stock class would not reach the actors;
install.py wraps this subclass with `ray.remote` and puts it back on the module). Departures from
the stock controller:
- its samples generator and experience maker become `DynamoSamplesGenerator` /
  `DynamoExperienceMaker` (class swapped in place after the stock __init__ built them);
- it owns the per-prompt statistics (`dynamo.core.stats.PromptStats`, keyed by the stable prompt
  id), updates them after each generation with every graded response (so with the n_i responses
  each prompt actually got, whatever order they arrived in), and allocates the next step's n_i
  from them through the method's allocation rule (`dynamo.core.rules`): per-prompt counts, pre-rollout
  skips, a sequential rule's per-round counts (`more_samples`) and a selecting rule's choice within
  each group (`keep_samples`), the callables the generator calls;
- it sets, per rollout position, each sample's group id and pool counts (its prompt's correct and
  generated responses before any down-selection) for the experience maker, whose advantages are the
  rule's (`rule.advantages`, the same call as the local engine's);
- the statistics ride in the DeepSpeed checkpoint's client_states and are restored on resume
  (a JSON copy, prompt_stats.json, is written next to it for inspection);
- the run stops after `train.steps` RL steps and the LR scheduler is sized for exactly those (a step's
  optimizer updates: N * rule.trained_per_prompt(n) / --train.batch_size per epoch);
- the method spec is read once, from the file the launcher wrote (spec_file.py, digest checked),
  here and in every policy rank; nothing is looked up by name;
- one metrics.jsonl line per step under the contract's names only (`metrics_names.openrlhf_row`):
  the stock keys the contract maps, the actor's metrics, the allocation statistics and its time,
  the generator's rollout metrics and cost; every other stock key is dropped (OpenRLHF still
  prints them in its log line). Written from `save_logs_and_checkpoints`, which gets the status
  after the stock loop added its timings; OpenRLHF's own TensorBoard/W&B loggers get that row too;
- async mode (`--train.async_enable`) is rejected: generation would move to another process,
  away from the statistics;
- the prompt loader's shuffling generator is seeded from `--train.seed` (stock draws its seed from
  this process's global torch RNG, which nothing seeds: the prompt order ignored --seed);
- on resume, metrics.jsonl loses the rows after the restored step (they are written again), and
  a checkpoint directory that holds no loadable checkpoint starts the run fresh instead of failing
  with KeyError (resume.py repairs or refuses a damaged one before any actor starts);
- `reward/missing` counts the responses whose reward function failed (scored 0, rollout.py).

`DynamoPolicyActor` swaps the policy's `ActorPPOTrainer` for `DynamoActorTrainer` right after the
stock `init_model_from_pretrained` built it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from openrlhf.trainer import ppo_trainer
from openrlhf.trainer.ray import ppo_actor

from dynamo import metrics_names as M
from dynamo.checkpoint import repair_metrics
from dynamo.core.rules import kept_mask, make_rule, planned_counts, planned_more
from dynamo.core.shaping import overlong_buffer_tokens, overlong_penalty
from dynamo.core.stats import PromptStats
from dynamo.engines.openrlhf import guards
from dynamo.engines.openrlhf.actor import DynamoActorTrainer
from dynamo.engines.openrlhf.config import DynamoOptions
from dynamo.engines.openrlhf.experience import DynamoExperienceMaker, pool_of_samples
from dynamo.engines.openrlhf.launcher import updates_per_step
from dynamo.engines.openrlhf.resume import mark_complete
from dynamo.engines.openrlhf.rollout import DynamoSamplesGenerator
from dynamo.errors import writing
from dynamo.io import write_text_atomic

STATS_KEY = "dynamo_prompt_stats"
RULE_KEY = "dynamo_allocation_rule"  # the allocation rule's own state (GRESO, VIP), when it has one
GENERATOR_KEY = "dynamo_objective_rng"  # per-rank states of the token objective's generator
STEPS_KEY = "dynamo_steps_done"

_StockPPOTrainer = guards.stock_actor_class(ppo_trainer, "PPOTrainer")
_StockPolicyActor = guards.stock_actor_class(ppo_actor, "PolicyModelActor")


class DynamoPPOTrainer(_StockPPOTrainer):
    _dynamo_patched = True  # lets guards.resolve find the stock class under an installed one

    def __init__(self, pretrain: str, strategy, *args, **kwargs) -> None:
        guards.verify_all()  # this process may run another OpenRLHF install than the driver's
        if strategy.args.train.async_enable:
            raise ValueError(
                "DynaMO's OpenRLHF engine does not support --train.async_enable: generation would run in "
                "another process than the prompt statistics and the allocation that use them"
            )
        super().__init__(pretrain, strategy, *args, **kwargs)
        self.options = DynamoOptions.from_env()
        self.spec = self.options.method_spec()
        self.stats = PromptStats()
        self._rule = make_rule(self.spec.allocation, int(strategy.args.train.seed))
        self.allocation_log: dict[str, float] = {}
        self.allocate_seconds = 0.0
        self.samples_generator.__class__ = DynamoSamplesGenerator
        self.samples_generator.configure(
            self.allocate,
            self.options.max_steps,
            self.spec.group_filter.max_refill_rounds,
            length_penalty=length_penalty_fn(self.spec, self.args.rollout.max_new_tokens),
            keep_tail=self.options.keep_tail,
            **self.rule_hooks(),
        )
        seed_prompt_order(self.prompts_dataloader, strategy.args.train.seed)
        self.experience_maker.__class__ = DynamoExperienceMaker
        self.experience_maker.configure(self.spec, self.rule)
        if self.options.max_steps:
            # Scheduler length = optimizer steps of the capped run (stock: whole episodes over the data).
            args = self.args
            updates = updates_per_step(
                self.rule, args.rollout.batch_size, args.rollout.n_samples_per_prompt, args.train.batch_size
            )
            self.max_steps = self.options.max_steps * updates * args.train.max_epochs

    # -- allocation and statistics --------------------------------------------------------------

    @property
    def rule(self):
        """The method's allocation rule (dynamo.core.rules), built on first use from the spec."""
        if getattr(self, "_rule", None) is None:
            self._rule = make_rule(self.spec.allocation)  # objects built without __init__ (tests): seed 0
        return self._rule

    def rule_hooks(self) -> dict[str, Any]:
        """The generator's callables for what the rule does beyond counts (None where it does not)."""
        return {
            "skip": self.skip_prompts if self.rule.skips else None,
            "more": self.more_samples if self.rule.sequential else None,
            "keep": self.keep_samples if self.rule.selects else None,
        }

    def allocate(self, prompt_ids: list[str]) -> list[int]:
        """n_i for this step's prompts from the method's allocation rule and the history so far."""
        started = time.perf_counter()
        n = self.args.rollout.n_samples_per_prompt
        # n is already n * budget_scale (the launcher's --rollout.n_samples_per_prompt): not scaled twice
        k, g = self.stats.counts(prompt_ids)
        counts = planned_counts(self.rule, prompt_ids, k, g, n)
        self.allocation_log = M.allocation_metrics(counts, k, g, self.spec.allocation.min_history)
        self.allocate_seconds = getattr(self, "allocate_seconds", 0.0) + time.perf_counter() - started
        return counts.tolist()

    def more_samples(self, prompt_ids: list[str], correct_so_far: list[np.ndarray]) -> np.ndarray:
        """A sequential rule's further samples per prompt from its graded samples so far this step (checked
        against the rule's cap, `planned_more`). Its last call (all zero) sets the allocation statistics
        from the counts each prompt got in total, as the local engine does."""
        started = time.perf_counter()
        n = self.args.rollout.n_samples_per_prompt
        more = planned_more(self.rule, prompt_ids, correct_so_far, n)
        if not more.any():
            totals = np.array([len(c) for c in correct_so_far], dtype=np.int64)
            k, g = self.stats.counts(prompt_ids)
            self.allocation_log = M.allocation_metrics(totals, k, g, self.spec.allocation.min_history)
        self.allocate_seconds = getattr(self, "allocate_seconds", 0.0) + time.perf_counter() - started
        return more

    def keep_samples(self, correct: np.ndarray) -> np.ndarray:
        """A selecting rule's choice among one whole group's samples (generation order)."""
        return kept_mask(self.rule, correct)

    def skip_prompts(self, prompt_ids: list[str]) -> np.ndarray:
        """The rule's pre-rollout skips for these prompts, from the history so far."""
        started = time.perf_counter()
        skip = self.rule.skip(prompt_ids, *self.stats.counts(prompt_ids))
        self.allocate_seconds = getattr(self, "allocate_seconds", 0.0) + time.perf_counter() - started
        return skip

    def update_stats(self) -> None:
        graded = self.samples_generator.graded
        self.samples_generator.graded = []
        if graded:
            ids, scores = zip(*graded)
            self.stats = self.stats.updated(list(ids), np.asarray(scores, dtype=np.float64))
            self.rule.observe(list(ids), (np.asarray(scores, dtype=np.float64) > 0.5).astype(np.float64))

    def train_step(self, rollout_samples, global_step: int):
        self.update_stats()
        self.experience_maker.group_of_position = torch.tensor(
            [s.dynamo_group for s in rollout_samples], dtype=torch.long
        )
        self.experience_maker.pool_of_position = pool_of_samples(rollout_samples)
        status, global_step = super().train_step(rollout_samples, global_step)
        status.update(self.allocation_log)
        status.update(self.samples_generator.step_log)
        status[M.TIME_ALLOCATE] = getattr(self, "allocate_seconds", 0.0)
        self.allocate_seconds = 0.0
        status[M.TOKENS_TRAINED] = float(sum(float(s.action_mask.sum()) for s in rollout_samples))
        status[M.PROMPTS_WITH_HISTORY] = float(len(self.stats))
        status[M.ADVANTAGE_ABS_MEAN] = self.experience_maker.advantage_abs_mean
        status[M.MISSING_REWARDS] = float(self.samples_generator.missing_rewards)
        self.samples_generator.missing_rewards = 0
        return status, global_step

    def _write_metrics(self, row: dict[str, float]) -> None:
        if self.options.run_dir:
            path = Path(self.options.run_dir) / "metrics.jsonl"
            with writing(path), open(path, "a") as fh:  # disk full: one line naming the file
                fh.write(json.dumps(row) + "\n")

    # -- checkpoints ----------------------------------------------------------------------------

    def save_logs_and_checkpoints(self, global_step: int, logs_dict=None, client_states=None) -> None:
        row = M.openrlhf_row(global_step, logs_dict or {})
        self._write_metrics(row)
        client_states = {} if client_states is None else client_states
        client_states[STATS_KEY] = self.stats.to_dict()
        client_states[STEPS_KEY] = self.samples_generator.steps_done
        client_states[RULE_KEY] = self.rule.state_dict()
        # OpenRLHF's TensorBoard/W&B loggers get the contract row too (and the sample text they show)
        tracked: dict[str, Any] = {k: v for k, v in row.items() if k != M.STEP}
        if logs_dict and "generated_samples" in logs_dict:
            tracked["generated_samples"] = logs_dict["generated_samples"]
        super().save_logs_and_checkpoints(global_step, tracked, client_states)
        if global_step % self.args.ckpt.save_steps == 0:
            # The stock call returned after every rank's save_checkpoint: mark the tag complete (resume.py).
            mark_complete(Path(self.args.ckpt.path) / "_actor", f"global_step{global_step}", global_step)
        if self.options.run_dir and global_step % self.args.ckpt.save_steps == 0:
            write_text_atomic(
                Path(self.options.run_dir) / "prompt_stats.json",
                json.dumps({"step": global_step, **self.stats.to_dict()}),
            )

    def init_checkpoint_states(self) -> dict:
        states = super().init_checkpoint_states()
        if "global_step" not in states:
            # `_actor/` exists but the actors loaded nothing from it (DeepSpeed found no `latest`; stock
            # fit() would raise KeyError): a fresh start, which is what the actors did too.
            states = {"episode": 0, "global_step": 0, "total_consumed_prompts": 0, "data_loader_state_dict": {}}
        if self.options.run_dir:
            repair_metrics(Path(self.options.run_dir) / "metrics.jsonl", int(states["global_step"]))
        if STATS_KEY in states:
            self.stats = PromptStats.from_dict(states[STATS_KEY])
            self.samples_generator.steps_done = int(states.get(STEPS_KEY, states.get("global_step", 0)))
            self.rule.load_state_dict(states.get(RULE_KEY, {}))
        elif states.get("global_step", 0) > 0 and self.spec.allocation.kind != "uniform":
            raise RuntimeError(
                "resuming a DynaMO run from a checkpoint without prompt statistics "
                f"({STATS_KEY!r} missing from its client_states): it was not written by this engine"
            )
        return states


def seed_prompt_order(dataloader, seed: int) -> None:
    """Seed the shuffling of OpenRLHF's prompt loader (a torchdata StatefulDataLoader, RandomSampler)."""
    generator = getattr(getattr(dataloader, "sampler", None), "generator", None)
    if generator is None:
        raise RuntimeError(
            f"cannot seed the prompt order: {type(dataloader).__name__} has no sampler.generator "
            "(OpenRLHF 0.11.2 builds a torchdata StatefulDataLoader with shuffle=True)"
        )
    generator.manual_seed(int(seed))


class DynamoPolicyActor(_StockPolicyActor):
    """Stock policy actor with the patched training step, and the token objective's generator
    (Clip-Cov) saved with the DeepSpeed checkpoint: every rank's state, gathered to the
    client_states that DeepSpeed writes, restored by rank on resume."""

    _dynamo_patched = True

    def init_model_from_pretrained(self, *args, **kwargs):
        guards.verify_all()
        super().init_model_from_pretrained(*args, **kwargs)
        self.trainer.__class__ = DynamoActorTrainer
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        options = DynamoOptions.from_env()
        self.trainer.configure(
            options.method_spec(),
            seed=self.strategy.args.train.seed,
            rank=rank,
            shuffle_mini_batches=options.shuffle_mini_batches,
        )
        states = (self.checkpoint_states or {}).get(GENERATOR_KEY)
        if states is not None:
            self.trainer.generator.set_state(restore_generator_state(states, rank))

    def save_checkpoint(self, tag, client_states=None, metric_value=None, metric_key=None):
        client_states = dict(client_states or {})
        client_states[GENERATOR_KEY] = gather_generator_states(self.trainer.generator)
        return super().save_checkpoint(tag, client_states, metric_value=metric_value, metric_key=metric_key)


def gather_generator_states(generator: torch.Generator) -> list[list[int]]:
    """Every rank's generator state (rank order), as lists of ints (JSON- and pickle-safe). Collective."""
    state = generator.get_state().tolist()
    if dist.is_available() and dist.is_initialized():
        out: list = [None] * dist.get_world_size()
        dist.all_gather_object(out, state)
        return out
    return [state]


def restore_generator_state(states: list[list[int]], rank: int) -> torch.Tensor:
    if rank >= len(states):
        raise RuntimeError(
            f"the checkpoint holds the objective generator of {len(states)} ranks; resuming on rank {rank} "
            "needs the same number of actor GPUs"
        )
    return torch.tensor(states[rank], dtype=torch.uint8)


def length_penalty_fn(spec, max_new_tokens: int):
    """The method's overlong penalty as a function of response lengths (None when off)."""
    shaping = spec.reward_shaping
    buffer = overlong_buffer_tokens(shaping.overlong_buffer_fraction, max_new_tokens)
    if buffer == 0:
        return None
    return lambda lengths: overlong_penalty(lengths, max_new_tokens, buffer, shaping.overlong_penalty)
