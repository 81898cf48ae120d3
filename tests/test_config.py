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
