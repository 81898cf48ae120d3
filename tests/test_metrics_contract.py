"""The metrics contract (dynamo/metrics_names.py) holds for both engines' metrics.jsonl.

Both engines' CPU paths run the same methods on a tiny batch -- the local trainer for three steps on
a 1-layer model with scripted answers (tests/test_trainer.py), the OpenRLHF controller's own
train_step + save_logs_and_checkpoints on the real OpenRLHF 0.11.2 code with fake vLLM engines and a
real patched policy step (tests/test_openrlhf.py) -- and their key sets must be equal up to the
declared engine-only names. Every name written must be declared; every declared engine-only name
must be written by its engine (no stale declarations).
"""

from __future__ import annotations

import json
import math

import numpy as np
import openrlhf_stubs
import pytest
import torch

openrlhf_stubs.install()
try:
    import openrlhf  # noqa: F401
except ImportError as err:  # pragma: no cover - CI installs it
    pytest.skip(f"openrlhf 0.11.2 is not importable ({err})", allow_module_level=True)

from test_openrlhf import install_fake_ray, openrlhf_metrics_run, tiny_lm  # noqa: E402,F401
from test_trainer import make_cfg, run, tiny_model  # noqa: E402,F401

from dynamo import metrics_names as M  # noqa: E402
from dynamo.engines.common import OBJECTIVE_METRICS  # noqa: E402
from dynamo.engines.local import trainer as local_trainer  # noqa: E402
from dynamo.methods import get_method  # noqa: E402

# allocation + modulation; DAPO's filter and refills; pre-rollout skips (GRESO); down-selection (PODS);
# sampling in rounds (Reinforce-Ada)
METHODS = ["dynamo", "dapo", "greso", "pods", "reinforce-ada"]


def keys(path) -> set[str]:
    return {key for line in path.read_text().splitlines() for key in json.loads(line)}


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny_model, tiny_lm):  # noqa: F811
    """{engine: {method: set of metric names in its metrics.jsonl}}, three steps each."""
    out: dict[str, dict[str, set[str]]] = {"local": {}, "openrlhf": {}}
    with pytest.MonkeyPatch.context() as mp:
        install_fake_ray(mp)
        for method in METHODS:
            tmp = tmp_path_factory.mktemp(method)
            run(tmp, tiny_model, get_method(method), name="local")
            out["local"][method] = keys(tmp / "local" / "metrics.jsonl")
            run_dir = openrlhf_metrics_run(tmp, tiny_lm, mp, method)
            out["openrlhf"][method] = keys(run_dir / "metrics.jsonl")
    return out


@pytest.mark.parametrize("method", METHODS)
def test_both_engines_write_the_same_names_up_to_the_declared_ones(written, method):
    local, openrlhf_names = written["local"][method], written["openrlhf"][method]
    assert local - M.engine_names("local") == set()
    assert openrlhf_names - M.engine_names("openrlhf") == set()
    only = {engine: {n for n, (e, _) in M.ENGINE_ONLY.items() if e == engine} for engine in M.ENGINES}
    assert local - only["local"] == openrlhf_names - only["openrlhf"]
    # a real comparison: the rows carry allocation, rollout, policy, cost and time metrics
    assert {M.N_MIN, M.ACCURACY, M.PG_LOSS, M.GRAD_NORM, M.TOKENS_TRAINED, M.TIME_STEP} <= local


def test_every_declared_engine_only_name_is_written_by_its_engine(written):
    for name, (engine, reason) in M.ENGINE_ONLY.items():
        assert engine in M.ENGINES and len(reason) > 20, name
        assert any(name in names for names in written[engine].values()), f"{name} is declared but never written"
        other = next(e for e in M.ENGINES if e != engine)
        assert not any(name in names for names in written[other].values()), name


def test_every_name_in_the_module_is_declared():
    constants = {
        value
        for key, value in vars(M).items()
        if key.isupper() and isinstance(value, str) and "/" in value and key != "TIME_PREFIX"
    }
    assert constants == M.METRIC_NAMES - {M.STEP}
    assert set(OBJECTIVE_METRICS.values()) <= M.METRIC_NAMES
    assert set(M.OPENRLHF_STATUS.values()) <= M.engine_names("openrlhf")


def test_openrlhf_rows_rename_stock_keys_once_and_drop_the_rest():
    status = {
        "policy_loss": 0.25,  # the stock loop's name for the policy loss
        M.ENTROPY: 1.5,
        "timing/broadcast": 0.1,
        "rollout/reward_mean": 0.4,  # stock, unmapped: dropped
        "response_length": 12.0,  # stock actor info: dropped
        M.REWARD_MEAN: math.nan,  # a diverged value under a contract name: kept, so that it shows
        M.GRAD_NORM: np.float32(2.0),  # numpy scalars are numbers too
        "generated_samples": ["text", 1.0],
    }
    row = M.openrlhf_row(3, status)
    assert math.isnan(row.pop(M.REWARD_MEAN))
    assert row == {M.STEP: 3, M.PG_LOSS: 0.25, M.ENTROPY: 1.5, M.TIME_SYNC: 0.1, M.GRAD_NORM: 2.0}


def test_the_local_engine_refuses_to_write_an_undeclared_name(tmp_path, tiny_model, monkeypatch):  # noqa: F811
    update = local_trainer.LocalTrainer.update

    def with_extra(self, batch, timer):
        return {**update(self, batch, timer), "actor/advantage_mean": 0.0}

    monkeypatch.setattr(local_trainer.LocalTrainer, "update", with_extra)
    with pytest.raises(RuntimeError, match=r"not declared.*actor/advantage_mean"):
        run(tmp_path, tiny_model, get_method("grpo"), cfg=make_cfg(steps=1))


def test_grad_norm_is_the_last_optimizer_steps_in_both_engines(tmp_path, tiny_model, monkeypatch):  # noqa: F811
    """OpenRLHF's ppo_train keeps the last value reported as actor_grad_norm; the local engine reports
    the same number (not a mean over the step's optimizer steps) under the same name."""
    norms = iter(float(i) for i in range(1, 100))
    clip = torch.nn.utils.clip_grad_norm_

    def recorded(params, max_norm):
        clip(params, max_norm)
        return torch.tensor(next(norms))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recorded)
    rows, _ = run(tmp_path, tiny_model, get_method("grpo"), cfg=make_cfg(steps=2))  # 2 optimizer steps a step
    assert [row[M.GRAD_NORM] for row in rows] == [2.0, 4.0]
