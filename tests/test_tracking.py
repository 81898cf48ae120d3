"""Optional W&B tracker: off by default and never imported then; offline it records the metrics.jsonl names."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time

import pytest

from dynamo.config import config_from_dict
from dynamo.engines.local.trainer import LocalTrainer, Problem
from dynamo.methods import get_method
from dynamo.models.tiny import write_tiny_model
from dynamo.tracking import open_tracker, require_wandb


def read_wandb_history(path) -> tuple[list[dict], bool]:
    """History records of an offline run's .wandb file, and whether its final "exit" record is there.

    The file is W&B's transaction log: a 7-byte header (":W&B", magic 0xBEE1, version), then
    32 KiB blocks of chunks (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last),
    each record a wandb_internal_pb2.Record. wandb >= 0.20 ships no Python reader for it.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1), "not a W&B transaction log"
    block, pos, pending, history, finished = 32768, 7, b"", [], False
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a chunk header never straddles blocks: the tail is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if (kind == 0 and length == 0) or pos + 7 + length > len(data):  # end, or a chunk still being written
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            finished |= record.WhichOneof("record_type") == "exit"
            if record.WhichOneof("record_type") == "history":
                history.append(
                    {
                        item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item
                    }
                )
    return history, finished


def wait_for_history(path, timeout: float = 60.0) -> list[dict]:
    """wandb's service process may still be writing the log when run.finish() returns: wait for "exit"."""
    deadline = time.monotonic() + timeout
    while True:
        history, finished = read_wandb_history(path)
        if finished or time.monotonic() > deadline:
            return history
        time.sleep(0.5)


def test_off_by_default_and_wandb_never_imported():
    cfg = config_from_dict({})
    assert cfg.logger.wandb.enabled is False
    code = (
        "import sys; from dynamo.config import config_from_dict; import dynamo.engines.local.trainer;"
        "from dynamo.tracking import open_tracker;"
        "assert open_tracker(config_from_dict({}).logger.wandb, '.', name='x', group='g', config={}) is None;"
        "assert 'wandb' not in sys.modules, 'wandb imported although the tracker is off'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_enabled_without_wandb_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    cfg = config_from_dict({"logger": {"wandb": {"enabled": True}}}).logger.wandb
    with pytest.raises(RuntimeError, match="pip install wandb"):
        require_wandb(cfg)
    with pytest.raises(RuntimeError, match="logger.wandb.enabled"):
        open_tracker(cfg, ".", name="x", group="g", config={})


def test_offline_run_history_has_the_metrics_jsonl_names(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    model = tmp_path / "tiny"
    write_tiny_model(model, seed=0, layers=1, hidden=32, heads=2)
    problems = [Problem(id=f"p{i}", prompt=f"{i}+1=", answers=[str(i + 1)]) for i in range(8)]
    cfg = config_from_dict(
        {
            "experiment": "trk",
            "seeds": [1],
            "train": {
                "steps": 2,
                "prompts_per_step": 4,
                "rollouts_per_prompt": 4,
                "mini_batch_prompts": 2,
                "max_new_tokens": 4,
            },
            "logger": {"wandb": {"enabled": True, "mode": "offline", "project": "dynamo-test"}},
        }
    )
    run_dir = tmp_path / "run"
    LocalTrainer(cfg, get_method("grpo"), 1, run_dir, str(model), problems, show_progress=False).train()

    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    history = wait_for_history(files[0])
    assert [h["_step"] for h in history] == [line["step"] for line in lines] == [1, 2]
    for line, logged in zip(lines, history):
        names = set(line) - {"step"}
        assert names <= set(logged), names - set(logged)
        for name in names:
            if not name.startswith("time/"):
                assert logged[name] == pytest.approx(line[name]), name
