"""The engines by name, for code that must not import them.

Config validation runs before any engine is chosen and sits below the engines in the import
order (they import the config; it imports none of them). It asks here for an engine's pre-flight
check instead: each entry names the function, "module:function", that raises ValueError when a
config cannot run on that engine, and the module is imported only when that engine is configured.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

CONFIG_CHECKS: dict[str, str | None] = {
    "local": None,  # every valid config runs on the local engine
    "openrlhf": "dynamo.engines.openrlhf.launcher:validate",
}


def config_check(engine: str) -> Callable[[Any], None] | None:
    """The engine's config check, or None when it has none."""
    target = CONFIG_CHECKS[engine]
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
