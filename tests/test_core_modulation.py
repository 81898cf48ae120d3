"""dynamo.core.modulation: token entropy and DynaMO's two advantage factors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dynamo.core.modulation import (
    compensation_factor,
    decay,
    entropy_change,
    modulation_factors,
    stabilization_factor,
    token_entropy,
)
from dynamo.methods import DYNAMO, MODULATION_PRESETS, ModulationSpec
from dynamo.spec import apply_overrides

EPS = {"eps_low": 0.2, "eps_high": 0.2}


def random_batch(seed: int = 0, batch: int = 6, length: int = 10):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(batch, length, generator=g, dtype=torch.float64) * 3
    old_logp = logp + 0.3 * torch.randn(batch, length, generator=g, dtype=torch.float64)
    adv = torch.randn(batch, 1, generator=g, dtype=torch.float64).expand(batch, length).clone()
    adv[0] = 0.0
    entropy = torch.rand(batch, length, generator=g, dtype=torch.float64) * 4
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).to(torch.float64)
    return logp, old_logp, adv * mask, entropy, mask


def spec(preset: str = "decay6", **changes) -> ModulationSpec:
    return dataclasses.replace(
        ModulationSpec(compensation=True, stabilization=True, **MODULATION_PRESETS[preset]), **changes
    )


# -- entropy ------------------------------------------------------------------------------------


def test_token_entropy_matches_definition_and_is_stable():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64) * 3
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(token_entropy(logits), -(p * p.log()).sum(-1))
    assert torch.allclose(token_entropy(torch.zeros(2, 7)), torch.full((2,), math.log(7)))
    # huge logits: no overflow; one-hot in the limit
    big = torch.tensor([[1e4, 0.0, -1e4]])
    assert torch.isfinite(token_entropy(big)).all() and token_entropy(big).item() == pytest.approx(0.0, abs=1e-6)
    # -inf logits (masked vocabulary) contribute 0 instead of NaN
    masked = torch.tensor([[0.0, 0.0, float("-inf")]])
    assert token_entropy(masked).item() == pytest.approx(math.log(2))
    # chunking does not change the result
    torch.testing.assert_close(token_entropy(logits, chunk_elements=22), token_entropy(logits), rtol=0, atol=0)


def test_token_entropy_is_differentiable():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    token_entropy(logits).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


# -- decay ---------------------------------------------------------------------------------------


def test_decay_worked_values():
    p = MODULATION_PRESETS["decay6"]
    kw = {"lambda_min": p["lambda_min"], "gamma": p["gamma"], "tau": p["tau"]}
    assert round(decay(1.0, **kw), 3) == 0.751
    assert round(decay(0.99, **kw), 3) == 0.800
    assert round(decay(0.9, **kw), 3) == 0.996
    x = torch.tensor([1.0, 0.99, 0.9], dtype=torch.float64)
    torch.testing.assert_close(
        decay(x, **kw), torch.tensor([decay(v, **kw) for v in x.tolist()], dtype=torch.float64)
    )
    p5 = MODULATION_PRESETS["decay5"]
    assert decay(0.9, lambda_min=p5["lambda_min"], gamma=p5["gamma"], tau=p5["tau"]) == pytest.approx(0.8)
    # no overflow far from tau
    assert decay(-1e6, **kw) == 1.0 and decay(1e6, **kw) == pytest.approx(0.6)


# -- compensation --------------------------------------------------------------------------------


def test_compensation_range_and_sign():
    logp, old_logp, adv, entropy, mask = random_batch(1)
    alpha = 0.2
    beta = compensation_factor(adv, entropy, mask, alpha=alpha)
    assert torch.all(beta >= 1.0) and torch.all(beta <= 1.0 + alpha + 1e-12)
    boosted = beta > 1.0
    assert torch.all((adv > 0) & mask.bool() | ~boosted)
    assert torch.all(beta[mask == 0] == 1.0) and torch.all(beta[adv <= 0] == 1.0)
    # the lowest-entropy valid token with A > 0 gets exactly 1 + alpha if it is the global minimum
    h = entropy.clone()
    pos = (adv > 0) & mask.bool()
    i, j = pos.nonzero()[0].tolist()
    h[i, j] = -1.0
    assert compensation_factor(adv, h, mask, alpha=alpha)[i, j].item() == pytest.approx(1.0 + alpha)


def test_compensation_hand_example_and_guards():
    adv = torch.tensor([[1.0, 1.0, 1.0, -1.0, 1.0]])
    entropy = torch.tensor([[0.5, 1.5, 2.5, 0.5, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])  # the 9.0 is padding: not part of H_max
    beta = compensation_factor(adv, entropy, mask, alpha=0.4)
    torch.testing.assert_close(beta, torch.tensor([[1.4, 1.2, 1.0, 1.0, 1.0]]))
    # a range from outside (e.g. the whole mini-batch)
    beta = compensation_factor(adv, entropy, mask, alpha=0.4, entropy_range=(0.5, 4.5))
    torch.testing.assert_close(beta, torch.tensor([[1.4, 1.3, 1.2, 1.0, 1.0]]))
    # H_max == H_min: factor 1
    flat = torch.full((1, 5), 2.0)
    assert torch.equal(compensation_factor(adv, flat, mask, alpha=0.4), torch.ones(1, 5))
    assert torch.equal(compensation_factor(adv, entropy, torch.zeros(1, 5), alpha=0.4), torch.ones(1, 5))


# -- stabilisation -------------------------------------------------------------------------------


def scalar_stabilization(logp, old_logp, adv, entropy, mask, eps_low, eps_high, lambda_min, gamma, tau):
    """The equations of docs/METHODS.md sec. 2, token by token in plain Python."""
    changes = []
    for lp_row, old_row, a_row, h_row, m_row in zip(logp, old_logp, adv, entropy, mask):
        valid = [t for t, m in enumerate(m_row) if m]
        pl = [math.exp(lp) * (lp + h) for lp, h in zip(lp_row, h_row)]
        mean_pl = sum(pl[t] for t in valid) / max(len(valid), 1)
        row = []
        for t in range(len(lp_row)):
            r = math.exp(lp_row[t] - old_row[t])
            a = a_row[t]
            active = (a > 0 and r <= 1 + eps_high) or (a < 0 and r >= 1 - eps_low)
            row.append(abs(-(r * a if active else 0.0) * (pl[t] - mean_pl)) if m_row[t] else 0.0)
        changes.append(row)
    top = max(c for row, m_row in zip(changes, mask) for c, m in zip(row, m_row) if m)
    out = []
    for row, m_row in zip(changes, mask):
        out.append(
            [
                lambda_min + (1 - lambda_min) / (1 + math.exp(gamma * ((c / top if top > 0 else 0.0) - tau)))
                if m
                else 1.0
                for c, m in zip(row, m_row)
            ]
        )
    return out


def test_stabilization_hand_example():
    # Sequence 0: ratio 1 everywhere, A = +1; sequence 1: A = -2 with one token whose ratio 0.5 is
    # below 1 - eps_low (I_clip = 0) and one padding token.
    logp = [[math.log(0.5), math.log(0.25), 0.0], [math.log(0.9), math.log(0.1), -3.0]]
    old_logp = [[math.log(0.5), math.log(0.25), 0.0], [math.log(0.9), math.log(0.2), -1.0]]
    adv = [[1.0, 1.0, 1.0], [-2.0, -2.0, 0.0]]
    entropy = [[0.7, 1.3, 0.0], [0.4, 2.0, 5.0]]
    mask = [[1, 1, 1], [1, 1, 0]]
    # Token (0, 0): pi*Lambda = 0.5 (ln 0.5 + 0.7) = 0.00343; sequence mean over the three
    # tokens = (0.00343 + 0.25 (ln 0.25 + 1.3) + 0) / 3 = -0.00604; dH = -1 * (0.00343 + 0.00604).
    pl00, pl01 = 0.5 * (math.log(0.5) + 0.7), 0.25 * (math.log(0.25) + 1.3)
    d00 = abs(pl00 - (pl00 + pl01) / 3)
    t = torch.tensor
    got = stabilization_factor(
        t(logp),
        t(old_logp),
        t(adv),
        t(entropy),
        t(mask, dtype=torch.float64),
        **EPS,
        lambda_min=0.6,
        gamma=50.0,
        tau=0.99,
    )
    expected = scalar_stabilization(logp, old_logp, adv, entropy, mask, 0.2, 0.2, 0.6, 50.0, 0.99)
    torch.testing.assert_close(got, t(expected, dtype=got.dtype))
    change = entropy_change(t(logp), t(old_logp), t(adv), t(entropy), t(mask, dtype=torch.float64), **EPS)
    assert abs(change[0, 0].item()) == pytest.approx(d00)
    assert change[1, 1].item() == 0.0 and change[1, 2].item() == 0.0  # I_clip = 0, padding
    assert got[1, 2].item() == 1.0  # padding keeps factor 1
    # the token with the largest |dH| gets f(1), the I_clip = 0 token f(0) ~ 1
    top = change.abs().argmax()
    assert got.flatten()[top].item() == pytest.approx(decay(1.0, lambda_min=0.6, gamma=50.0, tau=0.99))
    assert got[1, 1].item() == pytest.approx(1.0, abs=1e-15)


def test_stabilization_range_guards_and_max_change():
    logp, old_logp, adv, entropy, mask = random_batch(2)
    kw = {"lambda_min": 0.6, "gamma": 50.0, "tau": 0.99, **EPS}
    beta = stabilization_factor(logp, old_logp, adv, entropy, mask, **kw)
    assert torch.all(beta >= 0.6) and torch.all(beta <= 1.0)
    assert torch.all(beta[mask == 0] == 1.0)
    top = entropy_change(logp, old_logp, adv, entropy, mask, **EPS).abs()[mask.bool()].max().item()
    torch.testing.assert_close(
        stabilization_factor(logp, old_logp, adv, entropy, mask, max_change=top, **kw), beta, rtol=0, atol=0
    )
    # all advantages zero: max |dH| = 0, x = 0, factor f(0) (~1), no NaN
    zero = stabilization_factor(logp, old_logp, torch.zeros_like(adv), entropy, mask, **kw)
    assert torch.isfinite(zero).all() and torch.allclose(zero, torch.ones_like(zero))
    # extreme ratios stay finite
    wild = stabilization_factor(logp + 500.0, old_logp, adv, entropy, mask, **kw)
    assert torch.isfinite(wild).all()


def test_mini_batch_norm_set_via_ranges():
    """Factors on two halves with the whole batch's ranges equal the factors on the whole batch."""
    logp, old_logp, adv, entropy, mask = random_batch(3, batch=8)
    s = spec()
    whole = modulation_factors(logp, old_logp, adv, entropy, mask, s, **EPS)
    valid = mask.bool()
    h_range = (entropy[valid].min().item(), entropy[valid].max().item())
    top = entropy_change(logp, old_logp, adv, entropy, mask, **EPS).abs()[valid].max().item()
    halves = [
        modulation_factors(
            logp[sl], old_logp[sl], adv[sl], entropy[sl], mask[sl], s, **EPS, entropy_range=h_range, max_change=top
        )
        for sl in (slice(0, 4), slice(4, 8))
    ]
    for k in range(2):
        torch.testing.assert_close(torch.cat([h[k] for h in halves]), whole[k], rtol=1e-15, atol=1e-15)


