"""Results tables: seed means, t-intervals, and 'within seed spread' instead of a false winner."""

import json
import math
import statistics

import pytest

from dynamo.reporting import tables


def _write_scores(root, method, seed, bench, p1, pk, k=8):
    d = root / method / f"seed{seed}" / "eval" / bench
    d.mkdir(parents=True)
    (d / "scores.json").write_text(
        json.dumps({"samples_per_problem": k, "pass_at_1": p1, "pass_at_k": {"1": p1, str(k): pk}})
    )


def test_mean_ci_matches_t_interval():
    values = [0.2, 0.3, 0.4]
    mean, half = tables.mean_ci(values)
    assert mean == pytest.approx(0.3)
    assert half == pytest.approx(4.303 * statistics.stdev(values) / math.sqrt(3))
    assert math.isnan(tables.mean_ci([0.5])[1])


def test_table_values_and_verdicts(tmp_path):
    # grpo ~0.30, "noisy" overlaps grpo, "better" is clearly higher on every seed.
    data = {"grpo": [0.30, 0.31, 0.29], "noisy": [0.20, 0.45, 0.33], "better": [0.50, 0.51, 0.49]}
    for method, values in data.items():
        for seed, v in zip([1, 2, 3], values):
            _write_scores(tmp_path, method, seed, "a", v, v + 0.2)
            _write_scores(tmp_path, method, seed, "b", v / 2, v)
    header, rows, k = tables.build_table(tmp_path, list(data), [1, 2, 3], ["a", "b"], "grpo")
    assert k == 8
    by = {row[0]: dict(zip(header, row)) for row in rows}
    assert by["grpo"]["a/pass@1"] == pytest.approx(0.30)
    assert by["grpo"]["b/pass@8"] == pytest.approx(0.30)
    assert by["grpo"]["avg/pass@1"] == pytest.approx((0.30 + 0.15) / 2)
    assert by["noisy"]["vs_grpo"] == "within seed spread"
    assert by["better"]["vs_grpo"] == "higher"
    assert by["grpo"]["vs_grpo"] == "baseline"
    csv_text = tables.to_csv(header, rows)
    assert csv_text.splitlines()[0].startswith("method,seeds,a/pass@1")
    md = tables.to_markdown(header, rows, ["a", "b"], k, "grpo", "")
    assert "within seed spread" in md and "| better |" in md


def test_missing_scores_fail_clearly(tmp_path):
    _write_scores(tmp_path, "grpo", 1, "a", 0.1, 0.2)
    with pytest.raises(FileNotFoundError, match="seed2"):
        tables.build_table(tmp_path, ["grpo"], [1, 2], ["a"], None)
