"""Published numbers (the DynaMO paper's main table) and reproduced-vs-published comparison.

The table ships with the package (reference/table1_reference.csv; its source is cited in
reference/README.md). Names are mapped here, in code, so the copied file stays as published.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REFERENCE_CSV = Path(__file__).with_name("reference") / "table1_reference.csv"
PAPER_MODELS = ("Qwen2.5-Math-1.5B", "Qwen2.5-Math-7B")
# Paper method name -> registered method name (`dynamo methods`).
PAPER_METHODS = {
    "GRPO": "grpo",
    "Clip-Higher": "clip-higher",
    "Entropy Loss": "entropy-loss",
    "Fork Tokens": "fork-tokens",
    "Entropy Advantages": "entropy-adv",
    "Clip-COV": "clip-cov",
    "KL-COV": "kl-cov",
    "W-REINFORCE": "w-reinforce",
    "DynaMO": "dynamo",
}
# Paper column prefix -> benchmark label of the GPU configs; "avg" is the mean of the six.
PAPER_BENCHMARKS = {
    "aime24": "aime24",
    "aime25": "aime25",
    "amc23": "amc23",
    "math500": "math500",
    "minerva": "minerva",
    "olympiad": "olympiadbench",
    "avg": "avg",
}
PAPER_KS = {"p1": 1, "p32": 32}  # the paper reports Pass@1 and Pass@32 (32 samples per problem)


def load_reference(model: str | None = None) -> pd.DataFrame:
    """The published table in long form: model, paper_method, method, benchmark, k, published (percent)."""
    wide = pd.read_csv(REFERENCE_CSV)
    if model is not None:
        if model not in PAPER_MODELS:
            raise ValueError(f"unknown paper model {model!r}; the paper reports {', '.join(PAPER_MODELS)}")
        wide = wide[wide["model"] == model]
    long = wide.melt(id_vars=["model", "method"], var_name="column", value_name="published")
    parts = long["column"].str.rsplit("_", n=1, expand=True)
    long["benchmark"] = parts[0].map(PAPER_BENCHMARKS)
    long["k"] = parts[1].map(PAPER_KS)
    long = long.rename(columns={"method": "paper_method"})
    long["method"] = long["paper_method"].map(PAPER_METHODS)
    return long[["model", "paper_method", "method", "benchmark", "k", "published"]].reset_index(drop=True)


def compare_with_reference(means: pd.DataFrame, model: str) -> pd.DataFrame:
    """Reproduced next to published, both in percent.

    `means`: columns method, benchmark (label, or "avg"), k, value (mean over seeds, a fraction).
    Rows only for cells both sides have; difference = reproduced - published.
    """
    ref = load_reference(model)
    ours = means.assign(reproduced=100.0 * means["value"])[["method", "benchmark", "k", "reproduced"]]
    out = ref.merge(ours, on=["method", "benchmark", "k"], how="inner")
    out["difference"] = out["reproduced"] - out["published"]
    order = {m: i for i, m in enumerate(PAPER_METHODS.values())}
    bench_order = {b: i for i, b in enumerate(PAPER_BENCHMARKS.values())}
    out = out.sort_values(
        ["k", "method", "benchmark"],
        key=lambda s: s.map(order) if s.name == "method" else (s.map(bench_order) if s.name == "benchmark" else s),
    )
    return out[["paper_method", "method", "benchmark", "k", "reproduced", "published", "difference"]].reset_index(
        drop=True
    )


def reference_markdown(comparison: pd.DataFrame, model: str) -> str:
    """One markdown table per k: rows methods, columns benchmarks, cells 'ours / paper (diff)'."""
    if comparison.empty:
        return (
            f"\nReproduced vs published ({model}): no method or benchmark of this table appears in the "
            f"paper's table (names: {', '.join(PAPER_METHODS.values())}).\n"
        )
    lines = [f"\n### Reproduced vs published ({model}, paper Table 1)\n"]
    for k, part in comparison.groupby("k", sort=True):
        benches = [b for b in PAPER_BENCHMARKS.values() if b in set(part["benchmark"])]
        lines.append(f"Pass@{k}, percent: reproduced / published (difference)\n")
        lines.append("| method | " + " | ".join(benches) + " |")
        lines.append("|" + "---|" * (len(benches) + 1))
        for method, rows in part.groupby("method", sort=False):
            by = rows.set_index("benchmark")
            cells = [
                f"{by.at[b, 'reproduced']:.1f} / {by.at[b, 'published']:.1f} ({by.at[b, 'difference']:+.1f})"
                if b in by.index
                else "-"
                for b in benches
            ]
            lines.append(f"| {method} ({rows['paper_method'].iloc[0]}) | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        "Published numbers: the DynaMO paper's main table as released in the authors' repository README "
        "(GithubX-F/DynaMO-RL), single runs; ours are means over seeds.\n"
    )
    return "\n".join(lines)
