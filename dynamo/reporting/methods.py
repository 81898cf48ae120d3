"""`dynamo methods`: the registered methods and their full specs."""

from __future__ import annotations

import argparse
import json

from dynamo.methods import all_methods


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print every spec as JSON")
    p.add_argument(
        "--losses",
        action="store_true",
        help="list the registered policy losses (loss.policy_loss) and token mechanisms instead",
    )


def run(args: argparse.Namespace) -> int:
    if args.losses:
        return _list_losses()
    methods = all_methods()
    if args.json:
        print(json.dumps({name: spec.to_dict() for name, spec in sorted(methods.items())}, indent=1))
        return 0
    width = max(map(len, methods))
    for name, spec in sorted(methods.items()):
        print(f"{name:<{width}}  {spec.description}")
    return 0


def _list_losses() -> int:
    # Imported here: the method list above needs no torch.
    from dynamo.core.losses import policy_losses
    from dynamo.core.mechanisms import MECHANISMS

    print("policy losses (loss.policy_loss):")
    for name, fn in sorted(policy_losses().items()):
        print(f"  {name:<10}  {(fn.__doc__ or '').strip().splitlines()[0]}")
    print("token mechanisms, in the order they act (spec section):")
    for mechanism in MECHANISMS:
        print(f"  {mechanism.name:<17}  {mechanism.section}")
    return 0
