"""Baseline methods, one module each. A module defines its `MethodSpec`s (from the leaf module
`dynamo.spec`, never the registry `dynamo.methods`, which imports this package), with the paper
and its settings cited, and lists them in `METHODS`; every module here is found and its methods
registered, so adding a baseline is adding its module. Allocation baselines also register their rule
in `dynamo.core.rules`; a loss-level one may register a policy loss in `dynamo.core`. docs/METHODS.md
explains them; the registry is `dynamo.methods`."""

import importlib
import pkgutil


def _discovered() -> list:
    """Every baseline module's METHODS, modules in name order."""
    methods = []
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        listed = getattr(importlib.import_module(f"{__name__}.{module}"), "METHODS", None)
        if listed is None:
            raise ImportError(f"baselines/{module}.py must list its method specs in METHODS")
        methods += listed
    return methods


BASELINES = _discovered()
