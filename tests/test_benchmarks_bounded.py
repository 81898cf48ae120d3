"""Benchmark rows are read with hard bounds: a 50 MB line is refused within seconds and well
under 1 GB of memory, without being decoded or parsed; bad bytes are reported on their own row."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from dynamo.tasks import BenchmarkFormatError, load_benchmark
from dynamo.tasks.benchmarks import MAX_ROW_BYTES

GOOD = {"problem": "What is 1+1?", "answer": "2", "unique_id": "a"}


def test_50_mb_line_is_refused_fast_and_in_bounded_memory(tmp_path):
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as f:
        f.write(json.dumps(GOOD).encode() + b"\n")
        f.write(b'{"problem": "' + b"9" * (50 << 20) + b'", "answer": "1", "unique_id": "b"}\n')
    # A fresh interpreter, so that its peak RSS is this load's alone (imports included).
    probe = textwrap.dedent(
        f"""
        import resource, time
        from dynamo.tasks import BenchmarkFormatError, load_benchmark
        start = time.perf_counter()
        try:
            load_benchmark("math500", {str(path)!r})
            message = "loaded"
        except BenchmarkFormatError as err:
            message = str(err)
        print(time.perf_counter() - start)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)  # MiB (Linux: KiB)
        print(message)
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    seconds, peak_mib, message = out.splitlines()[:3]
    assert "row 2" in message and "limit per row" in message, message
    assert float(seconds) < 5.0
    assert int(peak_mib) < 1024


def test_row_at_the_limit_loads_and_one_byte_more_is_refused(tmp_path):
    row = json.dumps(GOOD).encode()
    padded = row[:-1] + b', "pad": "' + b"x" * (MAX_ROW_BYTES - len(row) - 11) + b'"}'
    assert len(padded) == MAX_ROW_BYTES
    ok = tmp_path / "ok.jsonl"
    ok.write_bytes(padded + b"\n")
    assert load_benchmark("math500", ok)[0]["id"] == "a"
    over = tmp_path / "over.jsonl"
    over.write_bytes(padded[:-2] + b'x"}' + b"\n")
    with pytest.raises(BenchmarkFormatError, match=r"over\.jsonl, row 1: row longer than"):
        load_benchmark("math500", over)


def test_over_long_problem_in_a_json_file_is_refused(tmp_path):
    path = tmp_path / "long.json"
    path.write_text(json.dumps([GOOD, {**GOOD, "unique_id": "b", "problem": "x" * (MAX_ROW_BYTES + 1)}]))
    with pytest.raises(BenchmarkFormatError, match=r"long\.json, row 2, field 'problem': .* over the"):
        load_benchmark("math500", path)


def test_bad_bytes_name_their_own_row(tmp_path):
    # Many good rows first: a chunked decoder would report the row its chunk started at.
    rows = [json.dumps({**GOOD, "unique_id": str(i)}).encode() for i in range(5000)]
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b"\n".join(rows) + b'\n{"problem": "caf\xe9", "answer": "1", "unique_id": "x"}\n')
    with pytest.raises(BenchmarkFormatError, match=r"latin1\.jsonl, row 5001: not UTF-8"):
        load_benchmark("math500", path)


def test_bad_bytes_in_a_json_file_name_their_line(tmp_path):
    path = tmp_path / "latin1.json"
    rows = ",\n".join(json.dumps({**GOOD, "unique_id": str(i)}) for i in range(3))
    path.write_bytes(b"[\n" + rows.encode() + b',\n{"problem": "caf\xe9", "answer": "1", "unique_id": "x"}\n]')
    with pytest.raises(BenchmarkFormatError, match=r"latin1\.json: not UTF-8 \(.* on line 5\)"):
        load_benchmark("math500", path)
