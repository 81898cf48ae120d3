"""Evaluation benchmarks: a registry, loading (hub or local file) and one normalised record shape.

Every benchmark, whatever its source layout, loads as a list of problem records

    {"id": str, "problem": str, "answers": list[str], "meta": dict}

`answers` holds the gold answer(s) as LaTeX strings without `$` delimiters (OlympiadBench
keeps several; a problem is solved if any one matches); `meta` keeps every source field except
the problem text (so the raw answer, e.g. 142.0, is still there).

Sources: `load_benchmark(name)` downloads the registered hub copy through `datasets`;
`load_benchmark(name, path)` reads a local JSON (list of objects, or JSON Lines), JSONL or
parquet file, or a directory (a `save_to_disk` dataset, or data files inside it). Field names
are looked up from a short list of aliases per benchmark (e.g. `question` or `problem`,
`answer` or `final_answer`), which covers both the hub layouts and the ones RLVR repositories
keep on disk. A bad file fails with `BenchmarkFormatError` naming the file, the row (1-based:
line number for JSONL, record number otherwise) and the field.

Which variant of a set was loaded is recorded on the returned list (`.variant`): e.g. the
40-problem AMC23 and the 83-problem AMC 12 2022-23 set both register as `amc23`.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from dynamo.errors import UserError

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet")


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark lives and how its fields map onto the problem record."""

    name: str
    hub_id: str | None  # None: local files only
    split: str = "test"
    hub_config: str | None = None
    problem_fields: tuple[str, ...] = ("problem", "question")
    answer_fields: tuple[str, ...] = ("answer", "final_answer")
    id_fields: tuple[str, ...] = ("id", "unique_id", "idx")
    require_id: bool = False  # False: rows without an id get "<name>-<index>"
    expected_size: int | None = None
    description: str = ""


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in [
        BenchmarkSpec(
            "aime24", "HuggingFaceH4/aime_2024", split="train", expected_size=30, description="AIME 2024 I+II"
        ),
        BenchmarkSpec(
            "aime25",
            "math-ai/aime25",
            id_fields=("id", "problem_idx", "idx"),
            expected_size=30,
            description="AIME 2025 I+II",
        ),
        BenchmarkSpec(
            "amc23",
            "math-ai/amc23",
            expected_size=40,
            description="AMC 2023 (40); the 83-problem AMC 12 2022-23 set also loads, as variant amc22-23-83",
        ),
        BenchmarkSpec(
            "math500",
            "HuggingFaceH4/MATH-500",
            id_fields=("unique_id", "id"),
            expected_size=500,
            description="MATH500 (Lightman et al. subset of MATH test)",
        ),
        BenchmarkSpec(
            "minerva",
            "math-ai/minervamath",
            id_fields=("idx", "id"),
            expected_size=272,
            description="Minerva Math (OCW courses)",
        ),
        BenchmarkSpec(
            "olympiadbench",
            "math-ai/olympiadbench",
            expected_size=675,
            description="OlympiadBench, text-only English math (OE_TO_maths_en_COMP); answers are lists",
        ),
        *(
            BenchmarkSpec(
                f"arith-{level}",
                None,
                problem_fields=("problem",),
                answer_fields=("answer",),
                id_fields=("id",),
                require_id=True,
                description=f"embedded arithmetic task, held-out {level} split (JSONL from `dynamo make-task`)",
            )
            for level in ("easy", "medium", "hard", "id")
        ),
    ]
}


class BenchmarkFormatError(ValueError):
    """A benchmark file that cannot be used; the message names file, row and field."""

    def __init__(self, source: str, row: int | None, field: str | None, problem: str) -> None:
        where = source + (f", row {row}" if row is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {problem}")
        self.source, self.row, self.field = source, row, field


class ProblemSet(list):
    """The normalised records of one benchmark, plus where they came from and which variant."""

    def __init__(self, records: list[dict[str, Any]], name: str, variant: str, source: str) -> None:
        super().__init__(records)
        self.name = name
        self.variant = variant
        self.source = source


# ----------------------------------------------------------------------------- answers
def _strip_math_delimiters(text: str) -> str:
    """'$\\frac12$' -> '\\frac12' (OlympiadBench style); escaped dollars ('\\$5') are kept."""
    text = text.strip()
    if text.startswith("$"):
        return re.sub(r"(?<!\\)\$", "", text).strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right):
            return text[len(left) : -len(right)].strip()
    return text


