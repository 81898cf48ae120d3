"""The policy's training step with token modulation: a subclass of OpenRLHF 0.11.2's `ActorPPOTrainer`.

Departures from stock `ActorPPOTrainer.training_step` (openrlhf/trainer/ray/ppo_actor.py), which
this copies and changes in three places:
1. Entropy. Stock computes it only for `--actor.entropy_coef`, with a graph, on fp32 logits over
   the whole vocabulary. Here it is computed under no_grad (`dynamo.core.modulation.token_entropy`,
   in row chunks) because it is only a detached factor; with a graph only when the method has an
   entropy bonus. With packed samples the unpadding indices are recomputed to scatter it back.
2. Advantages are multiplied by (beta_comp * beta_stab) from
   `dynamo.core.modulation.modulation_factors`. Normalisation set (ModulationSpec.norm_set):
   micro_batch = the sequences of this forward on this GPU (released code); mini_batch = every
   micro-batch of the optimizer step on every data-parallel rank: a no_grad pre-pass over the
   step's window (one extra forward per micro-batch) gives H_min, H_max and max |dH|, reduced over
   the DP group. The window comes from `windowed_global_norm`, which wraps the stock
   `iter_grad_accum_global_norm` (same windows, same normalisers) and attaches the window.
3. Loss. `dynamo.core.losses.policy_loss` with the method's LossSpec (the local engine's loss)
   replaces `PolicyLoss`; its micro-batch mean is rescaled to OpenRLHF's normaliser for the
   optimizer step (token-mean: tokens here / step tokens * dp_size, as `aggregate_loss` does), so
   DeepSpeed's gradient accumulation still yields one token-mean over the mini-batch. KL to the
   reference (k3) and the entropy bonus come from the spec through the same function.
Backward, optimizer step, EMA and the metric layout are stock. Features the core loss does not
implement (GSPO, rollout importance-sampling correction) are rejected in `configure`.
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
from dynamo.core.losses import policy_loss
from dynamo.core.modulation import entropy_change, modulation_factors, token_entropy
from dynamo.methods import MethodSpec

WINDOW_KEY = "_dynamo_window"  # loss_batch_info entry: the micro-batches of this optimizer step
RANGES_KEY = "_dynamo_ranges"  # cached mini-batch normalisation set of that window


class DynamoActorTrainer(ActorPPOTrainer):
    dynamo_spec: MethodSpec

    def configure(self, spec: MethodSpec) -> None:
        """Called once after the stock __init__ (the object's class is swapped in place)."""
        args, loss = self.args, spec.loss
        problems = []
        if args.actor.policy_loss_type != "ppo":
            problems.append(f"--actor.policy_loss_type {args.actor.policy_loss_type} (only ppo)")
        if args.algo.advantage.is_correction_level != "off":
            problems.append("--algo.advantage.is_correction_level (rollout IS correction is not in the core loss)")
        if tuple(args.actor.eps_clip_low_high) != (loss.eps_low, loss.eps_high):
            problems.append(
                f"--actor.eps_clip_low_high {args.actor.eps_clip_low_high} != spec {loss.eps_low, loss.eps_high}"
            )
        if args.actor.dual_clip != loss.dual_clip:
            problems.append(f"--actor.dual_clip {args.actor.dual_clip} != spec {loss.dual_clip}")
        if args.actor.loss_agg_mode != loss.aggregation:
            problems.append(f"--actor.loss_agg_mode {args.actor.loss_agg_mode} != spec {loss.aggregation}")
        if args.actor.entropy_coef is not None:
            problems.append("--actor.entropy_coef (the method's loss.entropy_coef is used instead)")
        if loss.kl_coef and not (args.algo.kl.use_loss and args.algo.kl.init_coef == loss.kl_coef):
            problems.append(f"loss.kl_coef {loss.kl_coef} needs --algo.kl.use_loss, same init_coef")
        mod = spec.modulation
        if (mod.compensation or mod.stabilization) and spec.window == "mini_batch":
            if args.train.dynamic_batch_enable:
                problems.append("modulation.norm_set mini_batch with --train.dynamic_batch_enable")
            install_windowed_global_norm()
        if problems:
            raise ValueError(f"method {spec.name!r}: OpenRLHF settings the patched step cannot honour: {problems}")
        self.dynamo_spec = spec

    def training_step(self, experience, kl_ctl: float, step: int, loss_batch_info: dict | None = None):
        self.actor.train()
        spec = self.dynamo_spec
        loss_spec, mod = spec.loss, spec.modulation

        sequences = experience.sequences
        action_mask = experience.action_mask
        attention_mask = experience.attention_mask
        old_action_log_probs = experience.action_log_probs
        advantages = experience.advantages
        if loss_batch_info is None:
            loss_batch_info = get_loss_batch_info(
                self.strategy,
                action_mask,
                replay_buffer=self.replay_buffer,
                step=step,
                dynamic_batch=self.args.train.dynamic_batch_enable,
            )
        window_info = loss_batch_info
        loss_batch_info = {k: v for k, v in loss_batch_info.items() if k not in (WINDOW_KEY, RANGES_KEY)}

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

        ranges: dict[str, Any] = {}
        if (mod.compensation or mod.stabilization) and spec.window == "mini_batch":
            if WINDOW_KEY not in window_info:
                raise RuntimeError("norm_set mini_batch: the optimizer-step window is missing (install failed?)")
            if RANGES_KEY not in window_info:
                window_info[RANGES_KEY] = self._mini_batch_ranges(window_info[WINDOW_KEY])
            ranges = window_info[RANGES_KEY]
        beta_comp, beta_stab = modulation_factors(
            action_log_probs.detach(),
            old_action_log_probs,
            advantages,
            entropy.detach(),
            action_mask,
            mod,
            eps_low=loss_spec.eps_low,
            eps_high=loss_spec.eps_high,
            **ranges,
        )
        actor_loss, loss_metrics = policy_loss(
            action_log_probs,
            old_action_log_probs,
            advantages * beta_comp * beta_stab,
            action_mask,
            eps_low=loss_spec.eps_low,
            eps_high=loss_spec.eps_high,
            dual_clip=loss_spec.dual_clip,
            aggregation=loss_spec.aggregation,
            entropy=entropy if entropy_grad else None,
            entropy_coef=loss_spec.entropy_coef,
            ref_logp=experience.base_action_log_probs if loss_spec.kl_coef else None,
            kl_coef=loss_spec.kl_coef,
        )
        loss = actor_loss * global_norm_scale(action_mask, loss_batch_info, loss_spec.aggregation)

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

        # Token-weighted metrics (ppo_train averages them over tokens of the step and the DP group).
        valid = action_mask.bool()
        n_valid = valid.sum().clamp(min=1)
        # Stock names where the stock loop reads them (policy_loss, ...; the controller maps them
        # to the contract's), the contract's names (dynamo.metrics_names) for the rest.
        metrics: dict[str, Any] = {
            "policy_loss": torch.tensor(loss_metrics["pg_loss"]),
            "ppo_clip_ratio": torch.tensor(loss_metrics["pg_clipfrac"]),
            "ppo_kl": torch.tensor(loss_metrics["approx_kl"]),
            M.ACTOR_LOSS: torch.tensor(loss_metrics["loss"]),
            M.ENTROPY: (entropy.detach() * valid).sum() / n_valid,
            M.BETA_COMP: (beta_comp * valid).sum() / n_valid,
            M.BETA_STAB: (beta_stab * valid).sum() / n_valid,
        }
        weights: dict[str, Any] = dict.fromkeys(metrics, "token")
        if "kl" in loss_metrics:
            metrics["kl"], weights["kl"] = torch.tensor(loss_metrics["kl"]), "token"
        metrics["actor_lr"], weights["actor_lr"] = self.actor_scheduler.get_last_lr()[0], None
        if is_optimizer_step:
            metrics["actor_grad_norm"], weights["actor_grad_norm"] = self.strategy.get_grad_norm(self.actor), None
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

    @torch.no_grad()
    def _mini_batch_ranges(self, window: list) -> dict[str, Any]:
        """H_min, H_max and max |dH| over every micro-batch of the optimizer step on every DP rank."""
        loss_spec = self.dynamo_spec.loss
        device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
        h_min, h_max, top = float("inf"), float("-inf"), 0.0
        for exp in window:
            exp.to_device(device)
            logp, output = self.actor(
                exp.sequences,
                exp.action_mask,
                attention_mask=exp.attention_mask,
                return_output=True,
                ring_attn_group=self.strategy.ring_attn_group,
            )
            entropy = self._response_entropy(output, exp, with_grad=False)
            valid = exp.action_mask.bool()
            if not valid.any():
                continue
            h_min = min(h_min, float(entropy[valid].min()))
            h_max = max(h_max, float(entropy[valid].max()))
            change = entropy_change(
                logp,
                exp.action_log_probs,
                exp.advantages,
                entropy,
                exp.action_mask,
                eps_low=loss_spec.eps_low,
                eps_high=loss_spec.eps_high,
            )
            top = max(top, float(change.abs()[valid].max()))
        if dist.is_available() and dist.is_initialized():
            # min(h) = -max(-h): one MAX all-reduce for the three numbers.
            packed = torch.tensor([-h_min, h_max, top], dtype=torch.float64, device=device)
            dist.all_reduce(packed, op=dist.ReduceOp.MAX, group=loss_utils._get_dp_group(self.strategy))
            h_min, h_max, top = -float(packed[0]), float(packed[1]), float(packed[2])
        return {"entropy_range": (h_min, h_max), "max_change": top}


def global_norm_scale(mask: torch.Tensor, loss_batch_info: dict, aggregation: str) -> torch.Tensor | float:
    """Factor turning the core's micro-batch mean into OpenRLHF's share of the optimizer-step mean.

    token-mean: stock `aggregate_loss` = sum(l * m) / batch_num_tokens * dp_size, and the core
    gives sum(l * m) / sum(m), so the factor is sum(m) / batch_num_tokens * dp_size;
    seq-mean-token-mean: likewise with non-empty sequences and global_batch_size. Without
    normalisers (a bare call) the micro-batch is the whole batch: factor 1.
    """
    dp_size = loss_batch_info.get("dp_size", 1)
    if aggregation == "token-mean":
        total = loss_batch_info.get("batch_num_tokens")
        local = mask.sum()
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
