"""Resume safety: a changed setup never resumes an old checkpoint; damaged state is detected.

- fingerprint: both engines' checkpoint formats (local checkpoint/, OpenRLHF ckpt/) refuse a
  changed result-determining field, naming it, before any compute; --fresh retrains.
- damage: each checkpoint file and metrics.jsonl truncated; the resume falls back to the
  previous checkpoint and still reproduces the uninterrupted run, or refuses naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_trainer import RandomAnswerGenerator, assert_same_trajectory, make_cfg, problems

from dynamo import checkpoint, cli
from dynamo.engines import train as train_mod
from dynamo.engines.local import trainer as trainer_mod
from dynamo.engines.local.trainer import LocalTrainer
from dynamo.errors import UserError
from dynamo.methods import get_method
from dynamo.models.tiny import write_tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "tiny"
    write_tiny_model(out, seed=0, layers=1, hidden=32, heads=2)
    return str(out)


# -- fingerprint: local engine through `dynamo train` -----------------------------------------


def write_config(path: Path, pool: Path, **train) -> Path:
    data = {
        "seeds": [1],
        "methods": ["grpo"],
        "ablation_methods": [],
        "allocation_methods": [],  # n = 2 is too few for DynaMO's bounds: train grpo only
        "study_allocation": {"arms": ["grpo", "grpo-1.5x"], "positive_control": "grpo-1.5x"},
        "warmstart": {"enabled": False},
        "data": {"task": "prompts", "train_path": str(pool)},
        "eval": {"benchmarks": ["arith-easy=" + str(pool)]},
        "train": {
            "steps": 2,
            "prompts_per_step": 4,
            "rollouts_per_prompt": 2,
            "mini_batch_prompts": 2,
            "max_new_tokens": 4,
            "checkpoint_every": 1,
            **train,
        },
    }
    path.write_text(yaml.safe_dump(data))
    return path


def write_pool(path: Path) -> Path:
    rows = [{"id": f"p{i}", "problem": f"{i}+1", "answer": str(i + 1)} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_cli(config: Path, run_dir: Path, model: str, *extra: str) -> int:
    return cli.main(
        ["train", "--config", str(config), "--method", "grpo", "--seed", "1", "--out", str(run_dir)]
        + ["--base-model", model, "--no-progress", *extra]
    )


def test_local_run_refuses_a_changed_lr_and_retrains_with_fresh(tmp_path, tiny_model, capsys, monkeypatch):
    pool = write_pool(tmp_path / "pool.jsonl")
    run_dir = tmp_path / "run"
    assert train_cli(write_config(tmp_path / "a.yaml", pool, lr=1e-4), run_dir, tiny_model) == 0
    first = json.loads((run_dir / "summary.json").read_text())
    assert first["config"]["train"]["lr"] == 1e-4

    # Changed lr, same run directory: refused before any compute, the field named with both values.
    changed = write_config(tmp_path / "b.yaml", pool, lr=1e-3)
    computed = []
    monkeypatch.setattr(train_mod, "train_local", lambda *a, **k: computed.append(1) or 0)
    assert train_cli(changed, run_dir, tiny_model) == 1
    err = capsys.readouterr().err
    assert "train.lr (0.0001 -> 0.001)" in err and "--fresh" in err and "fresh_runs=true" in err
    assert "Traceback" not in err and computed == []
    assert json.loads((run_dir / "summary.json").read_text()) == first  # nothing touched

    # A changed model file (same config) is named too.
    monkeypatch.undo()
    config_a = tmp_path / "a.yaml"
    model_copy = tmp_path / "model_copy"
    import shutil

    shutil.copytree(tiny_model, model_copy)
    (model_copy / "config.json").write_text((model_copy / "config.json").read_text() + "\n")
    assert train_cli(config_a, run_dir, str(model_copy)) == 1
    assert "base_model.files.config.json.sha256" in capsys.readouterr().err

    # --fresh retrains from step 0 with the new lr.
    assert train_cli(changed, run_dir, tiny_model, "--fresh") == 0
    second = json.loads((run_dir / "summary.json").read_text())
    assert second["config"]["train"]["lr"] == 1e-3 and second["resumed_from_checkpoint"] is False
    assert json.loads((run_dir / "fingerprint.json").read_text())["train"]["lr"] == 1e-3
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]

    # The same config again resumes (nothing to redo), even with --fresh.
    assert train_cli(changed, run_dir, tiny_model, "--fresh") == 0
    assert json.loads((run_dir / "summary.json").read_text())["resumed_from_checkpoint"] is True


def test_changed_eval_or_resources_do_not_change_the_fingerprint(tiny_model, tmp_path):
    from dynamo.config import config_from_dict
    from dynamo.fingerprint import compute

    pool = write_pool(tmp_path / "pool.jsonl")
    base = {"data": {"task": "prompts", "train_path": str(pool)}, "eval": {"benchmarks": ["aime24"]}}
    a = compute(config_from_dict(base), "dynamo", 1, tiny_model, "local")
    b = compute(
        config_from_dict({**base, "eval": {"benchmarks": ["math500"]}, "resources": {"train": {"threads": 2}}}),
        "dynamo",
        1,
        tiny_model,
        "local",
    )
    assert a == b
    c = compute(
        config_from_dict({**base, "method_overrides": {"dynamo": {"loss": {"eps_high": 0.28}}}}),
        "dynamo",
        1,
        tiny_model,
        "local",
    )
    from dynamo.fingerprint import differences

    assert [d[0] for d in differences(a, c)] == ["method.loss.eps_high"]
    pool.write_text(pool.read_text() + json.dumps({"id": "x", "problem": "1+1", "answer": "2"}) + "\n")
    d = compute(config_from_dict(base), "dynamo", 1, tiny_model, "local")
    assert [k for k, *_ in differences(a, d)] == ["task_data.sha256"]


# -- fingerprint: OpenRLHF checkpoint format (ckpt/_actor/global_stepN), launch stubbed -----


def test_openrlhf_run_refuses_a_changed_field_and_clears_ckpt_with_fresh(tmp_path, capsys, monkeypatch):
    from dynamo.engines.openrlhf import launcher

    launched = []
    monkeypatch.setattr(launcher, "launch", lambda cfg, *a, **k: launched.append(cfg.train.lr) or 0)
    configs = [ROOT / "config" / "config.yaml", ROOT / "config" / "experiments" / "qwen2.5-math-7b.yaml"]
    changed = tmp_path / "lr.yaml"
    changed.write_text("train: {lr: 2.0e-6}\n")
    run_dir = tmp_path / "run"

    def call(*files, fresh=False):
        argv = ["train", "--config", *map(str, files), "--method", "dynamo", "--seed", "1", "--out", str(run_dir)]
        return cli.main(argv + (["--fresh"] if fresh else []))

    assert call(*configs) == 0 and launched == [1e-6]
    # What OpenRLHF leaves behind: DeepSpeed checkpoint folders under <run>/ckpt.
    step_dir = run_dir / "ckpt" / "_actor" / "global_step10"
    step_dir.mkdir(parents=True)
    (step_dir / "mp_rank_00_model_states.pt").write_bytes(b"weights")
    (run_dir / "ckpt" / "_actor" / "latest").write_text("global_step10")

    assert call(*configs, changed) == 1
    err = capsys.readouterr().err
    assert "train.lr (1e-06 -> 2e-06)" in err and "--fresh" in err
    assert launched == [1e-6] and step_dir.exists()  # refused before launching anything

    assert call(*configs) == 0 and launched == [1e-6, 1e-6]  # the same setup resumes
    assert call(*configs, changed, fresh=True) == 0
    assert launched == [1e-6, 1e-6, 2e-6] and not (run_dir / "ckpt").exists()


def test_openrlhf_finished_ckpt_is_verified_by_size_before_launch(tmp_path, capsys, monkeypatch):
    from dynamo.engines.openrlhf import launcher

    run_dir = tmp_path / "run"
    shard = run_dir / "ckpt" / "_actor" / "global_step10" / "mp_rank_00_model_states.pt"

    def fake_launch(cfg, *a, **k):  # what a finished OpenRLHF run leaves behind
        shard.parent.mkdir(parents=True, exist_ok=True)
        shard.write_bytes(b"weights" * 100)
        launched.append(1)
        return 0

    launched: list[int] = []
    monkeypatch.setattr(launcher, "launch", fake_launch)
    configs = [ROOT / "config" / "config.yaml", ROOT / "config" / "experiments" / "qwen2.5-math-7b.yaml"]
    argv = ["train", "--config", *map(str, configs), "--method", "dynamo", "--seed", "1", "--out", str(run_dir)]
    assert cli.main(argv) == 0 and (run_dir / "ckpt" / "manifest.json").exists()
    shard.write_bytes(b"weights")  # truncated
    assert cli.main(argv) == 1 and launched == [1]
    err = capsys.readouterr().err
    assert "mp_rank_00_model_states.pt is damaged (7 bytes, expected 700)" in err and "--fresh" in err
    assert cli.main([*argv, "--fresh"]) == 0 and launched == [1, 1]
    assert (run_dir / "fingerprint.json").exists()


# -- damaged checkpoints and metrics (local engine) -------------------------------------------


def run_trainer(run_dir: Path, tiny_model: str, *, crash_at: int | None = None, fresh: bool = False):
    """4 steps, a checkpoint every step; crash_at=4 kills the run during step 4 (checkpoints 3 and 2 kept)."""
    cfg = make_cfg(steps=4, checkpoint_every=1)
    trainer = LocalTrainer(cfg, get_method("dynamo"), 1, run_dir, tiny_model, problems(), show_progress=False)
    trainer.fresh_if_damaged = fresh
    original = LocalTrainer.update

    def update(self, batch, timer):
        if crash_at is not None and self.step == crash_at - 1:
            raise KeyboardInterrupt("simulated kill")
        return original(self, batch, timer)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_mod, "hf_generate", RandomAnswerGenerator())
        mp.setattr(LocalTrainer, "update", update)
        if crash_at is not None:
            with pytest.raises(KeyboardInterrupt):
                trainer.train()
            return None
        result = trainer.train()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
    return (rows, trainer.model.state_dict()), result


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model):
    return run_trainer(tmp_path_factory.mktemp("full") / "run", tiny_model)[0]


def killed_run(tmp_path, tiny_model) -> Path:
    run_dir = tmp_path / "run"
    run_trainer(run_dir, tiny_model, crash_at=4)
    assert checkpoint.verify(run_dir / "checkpoint") == (3, None)
    assert checkpoint.verify(run_dir / "checkpoint.prev") == (2, None)
    return run_dir


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("name", ["model/model.safetensors", "trainer_state.pt", "state.json"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    tmp_path, tiny_model, uninterrupted, name, capfd
):
    run_dir = killed_run(tmp_path, tiny_model)
    truncate(run_dir / "checkpoint" / name)
    resumed, result = run_trainer(run_dir, tiny_model)
    err = capfd.readouterr().err
    assert f"checkpoint/{name} is damaged" in err and "resuming from" in err and "checkpoint.prev (step 2)" in err
    assert result["resumed_from"] == "checkpoint.prev (step 2)"
    assert_same_trajectory(uninterrupted, resumed)


def test_both_checkpoints_damaged_refuses_naming_the_file_then_fresh_retrains(tmp_path, tiny_model, uninterrupted):
    run_dir = killed_run(tmp_path, tiny_model)
    truncate(run_dir / "checkpoint" / "trainer_state.pt")
    truncate(run_dir / "checkpoint.prev" / "model" / "model.safetensors")
    with pytest.raises(UserError) as err:
        run_trainer(run_dir, tiny_model)
    message = str(err.value)
    assert "checkpoint/trainer_state.pt is damaged" in message
    assert "checkpoint.prev/model/model.safetensors is damaged" in message and "--fresh" in message
    resumed, result = run_trainer(run_dir, tiny_model, fresh=True)
    assert result["resumed_from_checkpoint"] is False
    assert_same_trajectory(uninterrupted, resumed)


def test_metrics_cut_mid_line_is_repaired_and_the_run_resumes_exactly(tmp_path, tiny_model, uninterrupted):
    run_dir = killed_run(tmp_path, tiny_model)
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    metrics.write_text(lines[0] + lines[1] + lines[2][:10])  # a kill while writing step 3's line
    resumed, result = run_trainer(run_dir, tiny_model)
    assert result["resumed_from"] == "checkpoint.prev (step 2)"  # the step-3 checkpoint is ahead of the log
    assert_same_trajectory(uninterrupted, resumed)


def test_metrics_cut_before_every_checkpoint_refuses_naming_the_file(tmp_path, tiny_model):
    run_dir = killed_run(tmp_path, tiny_model)
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines(keepends=True)[0])
    with pytest.raises(UserError, match=r"metrics\.jsonl, which is complete only to step 1.*--fresh"):
        run_trainer(run_dir, tiny_model)


def test_manifest_detects_a_same_size_change(tmp_path):
    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    (ckpt / "state.json").write_text('{"step": 1}')
    checkpoint.write_manifest(ckpt, 1)
    assert checkpoint.verify(ckpt) == (1, None)
    (ckpt / "state.json").write_text('{"step": 2}')
    step, problem = checkpoint.verify(ckpt)
    assert step is None and "state.json is damaged (its sha256 differs" in problem


def test_readers_name_a_damaged_metrics_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')
    with pytest.raises(UserError, match=r"metrics\.jsonl: line 3 is damaged"):
        checkpoint.require_complete_metrics(path, 3)
    path.write_text('{"step": 1}\n{"step": 2}\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl: damaged or cut short: 1 of 3 steps missing"):
        checkpoint.require_complete_metrics(path, 3)
    assert len(checkpoint.require_complete_metrics(path, 2)) == 2


def test_figures_name_a_damaged_metrics_file(tmp_path, capsys):
    run = tmp_path / "runs" / "grpo" / "seed1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"steps": 3}))
    (run / "metrics.jsonl").write_text(
        '{"step": 1, "reward/accuracy": 0.5}\n{"step": 2, "reward/accuracy": 0.5}\n'
    )
    args = ["figures", "--runs-root", str(tmp_path / "runs"), "--methods", "grpo", "--seeds", "1"]
    assert cli.main([*args, "--out", str(tmp_path / "fig")]) == 1
    err = capsys.readouterr().err
    assert "metrics.jsonl: damaged or cut short" in err and "Traceback" not in err


def test_openrlhf_disk_bookkeeping_does_not_change_the_fingerprint(monkeypatch):
    """Keeping one checkpoint or pruning after evaluation mid-sweep must not stop runs from resuming."""
    import dataclasses

    from dynamo import fingerprint
    from dynamo.config import load_config

    monkeypatch.setattr(fingerprint, "model_identity", lambda path: {"hub_id": path})
    monkeypatch.setattr(fingerprint, "data_identity", lambda path: {"path": path})
    cfg = load_config("config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml")
    fp = lambda o: fingerprint.compute(dataclasses.replace(cfg, openrlhf=o), "dynamo", 1, "m", "openrlhf")  # noqa: E731
    base = fp(cfg.openrlhf)
    assert fp({**cfg.openrlhf, "max_ckpt_num": 1, "delete_checkpoints_after_eval": True}) == base
    assert fp({**cfg.openrlhf, "shuffle_mini_batches": True}) != base  # changes what is trained
