"""The policy-loss registry and the token mechanisms (dynamo.core.losses, dynamo.core.mechanisms)."""

import dataclasses

import pytest
import torch

from dynamo.core.losses import POLICY_LOSSES, get_policy_loss, policy_loss, register_policy_loss
from dynamo.core.mechanisms import MECHANISMS, WindowInput, loss_clipped, spec_sections
from dynamo.core.objective import TokenBatch
from dynamo.core.reduce import LOCAL
from dynamo.core.window import WindowStats, needs_window, shaped_advantages
from dynamo.methods import all_methods, get_method
from dynamo.spec import LossSpec, MethodSpec


def spread_batch(seed=0, rows=6, cols=10):
    """Ratios far from 1 both ways, so that many tokens are clipped."""
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(rows, cols, generator=g, dtype=torch.float64) * 3).requires_grad_()
    old = logp.detach() + 1.2 * torch.randn(rows, cols, generator=g, dtype=torch.float64)
    lengths = torch.randint(2, cols + 1, (rows,), generator=g)
    mask = (torch.arange(cols) < lengths[:, None]).to(torch.float64)
    sign = torch.tensor([(-1.0) ** i for i in range(rows)], dtype=torch.float64)  # both signs
    adv = (sign * (0.5 + torch.rand(rows, generator=g, dtype=torch.float64)))[:, None] * mask
    entropy = torch.rand(rows, cols, generator=g, dtype=torch.float64)
    return TokenBatch(logp, old, adv, mask, entropy=entropy)


def test_every_registered_method_names_a_registered_policy_loss():
    for name, spec in all_methods().items():
        assert get_policy_loss(spec.loss.policy_loss) is POLICY_LOSSES[spec.loss.policy_loss], name
    assert {"ppo_clip", "reinforce"} <= set(POLICY_LOSSES)


def test_unknown_policy_loss_is_refused_naming_the_registered_ones():
    with pytest.raises(ValueError, match="unknown loss.policy_loss 'ppo'.*ppo_clip.*reinforce"):
        get_method("grpo", {"loss": {"policy_loss": "ppo"}})
    with pytest.raises(ValueError, match="registered twice"):
        register_policy_loss("ppo_clip")(lambda *a: None)


def test_old_clip_field_reads_as_the_policy_loss():
    assert get_method("grpo", {"loss": {"clip": False}}).loss.policy_loss == "reinforce"
    assert get_method("kl-cov", {"loss": {"clip": True}}).loss.policy_loss == "ppo_clip"
    assert get_method("kl-cov").loss.clip is False and get_method("grpo").loss.clip is True
    with pytest.raises(ValueError, match="contradicts"):
        get_method("grpo", {"loss": {"clip": False, "policy_loss": "ppo_clip"}})


@pytest.mark.parametrize("name", ["clip-cov", "grpo", "clip-higher", "w-reinforce"])
def test_clip_cov_band_uses_the_loss_own_clip(name):
    """The tokens Clip-Cov's band excludes are exactly those whose loss term is clipped: the loss's
    clip fraction, and no gradient reaches them from the policy-gradient term."""
    spec = get_method(name)
    b = spread_batch()
    adv = shaped_advantages(spec, b)
    clipped = loss_clipped(spec, b.detached(), adv)
    loss, metrics = policy_loss(
        b.logp, b.old_logp, adv, b.mask, dataclasses.replace(spec.loss, dual_clip=None, entropy_coef=0.0)
    )
    (grad,) = torch.autograd.grad(loss, b.logp)
    valid = b.mask.bool()
    assert 0 < int(clipped.sum()) < int(valid.sum())  # both kinds present: the check can fail
    assert float(clipped.double().sum() / valid.sum()) == pytest.approx(metrics["pg_clipfrac"], abs=1e-12)
    assert bool((grad[clipped] == 0).all()) and bool((grad[valid & ~clipped & (adv != 0)] != 0).all())


def test_reinforce_clips_nothing():
    b = spread_batch()
    spec = get_method("kl-cov")
    assert not loss_clipped(spec, b.detached(), b.advantages).any()
    assert policy_loss(b.logp, b.old_logp, b.advantages, b.mask, spec.loss)[1]["pg_clipfrac"] == 0.0


def test_mechanisms_declare_their_window_statistics_and_sections():
    fields = {f.name for f in dataclasses.fields(WindowStats)}
    spec_fields = {f.name for f in dataclasses.fields(MethodSpec)}
    for mechanism in MECHANISMS:
        assert set(mechanism.window_fields) <= fields and mechanism.section in spec_fields
    assert spec_sections() == {"loss", "window", "entropy_advantage", "modulation", "fork_tokens", "covariance"}
    # What each mechanism computes over the window is what it declares, and only for methods that use it.
    b = spread_batch().detached()
    for name, spec in all_methods().items():
        data = WindowInput([b], [shaped_advantages(spec, b)], int(b.mask.sum()), LOCAL, torch.Generator())
        for mechanism in MECHANISMS:
            if mechanism.takes_window(spec):
                assert set(mechanism.window(spec, data)) <= set(mechanism.window_fields), (name, mechanism.name)
        assert needs_window(spec) == any(m.takes_window(spec) for m in MECHANISMS)


def test_loss_spec_policy_loss_default_is_the_token_ppo_clip():
    assert LossSpec().policy_loss == "ppo_clip" and MethodSpec(name="x").loss.clip
