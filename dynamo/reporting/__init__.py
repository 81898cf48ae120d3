"""Tables and figures from finished runs (no training code imported).

`load_scores(path)` and `load_metrics(runs_root)` (dynamo.reporting.scores) return pandas
DataFrames; they are imported on first use so that `dynamo methods` does not load pandas.
"""

__all__ = ["load_scores", "load_metrics"]


def __getattr__(name: str):
    if name in __all__:
        from dynamo.reporting import scores

        return getattr(scores, name)
    raise AttributeError(f"module 'dynamo.reporting' has no attribute {name!r}")
