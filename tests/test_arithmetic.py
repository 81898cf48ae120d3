"""The embedded arithmetic task: determinism, level definitions, correct answers, disjoint splits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dynamo.tasks import arithmetic as ar

SMALL = dict(pool_size=120, eval_size=30, sft_size=400)


def evaluate(text: str) -> int:
    """Independent recursive-descent evaluator for + - * and parentheses over integers (no eval())."""
    tokens = re.findall(r"\d+|[-+*()]", text)
    assert "".join(tokens) == text, f"unexpected characters in {text!r}"
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def expr() -> int:
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value

    def term() -> int:
        value = factor()
        while peek() == "*":
            take()
            value *= factor()
        return value

    def factor() -> int:
        tok = take()
        if tok == "(":
            value = expr()
            assert take() == ")"
            return value
        assert tok.isdigit(), tok
        return int(tok)

    value = expr()
    assert pos == len(tokens), f"trailing tokens in {text!r}"
    return value


def test_evaluator_itself() -> None:
    assert evaluate("12+7*3") == 33
    assert evaluate("9-2+4") == 11
    assert evaluate("(12+7)*3") == 57
    assert evaluate("6*7-8") == 34


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("task")
    ar.write_task(out, seed=3, **SMALL)
    return out


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_files_and_record_shape(task_dir: Path) -> None:
    names = {
        "train.jsonl",
        "sft.jsonl",
        "arith-easy.jsonl",
        "arith-medium.jsonl",
        "arith-hard.jsonl",
        "arith-id.jsonl",
        "manifest.json",
    }
    assert {p.name for p in task_dir.iterdir()} == names  # no leftover .tmp files
    for name in names - {"manifest.json"}:
        for r in read(task_dir / name):
            assert set(r) == {"id", "problem", "answer", "level"}
            assert isinstance(r["answer"], str) and re.fullmatch(r"\d+", r["answer"]), r
            assert r["level"] in ar.LEVELS
            assert len(r["problem"]) <= 12  # short: the tokenizer is character-level
    manifest = json.loads((task_dir / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["template"] == ar.EMBEDDED_TEMPLATE
    assert manifest["files"]["train.jsonl"]["count"] == SMALL["pool_size"]
    assert manifest["files"]["sft.jsonl"]["count"] == SMALL["sft_size"]
    for split in ar.ALL_SPLITS:
        assert manifest["files"][f"{split}.jsonl"]["count"] == SMALL["eval_size"]
    assert set(manifest["levels"]) == {str(lv) for lv in ar.LEVELS}


def test_answers_are_correct(task_dir: Path) -> None:
    for path in task_dir.glob("*.jsonl"):
        for r in read(path):
            assert int(r["answer"]) == evaluate(r["problem"]), (path.name, r)


def test_ids_unique_and_splits_by_level(task_dir: Path) -> None:
    for stem in ["train", "sft", *ar.ALL_SPLITS]:
        ids = [r["id"] for r in read(task_dir / f"{stem}.jsonl")]
        assert len(ids) == len(set(ids))
    for split, levels in ar.SPLITS.items():
        got = {r["level"] for r in read(task_dir / f"{split}.jsonl")}
        assert got == set(levels)
    # The in-distribution split follows the pool's level mix.
    per_level = json.loads((task_dir / "manifest.json").read_text())["files"]
    pool, held = per_level["train.jsonl"]["per_level"], per_level["arith-id.jsonl"]["per_level"]
    assert ar.split_counts(SMALL["eval_size"], ar.DEFAULT_LEVEL_WEIGHTS) == [held[str(lv)] for lv in ar.LEVELS]
    assert ar.split_counts(SMALL["pool_size"], ar.DEFAULT_LEVEL_WEIGHTS) == [pool[str(lv)] for lv in ar.LEVELS]


def test_files_pairwise_disjoint(task_dir: Path) -> None:
    texts = {
        stem: [r["problem"] for r in read(task_dir / f"{stem}.jsonl")] for stem in ["train", "sft", *ar.ALL_SPLITS]
    }
    for stem, problems in texts.items():
        if stem != "sft":  # the SFT file repeats problems on purpose; the others do not
            assert len(set(problems)) == len(problems), stem
    for a in texts:
        for b in texts:
            if a < b:
                assert not set(texts[a]) & set(texts[b]), (a, b)


def test_same_seed_byte_identical(task_dir: Path, tmp_path: Path) -> None:
    ar.write_task(tmp_path, seed=3, **SMALL)
    for p in task_dir.iterdir():
        assert (tmp_path / p.name).read_bytes() == p.read_bytes(), p.name
    other = ar.generate_task(seed=4, **SMALL)
    assert [r["problem"] for r in other["train"]] != [r["problem"] for r in read(task_dir / "train.jsonl")]


def test_level_definitions() -> None:
    rng = __import__("random").Random(0)
    for level in ar.LEVELS.values():
        for _ in range(300):
            text, value = level.sample(rng)
            assert value >= 0 and value == evaluate(text)
            operands = [int(x) for x in re.findall(r"\d+", text)]
            if level.level == 1:
                assert all(x <= 9 for x in operands) and "*" not in text and "-" not in text
            if level.level == 4:
                assert text.count("*") == 1 and sorted(len(str(x)) for x in operands) == [1, 2]
            if level.level == 5:
                assert len(operands) == 3 and all(x <= 9 for x in operands)
    assert ar.split_counts(10, [1, 1, 1]) == [4, 3, 3]
    assert ar.split_counts(7, [0, 1, 0]) == [0, 7, 0]


def mean_answer_digits(levels) -> float:
    rng = __import__("random").Random(1)
    values = [ar.LEVELS[lv].sample(rng)[1] for lv in levels for _ in range(2000)]
    return sum(len(str(v)) for v in values) / len(values)


def test_difficulty_splits_ordered_by_answer_length() -> None:
    """The property that defines the splits: harder splits need more answer digits, on average and
    for every level (the easiest level of a harder split needs more than the hardest of an easier one)."""
    names = ["arith-easy", "arith-medium", "arith-hard"]
    assert list(ar.SPLITS) == names
    means = [mean_answer_digits(ar.SPLITS[n]) for n in names]
    assert means[0] < means[1] < means[2], means
    for easier, harder in zip(names, names[1:]):
        assert max(mean_answer_digits([lv]) for lv in ar.SPLITS[easier]) < min(
            mean_answer_digits([lv]) for lv in ar.SPLITS[harder]
        )


def test_shipped_base_model_accuracy_falls_with_difficulty() -> None:
    """The measured side: in the shipped reference results, the base model's Pass@1 falls from easy
    to hard."""
    import csv

    table = Path(__file__).resolve().parents[1] / "reference" / "results" / "table1.csv"
    rows = {r["method"]: r for r in csv.DictReader(table.open())}
    base = [float(rows["base"][f"{n}/pass@1"]) for n in ("arith-easy", "arith-medium", "arith-hard")]
    assert base[0] > base[1] > base[2], base


def test_level_weights_shape_the_pool() -> None:
    files = ar.generate_task(seed=0, pool_size=60, eval_size=10, sft_size=60, level_weights=[0, 1, 0, 0, 0, 2])
    assert sorted({r["level"] for r in files["train"]}) == [2, 6]
    assert sum(r["level"] == 6 for r in files["train"]) == 40


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pool_size=0), "pool_size"),
        (dict(eval_size=-1), "eval_size"),
        (dict(level_weights=[1, 1]), "level_weights needs"),
        (dict(level_weights=[0, 0, 0, 0, 0, 0]), "positive sum"),
        (dict(pool_size=5000, level_weights=[1, 0, 0, 0, 0, 0]), "level 1"),
    ],
)
def test_bad_arguments_fail_clearly(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ar.generate_task(seed=0, **{**SMALL, **kwargs})


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dynamo.cli import main

    assert (
        main(
            [
                "make-task",
                "--out",
                str(tmp_path),
                "--seed",
                "1",
                "--pool-size",
                "40",
                "--eval-size",
                "6",
                "--sft-size",
                "50",
            ]
        )
        == 0
    )
    assert len(read(tmp_path / "train.jsonl")) == 40
    with pytest.raises(SystemExit, match="pool_size"):
        main(["make-task", "--out", str(tmp_path), "--pool-size", "0"])


def test_loads_through_load_benchmark(task_dir: Path) -> None:
    tasks = pytest.importorskip("dynamo.tasks")
    if not hasattr(tasks, "load_benchmark"):
        pytest.skip("dynamo.tasks.load_benchmark not written yet")
    problems = tasks.load_benchmark("arith-easy", path=str(task_dir / "arith-easy.jsonl"))
    raw = read(task_dir / "arith-easy.jsonl")
    assert len(problems) == len(raw)
    first = problems[0]
    get = first.get if isinstance(first, dict) else lambda k: getattr(first, k)
    assert get("id") == raw[0]["id"] and get("problem") == raw[0]["problem"]
    assert list(get("answers")) == [raw[0]["answer"]]
