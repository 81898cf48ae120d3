"""One writer per run directory, and failed writes that say what failed and where.

- lock: a second `dynamo train` (or `dynamo evaluate`) on a directory another process holds
  stops at once, non-zero, with one line naming the holder; the first run's files are untouched
  and it resumes; a dead holder (SIGKILL) does not block.
- disk full: during a checkpoint, a metrics.jsonl line, TensorBoard's writer thread and an
  evaluation's output, the command ends with one line naming the path and "no space left", no
  traceback and no temporary file; the rerun gives the same metrics, weights and samples as a run
  that never failed. The fault is injected where the OS error would come from (a real /dev/full
  where the writer can be pointed at it).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_resume_safety import train_cli, write_config, write_pool

from dynamo import cli, io
from dynamo.engines.local import trainer as trainer_mod
from dynamo.errors import WriteError
from dynamo.models.tiny import write_tiny_model
from dynamo.runlock import LOCK_FILE

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
NO_SPACE = "no space left on device while writing"
# The kernel's always-full device, where it exists (checked to be the device, not a stray file).
FULL_DEVICE = os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)
needs_full_device = pytest.mark.skipif(not FULL_DEVICE, reason="no /dev/full device here")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "tiny"
    write_tiny_model(out, seed=0, layers=1, hidden=32, heads=2)
    return str(out)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("setup")
    pool = write_pool(d / "pool.jsonl")
    return write_config(d / "config.yaml", pool), pool


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run but the lock file (which records its holder)."""
    files = (p for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != LOCK_FILE)
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in files}