def answer_text(value: Any) -> str:
    """One gold answer as a LaTeX string: 142.0 -> '142', 0.5 -> '0.5', '$x$' -> 'x'.

    Raises ValueError (with the reason) for values that cannot be an answer.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not an answer: {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")  # positional, no exponent: 1e-05 -> 0.00001
    if isinstance(value, str):
        text = _strip_math_delimiters(value)
        if not text:
            raise ValueError("empty answer")
        return text
    raise ValueError(f"unsupported answer type {type(value).__name__}")


def answer_list(value: Any) -> list[str]:
    """Gold answer(s) of one record as a non-empty list of strings."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("empty answer list")
        return [answer_text(v) for v in value]
    return [answer_text(value)]


# ----------------------------------------------------------------------------- reading rows
# Hard bounds on what is read, so that memory stays bounded whatever the file holds: a JSONL row
# is read with a bounded readline (an over-long row is refused after reading at most
# MAX_ROW_BYTES + 1 bytes of it, never decoded or parsed), a whole-file JSON document is refused
# above MAX_JSON_FILE_BYTES, and every problem text longer than MAX_ROW_BYTES is refused.
# Memory is then the records kept (a few KB each for real benchmarks) plus at most one row's
# 1 MiB (or one JSON file's 64 MiB, a few times over while it is parsed), whatever the file holds.
MAX_ROW_BYTES = 1 << 20  # 1 MiB per row; benchmark problems are a few KB
MAX_JSON_FILE_BYTES = 64 << 20  # a .json list of records; larger sets belong in JSON Lines


