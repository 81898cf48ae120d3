"""The local engine: one-process RLVR training with Hugging Face transformers.

One step, for every method (the method spec decides each switch):

    prompts  = next N prompts of a seeded, epoch-wise shuffled pool
    counts   = allocate(stats, B = N * n, n_low, n_high)       dynamo.core.rules (the method's rule)
    samples  = hf_generate(prompts, counts)                    each sample tagged with its prompt
               [sequential rule] in rounds: rule.more(graded so far) more per prompt, until all zero
    rewards  = grade(samples, gold) [- overlong penalty]       dynamo.grading
    stats    = stats.updated(prompt ids, correct)              counts each prompt actually got
    [rule.selects] keep each group's chosen samples (PODS, Reinforce-Ada)
    [DAPO]     drop zero-spread groups, refill with fresh prompts
    A        = rule.advantages(rewards, group ids, correct, pool) dynamo.core.advantages via the rule
    for epoch, mini-batch (by prompt):
        [window mini_batch] window = window_stats(no-grad pass)  dynamo.core.window
        for micro-batch:
            logp, H = policy(samples)
            loss    = objective_loss(spec, logp, old_logp, A, H, window)   dynamo.core.objective
        optimizer step (AdamW, grad clip, linear warm-up then constant)

No method math lives here: the objective (DynaMO's factors, entropy bonus and advantage, Fork
Tokens, Clip-Cov, KL-Cov) is `dynamo.core.objective`; Clip-Cov draws from `self.generator`,
seeded from the run seed and saved in the checkpoint.

Departures from the textbook: old log-probs come from a forward pass of the current policy
before the update (not from the sampler), as in verl/OpenRLHF; the loss of a mini-batch is
accumulated over micro-batches with weights that make it equal to the loss of the whole
mini-batch (token-mean: by token counts; seq-mean-token-mean: by sequence counts).

A run writes to its run directory: metrics.jsonl (one line per step), tb/ (TensorBoard),
checkpoint/ (weights, optimizer, scheduler, prompt statistics, RNG states, step, and a
manifest of sizes + sha256 written last; replaced atomically every `checkpoint_every` steps,
the previous one kept as checkpoint.prev/ for fallback: dynamo/checkpoint.py), final/ (the
trained model) and summary.json.
A killed run restarted with the same arguments continues from its last checkpoint and, on
CPU with the same thread count, ends with the same weights and metrics as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dynamo import checkpoint
from dynamo import metrics_names as M
from dynamo.config import ExperimentConfig
from dynamo.core.objective import TokenBatch, objective_loss
from dynamo.core.rules import MAX_SKIP_DRAWS, kept_mask, make_rule, planned_counts, planned_more, sample_in_rounds
from dynamo.core.shaping import groups_with_spread, informative_sample_share, informative_share
from dynamo.core.stats import PromptStats
from dynamo.core.window import needs_window, window_stats
from dynamo.engines.common import OBJECTIVE_METRICS, VALID_TOKEN_MEANS, micro_loss_tokens, objective_generator
from dynamo.engines.local.policy import token_logprobs
from dynamo.engines.local.rollouts import RolloutBatch, build_batch, concat_batches
from dynamo.errors import UserError, writing
from dynamo.generation import hf_generate
from dynamo.grading import grade_many
from dynamo.io import write_json_atomic
from dynamo.methods import MethodSpec
from dynamo.models import load_model_and_tokenizer, save_pretrained_atomic
from dynamo.tasks.prompts import build_prompt
from dynamo.tracking import close_quietly, open_tracker, quiet_writer_threads


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
    fresh_if_damaged = False  # --fresh: retrain from step 0 when no checkpoint is usable (else refuse)
    resumed_from: str | None = None

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
        self.rule = make_rule(method.allocation, seed)  # the allocation rule, by the spec's name
        self.sampler = PromptSampler(len(problems), seed)
        self.generator = objective_generator(seed)  # the token objective's random picks (Clip-Cov)
        self.step = 0

    @property
    def on_gpu(self) -> bool:
        return next(self.model.parameters()).is_cuda

    # -- one step ---------------------------------------------------------------------------

    def _generate(
        self, indices: list[int], counts: np.ndarray, group_offset: int, timer: dict[str, float]
    ) -> RolloutBatch:
        problems = [self.problems[i] for i in indices]
        t0 = time.perf_counter()
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
        timer["rollout"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        correct = grade_many([g.text for g in gens], [problems[g.prompt_index].answers for g in gens])
        timer["grading"] += time.perf_counter() - t0
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
        # n is the method's own per-prompt budget: n * budget_scale (grpo-1.5x), else the experiment's n
        N, n = self.t.prompts_per_step, self.method.allocation.per_prompt(self.t.rollouts_per_prompt)
        info: dict[str, float] = {M.PROMPTS: 0, M.RESPONSES: 0, M.TOKENS_GENERATED: 0}
        kept: list[RolloutBatch] = []
        kept_groups, generated, rounds = 0, 0, 0
        dynamic = self.method.group_filter.kind == "dynamic_sampling"
        while True:
            rounds += 1
            t0 = time.perf_counter()
            indices, skipped = self._draw_prompts(N)
            ids = [self.problems[i].id for i in indices]
            k, g = self.stats.counts(ids)
            if self.rule.sequential:  # Reinforce-Ada: rounds until each prompt's exit; counts = what each got
                timer["allocate"] += time.perf_counter() - t0
                batch, first, sampling_rounds = self._generate_in_rounds(indices, ids, n, generated, timer)
                counts = np.bincount(batch.group_ids.numpy() - generated, minlength=N)
                info[M.SAMPLING_ROUNDS] = sampling_rounds
            else:
                counts = planned_counts(self.rule, ids, k, g, n)
                timer["allocate"] += time.perf_counter() - t0
                batch = first = self._generate(indices, counts, group_offset=generated, timer=timer)
            if rounds == 1:
                info.update(M.allocation_metrics(counts, k, g, self.method.allocation.min_history))
                if self.rule.skips:
                    info[M.SKIPPED_PROMPTS] = skipped
            generated += N
            info[M.PROMPTS] += N
            info[M.RESPONSES] += batch.num_samples
            info[M.TOKENS_GENERATED] += int(batch.response_lengths.sum())
            self.stats = self.stats.updated(batch.prompt_ids, batch.correct.tolist())
            self.rule.observe(batch.prompt_ids, batch.correct.numpy())
            if rounds == 1:
                # Spread over all the step's samples of a prompt; reward and accuracy over the first
                # sampling round, where a sequential rule gives every prompt the same count (as released).
                info[M.INFORMATIVE_SHARE] = informative_share(batch.group_ids, batch.correct)
                info[M.INFORMATIVE_SAMPLE_SHARE] = informative_sample_share(batch.group_ids, batch.correct)
                info[M.REWARD_MEAN] = float(first.rewards.mean())
                info[M.ACCURACY] = float(first.correct.mean())
                info[M.RESPONSE_LENGTH] = float(first.response_lengths.float().mean())
                info[M.TRUNCATED_SHARE] = float(first.truncated.float().mean())
            if self.rule.selects:  # post-rollout down-selection (PODS, Reinforce-Ada): each group's chosen samples
                batch = batch.with_pool().select(self._kept_samples(batch))
            if not dynamic:
                info[M.TOKENS_TRAINED] = float(batch.response_mask.sum())
                return batch, info
            # DAPO dynamic sampling: keep groups whose correctness varies (not the shaped reward: an
            # overlong penalty alone must not keep an all-wrong group), refill until N groups or out of rounds.
            batch = batch.select(groups_with_spread(batch.group_ids, batch.correct))
            kept.append(batch)
            kept_groups += int(torch.unique(batch.group_ids).numel())
            if kept_groups >= N or rounds >= self.method.group_filter.max_refill_rounds:
                break
        merged = concat_batches(kept, self.tokenizer.pad_token_id)
        # Trim to the first N kept groups so the update size does not depend on how lucky a round was.
        groups = torch.unique_consecutive(merged.group_ids)[:N]
        merged = merged.select(torch.isin(merged.group_ids, groups))
        info[M.KEPT_GROUPS] = int(groups.numel())
        info[M.GENERATION_ROUNDS] = rounds
        info[M.TOKENS_TRAINED] = float(merged.response_mask.sum())
        return merged, info

    def _generate_in_rounds(
        self, indices: list[int], ids: list[str], n: int, group_offset: int, timer: dict[str, float]
    ) -> tuple[RolloutBatch, RolloutBatch, int]:
        """A sequential rule's sampling (`dynamo.core.rules.sample_in_rounds`, the OpenRLHF engine's loop
        too): before every round `rule.more` gives each prompt's further samples from its graded samples
        so far this step, until it answers all zero (each prompt's total checked against the rule's cap).
        Returns the rounds' samples in generation order, each group keeping its prompt's position, the
        first round's alone, and the number of rounds."""
        parts: list[RolloutBatch] = []

        def more(so_far: list[np.ndarray]) -> np.ndarray:
            t0 = time.perf_counter()
            counts = planned_more(self.rule, ids, so_far, n)
            timer["allocate"] += time.perf_counter() - t0
            return counts

        def generate_round(counts: np.ndarray) -> list[np.ndarray]:
            part = self._generate(indices, counts, group_offset=group_offset, timer=timer)
            parts.append(part)
            return [part.correct[part.group_ids == group_offset + i].numpy() for i in range(len(ids))]

        sample_in_rounds(more, generate_round, len(ids))
        return concat_batches(parts, self.tokenizer.pad_token_id), parts[0], len(parts)

    def _draw_prompts(self, count: int) -> tuple[list[int], int]:
        """`count` prompt indices from the sampler, minus those the rule skips before rollout, each
        skipped one replaced by the next prompt (GRESO); returns (indices, number skipped). Once
        MAX_SKIP_DRAWS * count prompts have been looked at, the rest are kept whatever the rule says."""
        indices = self.sampler.take(count)
        if not self.rule.skips:
            return indices, 0
        kept: list[int] = []
        skipped, looked = 0, 0
        while True:
            ids = [self.problems[i].id for i in indices]
            skip = self.rule.skip(ids, *self.stats.counts(ids))
            looked += len(indices)
            for index, drop in zip(indices, skip.tolist()):
                if drop and looked < MAX_SKIP_DRAWS * count:
                    skipped += 1
                elif len(kept) < count:
                    kept.append(index)
            if len(kept) == count:
                return kept, skipped
            indices = self.sampler.take(count - len(kept))

    def _kept_samples(self, batch: RolloutBatch) -> torch.Tensor:
        """The rule's post-rollout choice of samples, group by group (a mask over the batch); a group's
        rows are in generation order (round by round), the order `keep` sees in both engines."""
        keep = torch.zeros(batch.num_samples, dtype=torch.bool)
        for group in torch.unique(batch.group_ids):
            rows = (batch.group_ids == group).nonzero().squeeze(1)
            keep[rows] = torch.as_tensor(kept_mask(self.rule, batch.correct[rows].numpy()))
        return keep

    def advantages(self, batch: RolloutBatch) -> torch.Tensor:
        """Per-response advantages: the rule's (`dynamo.core.rules`; all but Reinforce-Ada's global baseline
        are the core's group-normalised ones, or W-REINFORCE's from correctness)."""
        pool = batch.pool if batch.pool is not None else batch.with_pool().pool
        return self.rule.advantages(
            self.method.advantage, batch.rewards, batch.group_ids, batch.correct.bool(), pool
        )

    def update(self, batch: RolloutBatch, timer: dict[str, float]) -> dict[str, float]:
        """PPO epochs over mini-batches of prompts; returns mean training metrics."""
        t = self.t
        if batch.num_samples == 0:  # DAPO: every group of every round had zero spread
            return {}
        advantages = self.advantages(batch)
        t0 = time.perf_counter()
        old_logp = torch.zeros_like(batch.response_mask)
        with torch.no_grad():
            for sl in _chunks(batch.num_samples, t.micro_batch_sequences):
                old_logp[sl] = token_logprobs(
                    self.model, batch.input_ids[sl], batch.attention_mask[sl], temperature=t.temperature
                )[0]
        timer["experience"] += time.perf_counter() - t0
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
        timer["train"] += time.perf_counter() - t0
        out = {key: value / max(updates, 1) for key, value in sums.items()}
        # The last optimizer step's norm, as OpenRLHF's ppo_train reports it (one number per name)
        out[M.GRAD_NORM] = metrics[M.GRAD_NORM]
        out[M.ADVANTAGE_ABS_MEAN] = float(advantages.abs().mean())
        out[M.LR] = self.scheduler.get_last_lr()[0]
        return out

    def _mini_batch_step(
        self, batch: RolloutBatch, rows: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor
    ) -> dict[str, float]:
        sums = self.accumulate_gradients(batch, rows, old_logp, advantages)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip)
        self.optimizer.step()
        sums[M.GRAD_NORM] = float(grad_norm)
        return sums

    def _token_batch(
        self, batch: RolloutBatch, idx: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor
    ) -> TokenBatch:
        """The tensors the token objective needs for micro-batch `idx` (graph through logp; through
        the entropy only for an entropy bonus), in OpenRLHF's action layout: position t scores token
        t + 1 (the local layout's position 0, never a response token, dropped), so that the
        objective's random draws (Clip-Cov), which follow tensor shapes, match between engines."""
        m = batch.response_mask[idx][:, 1:]
        logp, entropy = token_logprobs(
            self.model,
            batch.input_ids[idx],
            batch.attention_mask[idx],
            temperature=self.t.temperature,
            entropy_grad=self.method.loss.entropy_coef != 0.0,
        )
        adv = advantages[idx].unsqueeze(1) * m
        return TokenBatch(logp[:, 1:], old_logp[idx][:, 1:], adv, m, entropy[:, 1:])

    def accumulate_gradients(
        self, batch: RolloutBatch, rows: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor
    ) -> dict[str, float]:
        """Gradients of the mini-batch `rows` in the parameters' .grad, accumulated over micro-batches
        so that they equal the gradient of the whole mini-batch's loss; returns its metrics.

        The loss is `dynamo.core.objective.objective_loss`. Window (spec.window): micro_batch = each
        micro-batch is its own window (the objective computes its statistics); mini_batch = one
        no-grad pre-pass over the mini-batch's micro-batches gives `window_stats`, before any update.
        """
        spec = self.method
        micro = [rows[sl] for sl in _chunks(rows.numel(), self.t.micro_batch_sequences)]
        window = None
        if spec.window == "mini_batch" and needs_window(spec):
            with torch.no_grad():
                parts = [self._token_batch(batch, idx, old_logp, advantages) for idx in micro]
            window = window_stats(spec, parts, generator=self.generator, kind="mini_batch")
            loss_tokens = window.loss_tokens
        else:
            loss_tokens = sum(micro_loss_tokens(spec, batch.response_mask[idx]) for idx in micro)
        valid_tokens = float(batch.response_mask[rows].sum().clamp(min=1))
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = defaultdict(float)
        for part, idx in enumerate(micro):
            tokens = self._token_batch(batch, idx, old_logp, advantages)
            loss, stats, objective = objective_loss(spec, tokens, window, part=part, generator=self.generator)
            # Weight so that the accumulated loss equals the loss of the whole mini-batch.
            if spec.loss.aggregation == "token-mean":
                weight = float(objective.loss_mask.sum()) / max(loss_tokens, 1)
            else:
                weight = idx.numel() / rows.numel()
            (loss * weight).backward()
            share = float(tokens.mask.sum()) / valid_tokens  # for means over valid tokens
            for key, value in stats.items():
                if key in OBJECTIVE_METRICS:
                    sums[OBJECTIVE_METRICS[key]] += value * (share if key in VALID_TOKEN_MEANS else weight)
        return sums

    # -- loop, logging, checkpoints -----------------------------------------------------------

    def train(self) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.load_checkpoint()
        metrics_path, tb_dir = self.run_dir / "metrics.jsonl", self.run_dir / "tb"
        _truncate_metrics(metrics_path, self.step)
        with writing(tb_dir):
            writer = SummaryWriter(str(tb_dir), purge_step=self.step + 1 if resumed else None)
        bar = tqdm(
            total=self.t.steps,
            initial=self.step,
            desc=f"{self.method.name} seed{self.seed}",
            disable=not self.show_progress,
            dynamic_ncols=True,
        )
        started = time.perf_counter()
        self.save_snapshot()  # step 0: the start policy, when configured
        tracker = open_tracker(
            self.cfg.logger.wandb,
            self.run_dir,
            name=f"{self.method.name}-seed{self.seed}",
            group=self.cfg.experiment,
            config={"method": self.method.to_dict(), "seed": self.seed, **dataclasses.asdict(self.cfg)},
        )
        # A failed write (disk full) stops the run with one line naming the file; the background
        # writers are closed quietly then, so no thread prints its own traceback over that line.
        with writing(metrics_path):
            log = open(metrics_path, "a")
        try:
            with quiet_writer_threads():
                self._loop(log, metrics_path, writer, tb_dir, tracker, bar)
        except BaseException:
            with quiet_writer_threads():
                close_quietly(writer, tracker)
            raise
        finally:
            log.close()
            bar.close()
        with quiet_writer_threads(), writing(tb_dir):
            writer.flush()  # raises what the writer thread hit; close() alone would drop it
            writer.close()
        if tracker:
            with writing(self.run_dir / "wandb"):
                tracker.close()
        return {
            "steps": self.step,
            "resumed_from_checkpoint": resumed,
            "resumed_from": self.resumed_from,
            "seconds_this_process": time.perf_counter() - started,
        }

    def _loop(self, log, metrics_path: Path, writer, tb_dir: Path, tracker, bar) -> None:
        """The steps from the current one to `train.steps`: train, log, checkpoint."""
        while self.step < self.t.steps:
            timer: dict[str, float] = defaultdict(float)
            t0 = time.perf_counter()
            batch, info = self.collect(timer)
            info.update(self.update(batch, timer))
            self.scheduler.step()
            self.step += 1
            timer["step"] = time.perf_counter() - t0  # -> M.TIME_STEP
            info[M.PROMPTS_WITH_HISTORY] = float(len(self.stats))
            record = {M.STEP: self.step, **info, **{M.TIME_PREFIX + k: v for k, v in timer.items()}}
            if undeclared := M.undeclared(record, "local"):  # the metrics contract, enforced where written
                raise RuntimeError(f"metrics not declared in dynamo/metrics_names.py: {undeclared}")
            with writing(metrics_path):
                log.write(json.dumps(record) + "\n")
                log.flush()
            with writing(tb_dir):
                for key, value in record.items():
                    if key != "step":
                        writer.add_scalar(key, value, self.step)
            if tracker:  # optional W&B: the same names as metrics.jsonl
                with writing(self.run_dir / "wandb"):
                    tracker.log(record)
            bar.update(1)
            bar.set_postfix(reward=f"{info[M.REWARD_MEAN]:.3f}", n=f"{info[M.N_MIN]:.0f}-{info[M.N_MAX]:.0f}")
            if self.step % self.t.checkpoint_every == 0 or self.step == self.t.steps:
                self.save_checkpoint()
            self.save_snapshot()

    def save_checkpoint(self) -> None:
        """Write checkpoint.tmp/ completely, its manifest last, then rotate with renames:
        checkpoint/ -> checkpoint.prev/, checkpoint.tmp/ -> checkpoint/ (two kept; a kill leaves a valid one)."""
        final, tmp, prev = (self.run_dir / name for name in ("checkpoint", "checkpoint.tmp", "checkpoint.prev"))
        shutil.rmtree(tmp, ignore_errors=True)
        # A failed write (disk full) names the file and removes checkpoint.tmp/; the previous
        # checkpoints stay, so a rerun resumes from them.
        with writing(tmp / "model", remove_on_failure=tmp):
            self.model.save_pretrained(tmp / "model", safe_serialization=True)
            self.tokenizer.save_pretrained(tmp / "model")
        with writing(tmp / "trainer_state.pt", remove_on_failure=tmp), open(tmp / "trainer_state.pt", "wb") as fh:
            # An open file, not a path: torch then reports a failed write as an OSError with its errno.
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "numpy_rng": np.random.get_state(),
                    "python_rng": random.getstate(),
                    "objective_rng": self.generator.get_state(),
                },
                fh,
            )
        state = {
            "step": self.step,
            "sampler": self.sampler.state(),
            "stats": self.stats.to_dict(),
            **({"rule": rule_state} if (rule_state := self.rule.state_dict()) else {}),
        }
        with writing(tmp / "state.json", remove_on_failure=tmp):
            write_json_atomic(tmp / "state.json", state)
        with writing(tmp / checkpoint.MANIFEST, remove_on_failure=tmp):
            checkpoint.write_manifest(tmp, self.step)
        if final.exists():  # else (resumed from prev after damage) prev stays the second good one
            shutil.rmtree(prev, ignore_errors=True)
            final.rename(prev)
        tmp.rename(final)
        shutil.rmtree(self.run_dir / "checkpoint.old", ignore_errors=True)  # older versions' swap name
        checkpoint.fsync_dir(self.run_dir)

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
        with writing(target, remove_on_failure=tmp):
            shutil.copytree(self.run_dir / "checkpoint", tmp)
        tmp.rename(target)

    def load_checkpoint(self) -> bool:
        """Resume from the newest intact checkpoint (manifest verified), or start at step 0.

        A damaged newest checkpoint falls back to the previous one, saying so; with none usable,
        `fresh_if_damaged` (--fresh) clears the run, else UserError names the damaged file."""
        from transformers import AutoModelForCausalLM

        try:
            chosen = checkpoint.select_checkpoint(self.run_dir)
        except UserError as err:
            if not self.fresh_if_damaged:
                raise
            print(f"[dynamo train] {err}; --fresh: retraining from step 0", file=sys.stderr)
            checkpoint.remove([self.run_dir / name for name in checkpoint.CANDIDATES])
            return False
        for note in chosen.notes:
            print(f"[dynamo train] skipped: {note}", file=sys.stderr)
        checkpoint.remove(chosen.damaged)
        if chosen.path is None:
            return False
        ckpt = chosen.path
        if chosen.notes or ckpt.name != "checkpoint":
            print(f"[dynamo train] resuming from {ckpt} (step {chosen.step})", file=sys.stderr)
        state = json.loads((ckpt / "state.json").read_text())
        loaded = AutoModelForCausalLM.from_pretrained(ckpt / "model", dtype=getattr(torch, self.cfg.model.dtype))
        self.model.load_state_dict(loaded.state_dict())
        trainer_state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
        self.optimizer.load_state_dict(trainer_state["optimizer"])
        self.scheduler.load_state_dict(trainer_state["scheduler"])
        torch.set_rng_state(trainer_state["torch_rng"])
        np.random.set_state(trainer_state["numpy_rng"])
        random.setstate(trainer_state["python_rng"])
        if "objective_rng" in trainer_state:  # absent in checkpoints written before Clip-Cov existed
            self.generator.set_state(trainer_state["objective_rng"])
        self.step = int(state["step"])
        self.sampler.load(state["sampler"])
        self.stats = PromptStats.from_dict(state["stats"])
        self.rule.load_state_dict(state.get("rule", {}))
        self.resumed_from = f"{ckpt.name} (step {self.step})"
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
    """Repair metrics.jsonl to its last complete line not past the checkpoint's step: a resumed run
    redoes later steps, and a line cut by a kill (or damage) must not end up in the log."""
    dropped = checkpoint.repair_metrics(path, step)
    if dropped:
        print(f"[dynamo train] {path}: dropped {dropped} line(s) past step {step} or damaged", file=sys.stderr)
