"""Prompt construction: default instruction, chat template when present, plain templates."""

from __future__ import annotations

import string

import pytest

from dynamo.tasks import DEFAULT_TEMPLATE, INSTRUCTION, TEMPLATES, build_prompt, resolve_template

PROBLEM = "What is $\\frac{1}{2} + \\frac{1}{3}$?"


def char_tokenizer(chat_template: str | None = None):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for ch in string.printable:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    hf.chat_template = chat_template
    return hf


CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_default_is_qwen_math_instruction_after_the_problem():
    assert INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}."
    assert build_prompt(PROBLEM) == PROBLEM + "\n" + INSTRUCTION
    assert DEFAULT_TEMPLATE == TEMPLATES["qwen-boxed"]


def test_chat_template_used_when_tokenizer_has_one():
    prompt = build_prompt(PROBLEM, char_tokenizer(CHAT))
    assert prompt == f"<|user|>{PROBLEM}\n{INSTRUCTION}<|end|><|assistant|>"
    with_system = build_prompt(PROBLEM, char_tokenizer(CHAT), template="problem", system=INSTRUCTION)
    assert with_system == f"<|system|>{INSTRUCTION}<|end|><|user|>{PROBLEM}<|end|><|assistant|>"


def test_plain_template_when_no_chat_template_or_when_asked():
    assert build_prompt(PROBLEM, char_tokenizer(None), template="{problem}\n") == PROBLEM + "\n"
    assert (
        build_prompt(PROBLEM, char_tokenizer(CHAT), template="{problem}\n", use_chat_template=False)
        == PROBLEM + "\n"
    )
    with pytest.raises(ValueError, match="no chat template"):
        build_prompt(PROBLEM, char_tokenizer(None), use_chat_template=True)


def test_braces_in_problem_and_template_need_no_escaping():
    assert build_prompt("Is {x} = \\{1\\}?", template="Q: {problem} \\boxed{}") == "Q: Is {x} = \\{1\\}? \\boxed{}"


def test_resolve_template(tmp_path):
    assert resolve_template("plain") == TEMPLATES["plain"]
    path = tmp_path / "t.txt"
    path.write_text("Solve: {problem}\n")
    assert resolve_template(str(path)) == "Solve: {problem}\n"
    with pytest.raises(ValueError, match="problem"):
        resolve_template("no placeholder here")
