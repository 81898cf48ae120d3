"""benchmarks/gpu_check.py: documented, refuses on CPU, and its two parts run on a tiny shape on CPU."""

from __future__ import annotations

import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402

from dynamo.config import load_config  # noqa: E402

TINY = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=512)


def test_help_documents_the_check():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0
    for text in ("step-time ratio", "peak memory", "no internet", "--layers", "dynamo plan"):
        assert text in out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_refuses_on_cpu_with_a_clear_message():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 2
    assert "needs a CUDA GPU" in out.stderr and "sees none" in out.stderr


def test_both_parts_run_on_a_tiny_shape_on_cpu():
    """The GPU code path with a tiny Qwen2.5-shaped model on CPU: the step runs for both methods."""
    cfg = load_config("config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml")
    args = Namespace(layers=2, prompts=4, n=4, seq_len=48, repeats=1, shrink=TINY)
    ratio = gpu_check.check_step_time(cfg, args, device="cpu", dtype=torch.float32)
    assert ratio > 0
    peak, planned = gpu_check.check_logprob_memory(cfg, device="cpu", num_hidden_layers=2, **TINY)
    assert planned > 0


# -- --real-engine ------------------------------------------------------------------------------


def test_help_shows_the_real_engine_mode():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=600)
    assert "--real-engine" in out.stdout and "JSON report" in out.stdout and "1.5b-smoke" in out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_real_engine_refuses_on_cpu_naming_what_is_missing(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--real-engine",
            "--model",
            str(tmp_path / "none"),
            "--report",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 2 and "cannot run here; missing" in out.stderr
    assert "a CUDA GPU" in out.stderr and "flash-attn" in out.stderr and "the model on disk" in out.stderr
    assert not (tmp_path / "r.json").exists()


def test_one_gpu_layout_of_the_smoke_validates(tmp_path):
    import yaml

    from dynamo.config import config_problems, read_config_files

    over = gpu_check.one_gpu_override("/models/q", "/data/p.jsonl")
    path = tmp_path / "o.yaml"
    path.write_text(yaml.safe_dump(over))
    data, problems = read_config_files([ROOT / c for c in gpu_check.SMOKE] + [path])
    assert not problems
    problems = [p for p in config_problems(data)[1] if "/models/q" not in p and "/data/p.jsonl" not in p]
    assert not problems, problems
    assert over["openrlhf"] == {"actor_gpus_per_node": 1, "vllm_num_engines": 1}


def test_phase_windows_and_peaks():
    """Phases run generation -> experience -> train -> broadcast and end when the metrics row appears."""
    row = {"time/rollout": 4.0, "time/experience": 2.0, "time/train": 3.0, "time/sync": 1.0}
    w = gpu_check.phase_windows(100.0, row)
    assert w == {
        "broadcast": (99.0, 100.0),
        "ppo_train": (96.0, 99.0),
        "make_experience": (94.0, 96.0),
        "generation": (90.0, 94.0),
    }
    samples = [(89.0, 70.0), (91.0, 50.0), (93.5, 55.0), (95.0, 30.0), (97.0, 40.0), (101.0, 80.0)]
    assert gpu_check.phase_peaks(samples, w) == {
        "broadcast": None,
        "ppo_train": 40.0,
        "make_experience": 30.0,
        "generation": 55.0,
    }


def test_run_method_follows_the_metrics_rows(tmp_path):
    script = (
        "import json, sys, time, pathlib; d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True)\n"
        "for s in (1, 2):\n"
        "    time.sleep(0.3); open(d / 'metrics.jsonl', 'a').write(json.dumps({'step': s}) + '\\n')\n"
    )
    rows = gpu_check.run_method(
        [sys.executable, "-c", script, str(tmp_path / "run")], tmp_path / "run", tmp_path / "log", poll=0.05
    )
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["_seen_at"] < rows[1]["_seen_at"]
    with pytest.raises(RuntimeError, match="exited with 3"):
        gpu_check.run_method([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "x", tmp_path / "log")


def test_real_engine_report_from_given_runs(tmp_path, monkeypatch):
    """The report's assembly with the GPU parts replaced: versions, per-step times and peaks, plan, ratio."""
    import json

    model = tmp_path / "model"
    model.mkdir()
    monkeypatch.setattr(gpu_check, "real_engine_missing", lambda: [])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Namespace(total_memory=80 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "FAKE-GPU")

    class Sampler:
        samples = [(t, 10.0 + t) for t in range(0, 40)]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(gpu_check, "MemorySampler", Sampler)
    step = {"time/rollout": 4.0, "time/experience": 2.0, "time/train": 3.0, "time/sync": 1.0}
    fake = {"grpo": [10.0, 20.0], "dynamo": [30.0, 39.0]}
    calls = []

    def run_method(cmd, run_dir, log):
        calls.append(cmd)
        method = cmd[cmd.index("--method") + 1]
        return [
            {"step": i + 1, **step, "time/step": 10.0 + (method == "dynamo") * (i + 1), "_seen_at": t}
            for i, t in enumerate(fake[method])
        ]

    monkeypatch.setattr(gpu_check, "run_method", run_method)
    from dynamo.plan import KNOWN_SHAPES

    monkeypatch.setattr("dynamo.plan.model_shape", lambda path: KNOWN_SHAPES["Qwen/Qwen2.5-Math-1.5B"])
    args = gpu_check.parse_args(
        [
            "--real-engine",
            "--model",
            str(model),
            "--workdir",
            str(tmp_path / "w"),
            "--report",
            str(tmp_path / "r.json"),
        ]
    )
    assert gpu_check.real_engine(args) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert [c[c.index("--method") + 1] for c in calls] == ["grpo", "dynamo"]
    assert set(r["versions"]) >= {"torch", "vllm", "flash-attn", "openrlhf", "deepspeed"}
    assert r["gpu"].startswith("FAKE-GPU") and set(r["plan_gib"]) == {"generation", "log-prob pass", "training"}
    assert r["dynamo_over_grpo_last_step"] == pytest.approx(12.0 / 10.0)
    # grpo step 2 ends at 20 s: generation 10-14 s -> peak sample 24 GiB at t=14; training 16-19 s -> 29 GiB
    grpo2 = r["methods"]["grpo"]["steps"][1]
    assert grpo2["peak_gib"]["generation"] == 24.0 and grpo2["peak_gib"]["ppo_train"] == 29.0
    assert r["peak_vs_plan"]["ppo_train"]["measured_gib"] == 48.0  # dynamo step 2: train window 35-38 s
    assert r["peak_vs_plan"]["generation"]["plan_gib"] == r["plan_gib"]["generation"]
