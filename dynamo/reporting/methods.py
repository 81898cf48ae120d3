"""`dynamo methods`: the registered methods and their full specs."""

from __future__ import annotations

import argparse
import json

from dynamo.methods import all_methods


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print every spec as JSON")


def run(args: argparse.Namespace) -> int:
    methods = all_methods()
    if args.json:
        print(json.dumps({name: spec.to_dict() for name, spec in sorted(methods.items())}, indent=1))
        return 0
    width = max(map(len, methods))
    for name, spec in sorted(methods.items()):
        print(f"{name:<{width}}  {spec.description}")
    return 0
