"""Pass@1 and the unbiased Pass@k estimator (Chen et al., 2021, "Evaluating Large Language
Models Trained on Code", eq. 1).

For one problem with n samples of which c are correct, the probability that a random subset of
k <= n samples contains at least one correct one is

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)

The product form avoids the huge binomials (C(32, 16) is fine, C(1024, 512) is not). A benchmark
score is the mean over problems; Pass@1 reduces to the mean correctness c / n.
"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one problem with c correct out of n samples."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_curve(n: int, c: int) -> list[float]:
    """[pass@1, ..., pass@n] for one problem."""
    return [pass_at_k(n, c, k) for k in range(1, n + 1)]


def mean_pass_at_k(correct: Sequence[Sequence[bool]], ks: Sequence[int] | None = None) -> dict[int, float]:
    """Mean over problems of pass@k; `correct[i]` holds problem i's per-sample verdicts.

    `ks` defaults to every k up to the smallest number of samples of any problem.
    """
    if not correct:
        raise ValueError("no problems")
    counts = [(len(row), sum(bool(x) for x in row)) for row in correct]
    n_min = min(n for n, _ in counts)
    if n_min == 0:
        raise ValueError("a problem has no samples")
    ks = list(range(1, n_min + 1)) if ks is None else list(ks)
    return {k: sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) for k in ks}


def mean_pass_at_1(correct: Sequence[Sequence[bool]]) -> float:
    """Pass@1 as mean correctness per problem, averaged over problems."""
    if not correct or any(len(row) == 0 for row in correct):
        raise ValueError("need at least one sample for every problem")
    return sum(sum(bool(x) for x in row) / len(row) for row in correct) / len(correct)
