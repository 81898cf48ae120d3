"""The command the launcher emits is parsed by OpenRLHF 0.11.2's own CLI (openrlhf/cli/train_ppo_ray.py).

That module builds its argparse parser, hierarchizes the namespace and validates it inside
`if __name__ == "__main__":`, then calls `train(args)`; there is no parser factory to import.
The faithful route used here is the one `dynamo.engines.openrlhf.entry` takes on the cluster:
split off DynaMO's own `--dynamo.*` flags (`entry.split_argv`), set sys.argv to the rest and run
the module as __main__ with runpy. Everything up to `train(args)` is stock code (argument
definitions, types, choices, `hierarchize`, every validation assert); the test stops the run at
the first statement of `train` (`ray.is_initialized()`) and takes the parsed namespace from that
frame. An unknown flag or a bad value fails in argparse (SystemExit), a failed stock check in
its assert. The patched classes' own configure checks then run on that namespace too.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import openrlhf_stubs
import pytest

openrlhf_stubs.install()
try:
    import openrlhf  # noqa: F401
    import ray
except ImportError as err:  # pragma: no cover - CI installs it
    pytest.skip(f"openrlhf 0.11.2 is not importable ({err})", allow_module_level=True)

from test_openrlhf import ns  # noqa: E402

from dynamo.config import load_config  # noqa: E402
from dynamo.core.rules import make_rule  # noqa: E402
from dynamo.engines.openrlhf import launcher  # noqa: E402
from dynamo.engines.openrlhf.entry import parse_own, split_argv  # noqa: E402
from dynamo.engines.openrlhf.spec_file import spec_digest  # noqa: E402
from dynamo.methods import all_methods  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class ReachedTrain(Exception):
    def __init__(self, args):
        super().__init__("reached train(args)")
        self.namespace = args


def parse_with_openrlhf(cmd: list[str], monkeypatch):
    """OpenRLHF's namespace for the launcher's command line, as train(args) would receive it."""
    own, rest = split_argv(cmd[3:])  # cmd = [python, -m, dynamo.engines.openrlhf.entry, ...]

    def stop(*a, **k):
        raise ReachedTrain(sys._getframe(1).f_locals["args"])  # the caller is train(args)

    monkeypatch.setattr(ray, "is_initialized", stop)
    monkeypatch.setattr(sys, "argv", ["openrlhf.cli.train_ppo_ray", *rest])
    with pytest.raises(ReachedTrain) as reached:
        runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=True)
    return parse_own(own)[0], reached.value.namespace


@pytest.mark.parametrize("experiment", ["qwen2.5-math-7b", "qwen2.5-math-1.5b"])
@pytest.mark.parametrize("method", sorted(all_methods()))
def test_openrlhf_parses_the_launch_command(experiment, method, tmp_path, monkeypatch):
    from dynamo.engines.openrlhf.actor import DynamoActorTrainer
    from dynamo.engines.openrlhf.experience import DynamoExperienceMaker

    cfg = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "experiments" / f"{experiment}.yaml")
    cmd = launcher.build_command(cfg, method, 1, str(tmp_path / "run"))
    options, args = parse_with_openrlhf(cmd, monkeypatch)
    spec, t = cfg.method(method), cfg.train
    assert options.spec_sha256 == spec_digest(spec) and options.max_steps == t.steps

    n = spec.allocation.per_prompt(t.rollouts_per_prompt)  # n * budget_scale (grpo-1.5x: 1.5 n)
    assert args.rollout.batch_size == t.prompts_per_step and args.rollout.n_samples_per_prompt == n
    # mini-batches of whole groups' trained samples (PODS trains on m < n of each group)
    assert args.train.batch_size == t.mini_batch_prompts * make_rule(spec.allocation).trained_per_prompt(n)
    assert args.rollout.max_new_tokens == t.max_new_tokens and args.train.seed == 1
    assert args.algo.advantage.estimator == launcher.STOCK_ESTIMATOR
    assert (args.algo.kl.init_coef, args.algo.kl.use_loss) == (spec.loss.kl_coef, spec.loss.kl_coef > 0)
    assert args.algo.dynamic_filtering_enable == (spec.group_filter.kind == "dynamic_sampling")
    assert args.reward.remote_url == [str(launcher.REWARD_FILE)]
    assert args.train.async_enable is False and args.actor.entropy_coef is None

    # The patched classes accept what OpenRLHF parsed, with the spec as the only source of the loss.
    trainer = object.__new__(DynamoActorTrainer)
    trainer.args = args
    monkeypatch.setattr("dynamo.engines.openrlhf.actor.install_windowed_global_norm", lambda: None)
    trainer.configure(spec, seed=args.train.seed)
    maker = object.__new__(DynamoExperienceMaker)
    maker.args, maker.strategy = args, ns(args=args)
    maker.configure(spec, make_rule(spec.allocation))