def _read_json(path: Path) -> list[tuple[int, Any]]:
    size = path.stat().st_size
    if size > MAX_JSON_FILE_BYTES:
        raise BenchmarkFormatError(
            str(path), None, None, f"{size} bytes, over the {MAX_JSON_FILE_BYTES}-byte limit of a .json file "
            "(write it as JSON Lines: one record per line)"
        )  # fmt: skip
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:  # a JSON document has no rows yet: name the line
        line = raw.count(b"\n", 0, err.start) + 1
        raise BenchmarkFormatError(str(path), None, None, f"not UTF-8 ({err.reason} on line {line})") from None
    del raw
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # a .json file that is really JSON Lines
            return _read_jsonl(path)
        raise BenchmarkFormatError(str(path), None, None, f"invalid JSON ({err})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise BenchmarkFormatError(str(path), None, None, "expected a list of records")
        data = lists[0]
    if not isinstance(data, list):
        raise BenchmarkFormatError(str(path), None, None, "expected a list of records")
    return list(enumerate(data, start=1))


def _read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """Rows of a JSON Lines file, each read as bytes with a bounded readline, then decoded alone
    (so a bad byte is reported on its own line, not on the line a decoder chunk started at)."""
    rows = []
    with path.open("rb") as f:
        for lineno in itertools.count(1):
            raw = f.readline(MAX_ROW_BYTES + 1)
            if not raw:
                break
            if len(raw) > MAX_ROW_BYTES and not raw.endswith(b"\n"):
                raise BenchmarkFormatError(
                    str(path), lineno, None, f"row longer than the {MAX_ROW_BYTES}-byte limit per row"
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise BenchmarkFormatError(
                    str(path), lineno, None, f"not UTF-8 ({err.reason} at byte {err.start} of the row)"
                ) from None
            if not line.strip():
                continue
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as err:
                raise BenchmarkFormatError(str(path), lineno, None, f"invalid JSON ({err.msg})") from None
    return rows


def _read_parquet(path: Path) -> list[tuple[int, Any]]:
    import datasets

    return list(enumerate(datasets.Dataset.from_parquet(str(path)).to_list(), start=1))


def _read_file(path: Path) -> list[tuple[int, Any]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return _read_json(path)
        if suffix in (".jsonl", ".ndjson"):
            return _read_jsonl(path)
        if suffix == ".parquet":
            return _read_parquet(path)
    except UnicodeDecodeError as err:
        raise BenchmarkFormatError(str(path), None, None, f"not UTF-8 ({err.reason})") from None
    raise BenchmarkFormatError(str(path), None, None, f"unsupported file type {suffix!r} (use {DATA_SUFFIXES})")


def _read_directory(path: Path, split: str) -> list[tuple[str, list[tuple[int, Any]]]]:
    """A `save_to_disk` dataset, or the data files inside the directory (recursively)."""
    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        import datasets

        data = datasets.load_from_disk(str(path))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise BenchmarkFormatError(str(path), None, None, f"no split {split!r} (has {list(data)})")
            data = data[split]
        return [(str(path), list(enumerate(data.to_list(), start=1)))]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    if not files:
        raise BenchmarkFormatError(str(path), None, None, f"no data files ({', '.join(DATA_SUFFIXES)})")
    in_split = [p for p in files if split in p.name]
    return [(str(p), _read_file(p)) for p in (in_split or files)]


# ----------------------------------------------------------------------------- normalising
def _first_field(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in row), None)


def _normalise(spec: BenchmarkSpec, sources: list[tuple[str, list[tuple[int, Any]]]]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    seen: dict[str, tuple[str, int]] = {}
    id_field: str | None = None
    index = 0
    for source, rows in sources:
        for row_no, row in rows:
            if not isinstance(row, dict):
                raise BenchmarkFormatError(source, row_no, None, f"expected an object, got {type(row).__name__}")
            if index == 0:
                id_field = _first_field(row, spec.id_fields)
                if id_field is None and spec.require_id:
                    raise BenchmarkFormatError(source, row_no, spec.id_fields[0], "missing")

            problem_field = _first_field(row, spec.problem_fields)
            if problem_field is None:
                raise BenchmarkFormatError(source, row_no, spec.problem_fields[0], _missing(spec.problem_fields))
            problem = row[problem_field]
            if not isinstance(problem, str) or not problem.strip():
                raise BenchmarkFormatError(source, row_no, problem_field, "empty or not a string")
            if len(problem) > MAX_ROW_BYTES:  # rows from JSON, parquet or the hub (JSONL is bounded on read)
                raise BenchmarkFormatError(
                    source, row_no, problem_field, f"{len(problem)} characters, over the {MAX_ROW_BYTES} limit"
                )

            answer_field = _first_field(row, spec.answer_fields)
            if answer_field is None:
                raise BenchmarkFormatError(source, row_no, spec.answer_fields[0], _missing(spec.answer_fields))
            try:
                answers = answer_list(row[answer_field])
            except ValueError as err:
                raise BenchmarkFormatError(source, row_no, answer_field, str(err)) from None

            if id_field is None:
                pid = f"{spec.name}-{index}"
            else:
                if id_field not in row:
                    raise BenchmarkFormatError(source, row_no, id_field, "missing (earlier rows have it)")
                pid = _id_text(row[id_field])
                if pid is None:
                    raise BenchmarkFormatError(source, row_no, id_field, f"bad id {row[id_field]!r}")
                if pid in seen:
                    first_source, first_row = seen[pid]
                    where = f"row {first_row}" + ("" if first_source == source else f" of {first_source}")
                    raise BenchmarkFormatError(
                        source, row_no, id_field, f"duplicate id {pid!r} (first at {where})"
                    )
                seen[pid] = (source, row_no)

            meta = {k: v for k, v in row.items() if k != problem_field}
            records.append({"id": pid, "problem": problem, "answers": answers, "meta": meta})
            index += 1
    if not records:
        raise BenchmarkFormatError(", ".join(s for s, _ in sources) or spec.name, None, None, "no records")
    return records


def _missing(names: tuple[str, ...]) -> str:
    return "missing" + (f" (also looked for {', '.join(repr(n) for n in names[1:])})" if len(names) > 1 else "")


def _id_text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def detect_variant(spec: BenchmarkSpec, records: list[dict[str, Any]]) -> str:
    """Name the variant of a set from its size and fields, e.g. 'amc23-40' vs 'amc22-23-83'."""
    n = len(records)
    text = " ".join(str(r["meta"].get("url", "")) + " " + str(r["meta"].get("year", "")) for r in records)
    years = sorted(set(re.findall(r"\b(20\d\d)(?=\b|_)", text)))
    if spec.name == "amc23":
        if n == 40 and years in ([], ["2023"]):
            return "amc23-40"
        if n == 83 and years in ([], ["2022", "2023"]):
            return "amc22-23-83"
        return f"amc{'-'.join(years) if years else ''}-{n}"
    if spec.name.startswith("aime") and years:
        return f"aime{'+'.join(years)}-{n}"
    return f"{spec.name}-{n}"


# ----------------------------------------------------------------------------- public
def get_spec(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise UserError(
            f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)} (or NAME=PATH for a local file)"
        ) from None


def _read_local(name: str, path: str | Path, split: str) -> list[tuple[str, list[tuple[int, Any]]]]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file or directory: {path}")
    return _read_directory(path, split) if path.is_dir() else [(str(path), _read_file(path))]


def load_benchmark(name: str, path: str | Path | None = None, *, split: str | None = None) -> ProblemSet:
    """Load benchmark `name` as normalised problem records (from `path` if given, else the hub).

    A name that is not registered is allowed with a path: a user's own problem file, read with
    the common field names (problem/question/prompt, answer/answers/final_answer/ground_truth)."""
    if name not in BENCHMARKS and path is not None:
        spec = BenchmarkSpec(
            name, None, problem_fields=PROMPT_POOL.problem_fields, answer_fields=PROMPT_POOL.answer_fields
        )
    else:
        spec = get_spec(name)
    split = split or spec.split
    if path is None:
        if spec.hub_id is None:
            raise ValueError(
                f"benchmark {name!r} has no hub copy: pass the path of its JSONL file "
                f"(written by `dynamo make-task`) as NAME=PATH, e.g. "
                f"--benchmarks {name}=data/embedded/{name}.jsonl"
            )
        import datasets

        data = datasets.load_dataset(spec.hub_id, spec.hub_config, split=split)
        source = f"hf://datasets/{spec.hub_id}" + (f"/{spec.hub_config}" if spec.hub_config else "") + f"[{split}]"
        sources = [(source, list(enumerate(data.to_list(), start=1)))]
    else:
        source = str(path)
        sources = _read_local(f"benchmark {name!r}", path, split)
    records = _normalise(spec, sources)
    variant = detect_variant(spec, records)
    if spec.expected_size and len(records) != spec.expected_size:
        log.info(
            "%s: %d problems (the standard set has %d); variant %s",
            name,
            len(records),
            spec.expected_size,
            variant,
        )
    return ProblemSet(records, name=name, variant=variant, source=source)


# An RL prompt pool: any local file of problems with answers, e.g. the embedded task's train.jsonl.
PROMPT_POOL = BenchmarkSpec(
    "pool",
    None,
    split="train",
    problem_fields=("problem", "question", "prompt"),
    answer_fields=("answer", "answers", "final_answer", "ground_truth"),
)


def load_prompt_pool(path: str | Path, *, split: str = "train") -> ProblemSet:
    """Training prompts from a local JSON/JSONL/parquet file or directory, as problem records.

    Same record shape, answer normalisation and error messages as `load_benchmark`; rows without
    an id get "pool-<index>".
    """
    records = _normalise(PROMPT_POOL, _read_local("prompt pool", path, split))
    return ProblemSet(records, name="pool", variant=f"pool-{len(records)}", source=str(path))
