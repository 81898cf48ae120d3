"""The one typed-validation layer: pydantic over the project's frozen dataclasses.

Configs (`dynamo.config`), method specs (`dynamo.spec`) and the OpenRLHF section stay plain frozen
standard-library dataclasses (constructed and `dataclasses.replace`d freely, no validation cost at run
time). Each field carries its bounds and help text in its `dataclasses.field(metadata=...)`, under
pydantic's `Field` names (`ge`, `gt`, `le`, `lt`, `pattern`, `min_length`, `description`), and each
class is decorated with `@with_config(FIELDS)`. `checked_build` validates a YAML mapping against a
class with `pydantic.TypeAdapter`, and `json_schema` writes the JSON schema Snakemake applies; so
a bound is written once, next to its field.

Departures from pydantic's defaults, and why:
- Values are validated as JSON in strict mode: the types JSON/YAML can spell are taken exactly (the
  string "0.5" is no number, 1 is no bool, 3.0 is no int), as the generated JSON schema would, and
  nested mappings still build nested dataclasses (python-mode strict would demand instances).
- NaN and infinities are refused everywhere (`allow_inf_nan=False`).
- pydantic's error list becomes one line per problem naming the dotted field path
  (`config.train.lr must be a finite number, got nan`), in field order, so the same input always
  gives the same lines.
Cross-field rules stay plain code: a spec's `__post_init__` (run by pydantic too, reported as
`<field path>: <message>`) or `dynamo.validation.semantic_problems` for the whole config.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

# The config every validated dataclass carries (`@with_config(FIELDS)`): unknown keys are errors, no NaN.
FIELDS = ConfigDict(extra="forbid", allow_inf_nan=False)


class ConfigError(ValueError):
    """A config with problems; `problems` has one line each, the message joins them."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def documented(default: Any, help: str, **bounds: Any) -> Any:
    """A dataclass field with its help text and bounds (pydantic `Field` names: ge=1, le=10, pattern=...)."""
    metadata = {"description": help, **bounds}
    if isinstance(default, (list, dict)):  # a fresh copy per instance; the schema still shows the default
        metadata["json_schema_extra"] = {"default": default}
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@functools.cache
def adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON schema of `cls` (pydantic's, without the generated per-field titles)."""
    return _drop_titles(adapter(cls).json_schema())


def checked_build(cls: type, data: Any, where: str = "") -> tuple[Any, list[str]]:
    """(instance of `cls` built from `data`, one line per problem). With problems, the instance is built
    from the valid part of `data` (invalid fields at their defaults) so that later cross-field checks can
    still run, or is None when even that fails."""
    try:
        return _validate(cls, data), []
    except ValidationError as err:
        errors = err.errors(include_url=False)
    problems = [problem_line(cls, e, where) for e in errors]
    try:
        partial = _validate(cls, _without(data, [e["loc"] for e in errors]))
    except (ValidationError, TypeError, KeyError, AttributeError):
        partial = None
    return partial, problems


def _validate(cls: type, data: Any) -> Any:
    # default=str: a YAML value JSON cannot hold (a date) arrives as text and fails any number field.
    return adapter(cls).validate_json(json.dumps(data, default=str), strict=True)


def _without(data: Any, locs: list[tuple]) -> Any:
    """`data` with the value at each error location removed (so its default applies); a problem inside a
    list drops the whole list, a problem of a whole sub-mapping (its cross-field check) drops it."""
    data = json.loads(json.dumps(data, default=str))
    for loc in locs:
        keys = list(loc[: next((i for i, k in enumerate(loc) if isinstance(k, int)), len(loc))])
        if not keys:
            raise KeyError("the whole object is invalid")
        node = data
        for key in keys[:-1]:
            node = node[key]
        node.pop(keys[-1], None)
    return data


# ---------------------------------------------------------------------------------------
# pydantic's errors as one line each

_TYPE_NAMES = {"int": "int", "float": "float", "bool": "bool", "string": "str"}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
_MAPPINGS = ("dict_type", "dataclass_type", "dataclass_exact_type", "model_type", "model_attributes_type")


def field_path(where: str, loc: tuple) -> str:
    """`where` + the error location as a dotted path: ("train", "lr") -> config.train.lr, seeds[0]."""
    out = where
    for key in loc:
        if isinstance(key, int):
            out += f"[{key}]"
        elif not out:
            out = str(key)
        else:
            out += f" {key}" if out.endswith(":") else f".{key}"
    return out


def problem_line(cls: type, error: Any, where: str) -> str:
    """One pydantic error as one line naming the field."""
    kind, loc, ctx = error["type"], tuple(error["loc"]), error.get("ctx") or {}
    path, got = field_path(where, loc), _shown(error.get("input"))
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        known = [f.name for f in dataclasses.fields(_class_at(cls, loc[:-1]))]
        head, path = (f"{where} ", field_path("", loc)) if where.endswith(":") else ("", path)
        return f"{head}unknown field {path}; known: {', '.join(known)}"
    if kind == "missing":
        return f"{path} is required"
    if kind in _BOUNDS:
        (bound,) = ctx.values()
        return f"{path} must be {_BOUNDS[kind]} {_number(bound)}, got {got}"
    if kind == "finite_number":
        return f"{path} must be a finite number, got {got}"
    if kind == "literal_error":
        return f"{path} must be one of {ctx['expected']}, got {got}"
    if kind == "string_pattern_mismatch":
        return f"{path} must match {ctx['pattern']}, got {got}"
    if kind.endswith(("_type", "_parsing", "_from_float")) and kind.split("_")[0] in _TYPE_NAMES:
        return f"{path} must be of type {_TYPE_NAMES[kind.split('_')[0]]}, got {got}"
    if kind in _MAPPINGS:
        return f"{path} must be a mapping, got {got}"
    if kind in ("list_type", "tuple_type"):
        return f"{path} must be a list, got {got}"
    if kind in ("too_short", "too_long"):
        limit = ("at least", ctx["min_length"]) if kind == "too_short" else ("at most", ctx["max_length"])
        return f"{path} must have {limit[0]} {limit[1]} items, got {got}"
    if kind in ("value_error", "assertion_error"):
        if not path:
            return str(ctx["error"])
        return f"{path} {ctx['error']}" if path.endswith(":") else f"{path}: {ctx['error']}"
    return f"{path}: {error['msg']}, got {got}"


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (str, bool, int, float)):
        return repr(value)
    return json.dumps(value, default=str)[:200]


def _number(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _class_at(cls: type, loc: tuple) -> type:
    """The dataclass at `loc` inside `cls` (for listing the known fields of an unknown one)."""
    for key in loc:
        hint = typing.get_type_hints(cls)[key]
        cls = next(a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a))
    return cls


def _drop_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_titles(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_drop_titles(v) for v in node]
    return node
