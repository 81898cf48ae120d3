"""Supervised warm start: response-only loss, loss goes down, same seed -> same weights, CLI output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dynamo.engines import sft
from dynamo.models import tiny
from dynamo.tasks.arithmetic import EMBEDDED_TEMPLATE, generate_task
from dynamo.tasks.prompts import build_prompt

RECORDS = [
    {"problem": "12+7", "answer": "19"},
    {"problem": "3+4*5", "answer": "23"},
    {"problem": "8", "answer": "8"},
]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return tiny.build_tokenizer()


def small_model(tokenizer, seed: int = 0):  # noqa: ANN001, ANN201
    return tiny.build_model(tokenizer, seed=seed, layers=1, hidden=32, heads=2)


def test_labels_cover_exactly_the_response(tokenizer) -> None:  # noqa: ANN001
    ids, labels = sft.encode_examples(RECORDS, tokenizer, EMBEDDED_TEMPLATE)
    assert ids.shape == labels.shape and ids.shape[0] == len(RECORDS)
    for row, r in enumerate(RECORDS):
        keep = (labels[row] != sft.IGNORE).nonzero().flatten().tolist()
        assert keep == list(range(keep[0], keep[-1] + 1))  # one contiguous span
        prompt = build_prompt(r["problem"], tokenizer, template=EMBEDDED_TEMPLATE, use_chat_template=False)
        assert prompt == f"{r['problem']}="
        assert tokenizer.decode(ids[row, : keep[0]]) == prompt  # everything before is the prompt
        assert torch.equal(labels[row, keep], ids[row, keep])
        assert tokenizer.decode(labels[row, keep[:-1]]) == f"\\boxed{{{r['answer']}}}"
        assert labels[row, keep[-1]] == tokenizer.eos_token_id
        assert (ids[row, keep[-1] + 1 :] == tokenizer.pad_token_id).all()  # right padding after it


def test_loss_is_mean_over_response_tokens(tokenizer) -> None:  # noqa: ANN001
    model = small_model(tokenizer)
    ids, labels = sft.encode_examples(RECORDS, tokenizer, EMBEDDED_TEMPLATE)
    loss = sft.response_loss(model, ids, labels)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits, -1)
    terms = [
        -logp[b, t - 1, labels[b, t]] for b in range(len(ids)) for t in range(1, ids.shape[1]) if labels[b, t] >= 0
    ]
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)
    # Right padding needs no attention mask: what follows the response cannot change the loss.
    noisy = ids.clone()
    noisy[ids == tokenizer.pad_token_id] = 42
    assert torch.allclose(sft.response_loss(model, noisy, labels), loss, atol=1e-6)


def train_small(tokenizer, seed: int, steps: int = 30):  # noqa: ANN001, ANN201
    records = generate_task(seed=0, pool_size=30, eval_size=5, sft_size=256)["sft"]
    ids, labels = sft.encode_examples(records, tokenizer, EMBEDDED_TEMPLATE)
    model = small_model(tokenizer)
    with torch.no_grad():
        before = sft.response_loss(model, ids, labels).item()
    curve = sft.train(
        model, ids, labels, steps=steps, lr=3e-3, batch_size=32, seed=seed, log_every=10, progress=False
    )
    with torch.no_grad():
        after = sft.response_loss(model, ids, labels).item()
    return model, before, after, curve


def test_training_lowers_loss_and_is_deterministic(tokenizer) -> None:  # noqa: ANN001
    torch.set_num_threads(1)
    a, before, after, curve = train_small(tokenizer, seed=1)
    assert after < 0.7 * before
    assert [c["step"] for c in curve] == [10, 20, 30]
    b, _, after_b, _ = train_small(tokenizer, seed=1)
    assert after_b == after
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    c, *_ = train_small(tokenizer, seed=2, steps=5)
    d, *_ = train_small(tokenizer, seed=1, steps=5)
    assert not all(torch.equal(x, y) for x, y in zip(c.parameters(), d.parameters()))


def test_lr_schedule() -> None:
    lrs = [sft.lr_at(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(x >= y for x, y in zip(lrs[10:], lrs[11:]))


def test_cli_end_to_end(tmp_path: Path) -> None:
    from dynamo.cli import main
    from dynamo.models import load_model_and_tokenizer

    task, init, out = tmp_path / "task", tmp_path / "init", tmp_path / "warm"
    assert (
        main(["make-task", "--out", str(task), "--pool-size", "20", "--eval-size", "6", "--sft-size", "64"]) == 0
    )
    assert main(["build-model", "--out", str(init), "--layers", "1", "--hidden", "32", "--heads", "2"]) == 0
    args = [
        "warmstart",
        "--model",
        str(init),
        "--data",
        str(task / "sft.jsonl"),
        "--out",
        str(out),
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--eval-prompts",
        "3",
        "--eval-samples",
        "2",
        "--max-new-tokens",
        "6",
        "--no-progress",
    ]
    assert main(args) == 0
    info = json.loads((out / "warmstart.json").read_text())
    assert info["steps"] == 4 and info["template"] == EMBEDDED_TEMPLATE and info["final_loss"] > 0
    check = info["sampled_accuracy"]
    assert check["prompts"] == 3 and check["samples_per_prompt"] == 2 and 0 <= check["accuracy"] <= 1
    assert sum(check["success_histogram"].values()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["init", "task", "warm"]  # no .tmp left
    model, tok = load_model_and_tokenizer(out)
    assert model.config.hidden_size == 32 and tok.padding_side == "left"
    with pytest.raises(SystemExit, match="template"):
        main(args[:7] + ["--template", "no placeholder"])  # same model, data and out
