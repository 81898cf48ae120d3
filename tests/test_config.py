"""Experiment config: validation before compute, generated schema up to date, shipped configs valid."""

from pathlib import Path

import pytest
import yaml

from dynamo.config import SCHEMA_PATH, config_from_dict, json_schema, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_schema_file_is_generated_from_dataclasses():
    on_disk = yaml.safe_load(SCHEMA_PATH.read_text())
    assert on_disk == json_schema(), "run `python -m dynamo.config --write-schema`"


@pytest.mark.parametrize(
    "extra",
    [[]]
    + [[str(p.relative_to(ROOT))] for p in sorted((ROOT / "config").glob("*.yaml")) if p.name != "config.yaml"]
    + [[str(p.relative_to(ROOT))] for p in sorted((ROOT / "config/experiments").glob("*.yaml"))],
)
def test_shipped_configs_validate(extra):
    cfg = load_config(ROOT / "config/config.yaml", *(ROOT / e for e in extra))
    assert cfg.methods


def test_shipped_default_config_matches_dataclass_defaults():
    """config/config.yaml spells out the defaults: the two must not drift apart."""
    assert load_config(ROOT / "config/config.yaml") == config_from_dict({})


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"train": {"stepz": 3}}, "config.train.stepz"),
        ({"train": {"steps": 0}}, "config.train.steps must be >= 1"),
        ({"train": {"lr": "fast"}}, "config.train.lr"),
        ({"methods": ["grpo", "dynamoo"]}, "Known methods"),
        ({"seeds": [1, 1]}, "distinct"),
        ({"train": {"prompts_per_step": 4, "mini_batch_prompts": 8}}, "mini_batch_prompts"),
        ({"method_overrides": {"dynamo": {"allocation": {"n_low": 9}}}}, "n_low"),
        ({"method_overrides": {"dynamo": {"allocation": {"n_low": 1}}}}, "n_low"),
        ({"engine": "verl"}, "must be one of"),
        ({"experiment": "a b"}, "must match"),
        ({"data": {"task": "prompts"}}, "data.train_path is required"),
    ],
)
def test_bad_configs_fail_with_the_field_named(bad, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(bad)


def test_derived_paths():
    cfg = config_from_dict({"experiment": "x"})
    assert cfg.train_pool_path == "data/x/train.jsonl"
    assert cfg.base_model_path == "models/x/warmstart"
    cfg = config_from_dict(
        {"model": {"build_tiny": False, "path": "Qwen/Qwen2.5-Math-7B"}, "warmstart": {"enabled": False}}
    )
    assert cfg.base_model_path == "Qwen/Qwen2.5-Math-7B"


def test_schema_bounds_and_help_come_from_the_field_metadata():
    """One source per bound: the field's metadata is both what pydantic checks and what Snakemake's
    schema says (a $ref per section)."""
    schema = json_schema()
    train = schema["$defs"]["TrainConfig"]["properties"]
    assert train["lr"]["exclusiveMinimum"] == 0 and train["lr"]["maximum"] == 1
    assert train["lr"]["description"].startswith("Adam learning rate")
    assert schema["properties"]["seeds"]["items"] == {"maximum": 2**32 - 1, "minimum": 0, "type": "integer"}
    assert schema["$defs"]["TrainConfig"]["additionalProperties"] is False


def test_openrlhf_section_reports_every_field_problem_at_once():
    from dynamo.engines.openrlhf.config import OpenRLHFConfig

    with pytest.raises(ValueError) as err:
        OpenRLHFConfig.from_dict({"actor_num_nodes": 0, "vllm_gpu_memory_utilization": 1.5, "adam_betas": [0.9]})
    assert err.value.problems == [
        "openrlhf.actor_num_nodes must be >= 1, got 0",
        "openrlhf.vllm_gpu_memory_utilization must be <= 1, got 1.5",
        "openrlhf.adam_betas must have at least 2 items, got [0.9]",
    ]
    with pytest.raises(ValueError) as err:  # the layout checks, also all at once
        OpenRLHFConfig.from_dict({"actor_num_nodes": 2, "shuffle_mini_batches": True})
    assert len(err.value.problems) == 3 and "ray_address" in err.value.problems[0]


def test_every_validated_dataclass_forbids_unknown_fields_and_nan():
    """A section added without `@with_config(FIELDS)` would silently ignore misspelt keys: every dataclass
    reachable from the config, the method spec and the OpenRLHF section carries the shared config."""
    import dataclasses
    import typing

    from dynamo.config import ExperimentConfig
    from dynamo.engines.openrlhf.config import OpenRLHFConfig
    from dynamo.schema import FIELDS
    from dynamo.spec import MethodSpec

    seen, todo = set(), [ExperimentConfig, MethodSpec, OpenRLHFConfig]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        assert getattr(cls, "__pydantic_config__", None) == FIELDS, cls.__name__
        for hint in typing.get_type_hints(cls).values():
            todo += [a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a) and a not in seen]
    assert len(seen) >= 24  # the walk reached every section (nested ones included)
    with pytest.raises(ValueError, match="unknown field method.fork_tokens.top_fractoin"):
        from dynamo.methods import get_method

        get_method("grpo", {"fork_tokens": {"top_fractoin": 0.2}})