# -- modulation_factors --------------------------------------------------------------------------


def test_identity_when_alpha_zero_and_lambda_min_one():
    logp, old_logp, adv, entropy, mask = random_batch(4)
    comp, stab = modulation_factors(logp, old_logp, adv, entropy, mask, spec(alpha=0.0, lambda_min=1.0), **EPS)
    assert torch.equal(comp, torch.ones_like(comp)) and torch.equal(stab, torch.ones_like(stab))


@pytest.mark.parametrize("preset", ["decay6", "decay5"])
def test_presets_bounds(preset):
    logp, old_logp, adv, entropy, mask = random_batch(5)
    s = spec(preset)
    comp, stab = modulation_factors(logp, old_logp, adv, entropy, mask, s, **EPS)
    assert torch.all(comp >= 1.0) and torch.all(comp <= 1.0 + s.alpha + 1e-12)
    assert torch.all(comp[~((adv > 0) & mask.bool())] == 1.0)
    assert torch.all(stab >= s.lambda_min) and torch.all(stab <= 1.0)
    assert (stab < 0.9).any()  # the token with the largest |dH| is damped


def test_disabled_factors_are_exactly_one_and_flags_are_honoured():
    logp, old_logp, adv, entropy, mask = random_batch(6)
    off = dataclasses.replace(DYNAMO.modulation, compensation=False, stabilization=False)
    comp, stab = modulation_factors(logp, old_logp, adv, entropy, mask, off, **EPS)
    assert torch.equal(comp, torch.ones_like(adv)) and torch.equal(stab, torch.ones_like(adv))
    full = modulation_factors(logp, old_logp, adv, entropy, mask, DYNAMO.modulation, **EPS)
    no_comp = modulation_factors(
        logp, old_logp, adv, entropy, mask, dataclasses.replace(DYNAMO.modulation, compensation=False), **EPS
    )
    assert torch.equal(no_comp[0], torch.ones_like(adv)) and torch.equal(no_comp[1], full[1])
    no_stab = modulation_factors(
        logp, old_logp, adv, entropy, mask, dataclasses.replace(DYNAMO.modulation, stabilization=False), **EPS
    )
    assert torch.equal(no_stab[1], torch.ones_like(adv)) and torch.equal(no_stab[0], full[0])


