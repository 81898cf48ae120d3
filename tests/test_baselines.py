"""The seven paper baselines added to GRPO/DAPO: registered specs, and each one's loss against a
small example computed by hand from its source's definition (including the degenerate cases)."""

import dataclasses
import importlib
import math

import pytest
import torch

from dynamo.core.advantages import sequence_advantages
from dynamo.core.objective import TokenBatch, objective_loss
from dynamo.core.window import fork_k
from dynamo.methods import all_methods, get_method

NEW = {
    "clip-higher": "clip_higher",
    "entropy-loss": "entropy_loss",
    "fork-tokens": "fork_tokens",
    "entropy-adv": "entropy_adv",
    "clip-cov": "clip_cov",
    "kl-cov": "kl_cov",
    "w-reinforce": "w_reinforce",
}


def batch(logp, old_logp, adv, entropy=None, mask=None):
    """A TokenBatch from nested lists (float64); logp becomes a leaf that records gradients."""
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    logp = t(logp).requires_grad_()
    mask = torch.ones_like(logp) if mask is None else t(mask)
    return TokenBatch(logp, t(old_logp), t(adv), mask, entropy=None if entropy is None else t(entropy))


def test_every_paper_method_is_registered_with_its_settings():
    methods = all_methods()
    assert set(NEW) <= set(methods)
    for name, module in NEW.items():
        doc = importlib.import_module(f"baselines.{module}").__doc__
        assert "et al." in doc and "20" in doc, f"{name}: cite the paper in the module docstring"
    grpo = methods["grpo"]
    # Each differs from GRPO only in what its paper changes (allocation, advantages' group stats...).
    for name in NEW:
        spec = methods[name]
        assert spec.allocation == grpo.allocation and spec.group_filter == grpo.group_filter
        assert spec.modulation == grpo.modulation and spec.window == "micro_batch"
    assert methods["clip-higher"].loss.eps_high == 0.28 and methods["clip-higher"].loss.eps_low == 0.2
    assert methods["entropy-loss"].loss.entropy_coef == 0.001
    assert methods["fork-tokens"].fork_tokens.top_fraction == 0.2
    assert (methods["entropy-adv"].entropy_advantage.alpha, methods["entropy-adv"].entropy_advantage.kappa) == (
        0.4,
        2,
    )
    cc = methods["clip-cov"]
    assert (cc.covariance.kind, cc.covariance.ratio, cc.covariance.clip_lb, cc.covariance.clip_ub) == (
        "clip_cov",
        2e-4,
        1.0,
        5.0,
    )
    assert (cc.loss.eps_low, cc.loss.eps_high, cc.loss.dual_clip) == (1.0, 1.0, None)
    kc = methods["kl-cov"]
    assert (kc.covariance.kind, kc.covariance.ratio, kc.covariance.kl_coef, kc.loss.clip) == (
        "kl_cov",
        2e-3,
        1.0,
        False,
    )
    wr, written = methods["w-reinforce"], methods["w-reinforce-paper"]
    assert wr.advantage == written.advantage
    assert wr.advantage.estimator == "w_reinforce" and wr.advantage.positive_weight == 0.1
    # as released (verl's stock PPO loss): clip 0.2 both ways, no dual clip, entropy bonus 0.001
    assert (wr.loss.clip, wr.loss.eps_low, wr.loss.eps_high, wr.loss.dual_clip) == (True, 0.2, 0.2, None)
    assert wr.loss.entropy_coef == 0.001
    # as written: REINFORCE, no clip, no bonus
    assert (written.loss.clip, written.loss.dual_clip, written.loss.entropy_coef) == (False, None, 0.0)


