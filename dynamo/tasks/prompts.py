"""Prompt construction for evaluation (and rollouts): one problem -> one prompt string.

By default the problem is followed by the Qwen2.5-Math instruction

    "Please reason step by step, and put your final answer within \\boxed{}."

as the user turn of the tokenizer's own chat template (when it has one), ending with the
generation prompt. Without a chat template -- or with `use_chat_template=False` -- the filled
template string is the whole prompt. Templates are plain strings in which `{problem}` is
replaced (str.replace, not str.format, so LaTeX braces need no escaping).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

TEMPLATES: dict[str, str] = {
    # user turn = problem + Qwen2.5-Math instruction (the default)
    "qwen-boxed": "{problem}\n" + INSTRUCTION,
    # the problem alone (e.g. a chat template whose system prompt already carries the instruction)
    "problem": "{problem}",
    # plain-text completion prompt for base models without a chat template
    "plain": "Question: {problem}\n" + INSTRUCTION + "\nAnswer: ",
}
DEFAULT_TEMPLATE = TEMPLATES["qwen-boxed"]


def resolve_template(template: str) -> str:
    """A preset name from TEMPLATES, a path to a text file, or a literal containing '{problem}'."""
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{problem}" not in template and len(template) < 4096 and Path(template).is_file():
        template = Path(template).read_text(encoding="utf-8")
    if "{problem}" not in template:
        raise ValueError(
            f"template must be one of {sorted(TEMPLATES)}, a file, or a string containing "
            f"'{{problem}}': {template!r}"
        )
    return template


def has_chat_template(tokenizer: Any) -> bool:
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def build_prompt(
    problem: str,
    tokenizer: Any = None,
    template: str = DEFAULT_TEMPLATE,
    use_chat_template: bool | None = None,
    system: str | None = None,
) -> str:
    """The prompt text for one problem.

    use_chat_template: None = use the tokenizer's chat template if it has one; True = require
    it; False = plain template string. `system` adds a system turn (chat template only).
    """
    content = resolve_template(template).replace("{problem}", problem)
    if use_chat_template is None:
        use_chat_template = has_chat_template(tokenizer)
    if not use_chat_template:
        return content
    if not has_chat_template(tokenizer):
        raise ValueError("use_chat_template=True but the tokenizer has no chat template")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
