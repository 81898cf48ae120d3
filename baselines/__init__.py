"""Baseline methods, one module each. Each module defines a `MethodSpec` (and, where a spec
cannot express the method, one function next to it), with the paper and its settings cited."""

from baselines.dapo import DAPO
from baselines.grpo import GRPO

BASELINES = [GRPO, DAPO]
