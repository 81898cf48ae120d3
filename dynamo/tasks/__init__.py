"""Problem sets: evaluation benchmarks (registry + loader), RL prompt pools, prompt construction.

The embedded arithmetic task lives in `dynamo.tasks.arithmetic` (imported only by its own
subcommand); its held-out splits load here as `arith-easy|medium|hard` from their JSONL files.
"""

from dynamo.tasks.benchmarks import (
    BENCHMARKS,
    BenchmarkFormatError,
    BenchmarkSpec,
    ProblemSet,
    answer_text,
    detect_variant,
    load_benchmark,
    load_prompt_pool,
)
from dynamo.tasks.prompts import DEFAULT_TEMPLATE, INSTRUCTION, TEMPLATES, build_prompt, resolve_template

__all__ = [
    "BENCHMARKS",
    "DEFAULT_TEMPLATE",
    "INSTRUCTION",
    "TEMPLATES",
    "BenchmarkFormatError",
    "BenchmarkSpec",
    "ProblemSet",
    "answer_text",
    "build_prompt",
    "detect_variant",
    "load_benchmark",
    "load_prompt_pool",
    "resolve_template",
]
