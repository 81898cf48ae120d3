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
    # A ratio below the smallest float (a nearly zero gradient) is a large negative log, not an error.
    tiny, _ = stats.jackknife_log_ratio(1e-200 * (quiet @ quiet.T), 1e200 * (quiet @ quiet.T), "trace")
    assert tiny == pytest.approx(-400 * math.log(10))


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

    # The tail tokens of the stabilisation rows' sensitivity check: largest first, one flag per token.
    for s in result["one_step"]:
        tail = s["tail"]
        assert tail["tokens"] == s["tokens"] and len(tail["abs_dH"]) == len(tail["changed"]) >= 1
        assert tail["abs_dH"] == sorted(tail["abs_dH"], reverse=True)
        assert tail["abs_dH"][0] == pytest.approx(s["none"]["max_abs_dH"])

    # The probe's per-prompt-mean gradients are the per-prompt mean of per-sample gradients, computed here
    # sample by sample (another route): (1/N) sum_i (1/n_i) sum_j A_ij grad log pi(o_ij).
    from dynamo.core.advantages import group_advantages
    from dynamo.engines.local.policy import token_logprobs
    from dynamo.probes.measure import SnapshotProber

    prober = SnapshotProber(cfg, run_dir, 1, problems=problems)
    prober.load(find_snapshots(run_dir)[-1][1])
    pool = prober.generate([2, 3, 7], 6, seed=5)  # success probabilities 0.5, 0.75, 0.5
    keep = torch.tensor([True] * 6 + [True] * 4 + [False] * 2 + [True] * 3 + [False] * 3)  # n_i = 6, 4, 3
    batch = pool.select(keep)
    baseline = torch.tensor([0.5, 0.75, 0.5])
    got = prober.gradients(batch, 3, baseline)
    adv = group_advantages(batch.rewards, batch.group_ids)
    fixed_adv = batch.rewards.double() - baseline.double()[batch.group_ids]
    n_i = {g: int((batch.group_ids == g).sum()) for g in batch.group_ids.tolist()}
    params = [p for p in prober.trainer.model.parameters() if p.requires_grad]
    expected = {
        "pool_baseline": torch.zeros_like(got["pool_baseline"]),
        "per_prompt_mean": 0 * got["pool_baseline"],
    }
    for s_ in range(batch.num_samples):
        logp, _ = token_logprobs(
            prober.trainer.model, batch.input_ids[s_ : s_ + 1], batch.attention_mask[s_ : s_ + 1]
        )
        score = (logp * batch.response_mask[s_ : s_ + 1]).sum()
        g = torch.autograd.grad(score, params, allow_unused=True)
        flat = torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, params)])
        weight = flat.double() / (3 * n_i[int(batch.group_ids[s_])])
        expected["pool_baseline"] -= fixed_adv[s_] * weight
        expected["per_prompt_mean"] -= adv[s_].double() * weight
    assert adv.abs().sum() > 0
    for name, want in expected.items():
        assert float((got[name] - want).norm() / want.norm()) < 1e-4, name  # float32 model

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
        "fixed-target (paper's estimator: per-prompt mean, group advantages): trace of gradient covariance: "
        "w=P / uniform",
        "diagnostic, per-prompt mean with a constant pool baseline r - p_i: trace of gradient covariance: "
        "w=sqrt(P) / uniform",
        "token-mean estimator: variance of the gradient along a common reference: w=sqrt(P) / uniform",
        "partial Spearman(|predicted dH|, |realised dH| given H0): information beyond H0",
        "diagnostic (decay5): share of response tokens with beta_stab < 0.99",
    ):
        assert needed in quantities
    assert any("beta_comp / constant scale" in q for q in quantities)
    assert {r["verdict"] for r in rows if r["quantity"].startswith("diagnostic")} == {"diagnostic"}
    assert all(bool(r["reason"]) == (r["verdict"] == "insensitive by construction") for r in rows)
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


# -- estimators on synthetic cases with a known answer ---------------------------------------------


def _per_prompt_mean_batches(rng, mu, sigma, counts, batches):
    """B per-prompt-mean gradients (1/N) sum_i mean of n_i draws of mu_i + sigma_i * noise."""
    N, D = mu.shape
    out = np.empty((batches, D))
    for b in range(batches):
        out[b] = np.mean([mu[i] + sigma[i] * rng.normal(size=(counts[i], D)).mean(0) for i in range(N)], axis=0)
    return out


