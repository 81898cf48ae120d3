"""dynamo.core.losses: PPO-clip with asymmetric clip, dual clip and aggregation modes."""

from __future__ import annotations

import math

import pytest
import torch

from dynamo.core.losses import policy_loss
from dynamo.core.modulation import modulation_factors, token_entropy
from dynamo.methods import DYNAMO, ModulationSpec
from dynamo.spec import LossSpec

CLIP = {"eps_low": 0.2, "eps_high": 0.28}


def clip_spec(**settings) -> LossSpec:
    """Token PPO-clip with CLIP's range; no dual clip unless given."""
    return LossSpec(**{**CLIP, "dual_clip": None, **settings})


DYNAMO_MOD = DYNAMO.modulation


def hand_batch():
    """One sequence, six tokens (the last is padding); old_logp = 0 so ratio = exp(logp)."""
    ratio = torch.tensor([[1.1, 1.5, 0.5, 20.0, 1.0, 7.0]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, -2.0, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    return ratio.log(), torch.zeros_like(ratio), adv, mask


def test_hand_computed_ppo_clip_with_dual_clip():
    logp, old_logp, adv, mask = hand_batch()
    loss, metrics = policy_loss(logp, old_logp, adv, mask, clip_spec(dual_clip=3.0))
    # token 1: A = 1, r = 1.1 inside the clip range     -> -1.1
    # token 2: A = 1, r = 1.5 > 1 + eps_high = 1.28     -> max(-1.5, -1.28) = -1.28 (clipped)
    # token 3: A = -1, r = 0.5 < 1 - eps_low = 0.8      -> max(0.5, 0.8) = 0.8     (clipped)
    # token 4: A = -1, r = 20                           -> max(20, 1.28) = 20, min(20, 3 * 1) = 3 (dual clip)
    # token 5: A = -2, r = 1                            -> 2
    expected = (-1.1 - 1.28 + 0.8 + 3.0 + 2.0) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert metrics["pg_clipfrac"] == pytest.approx(2 / 5)
    assert metrics["pg_clipfrac_lower"] == pytest.approx(1 / 5)
    assert metrics["approx_kl"] == pytest.approx(-sum(math.log(r) for r in (1.1, 1.5, 0.5, 20.0, 1.0)) / 5)
    assert metrics["ratio_max"] == pytest.approx(20.0)
    assert all(isinstance(v, float) for v in metrics.values())
    # without dual clip token 4 costs 20
    loss, metrics = policy_loss(logp, old_logp, adv, mask, clip_spec())
    assert loss.item() == pytest.approx((-1.1 - 1.28 + 0.8 + 20.0 + 2.0) / 5, rel=1e-12)
    assert metrics["pg_clipfrac_lower"] == 0.0


def test_gradient_only_through_logp_and_zero_for_clipped_tokens():
    logp0, old0, adv0, mask = hand_batch()
    logp = logp0.clone().requires_grad_(True)
    old_logp = old0.clone().requires_grad_(True)
    adv = adv0.clone().requires_grad_(True)
    ref = (logp0 + 0.1).requires_grad_(True)
    loss, _ = policy_loss(logp, old_logp, adv, mask, clip_spec(dual_clip=3.0, kl_coef=0.0), ref_logp=ref)
    loss.backward()
    assert old_logp.grad is None and adv.grad is None and ref.grad is None
    # d/dlogp of -A r / 5 = -A r / 5 on unclipped tokens, 0 on clipped, dual-clipped and padding
    expected = torch.tensor([[-1.1 / 5, 0.0, 0.0, 0.0, 2.0 / 5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(logp.grad, expected)


def test_token_mean_vs_seq_mean_token_mean():
    # sequence 0 has 1 valid token with loss -1 (A = 1, r = 1); sequence 1 has 3 with loss +2
    logp = torch.zeros(2, 3, dtype=torch.float64)
    adv = torch.tensor([[1.0, 0.0, 0.0], [-2.0, -2.0, -2.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    token_mean, _ = policy_loss(logp, logp, adv, mask, clip_spec())
    seq_mean, _ = policy_loss(logp, logp, adv, mask, clip_spec(aggregation="seq-mean-token-mean"))
    assert token_mean.item() == pytest.approx((-1 + 3 * 2) / 4)
    assert seq_mean.item() == pytest.approx((-1 + 2) / 2)
    # an empty sequence is ignored by seq-mean-token-mean
    logp3 = torch.zeros(3, 3, dtype=torch.float64)
    adv3 = torch.cat([adv, torch.ones(1, 3, dtype=torch.float64)])
    mask3 = torch.cat([mask, torch.zeros(1, 3, dtype=torch.float64)])
    seq3, _ = policy_loss(logp3, logp3, adv3, mask3, clip_spec(aggregation="seq-mean-token-mean"))
    assert seq3.item() == pytest.approx(seq_mean.item())
    # with equal lengths the two coincide
    full = torch.ones(2, 3, dtype=torch.float64)
    a, _ = policy_loss(logp, logp, adv, full, clip_spec())
    b, _ = policy_loss(logp, logp, adv, full, clip_spec(aggregation="seq-mean-token-mean"))
    assert a.item() == pytest.approx(b.item())


def test_unit_modulation_gives_exactly_the_unmodulated_loss():
    torch.manual_seed(0)
    logp = (-torch.rand(4, 7) * 2).requires_grad_(True)
    old_logp = logp.detach() + 0.2 * torch.randn(4, 7)
    mask = (torch.rand(4, 7) > 0.2).float()
    adv = torch.randn(4, 1).expand(4, 7) * mask
    entropy = torch.rand(4, 7)
    off = ModulationSpec(compensation=True, stabilization=True, alpha=0.0, lambda_min=1.0)
    comp, stab = modulation_factors(logp.detach(), old_logp, adv, entropy, mask, off, **CLIP)
    plain, m1 = policy_loss(logp, old_logp, adv, mask, clip_spec(dual_clip=10.0))
    (g_plain,) = torch.autograd.grad(plain, logp)
    modulated, m2 = policy_loss(logp, old_logp, adv * comp * stab, mask, clip_spec(dual_clip=10.0))
    (g_mod,) = torch.autograd.grad(modulated, logp)
    assert torch.equal(plain, modulated) and torch.equal(g_plain, g_mod) and m1 == m2


def test_entropy_bonus_and_k3_kl():
    logp, old_logp, adv, mask = hand_batch()
    entropy = torch.full_like(logp, 2.0)
    base, _ = policy_loss(logp, old_logp, adv, mask, clip_spec())
    with_bonus, metrics = policy_loss(logp, old_logp, adv, mask, clip_spec(entropy_coef=0.01), entropy=entropy)
    assert with_bonus.item() == pytest.approx(base.item() - 0.01 * 2.0)
    assert metrics["entropy"] == pytest.approx(2.0)
    ref = logp + math.log(2.0)  # ref - logp = ln 2 -> k3 = 2 - ln 2 - 1
    with_kl, metrics = policy_loss(logp, old_logp, adv, mask, clip_spec(kl_coef=0.5), ref_logp=ref)
    assert metrics["kl"] == pytest.approx(1.0 - math.log(2.0))
    assert with_kl.item() == pytest.approx(base.item() + 0.5 * (1.0 - math.log(2.0)))
    same, metrics = policy_loss(logp, old_logp, adv, mask, clip_spec(kl_coef=0.5), ref_logp=logp)
    assert same.item() == pytest.approx(base.item()) and metrics["kl"] == 0.0


def test_entropy_bonus_gradient_flows_through_entropy():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    entropy = token_entropy(logits)
    z = torch.zeros(2, 3)
    loss, _ = policy_loss(z, z, z, torch.ones(2, 3), clip_spec(entropy_coef=0.1), entropy=entropy)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_empty_mask_and_errors():
    z = torch.zeros(2, 3, requires_grad=True)
    loss, metrics = policy_loss(z, z.detach(), torch.ones(2, 3), torch.zeros(2, 3), clip_spec())
    assert loss.item() == 0.0 and metrics["pg_clipfrac"] == 0.0
    loss.backward()  # still differentiable
    ones = torch.ones(2, 3)
    with pytest.raises(ValueError, match="entropy_coef"):
        policy_loss(z, z, ones, ones, clip_spec(entropy_coef=0.1))
    with pytest.raises(ValueError, match="kl_coef"):
        policy_loss(z, z, ones, ones, clip_spec(kl_coef=0.1))
    with pytest.raises(ValueError, match="dual_clip"):
        policy_loss(z, z, ones, ones, clip_spec(dual_clip=1.0))
    with pytest.raises(ValueError, match="aggregation"):
        policy_loss(z, z, ones, ones, clip_spec(aggregation="sum"))
    with pytest.raises(ValueError, match="share one shape"):
        policy_loss(z, z, ones[:, :2], ones, clip_spec())


def test_garbage_in_padding_cannot_leak():
    """Padding holding -inf / NaN must not reach the loss, the factors or the gradient."""
    logp0, old0, adv0, mask = hand_batch()
    clean_loss, _ = policy_loss(logp0, old0, adv0, mask, clip_spec(dual_clip=3.0))
    logp = logp0.clone()
    logp[0, -1] = float("-inf")
    old_logp, adv = old0.clone(), adv0.clone()
    old_logp[0, -1], adv[0, -1] = float("nan"), float("inf")
    entropy = torch.ones_like(logp)
    entropy[0, -1] = float("nan")
    comp, stab = modulation_factors(logp, old_logp, adv, entropy, mask, DYNAMO_MOD, **CLIP)
    assert torch.isfinite(comp).all() and torch.isfinite(stab).all()
    leaf = logp.clone().requires_grad_(True)
    loss, metrics = policy_loss(leaf, old_logp, adv * comp * stab, mask, clip_spec(dual_clip=3.0))
    loss.backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad[0, -1] == 0.0
    assert all(math.isfinite(v) for v in metrics.values())
    plain, _ = policy_loss(logp, old_logp, adv, mask, clip_spec(dual_clip=3.0))
    assert plain.item() == clean_loss.item()
