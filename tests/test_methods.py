"""Method registry: names, overrides, and the specs the paper's methods must have."""

import dataclasses

import pytest

from dynamo.methods import MODULATION_PRESETS, all_methods, get_method
from dynamo.spec import CovarianceSpec, apply_overrides

REQUIRED = [
    "grpo",
    "dapo",
    "dynamo",
    "dynamo-uniform",
    "dynamo-nomod",
    "dynamo-nocomp",
    "dynamo-nostab",
    "dynamo-posscale",
]


def test_required_methods_registered():
    assert set(REQUIRED) <= set(all_methods())


def test_unknown_method_lists_known_ones():
    with pytest.raises(ValueError, match="Known methods: .*dapo.*grpo"):
        get_method("grpo2")


def test_overrides_apply_nested_and_check_types():
    spec = get_method("dynamo", {"loss": {"eps_high": 0.28}, "allocation": {"n_low": 4, "weight": "sqrt_p"}})
    assert spec.loss.eps_high == 0.28 and spec.allocation.n_low == 4 and spec.allocation.weight == "sqrt_p"
    assert get_method("dynamo").loss.eps_high == 0.2  # the registry itself is unchanged
    with pytest.raises(ValueError, match="method.loss.eps_hgh"):
        get_method("dynamo", {"loss": {"eps_hgh": 0.3}})
    with pytest.raises(ValueError, match="must be one of"):
        get_method("dynamo", {"allocation": {"kind": "random"}})
    with pytest.raises(ValueError, match="must be of type float"):
        get_method("dynamo", {"loss": {"eps_high": "0.3"}})
    with pytest.raises(ValueError, match="true/false|type bool"):
        get_method("dynamo", {"modulation": {"compensation": 1}})


def test_registered_specs_pass_the_validation_layer_and_it_reports_every_problem():
    """Specs are plain dataclasses (construction does not check ranges): the one validation layer
    (`apply_overrides`, pydantic over the field metadata) accepts every registered method unchanged and
    reports each bad field of an override on its own line."""
    for name, spec in all_methods().items():
        assert apply_overrides(spec, {}) == spec, name
    with pytest.raises(ValueError) as err:
        get_method("dynamo", {"loss": {"eps_low": 1.5, "eps_high": -1, "dual_clip": None}, "window": "rank"})
    assert err.value.problems == [
        "method.loss.eps_low must be <= 1, got 1.5",
        "method.loss.eps_high must be >= 0, got -1",
        "method.window must be one of 'micro_batch' or 'mini_batch', got 'rank'",
    ]
    bad = dataclasses.replace(all_methods()["dynamo"], covariance=dataclasses.replace(CovarianceSpec(), ratio=0.0))
    with pytest.raises(ValueError, match=r"method.covariance.ratio must be > 0, got 0.0"):
        apply_overrides(bad, {})


def test_paper_settings():
    m = all_methods()
    assert m["grpo"].allocation.kind == "uniform" and not m["grpo"].modulation.compensation
    assert m["dapo"].loss.eps_high == 0.28 and m["dapo"].group_filter.kind == "dynamic_sampling"
    assert m["dapo"].loss.aggregation == "token-mean" and m["dapo"].reward_shaping.overlong_buffer_fraction > 0
    d = m["dynamo"]
    assert d.allocation.kind == "dynamo" and d.modulation.compensation and d.modulation.stabilization
    assert {k: getattr(d.modulation, k) for k in MODULATION_PRESETS["decay6"]} == MODULATION_PRESETS["decay6"]
    assert d.allocation.bounds(16) == (8, 24)  # the authors' 8..24 for n = 16
    # Each ablation differs from dynamo in exactly the component it names.
    assert (
        dataclasses.replace(m["dynamo-uniform"], name="dynamo", description=d.description, allocation=d.allocation)
        == d
    )
    assert m["dynamo-nomod"].allocation == d.allocation
    assert not m["dynamo-nomod"].modulation.compensation and not m["dynamo-nomod"].modulation.stabilization
    assert not m["dynamo-nocomp"].modulation.compensation and m["dynamo-nocomp"].modulation.stabilization
    assert m["dynamo-nostab"].modulation.compensation and not m["dynamo-nostab"].modulation.stabilization
    # The null model of beta_comp is dynamo-nostab with beta_comp replaced by a constant above 1.
    posscale = m["dynamo-posscale"]
    assert posscale.modulation.positive_scale > 1 and not posscale.modulation.compensation
    nostab_as_null = dataclasses.replace(
        m["dynamo-nostab"].modulation, compensation=False, positive_scale=posscale.modulation.positive_scale
    )
    assert dataclasses.replace(posscale, name="dynamo-nostab", description=m["dynamo-nostab"].description) == (
        dataclasses.replace(m["dynamo-nostab"], modulation=nostab_as_null)
    )
    # GRPO and dynamo share the loss: the comparison isolates allocation and modulation.
    assert m["grpo"].loss == d.loss and m["grpo"].advantage == d.advantage


def test_released_code_switches_differ_from_dynamo_in_one_field():
    m = all_methods()
    d = m["dynamo"]
    expected = {
        "dynamo-sqrtp": ("allocation", {"weight": "sqrt_p"}),
        "dynamo-released-floors": ("allocation", {"mastery_threshold": 0.85, "weight_floor": 0.01}),
        "dynamo-coldstart": ("allocation", {"cold_start": "n_low"}),
        "dynamo-minibatch": (None, {"window": "mini_batch"}),  # a top-level field of the spec
        "dynamo-eps028": ("loss", {"eps_high": 0.28}),
    }
    for name, (part, changes) in expected.items():
        variant = m[name]
        if part is None:
            assert dataclasses.replace(d, name=name, description=variant.description, **changes) == variant, name
            continue
        assert dataclasses.replace(getattr(d, part), **changes) == getattr(variant, part), name
        back = dataclasses.replace(variant, name="dynamo", description=d.description, **{part: getattr(d, part)})
        assert back == d, name


def test_every_baseline_module_is_registered_without_a_list_to_edit():
    import importlib
    import pkgutil

    import baselines

    modules = [m.name for m in pkgutil.iter_modules(baselines.__path__)]
    registered = all_methods()
    assert len(modules) >= 13
    for module in modules:
        for spec in importlib.import_module(f"baselines.{module}").METHODS:
            assert registered[spec.name] is spec, f"baselines/{module}.py: {spec.name}"
