"""The local engine: one-process RLVR training with Hugging Face transformers.

One step, for every method (the method spec decides each switch):

    prompts  = next N prompts of a seeded, epoch-wise shuffled pool
    counts   = allocate(stats, B = N * n, n_low, n_high)       dynamo.core.allocation
    samples  = hf_generate(prompts, counts)                    each sample tagged with its prompt
    rewards  = grade(samples, gold) [- overlong penalty]       dynamo.grading
    stats    = stats.updated(prompt ids, correct)              counts each prompt actually got
    [DAPO]     drop zero-spread groups, refill with fresh prompts
    A        = group_advantages(rewards, group ids)            dynamo.core.advantages
    for epoch, mini-batch (by prompt), micro-batch:
        logp, H = policy(samples)
        beta    = modulation_factors(logp, old_logp, A, H)      dynamo.core.modulation
        loss    = policy_loss(logp, old_logp, A * beta)         dynamo.core.losses
    optimizer step (AdamW, grad clip, linear warm-up then constant)

Departures from the textbook: old log-probs come from a forward pass of the current policy
before the update (not from the sampler), as in verl/OpenRLHF; the loss of a mini-batch is
accumulated over micro-batches with weights that make it equal to the loss of the whole
mini-batch (token-mean: by token counts; seq-mean-token-mean: by sequence counts).

A run writes to its run directory: metrics.jsonl (one line per step), tb/ (TensorBoard),
checkpoint/ (weights, optimizer, scheduler, prompt statistics, RNG states, step; replaced
atomically every `checkpoint_every` steps), final/ (the trained model) and summary.json.
A killed run restarted with the same arguments continues from its last checkpoint and, on
CPU with the same thread count, ends with the same weights and metrics as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dynamo.config import ExperimentConfig
from dynamo.core.advantages import group_advantages
from dynamo.core.allocation import rollout_counts
from dynamo.core.losses import policy_loss
from dynamo.core.modulation import entropy_change, modulation_factors
from dynamo.core.stats import PromptStats
from dynamo.engines.local.policy import token_logprobs
from dynamo.engines.local.rollouts import RolloutBatch, build_batch, concat_batches, groups_with_spread
from dynamo.generation import hf_generate
from dynamo.grading import grade_many
from dynamo.io import write_json_atomic, write_text_atomic
from dynamo.methods import MethodSpec
from dynamo.models import load_model_and_tokenizer, save_pretrained_atomic
from dynamo.tasks.prompts import build_prompt


@dataclass
class Problem:
    id: str
    prompt: str  # the problem rendered with the template
    answers: list[str]


class PromptSampler:
    """Epoch-wise shuffled pass over the pool; its whole state is (epoch, position), so it resumes exactly."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self.epoch, self.position = 0, 0

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            order = self._order()
            grab = order[self.position : self.position + count - len(out)]
            out.extend(int(i) for i in grab)
            self.position += len(grab)
            if self.position >= self.size:
                self.epoch, self.position = self.epoch + 1, 0
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class LocalTrainer:
    def __init__(
        self,
        cfg: ExperimentConfig,
        method: MethodSpec,
        seed: int,
        run_dir: str | Path,
        base_model: str,
        problems: list[Problem],
        *,
        threads: int | None = None,
        show_progress: bool = True,
    ):
        self.cfg, self.t, self.method, self.seed = cfg, cfg.train, method, seed
        self.run_dir = Path(run_dir)
        self.problems = problems
        self.show_progress = show_progress
        torch.set_num_threads(threads or self.t.threads)
        _seed_everything(seed)
        self.model, self.tokenizer = load_model_and_tokenizer(base_model, dtype=getattr(torch, cfg.model.dtype))
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.t.lr, weight_decay=self.t.weight_decay)
        warmup = self.t.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        )
        self.stats = PromptStats()
        self.sampler = PromptSampler(len(problems), seed)
        self.step = 0

    # -- one step ---------------------------------------------------------------------------

    def _generate(self, indices: list[int], counts: np.ndarray, group_offset: int) -> RolloutBatch:
        problems = [self.problems[i] for i in indices]
        gens = hf_generate(
            self.model,
            self.tokenizer,
            [p.prompt for p in problems],
            [int(c) for c in counts],
            max_new_tokens=self.t.max_new_tokens,
            temperature=self.t.temperature,
            top_p=self.t.top_p,
            batch_size=max(self.t.micro_batch_sequences, 1),
        )
        correct = grade_many([g.text for g in gens], [problems[g.prompt_index].answers for g in gens])
        shaping = self.method.reward_shaping
        return build_batch(
            gens,
            [p.id for p in problems],
            correct,
            pad_token_id=self.tokenizer.pad_token_id,
            max_new_tokens=self.t.max_new_tokens,
            overlong_buffer_fraction=shaping.overlong_buffer_fraction,
            overlong_penalty_value=shaping.overlong_penalty,
            group_offset=group_offset,
        )

    def collect(self, timer: dict[str, float]) -> tuple[RolloutBatch, dict[str, float]]:
        """Rollouts for one step: allocation, generation, grading, statistics, DAPO's group filter."""
        N, n = self.t.prompts_per_step, self.t.rollouts_per_prompt
        info: dict[str, float] = {}
        kept: list[RolloutBatch] = []
        kept_groups, generated, rounds = 0, 0, 0
        dynamic = self.method.group_filter.kind == "dynamic_sampling"
        while True:
            rounds += 1
            indices = self.sampler.take(N)
            ids = [self.problems[i].id for i in indices]
            t0 = time.perf_counter()
            counts = rollout_counts(self.method.allocation, *self.stats.counts(ids), n)
            timer["allocate"] += time.perf_counter() - t0
            if rounds == 1:
                info.update(
                    {
                        "rollout/n_total": int(counts.sum()),
                        "rollout/n_min": int(counts.min()),
                        "rollout/n_max": int(counts.max()),
                        "rollout/n_std": float(counts.std()),
                    }
                )
            t0 = time.perf_counter()
            batch = self._generate(indices, counts, group_offset=generated)
            timer["generate+grade"] += time.perf_counter() - t0
            generated += N
            self.stats = self.stats.updated(batch.prompt_ids, batch.correct.tolist())
            if rounds == 1:
                informative = groups_with_spread(batch.group_ids, batch.rewards)
                info["rollout/informative_share"] = float(informative.float().mean())
                info["reward/mean"] = float(batch.rewards.mean())
                info["reward/accuracy"] = float(batch.correct.mean())
                info["rollout/response_length"] = float(batch.response_lengths.float().mean())
                info["rollout/truncated_share"] = float(batch.truncated.float().mean())
            if not dynamic:
                return batch, info
            # DAPO dynamic sampling: keep groups with reward spread, refill until N groups or out of rounds.
            batch = batch.select(groups_with_spread(batch.group_ids, batch.rewards))
            kept.append(batch)
            kept_groups += int(torch.unique(batch.group_ids).numel())
            if kept_groups >= N or rounds >= self.method.group_filter.max_refill_rounds:
                break
        merged = concat_batches(kept, self.tokenizer.pad_token_id)
        # Trim to the first N kept groups so the update size does not depend on how lucky a round was.
        groups = torch.unique_consecutive(merged.group_ids)[:N]
        merged = merged.select(torch.isin(merged.group_ids, groups))
        info["rollout/kept_groups"] = int(groups.numel())
        info["rollout/generation_rounds"] = rounds
        return merged, info

    def update(self, batch: RolloutBatch, timer: dict[str, float]) -> dict[str, float]:
        """PPO epochs over mini-batches of prompts; returns mean training metrics."""
        t = self.t
        if batch.num_samples == 0:  # DAPO: every group of every round had zero spread
            return {}
        advantages = group_advantages(
            batch.rewards,
            batch.group_ids,
            estimator=self.method.advantage.estimator,
            eps=self.method.advantage.eps,
        )
        t0 = time.perf_counter()
        old_logp = torch.zeros_like(batch.response_mask)
        with torch.no_grad():
            for sl in _chunks(batch.num_samples, t.micro_batch_sequences):
                old_logp[sl] = token_logprobs(
                    self.model, batch.input_ids[sl], batch.attention_mask[sl], temperature=t.temperature
                )[0]
        timer["old_logp"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        groups = torch.unique(batch.group_ids)
        sums: dict[str, float] = defaultdict(float)
        updates = 0
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.step)
        for _ in range(t.ppo_epochs):
            order = groups[torch.randperm(groups.numel(), generator=gen)]
            for start in range(0, order.numel(), t.mini_batch_prompts):
                rows = (
                    torch.isin(batch.group_ids, order[start : start + t.mini_batch_prompts]).nonzero().squeeze(1)
                )
                metrics = self._mini_batch_step(batch, rows, old_logp, advantages)
                for key, value in metrics.items():
                    sums[key] += value
                updates += 1
        timer["update"] += time.perf_counter() - t0
        out = {key: value / max(updates, 1) for key, value in sums.items()}
        out["actor/advantage_abs_mean"] = float(advantages.abs().mean())
        out["actor/lr"] = self.scheduler.get_last_lr()[0]
        return out

    def _mini_batch_step(
        self, batch: RolloutBatch, rows: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor
    ) -> dict[str, float]:
        t, spec, loss_spec = self.t, self.method.modulation, self.method.loss
        mask = batch.response_mask[rows]
        total_tokens = float(mask.sum().clamp(min=1))
        micro = [rows[sl] for sl in _chunks(rows.numel(), t.micro_batch_sequences)]
        # Normalisation set of the modulation factors: each micro-batch (released code) or the
        # whole mini-batch, which needs the entropy range and max |dH| before any update.
        ranges: dict[str, Any] = {"entropy_range": None, "max_change": None}
        if (spec.compensation or spec.stabilization) and spec.norm_set == "mini_batch" and len(micro) > 1:
            ranges = self._mini_batch_ranges(batch, micro, old_logp, advantages)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = defaultdict(float)
        for idx in micro:
            m = batch.response_mask[idx]
            logp, entropy = token_logprobs(
                self.model,
                batch.input_ids[idx],
                batch.attention_mask[idx],
                temperature=t.temperature,
                entropy_grad=loss_spec.entropy_coef > 0,
            )
            adv = advantages[idx].unsqueeze(1) * m
            beta_comp, beta_stab = modulation_factors(
                logp.detach(),
                old_logp[idx],
                adv,
                entropy.detach(),
                m,
                spec,
                eps_low=loss_spec.eps_low,
                eps_high=loss_spec.eps_high,
                **ranges,
            )
            loss, stats = policy_loss(
                logp,
                old_logp[idx],
                adv * beta_comp * beta_stab,
                m,
                eps_low=loss_spec.eps_low,
                eps_high=loss_spec.eps_high,
                dual_clip=loss_spec.dual_clip,
                aggregation=loss_spec.aggregation,
                entropy=entropy if loss_spec.entropy_coef > 0 else None,
                entropy_coef=loss_spec.entropy_coef,
            )
            # Weight so that the accumulated loss equals the loss of the whole mini-batch.
            if loss_spec.aggregation == "token-mean":
                weight = float(m.sum()) / total_tokens
            else:
                weight = idx.numel() / rows.numel()
            (loss * weight).backward()
            valid = m.bool()
            sums["actor/loss"] += float(loss.detach()) * weight
            sums["actor/entropy"] += float(entropy.detach()[valid].sum()) / total_tokens
            sums["modulation/beta_comp"] += float(beta_comp[valid].sum()) / total_tokens
            sums["modulation/beta_stab"] += float(beta_stab[valid].sum()) / total_tokens
            for key, value in stats.items():
                sums[f"actor/{key}"] += float(value) * weight
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.optimizer.step()
        sums["actor/grad_norm"] = float(grad_norm)
        return sums

    @torch.no_grad()
    def _mini_batch_ranges(self, batch, micro, old_logp, advantages) -> dict[str, Any]:
        loss_spec = self.method.loss
        h_min, h_max, max_change = math.inf, -math.inf, 0.0
        for idx in micro:
            m = batch.response_mask[idx]
            logp, entropy = token_logprobs(
                self.model, batch.input_ids[idx], batch.attention_mask[idx], temperature=self.t.temperature
            )
            valid = m.bool()
            h_min = min(h_min, float(entropy[valid].min()))
            h_max = max(h_max, float(entropy[valid].max()))
            adv = advantages[idx].unsqueeze(1) * m
            change = entropy_change(
                logp, old_logp[idx], adv, entropy, m, eps_low=loss_spec.eps_low, eps_high=loss_spec.eps_high
            )
            max_change = max(max_change, float(change.abs()[valid].max()))
        return {"entropy_range": (h_min, h_max), "max_change": max_change}

    # -- loop, logging, checkpoints -----------------------------------------------------------

    def train(self) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.load_checkpoint()
        metrics_path = self.run_dir / "metrics.jsonl"
        _truncate_metrics(metrics_path, self.step)
        writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step + 1 if resumed else None)
        bar = tqdm(
            total=self.t.steps,
            initial=self.step,
            desc=f"{self.method.name} seed{self.seed}",
            disable=not self.show_progress,
            dynamic_ncols=True,
        )
        started = time.perf_counter()
        self.save_snapshot()  # step 0: the start policy, when configured
        with open(metrics_path, "a") as log:
            while self.step < self.t.steps:
                timer: dict[str, float] = defaultdict(float)
                t0 = time.perf_counter()
                batch, info = self.collect(timer)
                info.update(self.update(batch, timer))
                self.scheduler.step()
                self.step += 1
                timer["step"] = time.perf_counter() - t0
                record = {"step": self.step, **info, **{f"time/{k}": v for k, v in timer.items()}}
                log.write(json.dumps(record) + "\n")
                log.flush()
                for key, value in record.items():
                    if key != "step":
                        writer.add_scalar(key, value, self.step)
                bar.update(1)
                bar.set_postfix(
                    reward=f"{info['reward/mean']:.3f}", n=f"{info['rollout/n_min']}-{info['rollout/n_max']}"
                )
                if self.step % self.t.checkpoint_every == 0 or self.step == self.t.steps:
                    self.save_checkpoint()
                self.save_snapshot()
        bar.close()
        writer.close()
        return {
            "steps": self.step,
            "resumed_from_checkpoint": resumed,
            "seconds_this_process": time.perf_counter() - started,
        }

    def save_checkpoint(self) -> None:
        """Write checkpoint.tmp/ completely, then swap it in with renames (a kill leaves one valid copy)."""
        final, tmp, old = (self.run_dir / name for name in ("checkpoint", "checkpoint.tmp", "checkpoint.old"))
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp / "model", safe_serialization=True)
        self.tokenizer.save_pretrained(tmp / "model")
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
                "python_rng": random.getstate(),
            },
            tmp / "trainer_state.pt",
        )
        write_json_atomic(
            tmp / "state.json", {"step": self.step, "sampler": self.sampler.state(), "stats": self.stats.to_dict()}
        )
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def save_snapshot(self) -> None:
        """At a step listed in `train.snapshot_steps`, in a run of the probed method (`probe.method`),
        keep a copy of the whole trainer state in snapshots/step<k>/ (the checkpoint layout) for
        the mechanism probes (`dynamo probe`)."""
        if self.step not in self.t.snapshot_steps or self.method.name != self.cfg.probe.method:
            return
        target = self.run_dir / "snapshots" / f"step{self.step}"
        if (target / "state.json").exists():  # a resumed run already wrote it
            return
        self.save_checkpoint()
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.run_dir / "checkpoint", tmp)
        tmp.rename(target)

    def load_checkpoint(self) -> bool:
        from transformers import AutoModelForCausalLM

        ckpt = self.run_dir / "checkpoint"
        if not ckpt.exists() and (self.run_dir / "checkpoint.old").exists():
            ckpt = self.run_dir / "checkpoint.old"  # killed between the two renames
        if not (ckpt / "state.json").exists():
            return False
        state = json.loads((ckpt / "state.json").read_text())
        loaded = AutoModelForCausalLM.from_pretrained(ckpt / "model", dtype=getattr(torch, self.cfg.model.dtype))
        self.model.load_state_dict(loaded.state_dict())
        trainer_state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
        self.optimizer.load_state_dict(trainer_state["optimizer"])
        self.scheduler.load_state_dict(trainer_state["scheduler"])
        torch.set_rng_state(trainer_state["torch_rng"])
        np.random.set_state(trainer_state["numpy_rng"])
        random.setstate(trainer_state["python_rng"])
        self.step = int(state["step"])
        self.sampler.load(state["sampler"])
        self.stats = PromptStats.from_dict(state["stats"])
        return True

    def save_final(self) -> None:
        save_pretrained_atomic(self.model, self.tokenizer, self.run_dir / "final", {})


def load_problems(path: str, template: str, tokenizer, use_chat_template: bool) -> list[Problem]:
    """The RL prompt pool as rendered prompts (any file `dynamo.tasks.load_prompt_pool` reads)."""
    from dynamo.tasks import load_prompt_pool

    records = load_prompt_pool(path)
    return [
        Problem(
            r["id"],
            build_prompt(r["problem"], tokenizer, template=template, use_chat_template=use_chat_template),
            r["answers"],
        )
        for r in records
    ]


def _chunks(total: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, total)) for i in range(0, total, size)]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past the checkpoint's step: a resumed run redoes those steps."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    keep = [line for line in lines if json.loads(line)["step"] <= step]
    if len(keep) != len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in keep))
