"""The resolved method spec as the OpenRLHF side receives it: one JSON file in the run directory.

The launcher resolves the method once (registry entry + the experiment's `method_overrides`),
checks that the engine can run it, and writes it to `<run>/openrlhf/method_spec.json`
atomically; the entry point's command line carries the file's path and the sha256 of the spec's
canonical JSON. The entry point (before Ray starts), the controller and every policy rank read
that file and check the digest, so each of them trains exactly the spec the launcher checked and
summary.json records (`method_sha256`). Nothing on the OpenRLHF side looks a method up by name or
applies overrides again, and no spec setting travels through an OpenRLHF flag to be compared
back: the flags OpenRLHF's own code needs are derived from the spec in `launcher.build_command`.

The digest is over `json.dumps(spec.to_dict(), sort_keys=True)`, the dict a run's
fingerprint.json holds under "method", so the two can be matched.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dynamo.io import write_text_atomic
from dynamo.spec import MethodSpec, apply_overrides

SPEC_FILE = "openrlhf/method_spec.json"  # inside the run directory


def canonical_json(spec: MethodSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)


def spec_digest(spec: MethodSpec) -> str:
    """sha256 (hex) of the spec's canonical JSON."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def write_spec(path: str | Path, spec: MethodSpec) -> str:
    """Write the spec atomically (indented, for reading); returns its digest."""
    write_text_atomic(path, json.dumps(spec.to_dict(), sort_keys=True, indent=2) + "\n")
    return spec_digest(spec)


def spec_from_dict(data: dict[str, Any]) -> MethodSpec:
    """A MethodSpec from its `to_dict()` form, every field checked as an override would be."""
    return apply_overrides(MethodSpec(name=str(data.get("name", ""))), data, where="method")


def read_spec(path: str | Path, digest: str) -> MethodSpec:
    """The spec in `path`; raises RuntimeError when it is missing, unreadable or not the one of `digest`."""
    try:
        spec = spec_from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise RuntimeError(f"cannot read the method spec {path}: {err} (the launcher writes it)") from err
    if spec_digest(spec) != digest:
        raise RuntimeError(
            f"the method spec {path} (sha256 {spec_digest(spec)[:12]}) is not the one this run was launched "
            f"with (sha256 {digest[:12]}): it was changed after the launch; relaunch with `dynamo train`"
        )
    return spec
