"""The policy's training step on the token-objective layer: a subclass of OpenRLHF 0.11.2's `ActorPPOTrainer`.

Departures from stock `ActorPPOTrainer.training_step` (openrlhf/trainer/ray/ppo_actor.py), which
this copies and changes in three places; no method math lives here:
1. Entropy. Stock computes it only for `--actor.entropy_coef`, with a graph, on fp32 logits over
   the whole vocabulary. Here it is computed under no_grad (`dynamo.core.modulation.token_entropy`,
   in row chunks) for the objective and the metrics; with a graph only when the method has an
   entropy bonus. With packed samples the unpadding indices are recomputed to scatter it back.
2. Loss. `dynamo.core.objective.objective_loss` (the local engine's call) replaces `PolicyLoss`:
   DynaMO's factors, entropy bonus and advantage, Fork Tokens, Clip-Cov, KL-Cov, W-REINFORCE's
   clip-free loss, KL to the reference (k3). Window (spec.window): micro_batch = the sequences of
   this forward on this GPU (the reference codes); mini_batch = every micro-batch of the optimizer
   step on every data-parallel rank: a no_grad pre-pass over the step's window (one extra forward
   per micro-batch) feeds `dynamo.core.window.window_stats` with a `DistributedReducer` over the
   DP group (sums/max by all-reduce, top-k and random picks by all-gather). The window comes from
   `windowed_global_norm`, which wraps the stock `iter_grad_accum_global_norm` (same windows, same
   normalisers) and attaches the window's experiences.
3. Normaliser. The objective's micro-batch mean is rescaled to OpenRLHF's share of the optimizer
   step (token-mean: loss tokens here / loss tokens of the step * dp_size, as `aggregate_loss`
   does with all valid tokens; Fork Tokens counts only the tokens it keeps), so DeepSpeed's
   gradient accumulation still yields one token-mean over the mini-batch.
Clip-Cov's random pick draws from `self.generator`, seeded from --train.seed and the DP rank; its
state rides in the DeepSpeed checkpoint (`DynamoPolicyActor`, trainer.py).
4. Mini-batch order (`openrlhf.shuffle_mini_batches`, dynamic batching only). Stock OpenRLHF does not
   shuffle under dynamic batching: each optimizer step takes the next consecutive slice of this
   GPU's rollouts and splits it into token-balanced micro-batches (largest differencing), so a
   micro-batch window holds one long sequence or a few that add up to the budget, drawn from
   neighbouring prompt groups -- as in the authors' released code. On, `ppo_train` first permutes
   the rollouts (a generator seeded from --train.seed and the rollouts' own token counts, so a
   resumed run permutes the same way), so that each mini-batch mixes prompts from the whole step.
Backward, optimizer step, EMA and the metric layout are stock. Every loss setting comes from the
method spec (OpenRLHF's --actor.eps_clip_low_high, --actor.dual_clip and --actor.loss_agg_mode are
not read); stock loss features the spec does not describe (--actor.policy_loss_type, rollout
importance-sampling correction, --actor.entropy_coef) are rejected in `configure`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from openrlhf.trainer.ray import ppo_actor
from openrlhf.trainer.ray.ppo_actor import ActorPPOTrainer
from openrlhf.utils import loss_utils
from openrlhf.utils.loss_utils import get_loss_batch_info
from openrlhf.utils.vlm_utils import merge_mm_train_inputs

from dynamo import metrics_names as M
from dynamo.core.modulation import token_entropy
from dynamo.core.objective import TokenBatch, objective_loss
from dynamo.core.window import LOCAL, DistributedReducer, WindowStats, needs_window, window_stats
from dynamo.engines.common import (
    OBJECTIVE_METRICS,
    micro_loss_tokens,
    needs_step_micro_batches,
    objective_generator,
)
from dynamo.spec import MethodSpec

WINDOW_KEY = "_dynamo_window"  # loss_batch_info entry: the micro-batches of this optimizer step
STATS_KEY = "_dynamo_window_stats"  # cached WindowStats of that window (window mini_batch)
LOSS_TOKENS_KEY = "_dynamo_loss_share"  # cached loss/valid tokens of the step (Fork Tokens, micro_batch window)


class DynamoActorTrainer(ActorPPOTrainer):
    dynamo_spec: MethodSpec
    generator: torch.Generator

    def configure(
        self, spec: MethodSpec, *, seed: int = 0, rank: int = 0, shuffle_mini_batches: bool = False
    ) -> None:
        """Called once after the stock __init__ (the object's class is swapped in place)."""
        args = self.args
        # The loss comes from the spec alone; stock loss features that would silently not apply are refused.
        problems = []
        if args.actor.policy_loss_type != "ppo":
            problems.append(f"--actor.policy_loss_type {args.actor.policy_loss_type} (the spec's loss is used)")
        if args.algo.advantage.is_correction_level != "off":
            problems.append("--algo.advantage.is_correction_level (rollout IS correction is not in the core loss)")
        if args.actor.entropy_coef is not None:
            problems.append("--actor.entropy_coef (the method's loss.entropy_coef is used instead)")
        if self._uses_window(spec):
            if args.train.dynamic_batch_enable:
                problems.append(f"window {spec.window} statistics with --train.dynamic_batch_enable")
            install_windowed_global_norm()
        if shuffle_mini_batches and not args.train.dynamic_batch_enable:
            problems.append("shuffle_mini_batches without --train.dynamic_batch_enable (stock shuffles then)")
        if problems:
            raise ValueError(f"method {spec.name!r}: OpenRLHF settings the patched step cannot honour: {problems}")
        self.dynamo_spec = spec
        self.shuffle_mini_batches = shuffle_mini_batches
        self.shuffle_seed = seed
        self.generator = objective_generator(seed, rank)

    _uses_window = staticmethod(needs_step_micro_batches)

    def ppo_train(self, kl_ctl: float):
        if getattr(self, "shuffle_mini_batches", False):
            items = self.replay_buffer.items
            items[:] = [items[i] for i in shuffled_order(items, self.shuffle_seed)]
        return super().ppo_train(kl_ctl)

    def training_step(self, experience, kl_ctl: float, step: int, loss_batch_info: dict | None = None):
        self.actor.train()
        spec = self.dynamo_spec
        loss_spec = spec.loss

        sequences = experience.sequences
        action_mask = experience.action_mask
        attention_mask = experience.attention_mask
        if loss_batch_info is None:
            loss_batch_info = get_loss_batch_info(
                self.strategy,
                action_mask,
                replay_buffer=self.replay_buffer,
                step=step,
                dynamic_batch=self.args.train.dynamic_batch_enable,
            )
        window_info = loss_batch_info
        loss_batch_info = {
            k: v for k, v in loss_batch_info.items() if k not in (WINDOW_KEY, STATS_KEY, LOSS_TOKENS_KEY)
        }

        mm_inputs = {}
        if getattr(experience, "mm_train_inputs", None) and getattr(self.actor, "is_vlm", False):
            mm_inputs = merge_mm_train_inputs(experience.mm_train_inputs, sequences.device)

        entropy_grad = loss_spec.entropy_coef != 0.0  # a graph through H only for an entropy bonus
        action_log_probs, output = self.actor(
            sequences,
            action_mask,
            attention_mask=attention_mask,
            return_output=True,
            ring_attn_group=self.strategy.ring_attn_group,
            packed_seq_lens=None,
            return_entropy=entropy_grad,
            **mm_inputs,
        )
        entropy = self._response_entropy(output, experience, with_grad=entropy_grad)
        tokens = self._token_batch(experience, action_log_probs, entropy)

        window, part, loss_share = None, 0, None
        if self._uses_window(spec):
            if WINDOW_KEY not in window_info:
                raise RuntimeError("the optimizer-step window is missing (windowed_global_norm not installed?)")
            items = window_info[WINDOW_KEY]
            part = next(i for i, item in enumerate(items) if item is experience)
            if spec.window == "mini_batch" and needs_window(spec):
                if STATS_KEY not in window_info:
                    window_info[STATS_KEY] = self._window_stats(items)
                window = window_info[STATS_KEY]
                loss_share = window.loss_tokens / max(window.num_tokens, 1)
            else:  # Fork Tokens on micro-batch windows: k tokens per micro-batch, summed over the step
                if LOSS_TOKENS_KEY not in window_info:
                    window_info[LOSS_TOKENS_KEY] = self._step_loss_share(items)
                loss_share = window_info[LOSS_TOKENS_KEY]
        actor_loss, loss_metrics, objective = objective_loss(
            spec, tokens, window, part=part, generator=self.generator
        )
        loss = actor_loss * global_norm_scale(
            action_mask, loss_batch_info, loss_spec.aggregation, objective.loss_mask, loss_share
        )

        if self.aux_loss:  # MoE balancing loss, as stock
            aux_loss = output.aux_loss * self.args.actor.aux_loss_coef
            if self.args.train.dynamic_batch_enable:
                aux_loss = aux_loss * self.replay_buffer.dynamic_sample_loss_scale[step]
            loss = loss + aux_loss

        self.strategy.backward(loss, self.actor, self.actor_optim)
        dynamic = self.args.train.dynamic_batch_enable
        is_optimizer_step = not dynamic or self.replay_buffer.dynamic_optimizer_step[step]
        if is_optimizer_step:
            self.strategy.optimizer_step(self.actor_optim, self.actor, self.actor_scheduler, name="actor")
            if self.ema_model:
                self.strategy.moving_average(self.actor, self.ema_model, self.ema_beta, "cuda")

        # Token-weighted metrics (ppo_train averages them over tokens of the step and the DP group) under
        # the contract's names (dynamo.metrics_names), except the few the stock loop reads under its own
        # (M.OPENRLHF_STOCK_NAME; the controller renames them back): the policy loss, lr and grad norm.
        metrics: dict[str, Any] = {}
        for key, value in loss_metrics.items():
            if key in OBJECTIVE_METRICS:
                metrics[_stock(OBJECTIVE_METRICS[key])] = torch.tensor(float(value))
        weights: dict[str, Any] = dict.fromkeys(metrics, "token")
        metrics[_stock(M.LR)], weights[_stock(M.LR)] = self.actor_scheduler.get_last_lr()[0], None
        if is_optimizer_step:
            grad_norm = self.strategy.get_grad_norm(self.actor)
            metrics[_stock(M.GRAD_NORM)], weights[_stock(M.GRAD_NORM)] = grad_norm, None
        for k, v in experience.info.items():
            if isinstance(v, torch.Tensor):
                metrics[k], weights[k] = v, ("token" if v.dim() == 0 else "sample")
            elif isinstance(v, list):
                metrics[k], weights[k] = torch.tensor(v, dtype=torch.float), "sample"
        for name in ("response_length", "total_length", "truncated"):
            value = getattr(experience, name, None)
            if isinstance(value, torch.Tensor) and name not in metrics:
                metrics[name], weights[name] = value, "sample"
        return {
            "metrics": metrics,
            "weights": weights,
            "num_samples": float(action_mask.shape[0]),
            "num_action_tokens": float(action_mask.sum().item()),
        }

    def _token_batch(self, experience, logp: torch.Tensor, entropy: torch.Tensor) -> TokenBatch:
        """The objective's inputs. Stock advantages also fill prompt positions (cumulative returns):
        the mask zeroes them, as the TokenBatch contract asks."""
        mask = experience.action_mask
        ref = experience.base_action_log_probs if self.dynamo_spec.loss.kl_coef else None
        adv = experience.advantages * mask
        return TokenBatch(logp, experience.action_log_probs, adv, mask, entropy, ref_logp=ref)

    def _response_entropy(self, output, experience, *, with_grad: bool) -> torch.Tensor:
        """Entropy of the temperature-scaled next-token distribution at each response position [B, A]."""
        num_actions = experience.action_mask.shape[1]
        if with_grad:  # stock computed it (return_entropy=True), already unpacked and shifted
            return output.entropy[:, -num_actions:]
        with torch.no_grad():
            entropy = token_entropy(output["logits"])  # chunked in the core: bounded temporaries
            if getattr(self.actor, "packing_samples", False):
                from openrlhf.models.ring_attn_utils import gather_and_pad_tensor, unpad_and_slice_tensor

                batch, seqlen = experience.sequences.shape
                group = self.strategy.ring_attn_group
                unpadded = unpad_and_slice_tensor(experience.sequences, experience.attention_mask, group)
                pad_len, indices = unpadded[3], unpadded[4]
                entropy = gather_and_pad_tensor(entropy, group, pad_len, indices, batch, seqlen)
            return entropy[:, :-1][:, -num_actions:]

    def _reducer(self):
        """Reductions over the data-parallel group (one process: the identity)."""
        if dist.is_available() and dist.is_initialized():
            return DistributedReducer(loss_utils._get_dp_group(self.strategy))
        return LOCAL

    @torch.no_grad()
    def _window_stats(self, window: list) -> WindowStats:
        """Window statistics over every micro-batch of the optimizer step on every DP rank (no-grad
        pre-pass; the weights do not change before the step's optimizer step, so logp is the loss's)."""
        device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
        parts = []
        for exp in window:
            exp.to_device(device)
            logp, output = self.actor(
                exp.sequences,
                exp.action_mask,
                attention_mask=exp.attention_mask,
                return_output=True,
                ring_attn_group=self.strategy.ring_attn_group,
            )
            parts.append(self._token_batch(exp, logp, self._response_entropy(output, exp, with_grad=False)))
        return window_stats(
            self.dynamo_spec, parts, generator=self.generator, reducer=self._reducer(), kind="mini_batch"
        )

    def _step_loss_share(self, window: list) -> float:
        """Loss tokens / valid tokens of the optimizer step on every DP rank, each micro-batch its own window."""
        loss = sum(micro_loss_tokens(self.dynamo_spec, exp.action_mask) for exp in window)
        valid = sum(float(exp.action_mask.sum()) for exp in window)
        device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
        total = self._reducer().sum(torch.tensor([float(loss), valid], dtype=torch.float64, device=device))
        return float(total[0]) / max(float(total[1]), 1.0)


def _stock(name: str) -> str:
    """The name the stock loop reads a contract metric under (the contract's name for most)."""
    return M.OPENRLHF_STOCK_NAME.get(name, name)


def shuffled_order(items: list, seed: int) -> list[int]:
    """A permutation of the replay buffer's items, seeded by `seed` and their token counts (deterministic
    for the same rollouts, different from one RL step to the next)."""
    lengths = [int(item.action_mask.sum()) + int(item.sequences.numel()) for item in items]
    generator = torch.Generator().manual_seed(seed * 1_000_003 + hash(tuple(lengths)) % 2**31)
    return torch.randperm(len(items), generator=generator).tolist()


def global_norm_scale(
    mask: torch.Tensor,
    loss_batch_info: dict,
    aggregation: str,
    loss_mask: torch.Tensor | None = None,
    loss_share: float | None = None,
) -> torch.Tensor | float:
    """Factor turning the objective's micro-batch mean into OpenRLHF's share of the optimizer-step mean.

    token-mean: stock `aggregate_loss` = sum(l * m) / batch_num_tokens * dp_size, where
    batch_num_tokens = the step's valid tokens over all ranks / gas (pre-compensating DeepSpeed's
    1/gas), and the objective gives sum(l * m') / sum(m') over its loss mask m'. The factor is
    sum(m') / (batch_num_tokens * s) * dp_size, with s = the step's loss tokens / valid tokens
    (`loss_share`: below 1 when Fork Tokens keeps fewer tokens, else 1); seq-mean-token-mean:
    likewise with non-empty sequences and global_batch_size. Without normalisers (a bare call) the
    micro-batch is the whole batch: factor 1.
    """
    dp_size = loss_batch_info.get("dp_size", 1)
    if aggregation == "token-mean":
        total = loss_batch_info.get("batch_num_tokens")
        if total is not None and loss_share is not None:
            total = torch.as_tensor(total, dtype=torch.float64) * loss_share
        local = (loss_mask if loss_mask is not None else mask).sum()
    else:
        total = loss_batch_info.get("global_batch_size")
        local = (mask.reshape(mask.shape[0], -1).sum(-1) > 0).sum()
    if total is None:
        return 1.0
    return local.to(torch.float32) / torch.as_tensor(total, dtype=torch.float32, device=mask.device) * dp_size


_STOCK_ITER = ppo_actor.iter_grad_accum_global_norm


def windowed_global_norm(data_iter, strategy, accumulated_gradient, mask_fn):
    """Stock `iter_grad_accum_global_norm`, window by window, with the window's items attached to its info."""
    gas = max(int(accumulated_gradient), 1)
    window: list = []

    def flush(items):
        pairs = list(_STOCK_ITER(items, strategy, accumulated_gradient, mask_fn))
        pairs[0][1][WINDOW_KEY] = [item for item, _ in pairs]  # every pair shares this info dict
        return pairs

    for item in data_iter:
        window.append(item)
        if len(window) == gas:
            yield from flush(window)
            window = []
    if window:
        yield from flush(window)


def install_windowed_global_norm() -> None:
    """Make `ActorPPOTrainer.ppo_train` (a module-global lookup) use the windowed iterator, in this process."""
    ppo_actor.iter_grad_accum_global_norm = windowed_global_norm
