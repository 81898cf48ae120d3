"""Sampling responses from a causal LM: Hugging Face `generate` (CPU/GPU) or vLLM (GPU).

Both backends take prompt *strings* plus a per-prompt sample count and return `Generation`
records ordered by prompt index, each prompt's samples contiguous:

    hf_generate(model, tokenizer, prompts, counts, max_new_tokens=..., temperature=1.0, top_p=1.0)
    vllm_generate(llm, prompts, counts, max_new_tokens=..., temperature=1.0, top_p=1.0, seed=0)

Sampling is plain ancestral sampling with temperature and nucleus (top_p) only, as in the
authors' vLLM script (temperature 1.0, top_p 1.0): top_k is disabled and the checkpoint's own
generation defaults (repetition penalty, top_k, ...) are overridden. temperature 0 = greedy.

Token-level contract (what the RL trainer relies on): prompts are tokenized without adding
special tokens (a chat template already contains them; see `add_special_tokens`); a response
ends at the first end-of-sequence token, which is kept as its last id; `truncated` is True when
no end-of-sequence token came within `max_new_tokens` (the response then has exactly that many
ids); padding never appears in `prompt_ids` or `response_ids`. The HF backend draws its
randomness from torch's global RNG (seed with `torch.manual_seed`).

vLLM is imported only when its backend is used, so this module and its tests run without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Generation:
    prompt_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    text: str
    truncated: bool


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids: the model's generation config (may list several) and the tokenizer's."""
    ids: list[int] = []
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (config_eos, getattr(tokenizer, "eos_token_id", None)):
        for i in value if isinstance(value, (list, tuple)) else [value]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    if not ids:
        raise ValueError("neither the model's generation config nor the tokenizer defines an eos token")
    return ids


def _cut_at_eos(tokens: list[int], eos: set[int]) -> tuple[list[int], bool]:
    """(response up to and including the first eos, truncated?)."""
    for i, token in enumerate(tokens):
        if token in eos:
            return tokens[: i + 1], False
    return tokens, True


