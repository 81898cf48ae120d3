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
        "ninja": None,
        "deepspeed_ops": {"fused_adam": False},
        "flash_attn_import": None,
        "disk_free_gb": 100_000.0,
        "gpus": [],
        "packages": {
            "openrlhf": "0.11.2",
            "vllm": None,
            "deepspeed": "0.19.6",
            "ray": "2.55.0",
            "flash-attn": None,
            "snakemake-executor-plugin-slurm": "2.6.1",
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
        "packages": {
            **{name: pinned for name, (pinned, _) in OPENRLHF_STACK.items()},
            "snakemake-executor-plugin-slurm": "2.6.1",
        },
        "deepspeed_ops": {"fused_adam": True},
        "flash_attn_import": "ok",
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
        ({"driver": "550.54.15"}, "NVIDIA driver", "needs driver >= 580, found 550.54.15"),
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


def lines(report) -> dict[str, tuple[str, str]]:
    return {item: (status, detail) for status, item, detail in report.lines}


@pytest.mark.parametrize(
    "over, status, text",
    [
        # CUDA 13 torch on a GPU node: >= 580 needed; CUDA 12 torch: >= 525.
        ({"driver": "580.65.06"}, "ok", "580.65.06 (>= 580, as torch 2.13.0 (CUDA 13.0 build) needs)"),
        ({"driver": "570.86.10"}, "FAIL", "torch 2.13.0 (CUDA 13.0 build) needs driver >= 580, found 570.86.10"),
        ({"driver": "550.54.15", "torch_cuda": "12.8"}, "ok", "(>= 525, as torch 2.13.0 (CUDA 12.8 build) needs)"),
    ],
)
def test_driver_against_the_installed_torch(over, status, text):
    assert lines(check(load_config(*CONFIG_7B), gpu_node(**over)))["NVIDIA driver"][0] == status
    assert text in lines(check(load_config(*CONFIG_7B), gpu_node(**over)))["NVIDIA driver"][1]


def test_driver_on_a_cpu_login_node_against_the_gpu_extra():
    """CPU torch (a login node): the driver is compared with what the gpu extra's torch will need."""
    cfg = load_config("config/config.yaml")  # the CPU default: nothing here needs the GPU
    status, detail = lines(check(cfg, facts(driver="550.54.15")))["NVIDIA driver"]
    assert (
        status == "WARN" and "gpu extra's torch 2.13.0 (CUDA 13.0) needs driver >= 580, found 550.54.15" in detail
    )
    assert lines(check(cfg, facts(driver="580.1")))["NVIDIA driver"][0] == "ok"
    status, detail = lines(check(cfg, facts()))["NVIDIA driver"]
    assert status == "--" and "needs >= 580 on the GPU nodes" in detail


def test_driver_version_is_read_from_nvidia_smi(monkeypatch):
    from dynamo import doctor

    monkeypatch.setattr(
        doctor.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None
    )
    monkeypatch.setattr(
        doctor.subprocess,
        "run",
        lambda *a, **k: doctor.subprocess.CompletedProcess(a, 0, "580.65.06\n580.65.06\n"),
    )
    assert doctor.driver_version() == "580.65.06"


@pytest.mark.parametrize(
    "over, status, text",
    [
        ({}, "ok", "FusedAdam prebuilt"),
        ({"deepspeed_ops": {"fused_adam": False}}, "FAIL", "not prebuilt and nvcc and ninja not on PATH"),
        (
            {"deepspeed_ops": {"fused_adam": False}, "nvcc": "13.0.88"},
            "FAIL",
            "not prebuilt and ninja not on PATH",
        ),
        ({"deepspeed_ops": {"fused_adam": False}, "nvcc": "12.4.1", "ninja": "1.13"}, "FAIL", "does not match"),
        ({"deepspeed_ops": {"fused_adam": False}, "nvcc": "13.0.88", "ninja": "1.13"}, "ok", "compiled on first"),
    ],
)
def test_deepspeed_ops_prebuilt_or_compilers_present(over, status, text):
    got = lines(check(load_config(*CONFIG_7B), gpu_node(**over)))["DeepSpeed ops"]
    assert got[0] == status and text in got[1], got


def test_flash_attn_that_does_not_import_fails():
    r = check(load_config(*CONFIG_7B), gpu_node(flash_attn_import="ImportError: undefined symbol: _ZN3c10"))
    assert "undefined symbol" in fails(r)["flash-attn import"]
    assert lines(check(load_config(*CONFIG_7B), gpu_node()))["flash-attn import"][0] == "ok"


def test_slurm_plugin_version_is_checked_against_the_pin():
    import re
    from pathlib import Path

    from dynamo.doctor import SLURM_PLUGIN

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.findall(r'"snakemake-executor-plugin-slurm==([\d.]+)"', pyproject) == [SLURM_PLUGIN[1]]
    packages = {**gpu_node()["packages"], "snakemake-executor-plugin-slurm": "2.8.0"}
    got = lines(check(load_config(*CONFIG_7B), gpu_node(packages=packages)))["Slurm plugin"]
    assert got[0] == "WARN" and "use 2.6.1" in got[1]
    assert lines(check(load_config(*CONFIG_7B), gpu_node()))["Slurm plugin"][0] == "ok"


@pytest.mark.parametrize("free, status", [(100.0, "FAIL"), (1_000.0, "WARN"), (20_000.0, "ok")])
def test_free_disk_against_the_checkpoint_footprint(free, status):
    """7B: ~229 GB per run (2 checkpoints of ~107 GB + final weights), ~9.6 TB for the 42-run sweep."""
    got = lines(check(load_config(*CONFIG_7B), gpu_node(disk_free_gb=free)))["disk"]
    assert got[0] == status, got


def test_disk_free_reads_the_nearest_existing_directory(monkeypatch, tmp_path):
    from dynamo import doctor

    seen = []
    usage = doctor.shutil._ntuple_diskusage(0, 0, 5e9)
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: seen.append(p) or usage)
    assert doctor.disk_free_gb(str(tmp_path / "runs" / "x")) == 5.0 and seen == [tmp_path]
