"""Loading and saving causal LMs the same way for the tiny embedded model and the hub models.

`load_model_and_tokenizer` is the one loading path of the project: it serves a local
directory written by `dynamo build-model`/`dynamo warmstart` and a hub id such as
`Qwen/Qwen2.5-Math-1.5B` alike. `save_pretrained_atomic` writes a model directory so that
a killed process never leaves a half-written one behind (and a failed write, such as a full
disk, is one line naming the directory, with the partial copy removed).

A local model directory that cannot be loaded (a config.json with a wrong type, a truncated
weight file) raises UserError naming the file, instead of a traceback from deep inside
transformers or safetensors.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from dynamo.errors import UserError, writing


def load_model_and_tokenizer(
    path_or_hub_id: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None
) -> tuple[Any, Any]:
    """(model, tokenizer) ready for batched generation: left padding, pad token set.

    `dtype=None` keeps the dtype the checkpoint was saved in ("auto"): float32 for the
    tiny model, bfloat16 for Qwen2.5-Math.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with named_load_errors(path_or_hub_id):
        tokenizer = AutoTokenizer.from_pretrained(str(path_or_hub_id))
    # Decoder-only generation appends to the right end of the prompt, so prompts of a
    # batch must be aligned there.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with named_load_errors(path_or_hub_id):
        model = AutoModelForCausalLM.from_pretrained(
            str(path_or_hub_id), dtype=dtype if dtype is not None else "auto"
        )
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
    with writing(out, remove_on_failure=tmp):
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


@contextmanager
def named_load_errors(path_or_hub_id: str | os.PathLike) -> Iterator[None]:
    """Loading a local model directory: a damaged file raises UserError naming it (hub ids pass through)."""
    try:
        yield
    except Exception as err:
        directory = Path(path_or_hub_id)
        if not directory.is_dir():
            raise
        damaged = damaged_model_file(directory, err)
        if damaged is None:
            raise  # not a damaged file (out of memory, a bug): keep the traceback
        detail = " ".join(str(err).split())[:200]
        raise UserError(f"{damaged}: cannot be loaded ({detail})") from err


def damaged_model_file(directory: Path, err: Exception) -> Path | None:
    """The first file of a model directory that does not parse (config, tokenizer files, safetensors
    weights); config.json when all parse but loading failed on a bad value (wrong type, missing key)."""
    from safetensors import safe_open

    for name in ("config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.json"):
        path = directory / name
        if path.is_file():
            try:
                json.loads(path.read_text())
            except (ValueError, OSError):
                return path
    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt") as f:
                for key in f.keys():
                    f.get_slice(key)
        except Exception:
            return path
    bad_value = isinstance(err, (ValueError, TypeError, KeyError)) or "Validation" in type(err).__name__
    return directory / "config.json" if bad_value and (directory / "config.json").is_file() else None
