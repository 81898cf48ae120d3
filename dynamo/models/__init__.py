"""Loading and saving causal LMs the same way for the tiny embedded model and the hub models.

`load_model_and_tokenizer` is the one loading path of the project: it serves a local
directory written by `dynamo build-model`/`dynamo warmstart` and a hub id such as
`Qwen/Qwen2.5-Math-1.5B` alike. `save_pretrained_atomic` writes a model directory so that
a killed process never leaves a half-written one behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch


def load_model_and_tokenizer(
    path_or_hub_id: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None
) -> tuple[Any, Any]:
    """(model, tokenizer) ready for batched generation: left padding, pad token set.

    `dtype=None` keeps the dtype the checkpoint was saved in ("auto"): float32 for the
    tiny model, bfloat16 for Qwen2.5-Math.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path_or_hub_id))
    # Decoder-only generation appends to the right end of the prompt, so prompts of a
    # batch must be aligned there.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path_or_hub_id), dtype=dtype if dtype is not None else "auto")
    model.to(device)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def save_pretrained_atomic(model: Any, tokenizer: Any, out: str | os.PathLike, extra_json: dict[str, Any]) -> Path:
    """Save model + tokenizer (+ extra JSON files by name) into `out`, replacing it whole.

    Everything is written to `out.tmp` first and renamed into place, so readers only ever
    see a complete directory.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    old = out.with_name(out.name + ".old")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for name, obj in extra_json.items():
        with open(tmp / name, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
    if out.exists():  # a directory cannot be os.replace'd onto a non-empty one
        os.replace(out, old)
    os.replace(tmp, out)
    if old.exists():
        shutil.rmtree(old)
    return out
