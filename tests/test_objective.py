"""The token objective (dynamo.core.objective): invariants that tie every method to GRPO and DynaMO."""

import dataclasses

import pytest
import torch

from dynamo.core.losses import policy_loss
from dynamo.core.modulation import modulation_factors
from dynamo.core.objective import TokenBatch, objective_loss, token_objective
from dynamo.core.window import needs_entropy, needs_window, window_stats
from dynamo.methods import all_methods, get_method


def random_batch(seed=0, rows=6, cols=7, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(rows, cols, generator=g, dtype=dtype) * 3).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(rows, cols, generator=g, dtype=dtype)
    lengths = torch.randint(1, cols + 1, (rows,), generator=g)
    mask = (torch.arange(cols) < lengths[:, None]).to(dtype)
    adv = torch.randn(rows, generator=g, dtype=dtype)[:, None] * mask
    entropy = torch.rand(rows, cols, generator=g, dtype=dtype) * 2
    return TokenBatch(logp, old, adv, mask, entropy=entropy)


def grpo_loss(b, spec):
    return policy_loss(b.logp, b.old_logp, b.advantages, b.mask, spec.loss)[0]


def grads(loss, b):
    (g,) = torch.autograd.grad(loss, b.logp)
    return g


def test_grpo_is_plain_policy_loss():
    b = random_batch()
    spec = get_method("grpo")
    loss = objective_loss(spec, b)[0]
    ref = grpo_loss(b, spec)
    assert torch.equal(loss, ref) and torch.equal(grads(loss, b), grads(ref, b))


@pytest.mark.parametrize(
    "name, off",
    [
        ("entropy-loss", {"loss": {"entropy_coef": 0.0}}),
        ("fork-tokens", {"fork_tokens": {"top_fraction": 0.0}}),
        ("fork-tokens", {"fork_tokens": {"top_fraction": 1.0}}),  # every token selected
        ("entropy-adv", {"entropy_advantage": {"alpha": 0.0}}),
        (
            "clip-cov",
            {"covariance": {"kind": "none"}, "loss": {"eps_low": 0.2, "eps_high": 0.2, "dual_clip": 10.0}},
        ),
        (
            "clip-cov",
            {"covariance": {"clip_lb": 100.0, "clip_ub": 200.0}, "loss": {"eps_low": 0.2, "eps_high": 0.2}},
        ),
        ("kl-cov", {"covariance": {"kind": "none"}, "loss": {"clip": True, "dual_clip": 10.0}}),
        ("kl-cov", {"covariance": {"kl_coef": 0.0}, "loss": {"clip": True, "dual_clip": 10.0}}),
        ("dynamo-nomod", {}),
        ("dynamo", {"modulation": {"compensation": False, "stabilization": False}}),
        ("dynamo", {"modulation": {"alpha": 0.0, "lambda_min": 1.0}}),  # factors == 1
    ],
)
def test_extra_terms_switched_off_equal_grpo_exactly(name, off):
    b = random_batch(seed=3)
    spec = get_method(name, off)
    grpo = get_method("grpo", {"loss": dataclasses.asdict(spec.loss)})
    loss = objective_loss(spec, b, generator=torch.Generator().manual_seed(0))[0]
    ref = objective_loss(grpo, b)[0]
    assert torch.equal(loss, ref)
    assert torch.equal(grads(loss, b), grads(ref, b))


def test_dynamo_is_unchanged_released_composition():
    """The objective gives bitwise what the engines computed before: modulation_factors then policy_loss."""
    for name in ("dynamo", "dynamo-nocomp", "dynamo-nostab"):
        spec = get_method(name)
        for dtype in (torch.float32, torch.float64):
            b = random_batch(seed=5, dtype=dtype)
            loss, metrics, obj = objective_loss(spec, b)
            comp, stab = modulation_factors(
                b.logp.detach(),
                b.old_logp,
                b.advantages,
                b.entropy,
                b.mask,
                spec.modulation,
                eps_low=spec.loss.eps_low,
                eps_high=spec.loss.eps_high,
            )
            ref = grpo_loss(dataclasses.replace(b, advantages=b.advantages * comp * stab), spec)
            assert torch.equal(loss, ref) and torch.equal(obj.beta_comp, comp) and torch.equal(obj.beta_stab, stab)
            assert torch.equal(grads(loss, b), grads(ref, b))
            assert metrics["beta_comp"] > 1.0 or name == "dynamo-nocomp"


