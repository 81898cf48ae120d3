"""Reward function file for OpenRLHF's `--reward.remote_url` (loaded by path inside every vLLM actor).

OpenRLHF 0.11.2's `SingleTurnAgentExecutor` calls `reward_func(queries, prompts, labels)` once per
response (in a worker thread) with `queries` = the decoded prompt + response *with* special tokens,
and reads "rewards" (used for advantages, then shaped by length penalties), "scores" (the raw
score: dynamic filtering and DynaMO's prompt statistics) and "extra_logs". The reward is the
project's verifiable reward: 1 if `dynamo.grading.grade(response, gold)` says the final answer is
correct, else 0 -- the same grader as the local engine and the evaluation. The grader bounds the
time per grade itself (killable worker processes), so a pathological response cannot hang a
rollout. `dynamo` is importable here because the entry point ships it in the job's runtime_env.
"""

from __future__ import annotations

import re

import torch

# Keys of "extra_logs": a response whose reward failed gets them as 0 (rollout.py), so that every
# experience of a step carries the same info keys.
EXTRA_LOG_KEYS = ("correct",)
_TRAILING_SPECIAL = re.compile(r"(?:\s*<\|[^|<>]{1,40}\|>)+\s*$")  # <|im_end|>, <|endoftext|>, ...


def response_text(query: str, prompt: str) -> str:
    """The response part of a decoded prompt + response, without trailing special tokens."""
    # The decoded prompt normally reproduces the prompt string; if the tokenizer round trip
    # changed it, grade the whole query (the prompt has no final answer of its own to find last).
    text = query[len(prompt) :] if query.startswith(prompt) else query
    return _TRAILING_SPECIAL.sub("", text)


def reward_func(queries: list[str], prompts: list[str], labels: list[str], **kwargs) -> dict:
    from dynamo.grading import grade

    correct = [1.0 if grade(response_text(q, p), gold) else 0.0 for q, p, gold in zip(queries, prompts, labels)]
    rewards = torch.tensor(correct, dtype=torch.float32)
    return {"rewards": rewards, "scores": rewards.clone(), "extra_logs": {"correct": rewards.clone()}}
