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
