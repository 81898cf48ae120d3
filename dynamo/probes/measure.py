"""Mechanism probes at saved policy snapshots: does each DynaMO mechanism do what it claims?

A snapshot (`<run>/snapshots/step<k>/`, written when `train.snapshot_steps` lists k) is the
local engine's whole trainer state: weights, AdamW moments, scheduler, prompt history. Each
probe restores it into a real `LocalTrainer` and measures with the engine's own code paths
(generation, grading, `dynamo.core` advantages / allocation / modulation / loss, and
`LocalTrainer.update` for an optimiser step); nothing of the method is reimplemented here.

Allocation (sequence level). For a prompt set of N pool prompts, M = batches * n_high samples
per prompt are drawn once; each prompt's P_i is estimated from its M samples (the quantity the
run's history estimates, here nearly exact, so this is the allocation rule at its best). For
each scheme (uniform n; w = P_i; w = sqrt(P_i); bounds and budget B = N n as the method's),
batch b takes samples b*n_high .. b*n_high + n_i - 1 of every prompt, so the B batches of a
scheme are independent and batch b of different schemes shares draws (a paired comparison).
Gradients per batch (ratio 1, no modulation): the engine's loss (group advantages, PPO-clip with the
method's aggregation, the whole batch as one mini-batch: a token-mean whose target moves with the
allocation) and the paper's fixed-target per-prompt mean (1/N) sum_i (1/n_i) sum_j A_ij grad log pi(o_ij)
with the method's group advantages A_ij (see `SnapshotProber.gradients`).

One step (token level). For a fresh uniform batch, entropies H0 and log-probs before the
update and the first-order entropy change dH (`dynamo.core.modulation.entropy_change`) are
computed; then one optimiser step is taken with `LocalTrainer.update` (mini-batch = the whole
batch) for each arm, always from the same restored state:
    none  = the probed method with beta_comp = beta_stab = 1
    stab  = beta_stab only;  comp = beta_comp only
and entropies / log-probs at the same positions are measured again.

Gradient space (same batch, no optimiser): `LocalTrainer.accumulate_gradients` with each factor alone
(beta_stab as decay6 and as decay5; beta_comp; the constant-scale null model of beta_comp), compared
with none: the factors as they act, without AdamW's moments in between.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynamo.config import ExperimentConfig
from dynamo.core.advantages import group_advantages
from dynamo.core.allocation import allocate_rollouts, allocation_weights, uniform_allocation
from dynamo.core.losses import policy_loss
from dynamo.core.modulation import entropy_change
from dynamo.core.objective import token_objective
from dynamo.methods import MODULATION_PRESETS, MethodSpec
from dynamo.probes.stats import (
    gradient_measures,
    jackknife_log_ratio,
    jackknife_reference_log_ratio,
    partial_spearman,
    spearman,
)

SCHEMES = ("uniform", "p", "sqrt_p")
MEASURES = ("trace", "mean_norm", "relative_noise", "cosine")
REFERENCE_MEASURES = ("projection_variance", "reference_cosine")
PER_PROMPT_ESTIMATORS = ("per_prompt_mean", "pool_baseline")  # the paper's estimator; its diagnostic variant
ARMS = ("none", "stab", "comp")
STAB_MODES = ("decay6", "decay5")
PROBE_FORMAT = "dynamo.probes/3"  # 3: per-prompt mean with group advantages as the fixed-target row; tail tokens
X_BINS = 50  # histogram bins of x = |dH| / max |dH| on [0, 1] (for the figure)
# Tokens whose next-token distribution is already this certain (nats) cannot move in one step,
# under any factor: on the tiny model these are the answer format ("\\boxed{", "}"), most of a
# response. The compensation probe leaves them out, else its lowest-entropy quantile is only them.
CERTAIN_ENTROPY = 1e-3
# Tokens with the largest realised |dH| kept per batch for the stabilisation rows' sensitivity check: enough
# to cover the 99th percentile's band at any resolution the rows reach.
TAIL_SHARE, TAIL_MIN_TOKENS = 0.05, 20


def find_snapshots(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, directory) of every complete snapshot of a run, by step."""
    root = Path(run_dir) / "snapshots"
    found = []
    for d in root.glob("step*"):
        if d.name[4:].isdigit() and (d / "state.json").exists():
            found.append((int(d.name[4:]), d))
    return sorted(found)


