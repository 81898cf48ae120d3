"""CPU stand-ins for the two GPU-only packages OpenRLHF imports at module load: flash_attn and vllm.

Only names that `openrlhf` imports at import time exist (docs/OPENRLHF_ENGINE.md, "CPU tests");
calling any of them raises, so a test that reaches a GPU code path fails loudly instead of
silently using a fake. Everything else (ray, deepspeed, transformers, torch) is the real package.
`install()` is idempotent and leaves a real flash_attn / vllm alone if one is importable.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import types


def _unavailable(name: str):
    def fn(*args, **kwargs):
        raise RuntimeError(f"{name} is a CPU test stub (tests/openrlhf_stubs.py); this code path needs a GPU")

    fn.__name__ = name.rsplit(".", 1)[-1]
    return fn


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    # transformers probes packages with importlib.util.find_spec, which rejects __spec__ = None.
    mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod


class SamplingParams:
    """Keeps its keyword arguments as attributes, like vllm.SamplingParams does for the fields used."""

    def __init__(self, **kwargs) -> None:
        self.__dict__.update(kwargs)


def install() -> None:
    """Register the stubs in sys.modules (and disable torch.compile, which OpenRLHF's entropy uses)."""
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
    if "flash_attn" not in sys.modules and importlib.util.find_spec("flash_attn") is None:
        _module("flash_attn")
        names = ("index_first_axis", "pad_input", "rearrange", "unpad_input")
        _module("flash_attn.bert_padding", **{n: _unavailable(f"flash_attn.bert_padding.{n}") for n in names})
        _module("flash_attn.utils")
        _module("flash_attn.utils.distributed", all_gather=_unavailable("flash_attn.utils.distributed.all_gather"))
    if "vllm" not in sys.modules and importlib.util.find_spec("vllm") is None:
        _module(
            "vllm",
            SamplingParams=SamplingParams,
            AsyncEngineArgs=_unavailable("vllm.AsyncEngineArgs"),
            AsyncLLMEngine=_unavailable("vllm.AsyncLLMEngine"),
            __version__="0.29.0",  # the version openrlhf 0.11.2's `vllm` extra pins
        )
        _module("vllm.inputs", TokensPrompt=dict)
        _module("vllm.utils", random_uuid=lambda: "stub-uuid")
