"""`dynamo doctor`: what the checks conclude for given machine facts, and a real run on this machine."""

from __future__ import annotations

import pytest
import torch

from dynamo.config import load_config
from dynamo.doctor import OPENRLHF_STACK, check

CONFIG_7B = ("config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml")


def facts(**over) -> dict:
    """A CPU-only machine with the test install (openrlhf, deepspeed, ray; no vllm, no flash-attn)."""
    base = {
        "python": "3.11.7",
        "torch": "2.13.0+cpu",
        "torch_cuda": None,
        "driver": None,
        "nvcc": None,
        "gpus": [],
        "packages": {
            "openrlhf": "0.11.2",
            "vllm": None,
            "deepspeed": "0.19.6",
            "ray": "2.55.0",
            "flash-attn": None,
        },
        "ray_cluster": None,
        "exists": lambda path: False,
        "hf_cached": lambda repo, kind: False,
    }
    base.update(over)
    return base


def gpu_node(**over) -> dict:
    node = {
        "torch": "2.13.0",
        "torch_cuda": "13.0",
        "driver": "580.65.06",
        "gpus": [("NVIDIA H100 80GB HBM3", 79.2)] * 8,
        "packages": {name: pinned for name, (pinned, _) in OPENRLHF_STACK.items()},
        "exists": lambda path: path.startswith("cache/"),
    }
    return facts(**{**node, **over})


def fails(report) -> dict[str, str]:
    return {item: detail for status, item, detail in report.lines if status == "FAIL"}


def test_embedded_default_is_clean_on_a_cpu_machine():
    r = check(load_config("config/config.yaml"), facts())
    assert not r.failed and not r.fixes


def test_7b_on_a_cpu_machine_says_exactly_why_not():
    r = check(load_config(*CONFIG_7B), facts())
    f = fails(r)
    assert "need CUDA GPUs: the torch build has no CUDA" in f["GPU"]
    assert "vllm==0.29.0" in f["vllm"] and "flash-attn==2.8.3" in f["flash-attn"]
    assert "eval.backend: vllm" in f["eval backend"]
    fixes = "\n".join(r.fixes)
    assert "--no-build-isolation flash-attn==2.8.3" in fixes and "driver >= 580" in fixes
    assert "snakemake stage_inputs" in fixes  # model, data and benchmarks are not on this machine
    assert sum("snakemake stage_inputs" in line for line in r.fixes) == 1  # one line per remedy


def test_7b_on_a_staged_8_gpu_node_can_run():
    r = check(load_config(*CONFIG_7B), gpu_node())
    assert not r.failed, r.render()
    assert any(item == "memory plan" and status == "ok" for status, item, _ in r.lines)


@pytest.mark.parametrize(
    "over, item, text",
    [
        ({"driver": "550.54.15"}, "driver", "needs driver >= 580, found 550.54.15"),
        ({"gpus": [("NVIDIA A100-SXM4-80GB", 79.2)] * 4}, "GPU count", "actor_gpus_per_node = 8, this node has 4"),
        ({"gpus": [("NVIDIA A100-SXM4-40GB", 39.4)] * 8}, "memory plan", "smallest GPU has 39 GiB"),
    ],
)
def test_gpu_node_problems_are_named(over, item, text):
    r = check(load_config(*CONFIG_7B), gpu_node(**over))
    assert text in fails(r)[item]


def test_doctor_command_on_this_machine(capsys):
    from dynamo.cli import main

    assert main(["doctor"]) == 0
    assert "This config can run here." in capsys.readouterr().out
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU verdict below does not apply")
    assert main(["doctor", "--config", *CONFIG_7B]) == 1
    out = capsys.readouterr().out
    assert "need CUDA GPUs" in out and "This config cannot run here" in out
