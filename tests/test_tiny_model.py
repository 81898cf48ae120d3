"""The tiny character-level model: tokenizer round trip, save/load with no network, shape."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from dynamo.models import load_model_and_tokenizer, tiny

PRINTABLE = "".join(tiny.CHARACTERS)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Any attempt to reach the hub fails instead of downloading.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return tiny.write_tiny_model(tmp_path_factory.mktemp("m") / "tiny", seed=0)


def check_char_level(tok) -> None:  # noqa: ANN001 - any transformers tokenizer
    ids = tok(PRINTABLE, add_special_tokens=False).input_ids
    assert len(ids) == len(PRINTABLE)  # one token per character
    assert len(set(ids)) == len(PRINTABLE)
    assert tok.decode(ids) == PRINTABLE
    for text in ["Q: 12+7*3\nA: ", "\\boxed{33}", "  two  spaces\n\n", "x"]:
        ids = tok(text, add_special_tokens=False).input_ids
        assert len(ids) == len(text) and tok.decode(ids) == text
    with_eos = tok("\\boxed{4}", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert tok.decode(with_eos, skip_special_tokens=True) == "\\boxed{4}"
    assert tok("1+2").input_ids == tok("1+2", add_special_tokens=False).input_ids  # no BOS added, like Qwen2.5


def test_tokenizer_round_trip_built() -> None:
    tok = tiny.build_tokenizer()
    check_char_level(tok)
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    # Printable ASCII and newline take ids 4..99; the other bytes follow (nothing is unknown).
    assert sorted(tok(PRINTABLE, add_special_tokens=False).input_ids) == list(range(4, 100))
    assert len(tok) == 4 + 256
    assert tok.decode(tok("é\t", add_special_tokens=False).input_ids) == "é\t"


def test_save_load_round_trip(model_dir: Path) -> None:
    model, tok = load_model_and_tokenizer(model_dir)
    check_char_level(tok)
    assert tok.padding_side == "left" and tok.pad_token_id == 0
    assert tok.chat_template is None  # -> build_prompt falls back to the plain template
    assert model.config.model_type == "qwen2" and model.dtype == torch.float32
    n = sum(p.numel() for p in model.parameters())
    assert 0.4e6 < n < 0.7e6
    assert json.loads((model_dir / "build.json").read_text())["parameters"] == n
    # The same weights come back, and plain Auto* loading works too.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    again = AutoModelForCausalLM.from_pretrained(model_dir)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    check_char_level(AutoTokenizer.from_pretrained(model_dir))


def test_left_padded_generation(model_dir: Path) -> None:
    model, tok = load_model_and_tokenizer(model_dir)
    batch = tok(["1+2", "Q: 33*4\nA: "], return_tensors="pt", padding=True)
    assert batch.input_ids[0, 0] == tok.pad_token_id and batch.attention_mask[0, 0] == 0
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=4, do_sample=True)
    width = batch.input_ids.shape[1]
    assert out.shape[0] == 2 and width < out.shape[1] <= width + 4
    assert torch.equal(out[:, :width], batch.input_ids)


def test_deterministic_build() -> None:
    a = tiny.build_model(tiny.build_tokenizer(), seed=5)
    b = tiny.build_model(tiny.build_tokenizer(), seed=5)
    c = tiny.build_model(tiny.build_tokenizer(), seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


def test_atomic_overwrite_and_cli(tmp_path: Path) -> None:
    from dynamo.cli import main

    out = tmp_path / "m"
    assert (
        main(["build-model", "--out", str(out), "--seed", "1", "--layers", "1", "--hidden", "32", "--heads", "2"])
        == 0
    )
    assert (
        main(["build-model", "--out", str(out), "--seed", "1", "--layers", "1", "--hidden", "64", "--heads", "2"])
        == 0
    )
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no .tmp/.old left behind
    with pytest.raises(SystemExit, match="heads"):
        main(["build-model", "--out", str(out), "--hidden", "30", "--heads", "4"])