def test_fixed_target_trace_ratio_matches_the_closed_form():
    """Another route to the allocation row: tr Cov of the per-prompt mean is (1/N^2) sum_i D sigma_i^2 / n_i.
    The Monte-Carlo estimate through the probe's statistics (Gram matrix, trace, jackknife, pooling) must
    recover the closed-form ratio, detect it (positive control) and read a null as not distinguishable."""
    from dynamo.core.allocation import allocate_rollouts

    rng = np.random.default_rng(11)
    N, D, n = 8, 30, 8
    p = np.array([0.0, 0.02, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0])  # success rates: two groups carry no signal
    sigma = np.sqrt(p * (1 - p))
    mu = rng.normal(size=(N, D))
    uniform = np.full(N, n)
    allocated = allocate_rollouts(p * (1 - p), N * n, n // 2, 3 * n // 2)
    closed = (sigma**2 / allocated).sum() / (sigma**2 / uniform).sum()
    assert 0.7 < closed < 0.95  # a real but modest effect, the size the claim is about
    cells = []
    for _ in range(4):
        g_u = _per_prompt_mean_batches(rng, mu, sigma, uniform, 200)
        g_a = _per_prompt_mean_batches(rng, mu, sigma, allocated, 200)
        assert stats.gradient_measures(g_u @ g_u.T)["trace"] == pytest.approx(
            D * (sigma**2 / uniform).sum() / N**2, rel=0.2
        )
        cells.append(stats.jackknife_log_ratio(g_a @ g_a.T, g_u @ g_u.T, "trace"))
    est, lo, hi = stats.pooled_log_ratio(cells)
    assert lo < closed < hi and est == pytest.approx(closed, rel=0.08)
    assert stats.verdict(lo, hi, supports_if="below", null=1.0) == "supports"
    # Null: the same allocation twice (independent draws) is not distinguishable from itself.
    null_cells = []
    for _ in range(4):
        a = _per_prompt_mean_batches(rng, mu, sigma, uniform, 200)
        b = _per_prompt_mean_batches(rng, mu, sigma, uniform, 200)
        null_cells.append(stats.jackknife_log_ratio(a @ a.T, b @ b.T, "trace"))
    assert stats.verdict(*stats.pooled_log_ratio(null_cells)[1:], supports_if="below", null=1.0) == (
        "not distinguishable"
    )


def test_reference_measures_match_direct_computation_and_see_noise_along_the_reference():
    rng = np.random.default_rng(5)
    B, D = 40, 25
    u_dir = np.zeros(D)
    u_dir[0] = 1.0
    ref = 2.0 * u_dir + rng.normal(size=(B, D))  # the uniform scheme's batches
    quiet = 2.0 * u_dir + rng.normal(size=(B, D)) * np.where(np.arange(D) == 0, 0.5, 1.0)  # less noise along u
    got = stats.reference_measures(quiet @ quiet.T, quiet @ ref.T, ref @ ref.T)
    proj, cos = [], []
    for b in range(B):
        u = np.delete(ref, b, 0).mean(0)
        proj.append(quiet[b] @ u / np.linalg.norm(u))
        cos.append(quiet[b] @ u / np.linalg.norm(u) / np.linalg.norm(quiet[b]))
    assert got["projection_variance"] == pytest.approx(np.var(proj, ddof=1))
    assert got["reference_cosine"] == pytest.approx(np.mean(cos))
    # Positive control: a quarter of the variance along the reference is detected; the total trace barely moves.
    log_ratio, se = stats.jackknife_reference_log_ratio(
        quiet @ quiet.T, quiet @ ref.T, ref @ ref.T, "projection_variance"
    )
    est, lo, hi = stats.pooled_log_ratio([(log_ratio, se)])
    assert stats.verdict(lo, hi, supports_if="below", null=1.0) == "supports" and est < 0.6
    trace_ratio = stats.gradient_measures(quiet @ quiet.T)["trace"] / stats.gradient_measures(ref @ ref.T)["trace"]
    assert 0.85 < trace_ratio < 1.1
    # Null: the reference scheme against itself is exactly 1.
    assert stats.jackknife_reference_log_ratio(ref @ ref.T, ref @ ref.T, ref @ ref.T, "reference_cosine") == (
        0.0,
        0.0,
    )


def test_partial_spearman_separates_information_beyond_the_baseline():
    rng = np.random.default_rng(2)
    h = rng.exponential(size=3000)
    realised = h * np.exp(0.3 * rng.normal(size=3000))
    # Null: a predictor that is only a noisy copy of H0 correlates with the outcome but adds nothing.
    copy = h * np.exp(0.3 * rng.normal(size=3000))
    assert stats.spearman(copy, realised) > 0.8 and abs(stats.partial_spearman(copy, realised, h)) < 0.05
    # Positive control: a predictor that knows part of the outcome's own noise.
    informed = realised * np.exp(0.3 * rng.normal(size=3000))
    assert stats.partial_spearman(informed, realised, h) > 0.3


def test_indicator_measures_and_sensitivity_verdict():
    from dynamo.probes.measure import indicator_measures
    from dynamo.probes.report import INSENSITIVE, sensitivity_verdict

    pred = torch.tensor([1.0, -2.0, 3.0, -4.0, 0.0])
    real = torch.tensor([0.5, -1.0, -1.0, -3.0, 1.0])
    got = indicator_measures(pred, real, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert got["sign_agreement"] == pytest.approx(3 / 4)  # the token with predicted 0 is left out
    assert got["rho_entropy"] == pytest.approx(stats.spearman(np.arange(5), np.abs(real.numpy())))
    # A mechanism that changes the update by 1e-4 cannot move a row resolving +-1e-2: insensitive.
    text, reason = sensitivity_verdict(
        -0.01, 0.01, supports_if="below", null=0.0, resolution=0.01, producible=1e-4
    )
    assert text == INSENSITIVE and "at most 0.0001" in reason
    # One that can (5e-2) reads as the ordinary verdict; a resolved effect is never overruled.
    kw = {"supports_if": "below", "null": 0.0, "resolution": 0.01}
    assert sensitivity_verdict(-0.01, 0.01, producible=5e-2, **kw) == ("not distinguishable", "")
    assert sensitivity_verdict(-0.03, -0.01, producible=1e-4, **kw) == ("supports", "")


def test_report_refuses_a_probe_file_of_another_format(tmp_path):
    import argparse
    import json

    from dynamo.probes.cli import add_arguments, run

    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": "dynamo.probes/1", "allocation": [], "one_step": []}))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["report", "--inputs", str(old), "--runs-root", str(tmp_path), "--seeds", "1"])
    with pytest.raises(SystemExit, match="dynamo.probes/1"):
        run(args)


# -- the paper's fixed-target estimator, by another route -------------------------------------------


def _grpo_per_prompt_mean_loop(rewards: list[np.ndarray], scores: list[np.ndarray], eps: float) -> np.ndarray:
    """Plain numpy, prompt by prompt: A = (r - mean r) / (unbiased std + eps), 0 without reward spread; the mean
    of A grad log pi over the prompt's samples; the mean of that over prompts."""
    terms = []
    for r, x in zip(rewards, scores):
        sd = r.std(ddof=1)
        a = (r - r.mean()) / (sd + eps) if sd > 0 else np.zeros_like(r)
        terms.append((a[:, None] * x).mean(0))
    return np.mean(terms, axis=0)


def test_paper_fixed_target_trace_ratio_matches_a_loop_and_the_closed_form():
    """The table's fixed-target row (per-prompt mean with the method's group advantages) by a second route.

    Synthetic prompts i with success rate p_i and per-sample gradients x_ij = m_i + s_i z_ij (z standard
    normal in D dimensions, independent of the reward). m_i cancels (group advantages sum to 0 in a group),
    so the per-prompt mean has covariance (1/N^2) sum_i sigma_i^2 / n_i with the per-sample variance
    sigma_i^2 = D s_i^2 q_i (n_i - 1) / n_i, q_i = 1 - p_i^n_i - (1 - p_i)^n_i the chance that a group of n_i
    has reward spread (then sum_j A_ij^2 = n_i - 1). The probe's loss (`per_prompt_mean_loss` on
    `group_advantages`, differentiated by torch) must give the loop's gradient batch by batch, and its
    statistics (Gram trace, paired jackknife, pooling) the closed-form ratio of allocation w=P to uniform."""
    from dynamo.core.advantages import group_advantages
    from dynamo.core.allocation import allocate_rollouts
    from dynamo.probes.measure import per_prompt_mean_loss

    rng = np.random.default_rng(17)
    N, D, n, eps = 8, 20, 8, 1e-6
    p = np.array([0.0, 0.05, 0.1, 0.3, 0.5, 0.8, 0.95, 1.0])
    s = np.array([1.0, 0.8, 1.2, 1.0, 0.6, 1.0, 1.5, 1.0])
    m = rng.normal(size=(N, D))
    uniform = np.full(N, n)
    allocated = allocate_rollouts(p * (1 - p), N * n, n // 2, 3 * n // 2)

    def closed_trace(counts):
        q = 1 - p**counts - (1 - p) ** counts
        return (D * s**2 * q * (counts - 1) / counts / counts).sum() / N**2

    closed = closed_trace(allocated) / closed_trace(uniform)
    assert 0.6 < closed < 0.95  # allocation moves samples out of groups without spread

    theta = torch.zeros(D, dtype=torch.float64, requires_grad=True)

    def batch_gradients(counts, batches):
        probe, loop = [], []
        for _ in range(batches):
            rewards = [(rng.random(c) < p_i).astype(np.float64) for c, p_i in zip(counts, p)]
            scores = [m_i + s_i * rng.normal(size=(c, D)) for c, m_i, s_i in zip(counts, m, s)]
            group_ids = torch.as_tensor(np.repeat(np.arange(N), counts))
            adv = group_advantages(torch.as_tensor(np.concatenate(rewards)), group_ids, eps=eps)
            score = torch.as_tensor(np.concatenate(scores)) @ theta  # grad of sample j's score: x_j
            (grad,) = torch.autograd.grad(per_prompt_mean_loss(adv, score, group_ids, N), theta)
            probe.append(-grad.numpy())
            loop.append(_grpo_per_prompt_mean_loop(rewards, scores, eps))
        return np.array(probe), np.array(loop)

    cells = []
    for _ in range(4):
        g_u, loop_u = batch_gradients(uniform, 150)
        g_a, loop_a = batch_gradients(allocated, 150)
        np.testing.assert_allclose(g_u, loop_u, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(g_a, loop_a, rtol=1e-9, atol=1e-12)
        assert stats.gradient_measures(g_u @ g_u.T)["trace"] == pytest.approx(closed_trace(uniform), rel=0.25)
        cells.append(stats.jackknife_log_ratio(g_a @ g_a.T, g_u @ g_u.T, "trace"))
    est, lo, hi = stats.pooled_log_ratio(cells)
    assert lo < closed < hi and est == pytest.approx(closed, rel=0.1)
    assert stats.verdict(lo, hi, supports_if="below", null=1.0) == "supports"
    # Null: uniform against uniform (independent draws) reads as not distinguishable.
    null = []
    for _ in range(4):
        a, _ = batch_gradients(uniform, 150)
        b, _ = batch_gradients(uniform, 150)
        null.append(stats.jackknife_log_ratio(a @ a.T, b @ b.T, "trace"))
    assert stats.verdict(*stats.pooled_log_ratio(null)[1:], supports_if="below", null=1.0) == "not distinguishable"


# -- stabilisation tail rows: insensitive by construction, or not -----------------------------------


def test_tail_tokens_needed_counts_the_band_of_the_statistic():
    # Max 1.0; at a resolution of 5% the band is |dH| >= 0.951: the top two tokens both have to move.
    abs_dh = [1.0, 0.96, 0.5, 0.4, 0.3]
    assert stats.tail_tokens_needed(abs_dh, [False] * 5, 5, 1.0, math.log(1 / 0.951)) == (0.0, 2.0)
    assert stats.tail_tokens_needed(abs_dh, [True, False, False, False, False], 5, 1.0, 0.05) == (1.0, 2.0)
    # The quantile as torch.quantile computes it: 100 tokens, q = 0.99 sits between the two largest values.
    values = torch.linspace(0.01, 1.0, 100)
    q99 = float(torch.quantile(values, 0.99))
    desc = sorted(values.tolist(), reverse=True)
    changed, needed = stats.tail_tokens_needed(desc[:10], [True] * 10, 100, 0.99, math.log(q99 / 0.975))
    assert needed == 2 and changed == 3  # 0.98, 0.99, 1.0 are >= 0.975; one of them may stay above
    # q (T - 1) = 98.97: the statistic is mostly the largest value; both tokens at or above t have to move.
    changed, needed = stats.tail_tokens_needed(desc[:10], [False] * 10, 100, 0.9997, math.log(0.99 / 0.975))
    assert (changed, needed) == (0, 2)
    # Moving a statistic always needs at least one token, even when t falls between two order statistics.
    assert stats.tail_tokens_needed([1.0, 0.0], [False] * 2, 2, 0.4, 1e-6) == (0, 1)
    # The stored tail does not reach below the band: no answer.
    assert math.isnan(stats.tail_tokens_needed(desc[:2], [True, True], 100, 0.99, 0.5)[0])


def _tail_step(step, rng, *, damp_top):
    """One synthetic one-step record: 400 tokens with exponential |dH| (no factor); the factor changes 4 tokens,
    either the 4 largest (where the max and the 99th percentile are set: it could move both, here by a small
    effect the noise hides) or 4 from the middle of the distribution (it cannot move either)."""
    abs_dh = np.sort(rng.exponential(size=400))[::-1]
    changed = np.zeros(400, dtype=bool)
    changed[:4] = damp_top
    changed[200:204] = not damp_top
    none = {"max_abs_dH": float(abs_dh[0]), "p99_abs_dH": float(np.quantile(abs_dh, 0.99))}
    shift, noise = (-0.01, 0.05) if damp_top else (0.0, 0.003)
    stab = {k: v * math.exp(rng.normal(shift, noise)) for k, v in none.items()}
    tail = {"tokens": 400, "abs_dH": abs_dh[:40].tolist(), "changed": changed[:40].tolist()}
    return {"step": step, "none": none, "stab": stab, "tail": tail}


def test_tail_rows_read_insensitive_only_when_the_factor_misses_the_tail():
    from dynamo.probes.report import INSENSITIVE, tail_verdict

    rng = np.random.default_rng(4)
    for damp_top, want in ((False, INSENSITIVE), (True, "not distinguishable")):
        steps = [_tail_step(k, rng, damp_top=damp_top) for k in (0, 0, 100, 100, 200, 200)]
        for key, quantile in (("max_abs_dH", 1.0), ("p99_abs_dH", 0.99)):
            logs = [math.log(s["stab"][key] / s["none"][key]) for s in steps]
            _, lo, hi, _ = stats.cluster_interval(logs, [s["step"] for s in steps])
            assert lo < 0 < hi  # the interval contains the null in both cases
            checks = [
                stats.tail_tokens_needed(s["tail"]["abs_dH"], s["tail"]["changed"], 400, quantile, (hi - lo) / 2)
                for s in steps
            ]
            text, reason = tail_verdict(lo, hi, checks, statistic=key, factor="beta_stab", producible=0.0)
            assert text == want, (key, damp_top, checks)
            assert bool(reason) == (want == INSENSITIVE)
            # The factor's change of the shared update could reach the row: no claim of insensitivity.
            reach = math.exp((hi - lo) / 2) - 1  # the row's relative resolution
            kept = tail_verdict(lo, hi, checks, statistic=key, factor="beta_stab", producible=reach)
            assert kept == ("not distinguishable", "")
    # An interval that resolves an effect keeps its verdict whatever the tail says.
    assert tail_verdict(-0.05, -0.01, [(0.0, 3.0)], statistic="max", factor="beta_stab", producible=0.0) == (
        "supports",
        "",
    )
    # A batch whose band the stored tail does not cover: no claim of insensitivity.
    assert tail_verdict(
        -0.01, 0.01, [(0.0, 3.0), (math.nan, math.nan)], statistic="max", factor="f", producible=0.0
    )[0] == ("not distinguishable")