def hold_lock(directory: Path) -> subprocess.Popen:
    """Another process holding `directory`'s lock (as a running `dynamo train` does), until killed."""
    code = (
        "import time\nfrom dynamo.runlock import hold\n"
        f"with hold({str(directory)!r}, what='dynamo train'):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def metrics_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def result_of(run_dir: Path) -> tuple[list[dict], bytes]:
    return metrics_rows(run_dir), (run_dir / "final" / "model.safetensors").read_bytes()


# -- one writer per run directory -------------------------------------------------------------


def test_second_train_on_a_held_run_dir_stops_at_once_naming_the_holder(tmp_path, tiny_model, setup):
    config, _ = setup
    run_dir = tmp_path / "run"
    assert train_cli(config, run_dir, tiny_model) == 0
    before = snapshot(run_dir)
    holder = hold_lock(run_dir)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "dynamo.cli", "train", "--config", str(config), "--method", "grpo"]
            + ["--seed", "1", "--out", str(run_dir), "--base-model", tiny_model, "--no-progress"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"{run_dir} is in use by another dynamo train (pid {holder.pid} on " in lines[0]
        assert "Traceback" not in second.stderr
        assert snapshot(run_dir) == before  # nothing written, not even fingerprint.json
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing anything: the kernel dropped its lock, so the rerun goes on
    # and resumes the first run's checkpoint.
    assert train_cli(config, run_dir, tiny_model) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from_checkpoint"] is True
    assert metrics_rows(run_dir) == [
        {k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
        for line in before["metrics.jsonl"].decode().splitlines()
    ]
    assert (run_dir / "final" / "model.safetensors").read_bytes() == before["final/model.safetensors"]


def test_second_evaluate_on_a_held_out_dir_is_refused(tmp_path, tiny_model, setup, capsys):
    _, pool = setup
    out = tmp_path / "eval"
    holder = hold_lock(out)
    try:
        argv = [
            "evaluate",
            "--model",
            tiny_model,
            "--benchmarks",
            f"b={pool}",
            "--samples",
            "1",
            "--out",
            str(out),
        ]
        assert cli.main(argv) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"in use by another dynamo train (pid {holder.pid} " in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


def test_seed_out_of_range_is_refused_before_anything_is_written(tmp_path, tiny_model, setup, capsys):
    config, pool = setup
    run_dir = tmp_path / "run"
    argv = ["train", "--config", str(config), "--method", "grpo", "--seed", "-1", "--out", str(run_dir)]
    assert cli.main([*argv, "--base-model", tiny_model]) == 1
    assert "--seed -1: a seed must be an integer in [0, 4294967295]" in capsys.readouterr().err
    assert not run_dir.exists()
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", tiny_model, "--benchmarks", f"b={pool}", "--seed", "-1", "--out", str(out)]
    assert cli.main(argv) == 1
    assert "--seed -1: a seed must be" in capsys.readouterr().err and not out.exists()


# -- failed writes ----------------------------------------------------------------------------


@needs_full_device
def test_atomic_write_on_a_full_device_names_the_file(tmp_path, monkeypatch):
    # The kernel's ENOSPC, for real: the writer's temporary file is /dev/full.
    monkeypatch.setattr(io, "_open_tmp", lambda tmp: open("/dev/full", "w"))
    target = tmp_path / "scores.json"
    with pytest.raises(WriteError) as err:
        io.write_text_atomic(target, "x" * 100_000)
    assert str(err.value) == f"{NO_SPACE} {target}" and err.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_failed_atomic_write_removes_its_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "scores.json"
    target.write_text("old\n")

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", fsync)
    with pytest.raises(WriteError, match=f"^{NO_SPACE} {target}$"):
        io.write_text_atomic(target, "new\n")
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"] and target.read_text() == "old\n"
    monkeypatch.setattr(io.os, "fsync", lambda fd: (_ for _ in ()).throw(PermissionError(errno.EACCES, "x")))
    with pytest.raises(WriteError, match=f"^permission denied while writing {target}$"):
        io.write_text_atomic(target, "new\n")


def test_wrapped_os_errors_of_safetensors_and_torch_are_named(tmp_path):
    """safetensors and torch wrap the OS error in their own types: the errno is still found."""
    import torch
    from safetensors.torch import save_file

    from dynamo.errors import writing

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(WriteError, match=f"^not a directory while writing {not_a_dir}/model.safetensors$"):
        with writing(not_a_dir / "model.safetensors"):  # a real SafetensorError (os error 20)
            save_file({"w": torch.zeros(2)}, str(not_a_dir / "model.safetensors"))
    if FULL_DEVICE:  # torch.save into an open file on a full device (how the trainer saves its state)
        with pytest.raises(WriteError, match=f"^{NO_SPACE} {tmp_path}/state.pt$"):
            with writing(tmp_path / "state.pt"), open("/dev/full", "wb") as fh:
                torch.save({"w": torch.zeros(100_000)}, fh)
    with pytest.raises(KeyError):  # anything else is not a write failure and keeps its traceback
        with writing(tmp_path / "x"):
            raise KeyError("a bug")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model, setup):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    assert train_cli(setup[0], run_dir, tiny_model) == 0
    return result_of(run_dir)


class FullAfter:
    """A file whose writes fail with ENOSPC from the `after`-th call on (what a full disk does)."""

    def __init__(self, fh, after: int):
        self.fh, self.after = fh, after

    def write(self, data):
        self.after -= 1
        if self.after < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def fail_checkpoint(monkeypatch, run_dir: Path) -> str:
    """torch.save of step 2's trainer_state.pt hits a full disk part-way (step 1's checkpoint is kept)."""
    real_open = open

    def fake_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        if Path(path).name == "trainer_state.pt" and (run_dir / "checkpoint").is_dir():
            return FullAfter(fh, 3)
        return fh

    monkeypatch.setattr(trainer_mod, "open", fake_open, raising=False)
    return f"{run_dir}/checkpoint.tmp/trainer_state.pt"


def fail_metrics(monkeypatch, run_dir: Path) -> str:
    """Step 2's metrics.jsonl line hits a full disk."""
    real_open = open

    def fake_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        return FullAfter(fh, 1) if Path(path).name == "metrics.jsonl" and mode == "a" else fh

    monkeypatch.setattr(trainer_mod, "open", fake_open, raising=False)
    return f"{run_dir}/metrics.jsonl"


def fail_tensorboard(monkeypatch, run_dir: Path) -> str:
    """TensorBoard's writer thread hits a full disk (its own thread: the error would be its traceback)."""
    from tensorboard.summary.writer import record_writer

    calls = []

    def write(self, data):
        calls.append(1)
        if len(calls) > 40:  # past step 1's scalars
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    real_write = record_writer.RecordWriter.write
    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    return f"{run_dir}/tb"


@pytest.mark.parametrize("fault", [fail_checkpoint, fail_metrics, fail_tensorboard], ids=lambda f: f.__name__)
def test_disk_full_during_training_is_one_line_and_the_rerun_matches(
    tmp_path, tiny_model, setup, reference, fault, capfd
):
    run_dir = tmp_path / "run"
    thread_errors = []  # what a thread's uncaught error would print as a traceback (pytest hides those)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(threading, "excepthook", thread_errors.append)
        path = fault(mp, run_dir)
        assert train_cli(setup[0], run_dir, tiny_model) == 1
        time.sleep(0.2)  # a background thread still running would report by now
    err = capfd.readouterr().err
    assert "Traceback" not in err and thread_errors == [], (err, thread_errors)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [f"dynamo train: error: {NO_SPACE} {path} (--debug shows the traceback)"], err
    assert not (run_dir / "checkpoint.tmp").exists()
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name]
    # Space freed: the same command resumes and ends where a run that never failed ends.
    assert train_cli(setup[0], run_dir, tiny_model) == 0
    assert result_of(run_dir) == reference