def test_dynamo_methods_lists_every_paper_method(capsys):
    from dynamo.cli import main

    assert main(["methods"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(NEW) | {"grpo", "dynamo"} <= listed


def test_clip_higher_hand_example():
    # Token 1: A = 1, r = 1.5 -> clipped at 1.28; token 2: A = -1, r = 0.5 -> max(0.5, 0.8) = 0.8.
    b = batch([[math.log(1.5), math.log(0.5)]], [[0.0, 0.0]], [[1.0, -1.0]])
    loss, metrics, _ = objective_loss(get_method("clip-higher"), b)
    assert loss.item() == pytest.approx((-1.28 + 0.8) / 2, abs=1e-12)
    assert metrics["pg_clipfrac"] == 1.0
    # GRPO's symmetric clip would stop token 1 at 1.2.
    assert objective_loss(get_method("grpo"), b)[0].item() == pytest.approx((-1.2 + 0.8) / 2, abs=1e-12)


def test_entropy_loss_hand_example():
    h = torch.tensor([[0.5, 1.5, 2.5]], dtype=torch.float64, requires_grad=True)
    b = dataclasses.replace(batch([[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]]), entropy=h)
    loss, metrics, _ = objective_loss(get_method("entropy-loss"), b)
    assert loss.item() == pytest.approx(-1.0 - 0.001 * 1.5, abs=1e-12)  # pg = -mean(A r) = -1
    loss.backward()
    assert torch.allclose(h.grad, torch.full_like(h, -0.001 / 3))  # the bonus is differentiated
    assert metrics["entropy"] == pytest.approx(1.5)


def test_fork_tokens_hand_example():
    # 10 tokens, rho = 0.2 -> k = 2: the two highest entropies (0.9, 0.8), loss averaged over them only.
    ent = [[0.1, 0.9, 0.3, 0.2], [0.8, 0.4, 0.5, 0.0], [0.6, 0.7, 0.05, 0.05]]
    mask = [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]]
    adv = [[1.0] * 4, [-2.0] * 4, [3.0] * 4]
    b = batch([[0.0] * 4] * 3, [[0.0] * 4] * 3, adv, ent, mask)
    loss, metrics, obj = objective_loss(get_method("fork-tokens"), b)
    assert obj.selected["fork"].nonzero().tolist() == [[0, 1], [1, 0]]
    assert loss.item() == pytest.approx((-1.0 + 2.0) / 2)
    assert metrics["fork_frac"] == pytest.approx(0.2)
    loss.backward()
    assert (b.logp.grad != 0).sum() == 2  # no gradient on the other 8 tokens


def test_fork_tokens_k_rounding_and_all_equal_entropies():
    spec = get_method("fork-tokens")
    assert [fork_k(spec, n) for n in (0, 1, 5, 10, 11, 15)] == [0, 1, 1, 2, 3, 3]  # 0.2 * 15 is 3, not 4
    floor = get_method("fork-tokens", {"fork_tokens": {"rounding": "floor"}})
    assert [fork_k(floor, n) for n in (1, 11, 14)] == [1, 2, 2]
    # All entropies equal: still exactly k = 2 of 10 tokens; with equal A and r the loss is GRPO's.
    b = batch([[0.0] * 5] * 2, [[0.0] * 5] * 2, [[0.5] * 5] * 2, [[1.0] * 5] * 2)
    loss, _, obj = objective_loss(spec, b)
    assert int(obj.selected["fork"].sum()) == 2 and obj.loss_mask.sum() == 2
    assert loss.item() == pytest.approx(-0.5)


def test_entropy_advantage_hand_example():
    # A' = A + min(0.4 H, |A| / 2): (1, 0.5) -> 1.2; (1, 2) -> 1.5 (capped); (-1, 0.5) -> -0.8; (0, H) -> 0.
    b = batch([[0.0] * 4], [[0.0] * 4], [[1.0, 1.0, -1.0, 0.0]], [[0.5, 2.0, 0.5, 3.0]])
    loss, _, obj = objective_loss(get_method("entropy-adv"), b)
    assert torch.allclose(obj.advantages, torch.tensor([[1.2, 1.5, -0.8, 0.0]], dtype=torch.float64))
    assert loss.item() == pytest.approx(-(1.2 + 1.5 - 0.8 + 0.0) / 4)
    # Every response of the group correct: A = 0 everywhere and the entropy term vanishes.
    zero = batch([[0.0] * 3], [[0.0] * 3], [[0.0] * 3], [[5.0, 1.0, 0.1]])
    assert torch.equal(objective_loss(get_method("entropy-adv"), zero)[2].advantages, torch.zeros(1, 3).double())


def _cov_batch():
    """8 tokens whose covariance (A - mean A)(logp - mean logp) is known in closed form.

    A = +-2 (mean 0), logp in {-1, -3} (mean -2), so cov = +-2: tokens 0, 1, 2 (A 2, logp -1) and
    5, 6, 7 (A -2, logp -3) have cov 2, inside Clip-Cov's band (1, 5); tokens 3 (A 2, logp -3) and
    4 (A -2, logp -1) have cov -2. old_logp = logp except token 0, moved so that r = 1.1.
    """
    logp = [[-1.0, -1.0, -1.0, -3.0, -1.0, -3.0, -3.0, -3.0]]
    old = [[-1.0 - math.log(1.1), -1.0, -1.0, -3.0, -1.0, -3.0, -3.0, -3.0]]
    adv = [[2.0, 2.0, 2.0, 2.0, -2.0, -2.0, -2.0, -2.0]]
    return batch(logp, old, adv)


def test_clip_cov_hand_example_and_resume():
    spec = get_method("clip-cov", {"covariance": {"ratio": 0.25}})  # k = max(1, int(0.25 * 8)) = 2
    gen = torch.Generator().manual_seed(7)
    state = gen.get_state()
    b = _cov_batch()
    loss, metrics, obj = objective_loss(spec, b, generator=gen)
    picked = obj.selected["clip_cov"][0]
    band = [0, 1, 2, 5, 6, 7]  # cov = 2 and not clipped by PPO (clip 1/1: r = 1.1 is inside [0, 2])
    assert int(picked.sum()) == 2 and set(picked.nonzero().flatten().tolist()) <= set(band)
    # Hand loss: -A r per token, picked tokens contribute 0, mean over all 8 tokens.
    terms = [-2.0 * 1.1, -2.0, -2.0, -2.0, 2.0, 2.0, 2.0, 2.0]
    expected = sum(t for i, t in enumerate(terms) if not picked[i]) / 8
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert metrics["clip_cov_frac"] == 0.25
    loss.backward()
    assert torch.all(b.logp.grad[0, picked] == 0) and torch.all(b.logp.grad[0, ~picked] != 0)
    # The same generator state (a resumed run) picks the same tokens.
    again = torch.Generator()
    again.set_state(state)
    assert torch.equal(objective_loss(spec, _cov_batch(), generator=again)[2].selected["clip_cov"][0], picked)


def test_clip_cov_pick_is_uniform_over_the_band():
    spec = get_method("clip-cov")  # k = max(1, int(2e-4 * 8)) = 1
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(8)
    for _ in range(600):
        counts += objective_loss(spec, _cov_batch(), generator=gen)[2].selected["clip_cov"][0].double()
    assert counts[[3, 4]].sum() == 0 and counts.sum() == 600
    assert counts[[0, 1, 2, 5, 6, 7]].min() > 60  # each of the 6 band tokens about 100 times


def test_clip_cov_degenerate_no_token_in_band_and_ppo_clipped_excluded():
    b = _cov_batch()
    outside = get_method("clip-cov", {"covariance": {"clip_lb": 2.5, "clip_ub": 5.0}})  # every |cov| = 2
    loss, metrics, obj = objective_loss(outside, b, generator=torch.Generator().manual_seed(0))
    assert obj.selected["clip_cov"].sum() == 0 and metrics["clip_cov_frac"] == 0
    terms = [-2.0 * 1.1, -2.0, -2.0, -2.0, 2.0, 2.0, 2.0, 2.0]
    assert loss.item() == pytest.approx(sum(terms) / 8, abs=1e-12)
    # With GRPO's 0.2 clip and r = 3 on token 0 (A > 0) it is PPO-clipped, so never picked.
    clipped = get_method("clip-cov", {"loss": {"eps_low": 0.2, "eps_high": 0.2}, "covariance": {"ratio": 0.9}})
    b3 = dataclasses.replace(
        b, old_logp=b.old_logp.clone().index_fill_(1, torch.tensor([0]), -1.0 - math.log(3.0))
    )
    picked = objective_loss(clipped, b3, generator=torch.Generator().manual_seed(0))[2].selected["clip_cov"][0]
    assert (
        not picked[0] and picked[[1, 2, 5, 6, 7]].all() and int(picked.sum()) == 5
    )  # k = 7 > the 5 band tokens: all of them
    with pytest.raises(ValueError, match="generator"):
        objective_loss(clipped, b3)


def test_kl_cov_hand_example():
    spec = get_method("kl-cov", {"covariance": {"ratio": 0.125}})  # k = 1 of 8
    b = _cov_batch()
    # Make token 6 the single largest covariance: logp -4 instead of -3 (the means shift; recomputed).
    logp = b.logp.detach().clone()
    logp[0, 6] = -4.0
    old = b.old_logp.clone()
    old[0, 6] = -4.5  # |logp - old_logp| = 0.5, r = exp(0.5)
    b = dataclasses.replace(b, logp=logp.requires_grad_(), old_logp=old)
    a = b.advantages[0].tolist()
    lp = logp[0].tolist()
    ma, ml = sum(a) / 8, sum(lp) / 8
    cov = [(x - ma) * (y - ml) for x, y in zip(a, lp)]
    top = max(range(8), key=lambda i: cov[i])
    assert top == 6
    loss, metrics, obj = objective_loss(spec, b)
    assert obj.selected["kl_cov"][0].nonzero().flatten().tolist() == [6]
    ratio = [math.exp(x - y) for x, y in zip(lp, old[0].tolist())]
    terms = [-ai * ri for ai, ri in zip(a, ratio)]  # no clip anywhere: r = 1.1 and e^0.5 count in full
    terms[6] += 1.0 * 0.5
    assert loss.item() == pytest.approx(sum(terms) / 8, abs=1e-12)
    assert metrics["kl_cov_frac"] == 0.125


def test_kl_cov_every_response_correct_and_on_policy():
    # A = 0 everywhere: cov = 0 for all, still k tokens picked (reference topk), penalty = coef |dlogp|.
    spec = get_method("kl-cov", {"covariance": {"ratio": 0.25}})
    b = batch([[-1.0, -2.0, -3.0, -1.5]], [[-1.2, -2.0, -3.0, -1.5]], [[0.0] * 4])
    loss, _, obj = objective_loss(spec, b)
    assert int(obj.selected["kl_cov"].sum()) == 1
    picked = int(obj.selected["kl_cov"][0].nonzero())
    assert loss.item() == pytest.approx(abs(b.logp[0, picked].item() - b.old_logp[0, picked].item()) / 4)
    # Fully on-policy (logp = old_logp): the penalty is 0 in value, the loss is -mean(A r).
    on = batch([[-1.0, -2.0]], [[-1.0, -2.0]], [[1.0, -1.0]])
    assert objective_loss(spec, on)[0].item() == pytest.approx(0.0, abs=1e-15)


def test_w_reinforce_advantages_and_unclipped_loss():
    spec = get_method("w-reinforce-paper")
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
    correct = torch.tensor([True, False, True, True])
    groups = torch.tensor([0, 0, 1, 1])
    adv = sequence_advantages(spec.advantage, rewards, groups, correct)
    assert adv.tolist() == pytest.approx([0.1, -1.0, 0.1, 0.1])  # keyed on correctness, not the reward
    # Every response correct: lambda each (GRPO would give 0).
    assert sequence_advantages(spec.advantage, rewards, groups, torch.ones(4, dtype=torch.bool)).tolist() == (
        pytest.approx([0.1] * 4)
    )
    with pytest.raises(ValueError, match="correctness"):
        sequence_advantages(spec.advantage, rewards, groups)
    # REINFORCE in ratio form, no clip: r = 2 with A = 0.1 gives -0.2, r = 3 with A = -1 gives 3.
    b = batch([[math.log(2.0), math.log(3.0)]], [[0.0, 0.0]], [[0.1, -1.0]])
    loss, metrics, _ = objective_loss(spec, b)
    assert loss.item() == pytest.approx((-0.2 + 3.0) / 2, abs=1e-12) and metrics["pg_clipfrac"] == 0


def test_w_reinforce_as_released_clips_and_adds_the_entropy_bonus():
    spec = get_method("w-reinforce")
    # r = 2 with A = 0.1 is clipped to 1.2: -0.12; r = 20 with A = -1 is not capped (no dual clip,
    # GRPO's c = 10 would give 10): 20; entropy bonus -0.001 * mean(0.5, 1.5).
    b = batch([[math.log(2.0), math.log(20.0)]], [[0.0, 0.0]], [[0.1, -1.0]], entropy=[[0.5, 1.5]])
    loss, metrics, _ = objective_loss(spec, b)
    assert loss.item() == pytest.approx((-0.12 + 20.0) / 2 - 0.001 * 1.0, abs=1e-12)
    assert metrics["pg_clipfrac"] == 0.5
    written, _, _ = objective_loss(get_method("w-reinforce-paper"), b)
    assert written.item() == pytest.approx((-0.2 + 20.0) / 2, abs=1e-12)
