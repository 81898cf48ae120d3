"""Entry point: `python -m dynamo.engines.openrlhf.entry --dynamo.spec FILE [--dynamo.*] <OpenRLHF flags>`.

Same flags as `python -m openrlhf.cli.train_ppo_ray`, plus DynaMO's own (`--dynamo.spec FILE` and
`--dynamo.spec_sha256 HEX`: the resolved method spec the launcher wrote and its digest,
spec_file.py; `--dynamo.max_steps N`, `--dynamo.run_dir DIR`, `--dynamo.ray_address ADDR`,
`--dynamo.keep_tail 0|1`, `--dynamo.shuffle_mini_batches 0|1`), which are stripped before
OpenRLHF's argparse sees the rest. In order: read the spec file and check its digest, check the
version guard, reject async mode, check the checkpoint directory (resume.py: a damaged one is
repaired from the previous good checkpoint, or refused), start a private Ray instance -- or join
ADDR -- with a runtime_env that ships the project to every node and carries the DynaMO options,
install the patched actor classes, then run the stock CLI module as __main__ with runpy.
(`ray.init(address=None)` would join any Ray cluster already running on the node, e.g. another
user's job on a shared node; `address="local"` always starts a new one.) `launcher.build_command`
writes this command line for a config.
"""

from __future__ import annotations

import argparse
import runpy
import sys

from dynamo.engines.openrlhf.config import OPTIONS_ENV, DynamoOptions

OWN_PREFIX = "--dynamo."


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(DynaMO's flags with their values, everything else) -- each DynaMO flag takes one value."""
    own, rest = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(OWN_PREFIX):
            if "=" in arg:
                own.append(arg)
            else:
                own.extend(argv[i : i + 2])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return own, rest


def parse_own(own: list[str]) -> tuple[DynamoOptions, str]:
    p = argparse.ArgumentParser(prog="dynamo.engines.openrlhf.entry", description=__doc__.splitlines()[0])
    p.add_argument("--dynamo.spec", dest="spec_file", required=True, help="the resolved method spec (JSON)")
    p.add_argument("--dynamo.spec_sha256", dest="spec_sha256", required=True, help="its digest (spec_file.py)")
    p.add_argument("--dynamo.max_steps", dest="max_steps", type=int, default=0, help="RL steps (0 = all episodes)")
    p.add_argument("--dynamo.run_dir", dest="run_dir", default="", help="absolute run directory for metrics")
    p.add_argument("--dynamo.ray_address", dest="ray_address", default="", help="Ray cluster to join")
    p.add_argument(
        "--dynamo.keep_tail", dest="keep_tail", type=int, choices=(0, 1), default=0, help="keep tail step"
    )
    p.add_argument(
        "--dynamo.shuffle_mini_batches",
        dest="shuffle",
        type=int,
        choices=(0, 1),
        default=0,
        help="shuffle the rollouts before dynamic micro-batching",
    )
    a = p.parse_args(own)
    options = DynamoOptions(
        spec_file=a.spec_file,
        spec_sha256=a.spec_sha256,
        max_steps=a.max_steps,
        run_dir=a.run_dir,
        keep_tail=bool(a.keep_tail),
        shuffle_mini_batches=bool(a.shuffle),
    )
    return options, a.ray_address


def ray_address(address: str) -> str:
    """The address for ray.init: the given cluster, else "local" (a private instance, never a stray one)."""
    return address or "local"


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value of `flag VALUE` or `flag=VALUE` in an OpenRLHF argument list."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> None:
    own, rest = split_argv(list(sys.argv[1:] if argv is None else argv))
    options, address = parse_own(own)
    options.method_spec()  # a missing or changed spec file fails here, before Ray starts
    if "--train.async_enable" in rest:
        raise SystemExit("DynaMO's OpenRLHF engine rejects --train.async_enable (sync mode only; see trainer.py)")

    from dynamo.engines.openrlhf import guards

    guards.verify_all()
    ckpt = flag_value(rest, "--ckpt.path")
    if ckpt and "--ckpt.load_enable" in rest:
        from dynamo.engines.openrlhf.resume import prepare_resume

        prepare_resume(ckpt)
    import ray

    from dynamo.engines.openrlhf.install import install, runtime_env

    ray.init(address=ray_address(address), runtime_env=runtime_env(options.to_json(), OPTIONS_ENV))
    install()
    sys.argv = ["openrlhf.cli.train_ppo_ray", *rest]
    runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