def sampling_kwargs(temperature: float, top_p: float) -> dict[str, Any]:
    """`generate` kwargs for pure temperature/top-p sampling, overriding checkpoint defaults."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    neutral = {"num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
    if temperature == 0:
        return {"do_sample": False, **neutral}
    # top_k=0 disables the transformers default of 50; min_p/typical_p neutral values override
    # whatever a checkpoint's generation_config.json sets.
    return {
        "do_sample": True,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": 0,
        "min_p": 0.0,
        "typical_p": 1.0,
        **neutral,
    }


def hf_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    counts: Sequence[int],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    add_special_tokens: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Sample `counts[i]` responses to `prompts[i]` with `model.generate`, left-padded batches.

    `progress`, if given, is called with the number of sequences finished after each batch.
    """
    import torch

    if len(prompts) != len(counts):
        raise ValueError(f"{len(prompts)} prompts but {len(counts)} counts")
    if any(c < 0 for c in counts):
        raise ValueError("counts must be >= 0")
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError("max_new_tokens and batch_size must be >= 1")
    eos = eos_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    encoded = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    if any(len(ids) == 0 for ids in encoded):
        raise ValueError("a prompt tokenizes to no tokens")
    rows = [(i, encoded[i]) for i, count in enumerate(counts) for _ in range(count)]
    device = next(model.parameters()).device
    kwargs = sampling_kwargs(temperature, top_p)

    out: list[Generation] = []
    was_training = model.training
    model.eval()  # no dropout while sampling; restored below
    try:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            width = max(len(ids) for _, ids in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, (_, ids) in enumerate(batch):
                input_ids[r, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention_mask[r, width - len(ids) :] = 1
            with torch.no_grad():
                sequences = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad,
                    eos_token_id=eos,
                    **kwargs,
                )
            generated = sequences[:, width:].tolist()
            for (prompt_index, ids), tokens in zip(batch, generated):
                response, truncated = _cut_at_eos(tokens, set(eos))
                text = tokenizer.decode(response, skip_special_tokens=True)
                out.append(Generation(prompt_index, list(ids), response, text, truncated))
            if progress is not None:
                progress(len(batch))
    finally:
        model.train(was_training)
    return out


def vllm_generate(
    llm: Any,
    prompts: Sequence[str],
    counts: Sequence[int],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    add_special_tokens: bool = False,
    use_tqdm: bool = True,
) -> list[Generation]:
    """Sample with vLLM's offline `LLM.generate`, n = counts[i] per prompt (prompt i seeded seed + i)."""
    from vllm import SamplingParams  # GPU-only dependency, imported on use

    if len(prompts) != len(counts):
        raise ValueError(f"{len(prompts)} prompts but {len(counts)} counts")
    tokenizer = llm.get_tokenizer()
    # Tokenize ourselves so both backends see identical prompt ids (vLLM would add special tokens).
    wanted = [i for i, c in enumerate(counts) if c > 0]
    inputs = [
        {"prompt_token_ids": tokenizer(prompts[i], add_special_tokens=add_special_tokens)["input_ids"]}
        for i in wanted
    ]
    params = [
        SamplingParams(
            n=counts[i],
            temperature=temperature,
            top_p=top_p,
            top_k=-1,
            max_tokens=max_new_tokens,
            seed=None if seed is None else seed + i,
        )
        for i in wanted
    ]
    outputs = llm.generate(inputs, params, use_tqdm=use_tqdm)
    result = []
    for i, output in zip(wanted, outputs):
        for completion in output.outputs:
            result.append(
                Generation(
                    prompt_index=i,
                    prompt_ids=list(output.prompt_token_ids),
                    response_ids=list(completion.token_ids),
                    text=completion.text,
                    truncated=completion.finish_reason == "length",
                )
            )
    return result


# ----------------------------------------------------------------------------- backends
class GenerationBackend(Protocol):
    """What `dynamo.evaluation.evaluate` needs from a backend."""

    tokenizer: Any

    def generate(
        self,
        prompts: Sequence[str],
        counts: Sequence[int],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        progress: Callable[[int], None] | None = None,
    ) -> list[Generation]: ...


class HFBackend:
    """Hugging Face transformers model + tokenizer (CPU or one GPU)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 64) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    @classmethod
    def from_pretrained(cls, path: str, device: str | None = None, batch_size: int = 64) -> HFBackend:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # Checkpoint dtype (bf16 for Qwen) on GPU; float32 on CPU where bf16 matmuls are slow.
        dtype = "auto" if device.startswith("cuda") else torch.float32
        from dynamo.models import named_load_errors

        with named_load_errors(path):  # a damaged local model file is named in one line
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
            tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(model, tokenizer, batch_size)

    def generate(self, prompts, counts, *, max_new_tokens, temperature, top_p, seed, progress=None):
        import torch

        torch.manual_seed(seed)
        return hf_generate(
            self.model,
            self.tokenizer,
            prompts,
            counts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            batch_size=self.batch_size,
            progress=progress,
        )


class VLLMBackend:
    """vLLM offline engine (GPU). Extra keyword arguments go to `vllm.LLM`."""

    def __init__(self, path: str, seed: int = 0, **llm_kwargs: Any) -> None:
        from vllm import LLM

        self.llm = LLM(model=path, seed=seed, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts, counts, *, max_new_tokens, temperature, top_p, seed, progress=None):
        gens = vllm_generate(
            self.llm,
            prompts,
            counts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
        )
        if progress is not None:
            progress(len(gens))
        return gens


def load_backend(kind: str, model_path: str, *, batch_size: int = 64, seed: int = 0, device: str | None = None):
    """`hf` or `vllm` backend for a checkpoint directory (or hub id, where the hub is reachable)."""
    if kind == "hf":
        return HFBackend.from_pretrained(model_path, device=device, batch_size=batch_size)
    if kind == "vllm":
        return VLLMBackend(model_path, seed=seed)
    raise ValueError(f"unknown backend {kind!r} (hf | vllm)")


# Evaluation lengths per model family (prompt + response must fit the context window):
# Qwen2.5-Math has a 4096-token context, so ~3k new tokens as in its evaluation scripts.
MAX_NEW_TOKENS = {"qwen2.5-math": 3072, "qwen3": 8192}


def default_max_new_tokens(model_name_or_path: str, max_position_embeddings: int | None = None) -> int:
    """Response length limit for a model: a known family's, else half its context (at most 4096)."""
    name = str(model_name_or_path).lower()
    for family, limit in MAX_NEW_TOKENS.items():
        if family in name:
            return limit
    if max_position_embeddings:
        return max(1, min(4096, max_position_embeddings // 2))
    return 4096