def arm_specs(method: MethodSpec) -> dict[str, MethodSpec]:
    mod = method.modulation
    return {
        "none": dataclasses.replace(
            method, modulation=dataclasses.replace(mod, compensation=False, stabilization=False)
        ),
        "stab": dataclasses.replace(
            method, modulation=dataclasses.replace(mod, compensation=False, stabilization=True)
        ),
        "comp": dataclasses.replace(
            method, modulation=dataclasses.replace(mod, compensation=True, stabilization=False)
        ),
    }


class SnapshotProber:
    """A LocalTrainer whose state is restored from a snapshot before every measurement."""

    def __init__(
        self, cfg: ExperimentConfig, run_dir: str | Path, seed: int, *, threads: int | None = None, problems=None
    ):
        from transformers import AutoTokenizer

        from dynamo.engines.local.trainer import LocalTrainer, load_problems

        snapshots = find_snapshots(run_dir)
        if not snapshots:
            raise SystemExit(
                f"dynamo probe: no snapshots in {run_dir}/snapshots/ (set train.snapshot_steps and probe.method "
                "to this run's method, then rerun its training; the local engine writes them)"
            )
        self.snapshots = snapshots
        # One optimiser step per update: the whole rollout batch is one mini-batch.
        t = dataclasses.replace(cfg.train, mini_batch_prompts=cfg.train.prompts_per_step, snapshot_steps=[])
        self.cfg = dataclasses.replace(cfg, train=t)
        self.method = cfg.method(cfg.probe.method)
        self.seed = seed
        model_dir = snapshots[0][1] / "model"
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if problems is None:
            problems = load_problems(cfg.train_pool_path, cfg.data.template, tokenizer, cfg.data.use_chat_template)
        self._tmp = tempfile.TemporaryDirectory(prefix="dynamo-probe-")
        self.trainer = LocalTrainer(
            self.cfg,
            self.method,
            seed,
            self._tmp.name,
            str(model_dir),
            problems,
            threads=threads,
            show_progress=False,
        )
        self._state: dict[str, Any] = {}

    def load(self, snapshot_dir: Path) -> None:
        """Restore the trainer from a snapshot (through the engine's own checkpoint loader)."""
        link = Path(self._tmp.name) / "checkpoint"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(snapshot_dir.resolve(), target_is_directory=True)
        # The loader trusts a checkpoint only as far as the run's metrics.jsonl reaches: give it the
        # log of the run the snapshot came from (<run>/snapshots/step<k>/), fresh for every load.
        metrics = snapshot_dir.resolve().parent.parent / "metrics.jsonl"
        if metrics.exists():
            shutil.copyfile(metrics, Path(self._tmp.name) / "metrics.jsonl")
        if not self.trainer.load_checkpoint():
            raise RuntimeError(f"could not load snapshot {snapshot_dir}")
        self._state = {
            "model": copy.deepcopy(self.trainer.model.state_dict()),
            "optimizer": copy.deepcopy(self.trainer.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.trainer.scheduler.state_dict()),
        }

    def restore(self) -> None:
        tr = self.trainer
        tr.model.load_state_dict(self._state["model"])
        tr.optimizer.load_state_dict(copy.deepcopy(self._state["optimizer"]))
        tr.scheduler.load_state_dict(self._state["scheduler"])

    def prompt_set(self, index: int) -> list[int]:
        """The same N pool prompts for every snapshot of a probe seed."""
        rng = np.random.default_rng([self.seed, 7919, index])
        return [
            int(i) for i in rng.choice(len(self.trainer.problems), self.cfg.train.prompts_per_step, replace=False)
        ]

    def generate(self, indices: list[int], per_prompt: int, seed: int):
        torch.manual_seed(seed)
        return self.trainer._generate(
            indices, np.full(len(indices), per_prompt), group_offset=0, timer=defaultdict(float)
        )

    def logprobs(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        from dynamo.engines.local.policy import token_logprobs

        with torch.no_grad():
            return token_logprobs(
                self.trainer.model, batch.input_ids, batch.attention_mask, temperature=self.cfg.train.temperature
            )

    def gradients(self, batch, num_prompts: int, baseline: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flattened policy gradients of one batch (ratio 1, no modulation) under three estimators.

        token_mean: the engine's loss (the method's group advantages and aggregation over the whole
          batch): token t of a response of prompt i weighs 1 / (tokens in the batch), so the weight of a
          prompt, and the expected gradient, depend on the allocation.
        per_prompt_mean: the estimator the paper's argument is about, each prompt's mean gradient averaged
          over prompts, (1/N) sum_i (1/n_i) sum_j A_ij grad log pi(o_ij) (the sequence's score, a sum over its
          tokens) with the advantages as the method computes them (group-normalised): weight 1 / (N n_i) per
          sample, covariance (1/N^2) sum_i Sigma_i / n_i.
        pool_baseline: the same weights with r_ij - b_i, b_i = `baseline[i]` the prompt's success rate over
          the whole probe pool (a diagnostic: a constant baseline makes a sample's variance grow with
          P_i = p_i (1 - p_i), for which n_i ~ sqrt(P_i) minimises the sum, not n_i ~ P_i).
        """
        from dynamo.engines.local.policy import token_logprobs

        model, spec = self.trainer.model, self.method
        adv = group_advantages(
            batch.rewards, batch.group_ids, estimator=spec.advantage.estimator, eps=spec.advantage.eps
        )
        model.zero_grad(set_to_none=True)
        logp, _ = token_logprobs(
            model, batch.input_ids, batch.attention_mask, temperature=self.cfg.train.temperature
        )
        m = batch.response_mask
        loss, _ = policy_loss(
            logp,
            logp.detach(),
            adv.unsqueeze(1) * m,
            m,
            dataclasses.replace(spec.loss, entropy_coef=0.0, kl_coef=0.0),  # the policy-gradient term alone
        )
        params = [p for p in model.parameters() if p.requires_grad]
        score = (logp * m).sum(1)  # log pi(o) of each response; its gradient is the score
        pool_adv = batch.rewards.to(torch.float64) - baseline.to(torch.float64)[batch.group_ids]
        losses = {
            "token_mean": loss,
            "per_prompt_mean": per_prompt_mean_loss(adv, score, batch.group_ids, num_prompts),
            "pool_baseline": per_prompt_mean_loss(pool_adv, score, batch.group_ids, num_prompts),
        }
        out = {}
        for i, (name, value) in enumerate(losses.items()):
            grads = torch.autograd.grad(value, params, retain_graph=i < len(losses) - 1, allow_unused=True)
            out[name] = _flat(grads, params)
        return out

    def engine_gradient(self, batch, spec: MethodSpec, old_logp: torch.Tensor) -> torch.Tensor:
        """Flattened gradient of `spec`'s loss on the whole batch, as the engine accumulates it
        (micro-batches in the batch's order, each its own window), at ratio 1; no optimiser step."""
        tr = self.trainer
        tr.method = spec
        try:
            rows = torch.arange(batch.num_samples)
            tr.accumulate_gradients(batch, rows, old_logp, tr.advantages(batch))
            params = [p for p in tr.model.parameters() if p.requires_grad]
            out = _flat([p.grad for p in params], params)
        finally:
            tr.method = self.method
            tr.optimizer.zero_grad(set_to_none=True)
        return out

    def engine_factors(self, batch, spec: MethodSpec, old_logp: torch.Tensor) -> dict[str, torch.Tensor]:
        """beta_comp, beta_stab, x = |dH| / max |dH| and A of every valid response token, computed per
        micro-batch window exactly as `engine_gradient` (the engine's code path) applies them."""
        from dynamo.engines.local.trainer import _chunks

        tr = self.trainer
        tr.method = spec
        out: dict[str, list[torch.Tensor]] = defaultdict(list)
        try:
            advantages = tr.advantages(batch)
            with torch.no_grad():
                for sl in _chunks(batch.num_samples, self.cfg.train.micro_batch_sequences):
                    idx = torch.arange(batch.num_samples)[sl]
                    tokens = tr._token_batch(batch, idx, old_logp, advantages)
                    obj = token_objective(spec, tokens)
                    valid = tokens.mask.bool()
                    dh = entropy_change(
                        tokens.logp,
                        tokens.old_logp,
                        tokens.advantages,
                        tokens.entropy,
                        tokens.mask,
                        eps_low=spec.loss.eps_low,
                        eps_high=spec.loss.eps_high,
                    ).abs()
                    top = dh.max()
                    x = dh / top if top > 0 else torch.zeros_like(dh)
                    out["beta_comp"].append(obj.beta_comp[valid])
                    out["beta_stab"].append(obj.beta_stab[valid])
                    out["x"].append(x[valid])
                    out["A"].append(tokens.advantages[valid])
        finally:
            tr.method = self.method
        return {k: torch.cat(v).to(torch.float64) for k, v in out.items()}

    # -- allocation -------------------------------------------------------------------------

    def allocation_cell(self, step: int, set_index: int) -> dict[str, Any]:
        t, alloc = self.cfg.train, self.method.allocation
        n, batches = t.rollouts_per_prompt, self.cfg.probe.batches
        n_low, n_high = alloc.bounds(n)
        indices = self.prompt_set(set_index)
        N = len(indices)
        M = batches * n_high
        pool = self.generate(indices, M, seed=self.seed * 1_000_003 + step * 101 + set_index)
        correct = pool.correct.numpy().reshape(N, M)
        k = correct.sum(1).astype(np.int64)
        G = np.full(N, M, dtype=np.int64)
        counts = {"uniform": uniform_allocation(N, N * n)}
        for weight in ("p", "sqrt_p"):
            w = allocation_weights(k, G, weight=weight, min_history=alloc.min_history)
            counts[weight] = allocate_rollouts(w, N * n, n_low, n_high)
        # The prompt's success rate over the whole pool: the pool-baseline diagnostic's constant baseline.
        baseline = torch.as_tensor(pool.rewards.numpy().reshape(N, M).mean(1))
        grams: dict[str, dict[str, np.ndarray]] = defaultdict(dict)  # estimator -> scheme -> Gram matrix
        cross: dict[str, np.ndarray] = {}  # token-mean gradients . uniform's token-mean gradients
        uniform_rows = None
        for scheme, n_i in counts.items():  # "uniform" first
            rows: dict[str, list[torch.Tensor]] = defaultdict(list)
            for b in range(batches):
                keep = torch.zeros(N * M, dtype=torch.bool)
                for i in range(N):
                    start = i * M + b * n_high
                    keep[start : start + int(n_i[i])] = True
                for name, grad in self.gradients(pool.select(keep), N, baseline).items():
                    rows[name].append(grad)
            for name, grads in rows.items():
                g = torch.stack(grads)
                grams[name][scheme] = (g @ g.T).numpy()
            if uniform_rows is None:
                uniform_rows = torch.stack(rows["token_mean"])
            cross[scheme] = (torch.stack(rows["token_mean"]) @ uniform_rows.T).numpy()
        token = grams["token_mean"]
        out: dict[str, Any] = {
            "step": step,
            "prompt_set": set_index,
            "accuracy": correct.mean(1).tolist(),
            "counts": {s: c.tolist() for s, c in counts.items()},
            "measures": {s: gradient_measures(K) for s, K in token.items()},
            "per_prompt_trace": {
                name: {s: gradient_measures(K)["trace"] for s, K in grams[name].items()}
                for name in PER_PROMPT_ESTIMATORS
            },
            "log_ratios": {},
        }
        for scheme in ("p", "sqrt_p"):
            ratios = {m: list(jackknife_log_ratio(token[scheme], token["uniform"], m)) for m in MEASURES}
            for name in PER_PROMPT_ESTIMATORS:
                K, K_uniform = grams[name][scheme], grams[name]["uniform"]
                ratios[f"{name}_trace"] = list(jackknife_log_ratio(K, K_uniform, "trace"))
            for m in REFERENCE_MEASURES:
                ratios[m] = list(jackknife_reference_log_ratio(token[scheme], cross[scheme], token["uniform"], m))
            out["log_ratios"][scheme] = ratios
        return out

    # -- one optimiser step -----------------------------------------------------------------

    def step_cell(self, step: int, batch_index: int) -> dict[str, Any]:
        t, spec = self.cfg.train, self.method
        indices = self.prompt_set(1000 + batch_index)
        batch = self.generate(
            indices, t.rollouts_per_prompt, seed=self.seed * 1_000_003 + step * 101 + 50 + batch_index
        )
        self.restore()
        logp0, h0 = self.logprobs(batch)
        m = batch.response_mask
        adv = group_advantages(
            batch.rewards, batch.group_ids, estimator=spec.advantage.estimator, eps=spec.advantage.eps
        )
        A = adv.unsqueeze(1) * m
        dh_pred = entropy_change(logp0, logp0, A, h0, m, eps_low=spec.loss.eps_low, eps_high=spec.loss.eps_high)
        valid = m.bool()
        active = valid & (A != 0)
        confident = confident_tokens(h0, A, valid, self.cfg.probe.confident_quantile)
        out: dict[str, Any] = {
            "step": step,
            "batch": batch_index,
            "tokens": int(valid.sum()),
            "active": int(active.sum()),
        }
        out["confident_tokens"] = int(confident.sum())
        measured, own_beta = self.gradient_space(batch, logp0, confident)
        out.update(measured)
        for arm, arm_spec in arm_specs(spec).items():
            self.restore()
            self.trainer.method = arm_spec
            self.trainer.update(batch, defaultdict(float))
            logp1, h1 = self.logprobs(batch)
            dh = (h1 - h0)[valid].abs()
            out[arm] = {
                "max_abs_dH": float(dh.max()),
                "p99_abs_dH": float(torch.quantile(dh, 0.99)),
                "mean_abs_dH": float(dh.mean()),
                "confident_dlogp": float((logp1 - logp0)[confident].mean()) if confident.any() else math.nan,
            }
            if arm == "none":
                out["tail"] = tail_tokens(dh, own_beta)
                out["indicator"] = indicator_measures(dh_pred[active], (h1 - h0)[active], h0[active])
                out["indicator_spearman"] = spearman(dh_pred[active].numpy(), (h1 - h0)[active].numpy())
                # A few thousand (predicted, realised) pairs for the figure.
                sel = torch.nonzero(active.flatten()).squeeze(1)[:4000]
                out["indicator_points"] = {
                    "predicted": dh_pred.flatten()[sel].tolist(),
                    "realised": (h1 - h0).flatten()[sel].tolist(),
                    "entropy": h0.flatten()[sel].tolist(),
                }
        self.trainer.method = spec
        self.restore()
        return out

    def gradient_space(
        self, batch, logp0: torch.Tensor, confident: torch.Tensor
    ) -> tuple[dict[str, Any], torch.Tensor]:
        """The modulation factors as they act, measured on the gradient (no optimiser, ratio 1).

        Stabilisation (decay6, and decay5 beside it): share of response tokens with beta_stab < 0.99,
        mean beta_stab, a histogram of x = |dH| / max |dH|, and |g_stab - g_none| / |g_none|.
        Compensation: mean beta_comp on A > 0 tokens (c), and the projection of the update -g on
        d = grad sum log pi of the confident correct tokens under beta_comp, under the null model
        (every A > 0 token scaled by the constant c: dynamo-posscale's rule with this batch's c) and
        under neither. Also returns beta_stab of the probed method's own setting for every response token
        (row-major, the order of `tensor[response_mask.bool()]`).
        """
        from dynamo.engines.local.policy import token_logprobs

        spec = self.method
        off = dataclasses.replace(spec.modulation, compensation=False, stabilization=False)
        none = dataclasses.replace(spec, modulation=off)
        self.restore()
        g_none = self.engine_gradient(batch, none, logp0)
        out: dict[str, Any] = {"stab_modes": {}}
        betas = {}
        for mode in STAB_MODES:
            stab = dataclasses.replace(
                spec, modulation=dataclasses.replace(off, stabilization=True, **MODULATION_PRESETS[mode])
            )
            f = self.engine_factors(batch, stab, logp0)
            beta, x = f["beta_stab"], f["x"][f["A"] != 0]
            betas[mode] = beta
            out["stab_modes"][mode] = {
                "share_below_099": float((beta < 0.99).double().mean()),
                "mean_beta": float(beta.mean()),
                "max_x_below_1": float(x[x < 1].max()) if (x < 1).any() else math.nan,
                "x_hist": np.histogram(x.numpy(), bins=X_BINS, range=(0.0, 1.0))[0].tolist(),
                "relative_change": relative_change(self.engine_gradient(batch, stab, logp0), g_none),
            }
        # beta_stab with the probed method's own setting: what the method's runs actually apply.
        own = {k: getattr(spec.modulation, k) for k in MODULATION_PRESETS["decay6"]}
        preset = next((mode for mode in STAB_MODES if MODULATION_PRESETS[mode] == own), None)
        if preset is not None:
            out["stab_relative_change"] = out["stab_modes"][preset]["relative_change"]
            own_beta = betas[preset]
        else:
            stab = dataclasses.replace(spec, modulation=dataclasses.replace(off, stabilization=True))
            out["stab_relative_change"] = relative_change(self.engine_gradient(batch, stab, logp0), g_none)
            own_beta = self.engine_factors(batch, stab, logp0)["beta_stab"]
        comp = dataclasses.replace(spec, modulation=dataclasses.replace(off, compensation=True))
        f = self.engine_factors(batch, comp, logp0)
        positive = f["A"] > 0
        c = float(f["beta_comp"][positive].mean()) if positive.any() else 1.0
        null = dataclasses.replace(spec, modulation=dataclasses.replace(off, positive_scale=c))
        g_comp = self.engine_gradient(batch, comp, logp0)
        g_null = self.engine_gradient(batch, null, logp0) if c != 1.0 else g_none
        out["comp_mean_beta_positive"] = c
        out["comp_relative_change"] = relative_change(g_comp, g_none)
        out["confident_projection"] = {"none": math.nan, "comp": math.nan, "posscale": math.nan}
        if confident.any():
            model = self.trainer.model
            params = [p for p in model.parameters() if p.requires_grad]
            logp, _ = token_logprobs(
                model, batch.input_ids, batch.attention_mask, temperature=self.cfg.train.temperature
            )
            d = _flat(torch.autograd.grad(logp[confident].sum(), params, allow_unused=True), params)
            # The update moves along -g: its component on d raises the confident tokens' log-probs.
            out["confident_projection"] = {
                "none": float(-(g_none @ d)),
                "comp": float(-(g_comp @ d)),
                "posscale": float(-(g_null @ d)),
            }
        return out, own_beta


def indicator_measures(predicted: torch.Tensor, realised: torch.Tensor, entropy: torch.Tensor) -> dict[str, float]:
    """The indicator against its trivial baseline, over the tokens given (A != 0).

    rho_pred: Spearman(|predicted dH|, |realised dH|); rho_entropy: Spearman(H0, |realised dH|) (a
    token's own entropy, the trivial predictor of how much it can move); partial: Spearman of
    |predicted| and |realised| given H0 (what the indicator adds); sign_agreement: share of tokens
    where predicted and realised dH have the same sign (0.5 = chance), over tokens with both nonzero.
    """
    p, r, h = (t.detach().to(torch.float64).numpy() for t in (predicted, realised, entropy))
    both = (p != 0) & (r != 0)
    return {
        "rho_pred": spearman(np.abs(p), np.abs(r)),
        "rho_entropy": spearman(h, np.abs(r)),
        "partial": partial_spearman(np.abs(p), np.abs(r), h),
        "sign_agreement": float((np.sign(p[both]) == np.sign(r[both])).mean()) if both.any() else math.nan,
    }


def tail_tokens(abs_dh: torch.Tensor, beta_stab: torch.Tensor) -> dict[str, Any]:
    """The top TAIL_SHARE of response tokens by |realised entropy change| (no factor), largest first, and
    whether beta_stab changes each by more than 1% (beta < 0.99): what the tail rows' sensitivity check needs."""
    if abs_dh.shape != beta_stab.shape:
        raise ValueError(f"|dH| and beta_stab must cover the same tokens: {abs_dh.shape} vs {beta_stab.shape}")
    k = min(len(abs_dh), max(TAIL_MIN_TOKENS, math.ceil(TAIL_SHARE * len(abs_dh))))
    top = torch.topk(abs_dh.to(torch.float64), k)
    return {
        "tokens": len(abs_dh),
        "abs_dH": top.values.tolist(),
        "changed": (beta_stab[top.indices] < 0.99).tolist(),
    }


def per_prompt_weights(group_ids: torch.Tensor, num_prompts: int) -> torch.Tensor:
    """Per-sample weight 1 / (N n_i) of the per-prompt-mean estimator, n_i = samples of the sample's group."""
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    return 1.0 / (num_prompts * counts[inverse].to(torch.float64))


def per_prompt_mean_loss(
    advantages: torch.Tensor, score: torch.Tensor, group_ids: torch.Tensor, num_prompts: int
) -> torch.Tensor:
    """-(1/N) sum_i (1/n_i) sum_j A_ij s_ij, s_ij = log pi(o_ij): its gradient is minus the per-prompt mean
    of the samples' A grad log pi (each prompt's mean gradient, averaged over the N prompts)."""
    weight = per_prompt_weights(group_ids, num_prompts)
    return -(advantages.detach().to(torch.float64) * weight * score.to(torch.float64)).sum()


def _flat(grads, params) -> torch.Tensor:
    return (
        torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])
        .detach()
        .to(torch.float64)
    )