@needs_full_device
def test_disk_full_during_evaluation_is_one_line_and_the_rerun_matches(tmp_path, tiny_model, setup, capfd):
    _, pool = setup

    def evaluate(out: Path) -> int:
        args = ["--samples", "2", "--limit", "2", "--out", str(out), "--grading-workers", "1"]
        return cli.main(["evaluate", "--model", tiny_model, "--benchmarks", f"b={pool}", *args])

    assert evaluate(tmp_path / "clean") == 0
    real_open_tmp = io._open_tmp
    with pytest.MonkeyPatch.context() as mp:  # samples.jsonl's writes go to a full device
        mp.setattr(
            io, "_open_tmp", lambda tmp: open("/dev/full", "w") if "samples" in tmp.name else real_open_tmp(tmp)
        )
        capfd.readouterr()
        assert evaluate(tmp_path / "out") == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"dynamo evaluate: error: {NO_SPACE} {tmp_path}/out/b/samples.jsonl (--debug shows the traceback)"
    )
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == [LOCK_FILE, "b"]
    assert evaluate(tmp_path / "out") == 0
    clean, again = tmp_path / "clean" / "b", tmp_path / "out" / "b"
    assert (again / "samples.jsonl").read_bytes() == (clean / "samples.jsonl").read_bytes()
    scores = [json.loads((d / "scores.json").read_text()) for d in (clean, again)]
    assert [{k: v for k, v in s.items() if k != "seconds"} for s in scores][0] == {
        k: v for k, v in scores[1].items() if k != "seconds"
    }


@pytest.mark.parametrize("damage", ["config_wrong_type", "truncated_weights"])
def test_a_damaged_model_file_is_named_at_load(tmp_path, tiny_model, damage):
    import shutil

    from dynamo.errors import UserError
    from dynamo.models import load_model_and_tokenizer

    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    if damage == "config_wrong_type":
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**config, "hidden_size": "32"}))
        named = model / "config.json"
    else:
        named = model / "model.safetensors"
        named.write_bytes(named.read_bytes()[: named.stat().st_size // 2])
    with pytest.raises(UserError, match=f"^{named}: cannot be loaded \\("):
        load_model_and_tokenizer(model)
