"""GSPO (Zheng et al. 2025): the policy loss `gspo` against hand-computed cases, and its registration."""

import dataclasses
import importlib
import math

import pytest
import torch

from dynamo.core.losses import policy_loss
from dynamo.core.mechanisms import loss_clipped
from dynamo.core.objective import TokenBatch, objective_loss
from dynamo.methods import all_methods, get_method

GSPO = get_method("gspo")


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_registered_with_the_paper_settings():
    assert GSPO is all_methods()["gspo"]
    loss = GSPO.loss
    assert (loss.policy_loss, loss.eps_low, loss.eps_high, loss.dual_clip) == ("gspo", 3e-4, 4e-4, None)
    assert (loss.aggregation, loss.entropy_coef, loss.kl_coef) == ("seq-mean-token-mean", 0.0, 0.0)
    grpo = get_method("grpo")
    assert dataclasses.replace(GSPO, name="grpo", description=grpo.description, loss=grpo.loss) == grpo
    doc = importlib.import_module("baselines.gspo").__doc__
    assert "Zheng et al. 2025" in doc and "2507.18071" in doc and "3e-4" in doc


def test_dynamo_methods_lists_the_method_and_the_loss(capsys):
    from dynamo.cli import main

    assert main(["methods"]) == 0
    assert "gspo" in {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert main(["methods", "--losses"]) == 0
    assert any(line.split()[:1] == ["gspo"] for line in capsys.readouterr().out.splitlines())


def test_ratio_one_is_the_plain_sequence_mean_policy_gradient():
    """logp = old_logp: s_i = 1, nothing clipped; loss = mean_i mean_t (-A), d/dlogp_t = -A_t / (|y_i| B)."""
    logp = t([[-0.3, -1.2, -9.0], [-0.5, -0.1, -2.0]]).requires_grad_()
    adv = t([[1.0, 1.0, 0.0], [-2.0, -2.0, -2.0]])
    mask = t([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, metrics = policy_loss(logp, logp.detach(), adv, mask, GSPO.loss)
    (grad,) = torch.autograd.grad(loss, logp)
    assert float(loss.detach()) == pytest.approx(((-1.0) + 2.0) / 2, abs=1e-15)
    expected = t([[-1 / (2 * 2), -1 / (2 * 2), 0.0], [2 / (3 * 2), 2 / (3 * 2), 2 / (3 * 2)]])
    assert torch.allclose(grad, expected, atol=1e-15, rtol=0)
    assert metrics["pg_clipfrac"] == 0.0 and metrics["ratio_mean"] == 1.0
    # ...which is GRPO's token PPO-clip at ratio 1 with the same aggregation.
    grpo_loss = dataclasses.replace(get_method("grpo").loss, aggregation="seq-mean-token-mean", dual_clip=None)
    ref, _ = policy_loss(logp, logp.detach(), adv, mask, grpo_loss)
    assert torch.equal(loss, ref) and torch.equal(grad, torch.autograd.grad(ref, logp)[0])


def test_eps_clipping_hand_case():
    """Four two-token responses (old_logp = 0, so logp is the log-ratio), clip (1 - 3e-4, 1 + 4e-4):
    s = e^0.0005 with A = +1: clipped at 1.0004 (no gradient); the same s with A = -1: not clipped;
    s = e^-0.0005 with A = -1: clipped at 0.9997; s = e^0.0001 with A = +1: inside the range."""
    log_ratio = t([[0.001, 0.0], [0.001, 0.0], [-0.001, 0.0], [0.0002, 0.0]])
    adv = t([[1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0], [1.0, 1.0]])
    logp = log_ratio.clone().requires_grad_()
    loss, metrics = policy_loss(logp, torch.zeros_like(logp), adv, torch.ones_like(logp), GSPO.loss)
    (grad,) = torch.autograd.grad(loss, logp)
    s_up, s_down, s_in = math.exp(0.0005), math.exp(-0.0005), math.exp(0.0001)
    assert float(loss.detach()) == pytest.approx((-(1 + 4e-4) + s_up + (1 - 3e-4) - s_in) / 4, abs=1e-15)
    # d/dlogp_t = -A_t s_i / (|y_i| B) where the term is not clipped, 0 where it is.
    expected = t([[0.0, 0.0], [s_up / 8, s_up / 8], [0.0, 0.0], [-s_in / 8, -s_in / 8]])
    assert torch.allclose(grad, expected, atol=1e-15, rtol=0)
    assert metrics["pg_clipfrac"] == 0.5  # the 4 tokens of the two clipped responses
    assert metrics["ratio_mean"] == pytest.approx((2 * s_up + s_down + s_in) / 4, abs=1e-15)


def test_stop_gradient_form_has_the_sequence_form_gradient():
    """With one advantage per response (GSPO's case) the token form's gradient is that of differentiating
    -A_i exp(mean_t log r_t) directly (OpenRLHF's form); with a range wide enough that nothing is clipped."""
    g = torch.Generator().manual_seed(0)
    logp = (-torch.rand(4, 6, generator=g, dtype=torch.float64)).requires_grad_()
    old = logp.detach() + 0.2 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    mask = (torch.arange(6) < torch.tensor([[6], [3], [5], [1]])).to(torch.float64)
    adv = torch.randn(4, 1, generator=g, dtype=torch.float64) * mask
    wide = dataclasses.replace(GSPO.loss, eps_low=1.0, eps_high=100.0)
    loss, metrics = policy_loss(logp, old, adv, mask, wide)
    seq_ratio = torch.exp(((logp - old) * mask).sum(-1) / mask.sum(-1))
    direct = (-adv[:, 0] * seq_ratio).mean()
    assert metrics["pg_clipfrac"] == 0.0
    assert float(loss.detach()) == pytest.approx(float(direct.detach()), abs=1e-14)
    assert torch.allclose(torch.autograd.grad(loss, logp)[0], torch.autograd.grad(direct, logp)[0], atol=1e-14)


def test_clip_cov_and_the_metrics_read_the_sequence_clip():
    """The registry's one clip mask: for gspo a response is clipped as a whole, and what Clip-Cov's band
    excludes is what the loss reports as clipped."""
    log_ratio = t([[0.0015, 0.0, 0.0], [0.0002, 0.0, 0.0], [-0.003, 0.002, 0.0]])
    adv = t([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]])
    mask = t([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    b = TokenBatch(log_ratio.clone().requires_grad_(), torch.zeros(3, 3, dtype=torch.float64), adv, mask)
    clipped = loss_clipped(GSPO, b.detached(), adv)
    assert clipped.tolist() == [[True, True, True], [False, False, False], [True, True, False]]
    _, metrics, _ = objective_loss(GSPO, b)
    assert metrics["pg_clipfrac"] == pytest.approx(5 / 8, abs=1e-15)


def test_each_token_keeps_its_own_advantage():
    """Token-varying advantages (e.g. under DynaMO's factors): d/dlogp_t = -A_t s_i / (|y_i| B), the
    stop-gradient form's, not -mean(A) s_i / (|y_i| B) as differentiating the sequence form gives."""
    logp = t([[0.0003, -0.0001, 0.0]]).requires_grad_()
    adv = t([[2.0, -1.0, 0.5]])
    loss, metrics = policy_loss(logp, torch.zeros_like(logp), adv, torch.ones_like(logp), GSPO.loss)
    (grad,) = torch.autograd.grad(loss, logp)
    s = math.exp(0.0002 / 3)
    assert metrics["pg_clipfrac"] == 0.0
    assert torch.allclose(grad, -adv * s / 3, atol=1e-15, rtol=0)