def test_a_window_of_one_part_equals_the_micro_batch_window():
    gen_state = torch.Generator().manual_seed(11).get_state()
    for name in ("dynamo", "fork-tokens", "clip-cov", "kl-cov", "entropy-adv"):
        spec = get_method(name, {"covariance": {"ratio": 0.2}} if "cov" in name else None)
        b = random_batch(seed=2)
        g1, g2 = torch.Generator(), torch.Generator()
        g1.set_state(gen_state)
        g2.set_state(gen_state)
        local = objective_loss(spec, b, generator=g1)
        window = window_stats(spec, [b.detached()], generator=g2)
        given = objective_loss(spec, b, window, part=0)
        assert torch.equal(local[0], given[0]), name
        assert local[1] == given[1], name


@pytest.mark.parametrize("name", ["dynamo", "fork-tokens", "kl-cov", "clip-cov", "entropy-adv", "entropy-loss"])
def test_mini_batch_window_over_parts_equals_one_big_micro_batch(name):
    """Split a batch into micro-batches with one mini-batch window: the loss-mask-weighted sum of the
    micro-batch losses and its gradient equal the objective on the whole batch as one micro-batch."""
    spec = get_method(
        name, {"covariance": {"ratio": 0.1, "clip_lb": 0.0, "clip_ub": 100.0}} if "cov" in name else None
    )
    b = random_batch(seed=4, rows=8, cols=6)
    whole, _, obj = objective_loss(spec, b, generator=torch.Generator().manual_seed(1))
    rows = [slice(0, 3), slice(3, 5), slice(5, 8)]
    parts = [
        TokenBatch(*(t[r] for t in (b.logp, b.old_logp, b.advantages, b.mask)), entropy=b.entropy[r]) for r in rows
    ]
    window = window_stats(spec, [p.detached() for p in parts], generator=torch.Generator().manual_seed(1))
    assert window.kind == "mini_batch" and window.num_tokens == int(b.mask.sum())
    total = 0.0
    for i, p in enumerate(parts):
        loss, _, part_obj = objective_loss(spec, p, window, part=i)
        total = total + loss * part_obj.loss_mask.sum() / window.loss_tokens
    if name == "clip-cov":
        # Same generator, same draws in the same order: the same random pick as the whole batch.
        assert torch.equal(torch.cat([m for m in window.cov_masks]), obj.selected["clip_cov"])
    assert total.item() == pytest.approx(whole.item(), abs=1e-12)
    assert torch.allclose(grads(total, b), grads(whole, b), atol=1e-12)


def test_entropy_required_only_where_used():
    b = random_batch()
    no_entropy = dataclasses.replace(b, entropy=None)
    for spec in all_methods().values():
        if needs_entropy(spec):
            with pytest.raises(ValueError, match="entropy"):
                token_objective(spec, no_entropy, generator=torch.Generator())
        else:
            token_objective(spec, no_entropy, generator=torch.Generator())
    assert needs_window(get_method("dynamo")) and needs_window(get_method("clip-cov"))
    assert not needs_window(get_method("grpo")) and not needs_window(get_method("entropy-adv"))


def test_window_spec_field_and_old_name():
    assert get_method("dynamo").window == "micro_batch"
    assert get_method("dynamo", {"modulation": {"norm_set": "mini_batch"}}).window == "mini_batch"
    assert get_method("dynamo", {"window": "mini_batch"}).window == "mini_batch"
    with pytest.raises(ValueError, match="contradicts"):
        get_method("dynamo", {"window": "micro_batch", "modulation": {"norm_set": "mini_batch"}})
    with pytest.raises(ValueError, match="must be one of"):
        get_method("dynamo", {"window": "batch"})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"fork_tokens": {"top_fraction": 1.5}}, "top_fraction"),
        ({"covariance": {"ratio": 0.0}}, "ratio"),
        ({"covariance": {"clip_lb": 5.0, "clip_ub": 1.0}}, "clip_lb < clip_ub"),
        ({"entropy_advantage": {"kappa": 0.0}}, "kappa"),
    ],
)
def test_bad_settings_fail_when_the_spec_is_built(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_method("grpo", overrides)


def test_padding_never_leaks():
    """-inf log-probs and NaN entropies on padding change nothing for any method."""
    b = random_batch(seed=9)
    pad = ~b.mask.bool()
    dirty = TokenBatch(
        b.logp.detach().masked_fill(pad, -float("inf")).requires_grad_(),
        b.old_logp.masked_fill(pad, -float("inf")),
        b.advantages,
        b.mask,
        entropy=b.entropy.masked_fill(pad, float("nan")),
    )
    for name, spec in all_methods().items():
        clean = objective_loss(spec, b, generator=torch.Generator().manual_seed(0))[0]
        loss = objective_loss(spec, dirty, generator=torch.Generator().manual_seed(0))[0]
        assert torch.isfinite(loss) and loss.item() == pytest.approx(clean.item(), abs=1e-12), name
        assert torch.isfinite(grads(loss, dirty)).all(), name