def relative_change(with_: torch.Tensor, without: torch.Tensor) -> float:
    """|g_with - g_without| / |g_without|: how much a factor changes the update, in gradient space."""
    base = float(without.norm())
    return float((with_ - without).norm()) / base if base > 0 else math.nan


def confident_tokens(entropy: torch.Tensor, A: torch.Tensor, valid: torch.Tensor, quantile: float) -> torch.Tensor:
    """Mask of the confident correct tokens: A > 0, not yet certain, entropy in the lowest `quantile`."""
    movable = valid & (A > 0) & (entropy > CERTAIN_ENTROPY)
    if not movable.any():
        return movable
    return movable & (entropy <= torch.quantile(entropy[movable], quantile))


def run_probes(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    seed: int,
    *,
    threads: int | None = None,
    problems=None,
    snapshot_steps: list[int] | None = None,
) -> dict[str, Any]:
    """Every probe at the snapshots of one run (all, or those in `snapshot_steps`); `problems`
    defaults to the config's prompt pool. Snapshots are independent, so they can be separate jobs."""
    started = time.perf_counter()
    prober = SnapshotProber(cfg, run_dir, seed, threads=threads, problems=problems)
    if snapshot_steps is not None:
        missing = sorted(set(snapshot_steps) - {s for s, _ in prober.snapshots})
        if missing:
            raise SystemExit(f"dynamo probe: {run_dir} has no snapshot for step(s) {missing}")
        prober.snapshots = [(s, p) for s, p in prober.snapshots if s in snapshot_steps]
    allocation, steps = [], []
    for step, path in prober.snapshots:
        prober.load(path)
        for s in range(cfg.probe.prompt_sets):
            prober.restore()
            allocation.append(prober.allocation_cell(step, s))
            print(f"[dynamo probe] allocation: snapshot step {step}, prompt set {s} done", flush=True)
        for b in range(cfg.probe.step_batches):
            steps.append(prober.step_cell(step, b))
        print(f"[dynamo probe] one-step probes: snapshot step {step} done", flush=True)
    return {
        "format": PROBE_FORMAT,
        "run_dir": str(run_dir),
        "method": prober.method.name,
        "seed": seed,
        "snapshots": [s for s, _ in prober.snapshots],
        "probe": dataclasses.asdict(cfg.probe),
        "allocation": allocation,
        "one_step": steps,
        "seconds": time.perf_counter() - started,
    }
