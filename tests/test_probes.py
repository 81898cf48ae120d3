"""Mechanism probes: the statistics against direct computations, and the whole probe path on a
tiny model (snapshots written by training, restored, measured, reported)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from dynamo.config import config_from_dict
from dynamo.engines.local import trainer as trainer_mod
from dynamo.engines.local.trainer import LocalTrainer, Problem
from dynamo.generation import Generation
from dynamo.models.tiny import write_tiny_model
from dynamo.probes import stats
from dynamo.probes.measure import CERTAIN_ENTROPY, confident_tokens, find_snapshots, run_probes


def test_gradient_measures_match_direct_computation():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(8, 50)) + np.linspace(-1, 1, 50)
    got = stats.gradient_measures(g @ g.T)
    mean = g.mean(0)
    trace = np.trace(np.cov(g.T, ddof=1))
    signal = (g.sum(0) @ g.sum(0) - (g * g).sum()) / (8 * 7)
    cos = [
        g[b] @ np.delete(g, b, 0).mean(0) / np.linalg.norm(g[b]) / np.linalg.norm(np.delete(g, b, 0).mean(0))
        for b in range(8)
    ]
    assert got["trace"] == pytest.approx(trace)
    assert got["mean_norm"] == pytest.approx(math.sqrt(signal))
    assert got["relative_noise"] == pytest.approx(trace / signal)
    assert got["cosine"] == pytest.approx(np.mean(cos))
    # The unbiased signal estimate is below the plug-in one (noise inflates |mean|^2).
    assert signal < mean @ mean


def test_noisier_scheme_reads_as_noisier():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=200)
    quiet = mu + 0.5 * rng.normal(size=(32, 200))
    loud = mu + 2.0 * rng.normal(size=(32, 200))
    log_ratio, se = stats.jackknife_log_ratio(loud @ loud.T, quiet @ quiet.T, "trace")
    assert log_ratio == pytest.approx(math.log(16), abs=0.3)
    assert 0 < se < 0.3
    est, lo, hi = stats.pooled_log_ratio([(log_ratio, se)])
    assert stats.verdict(lo, hi, supports_if="below", null=1.0) == "contradicts"
    same, se_same = stats.jackknife_log_ratio(quiet @ quiet.T, quiet @ quiet.T, "cosine")
    assert same == 0.0 and se_same == 0.0


def test_spearman_and_verdicts():
    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0])
    assert stats.spearman(x, x**3) == pytest.approx(1.0)
    assert stats.spearman(x, -x) == pytest.approx(-1.0)
    assert list(stats.rank(x)) == [4.0, 1.0, 2.5, 2.5, 5.0]
    assert math.isnan(stats.spearman(x, np.ones(5)))
    assert stats.verdict(0.1, 0.3, supports_if="above", null=0.0) == "supports"
    assert stats.verdict(-0.3, -0.1, supports_if="above", null=0.0) == "contradicts"
    assert stats.verdict(-0.1, 0.3, supports_if="above", null=0.0) == "not distinguishable"
    assert stats.verdict(math.nan, 0.3, supports_if="below", null=1.0) == "not distinguishable"


def test_intervals_use_exact_t_quantiles_and_cluster_by_snapshot():
    from scipy import stats as sps

    values = [1.0, 2.0, 3.0]
    assert stats.mean_interval(values)[1:] == pytest.approx(
        sps.t.interval(0.95, 2, loc=2.0, scale=sps.sem(values))
    )
    # 12 batches: t(0.975, 11) = 2.201 (the old hand-typed table fell back to 2.0 here).
    twelve = list(np.random.default_rng(3).normal(size=12))
    m, lo, hi = stats.mean_interval(twelve)
    assert (hi - m) / (np.std(twelve, ddof=1) / math.sqrt(12)) == pytest.approx(2.2010, abs=1e-4)
    # Batches within a snapshot are averaged first: three snapshots are three units, not nine.
    m, lo, hi, n = stats.cluster_interval(
        [1.0, 1.1, 0.9, 2.0, 2.1, 1.9, 3.0, 3.1, 2.9], [0, 0, 0, 1, 1, 1, 2, 2, 2]
    )
    assert n == 3 and (m, lo, hi) == pytest.approx(stats.mean_interval([1.0, 2.0, 3.0]))
    assert stats.cluster_interval([1.0, 2.0, 3.0], ["a"] * 3) == pytest.approx((*stats.mean_interval(values), 3))


class GradedGenerator:
    """Stands in for hf_generate: prompt i is answered right with probability (i % 5) / 4, so prompts
    range from never to always solved and allocation has something to allocate."""

    def __call__(self, model, tokenizer, prompts, counts, **kw):
        out = []
        for i, (prompt, count) in enumerate(zip(prompts, counts)):
            gold = prompt.split("=")[0]
            p = (int(gold) % 5) / 4
            for _ in range(count):
                right = torch.rand(()).item() < p
                extra = torch.randint(0, 3, (1,)).item()
                text = f"\\boxed{{{gold if right else '77'}}}" + "!" * extra
                out.append(
                    Generation(i, tokenizer(prompt)["input_ids"], tokenizer(text)["input_ids"], text, False)
                )
        return out


def test_snapshots_probes_and_table(tmp_path, monkeypatch):
    model = tmp_path / "tiny"
    write_tiny_model(model, seed=0, layers=1, hidden=32, heads=2)
    monkeypatch.setattr(trainer_mod, "hf_generate", GradedGenerator())
    cfg = config_from_dict(
        {
            "seeds": [1],
            "train": {
                "steps": 2,
                "prompts_per_step": 4,
                "rollouts_per_prompt": 4,
                "mini_batch_prompts": 2,
                "micro_batch_sequences": 64,
                "max_new_tokens": 6,
                "lr": 1e-3,
                "snapshot_steps": [0, 2],
            },
            "probe": {"batches": 4, "prompt_sets": 1, "step_batches": 2},
        }
    )
    problems = [Problem(id=f"p{i}", prompt=f"{i}=", answers=[str(i)]) for i in range(10)]
    run_dir = tmp_path / "run"
    for method in ("dynamo-nostab", "dynamo"):  # only the probed method (dynamo) writes snapshots
        LocalTrainer(
            cfg, cfg.method(method), 1, tmp_path / method, str(model), problems, show_progress=False
        ).train()
    assert find_snapshots(tmp_path / "dynamo-nostab") == []
    (tmp_path / "dynamo").rename(run_dir)
    assert [s for s, _ in find_snapshots(run_dir)] == [0, 2]

    result = run_probes(cfg, run_dir, 1, problems=problems)
    assert result["snapshots"] == [0, 2]
    assert len(result["allocation"]) == 2 and len(result["one_step"]) == 4
    cell = result["allocation"][0]
    # Equal budget, and w=P moves rollouts towards the prompts with reward spread.
    assert {sum(c) for c in cell["counts"].values()} == {16}
    assert cell["counts"]["p"] != cell["counts"]["uniform"]
    for scheme in ("p", "sqrt_p"):
        for log_ratio, se in cell["log_ratios"][scheme].values():
            assert math.isfinite(log_ratio) and se >= 0
    for s in result["one_step"]:
        assert -1 <= s["indicator_spearman"] <= 1
        assert s["none"]["max_abs_dH"] > 0 and s["stab"]["max_abs_dH"] > 0
        for mode in ("decay6", "decay5"):
            stab = s["stab_modes"][mode]
            assert (
                0 <= stab["share_below_099"] <= 1
                and 0.6 <= stab["mean_beta"] <= 1
                and stab["relative_change"] >= 0
            )
            assert sum(stab["x_hist"]) == s["active"]
        assert 1.0 <= s["comp_mean_beta_positive"] <= 1.2

    # The probe's fixed-target gradient is the per-prompt mean of per-sample gradients, computed here
    # sample by sample (another route): (1/N) sum_i (1/n_i) sum_j A_ij grad log pi(o_ij).
    from dynamo.core.advantages import group_advantages
    from dynamo.engines.local.policy import token_logprobs
    from dynamo.probes.measure import SnapshotProber

    prober = SnapshotProber(cfg, run_dir, 1, problems=problems)
    prober.load(find_snapshots(run_dir)[-1][1])
    pool = prober.generate([2, 3, 7], 6, seed=5)  # success probabilities 0.5, 0.75, 0.5
    keep = torch.tensor([True] * 6 + [True] * 4 + [False] * 2 + [True] * 3 + [False] * 3)  # n_i = 6, 4, 3
    batch = pool.select(keep)
    _, fixed = prober.gradients(batch, 3)
    adv = group_advantages(batch.rewards, batch.group_ids)
    n_i = {g: int((batch.group_ids == g).sum()) for g in batch.group_ids.tolist()}
    params = [p for p in prober.trainer.model.parameters() if p.requires_grad]
    expected = torch.zeros_like(fixed)
    for s_ in range(batch.num_samples):
        logp, _ = token_logprobs(
            prober.trainer.model, batch.input_ids[s_ : s_ + 1], batch.attention_mask[s_ : s_ + 1]
        )
        score = (logp * batch.response_mask[s_ : s_ + 1]).sum()
        g = torch.autograd.grad(score, params, allow_unused=True)
        flat = torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, params)])
        expected -= adv[s_].double() * flat.double() / (3 * n_i[int(batch.group_ids[s_])])
    assert adv.abs().sum() > 0 and float((fixed - expected).norm() / expected.norm()) < 1e-4  # float32 model

    # The report: every claim present, verdicts from the fixed vocabulary, figures written.
    import json

    from dynamo.probes.cli import add_arguments, run

    probe_file = tmp_path / "probe.json"
    probe_file.write_text(json.dumps(result))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "dynamo").mkdir()
    run_dir.rename(tmp_path / "runs" / "dynamo" / "seed1")
    (tmp_path / "runs" / "dynamo-nostab").mkdir()
    (tmp_path / "dynamo-nostab").rename(tmp_path / "runs" / "dynamo-nostab" / "seed1")
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "results" / "table3"
    args = parser.parse_args(
        [
            "report",
            "--inputs",
            str(probe_file),
            "--runs-root",
            str(tmp_path / "runs"),
            "--seeds",
            "1",
            "--out",
            str(out),
            "--figures",
            str(tmp_path / "figs"),
        ]
    )
    assert run(args) == 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert {r["claim"] for r in rows} == {"allocation", "indicator", "stabilization", "compensation"}
    assert {r["verdict"] for r in rows} <= {
        "supports",
        "contradicts",
        "not distinguishable",
        "insensitive by construction",
        "diagnostic",
    }
    quantities = {r["quantity"] for r in rows}
    for needed in (
        "fixed-target estimator (per-prompt mean): trace of gradient covariance: w=P / uniform",
        "token-mean estimator: variance of the gradient along a common reference: w=sqrt(P) / uniform",
        "partial Spearman(|predicted dH|, |realised dH| given H0): information beyond H0",
        "diagnostic (decay5): share of response tokens with beta_stab < 0.99",
    ):
        assert needed in quantities
    assert any("beta_comp / constant scale" in q for q in quantities)
    assert {r["verdict"] for r in rows if r["quantity"].startswith("diagnostic")} == {"diagnostic"}
    for name in ("probe_allocation", "probe_indicator", "probe_stabilization", "probe_compensation"):
        assert (tmp_path / "figs" / f"{name}.png").stat().st_size > 10_000
        assert (tmp_path / "figs" / f"{name}.pdf").exists()


def test_confident_tokens_leave_out_the_already_certain_ones():
    """Format tokens (entropy ~0) cannot move in one step; the compensation probe must not pick only them."""
    entropy = torch.tensor([[0.0, 1e-6, 0.01, 0.02, 0.5, 0.9], [0.0, 0.03, 0.04, 0.6, 0.0, 0.0]])
    A = torch.tensor([[1.0] * 6, [-1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    valid = torch.ones_like(A, dtype=torch.bool)
    picked = confident_tokens(entropy, A, valid, 0.5)
    assert picked.any() and (entropy[picked] > CERTAIN_ENTROPY).all() and (A[picked] > 0).all()
    assert sorted(entropy[picked].tolist()) == pytest.approx([0.01, 0.02, 0.03, 0.04])
    assert not confident_tokens(torch.zeros(2, 3), torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool), 0.2).any()
