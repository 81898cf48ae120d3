"""Evaluation: Pass@k metrics and the `dynamo evaluate` pipeline step.

`evaluate` is imported lazily (it pulls in the generation stack); the metrics are light.
"""

from dynamo.evaluation.metrics import mean_pass_at_1, mean_pass_at_k, pass_at_k, pass_at_k_curve

__all__ = ["evaluate", "mean_pass_at_1", "mean_pass_at_k", "pass_at_k", "pass_at_k_curve"]


def __getattr__(name: str):
    if name == "evaluate":
        from dynamo.evaluation.evaluate import evaluate

        return evaluate
    raise AttributeError(name)