def test_positive_scale_is_a_constant_on_positive_tokens_only():
    """dynamo-posscale's factor: the constant where A > 0 (valid tokens), exactly 1 elsewhere, whatever the
    entropy; it cannot be combined with beta_comp, which it replaces."""
    logp, old_logp, adv, entropy, mask = random_batch(8)
    null = dataclasses.replace(DYNAMO.modulation, compensation=False, stabilization=False, positive_scale=1.25)
    comp, stab = modulation_factors(logp, old_logp, adv, entropy, mask, null, **EPS)
    positive = mask.bool() & (adv > 0)
    assert positive.any() and (~positive & mask.bool()).any()
    assert torch.equal(comp[positive], torch.full_like(comp[positive], 1.25))
    assert torch.equal(comp[~positive], torch.ones_like(comp[~positive]))
    assert torch.equal(stab, torch.ones_like(stab))
    flat = modulation_factors(logp, old_logp, adv, torch.rand_like(entropy), mask, null, **EPS)[0]
    assert torch.equal(flat, comp)  # no entropy dependence
    with pytest.raises(ValueError, match="positive_scale"):
        dataclasses.replace(DYNAMO.modulation, positive_scale=1.2)
    with pytest.raises(ValueError, match="modulation.positive_scale must be > 0"):  # a bound: the one check layer
        apply_overrides(null, {"positive_scale": 0.0}, where="modulation")


def test_factors_are_detached():
    logp, old_logp, adv, entropy, mask = random_batch(7)
    leaves = [x.clone().requires_grad_(True) for x in (logp, old_logp, adv, entropy)]
    comp, stab = modulation_factors(*leaves, mask, spec(), **EPS)
    assert not comp.requires_grad and not stab.requires_grad
    assert not entropy_change(*leaves, mask, **EPS).requires_grad


def test_shape_mismatch_raises():
    logp, old_logp, adv, entropy, mask = random_batch(8)
    with pytest.raises(ValueError, match="share one shape"):
        modulation_factors(logp, old_logp, adv[:, :3], entropy, mask, spec(), **EPS)
