"""The tiny embedded model: a character-level tokenizer and a small Qwen2 causal LM, built locally.

Nothing here touches the Hugging Face hub. The tokenizer is built with `tokenizers`: one
token per character for printable ASCII and newline (byte-level, like Qwen2's, with no
merges; the other bytes have tokens too), plus pad/bos/eos/unk, wrapped as a transformers
fast tokenizer; the model is `Qwen2ForCausalLM` from a config
(default 2 layers, hidden 128, 4 heads, tied embeddings: ~0.54 M parameters). Both are
written with `save_pretrained`, so `dynamo.models.load_model_and_tokenizer` (and plain
`AutoTokenizer`/`AutoModelForCausalLM.from_pretrained`) load them exactly as they load
Qwen2.5-Math: the CPU experiment runs the same code paths as a GPU run.

The tokenizer has no chat template (the prompt builder falls back to the plain template)
and adds no BOS token, like Qwen2.5's.

    dynamo build-model --out models/tiny --seed 0 [--layers 2 --hidden 128 --heads 4]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from dynamo.models import save_pretrained_atomic

PAD, BOS, EOS, UNK = "<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0..3
CHARACTERS = tuple(chr(i) for i in range(32, 127)) + ("\n",)  # printable ASCII + newline: ids 4..99


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/Qwen byte-level alphabet: each byte -> one printable unicode character."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_tokenizer(max_length: int = 256) -> Any:
    """Character-level fast tokenizer in Qwen2's byte-level BPE format, with no merges.

    Why byte-level BPE rather than a plain character vocabulary: `AutoTokenizer` loads any
    directory whose config says `qwen2` as `Qwen2Tokenizer`, which rebuilds Qwen2's
    byte-level pipeline from the saved vocabulary and merges. A byte-level vocabulary with
    no merges is character-level (for ASCII) under both that class and the generic one.
    All 256 bytes get a token (printable ASCII and newline first), so nothing is unknown.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    byte_char = bytes_to_unicode()
    order = [ord(c) for c in CHARACTERS] + [b for b in range(256) if chr(b) not in CHARACTERS]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({byte_char[b]: len(SPECIAL_TOKENS) + i for i, b in enumerate(order)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=max_length,
        padding_side="left",
    )


def build_model(
    tokenizer: Any,
    seed: int = 0,
    layers: int = 2,
    hidden: int = 128,
    heads: int = 4,
    intermediate: int | None = None,
    max_positions: int = 256,
) -> Any:
    """A freshly initialised Qwen2ForCausalLM sized for `tokenizer`, seeded."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    validate_shape(layers, hidden, heads)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate or 4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        rope_theta=10000.0,
        tie_word_embeddings=True,  # a quarter of a small vocab's parameters saved, as in Qwen2.5-0.5B
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def validate_shape(layers: int, hidden: int, heads: int) -> None:
    if layers < 1 or hidden < 1 or heads < 1:
        raise ValueError(f"layers, hidden and heads must be positive, got {layers}, {hidden}, {heads}")
    if hidden % heads or (hidden // heads) % 2:
        raise ValueError(f"hidden ({hidden}) must split into {heads} heads of even size (rotary embeddings)")


def write_tiny_model(
    out: str | os.PathLike,
    seed: int = 0,
    layers: int = 2,
    hidden: int = 128,
    heads: int = 4,
    max_positions: int = 256,
) -> Path:
    """Build tokenizer + model and save both into `out` (atomically). Returns `out`."""
    tokenizer = build_tokenizer(max_length=max_positions)
    model = build_model(tokenizer, seed, layers, hidden, heads, max_positions=max_positions)
    n_params = sum(p.numel() for p in model.parameters())
    info = {
        "seed": seed,
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "max_positions": max_positions,
        "vocab_size": len(tokenizer),
        "parameters": n_params,
    }
    return save_pretrained_atomic(model, tokenizer, out, {"build.json": info})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output model directory (replaced whole)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed")
    parser.add_argument("--layers", type=int, default=2, help="transformer layers")
    parser.add_argument("--hidden", type=int, default=128, help="hidden size (MLP is 4x)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (hidden/heads must be even)")
    parser.add_argument("--max-positions", type=int, default=256, help="longest prompt + response, in characters")


def run(args: argparse.Namespace) -> int:
    try:
        validate_shape(args.layers, args.hidden, args.heads)
    except ValueError as e:
        raise SystemExit(f"dynamo build-model: error: {e}") from None
    out = write_tiny_model(args.out, args.seed, args.layers, args.hidden, args.heads, args.max_positions)
    n = json.loads((out / "build.json").read_text())["parameters"]
    shape = f"{args.layers} layers, hidden {args.hidden}, {args.heads} heads"
    print(f"wrote {out}: Qwen2 causal LM, {shape}, {n / 1e6:.2f}M parameters")
    return 0
