"""Benchmark of dynamo.core: allocation speed and quality, modulation + loss overhead.

    python benchmarks/bench_core.py            # N = 512 and 8192; 64 x 512 tokens, vocab 32k
    python benchmarks/bench_core.py --quick    # small sizes, a few seconds

Allocation: N prompts with Beta-distributed success probabilities and 16..128 past responses
each, B = 16 N, bounds 8..24; median wall time of `allocate_rollouts` (and of the heap greedy
it must equal), and the objective sum w^2 / n against uniform allocation.

Modulation: one random batch, measured side by side in this run:
- loss only: plain GRPO loss (policy_loss + backward) vs DynaMO's (modulation_factors +
  policy_loss on modulated advantages + backward), given logp and entropy;
- from logits: both also compute logp from the logits (log_softmax + gather, which any method
  needs); DynaMO additionally computes the token entropy over the full vocabulary.
Both sides run interleaved; median and min over repeats are reported (on a shared machine the
min is the steadier figure). The last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import heapq
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from dynamo.core.allocation import allocate_rollouts, allocation_weights, uniform_allocation
from dynamo.core.losses import policy_loss
from dynamo.core.modulation import modulation_factors, token_entropy
from dynamo.methods import DYNAMO

EPS = {"eps_low": 0.2, "eps_high": 0.2}
GRPO_LOSS = DYNAMO.loss  # PPO-clip 0.2 both ways, dual clip 10, token-mean


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heap_greedy(weights: np.ndarray, budget: int, n_low: int, n_high: int) -> np.ndarray:
    w = weights.tolist()
    counts = [n_low] * len(w)
    heap = [(-(x * x) / (n_low * (n_low + 1)), n_low, i) for i, x in enumerate(w)]
    heapq.heapify(heap)
    for _ in range(budget - n_low * len(w)):
        _, m, i = heapq.heappop(heap)
        counts[i] = m + 1
        if m + 1 < n_high:
            heapq.heappush(heap, (-(w[i] * w[i]) / ((m + 1) * (m + 2)), m + 1, i))
    return np.array(counts)


def bench_allocation(num: int, repeats: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    G = rng.integers(16, 129, num)
    k = rng.binomial(G, rng.beta(0.5, 0.5, num))
    budget, n_low, n_high = 16 * num, 8, 24
    out: dict[str, float] = {}
    for weight in ("p", "sqrt_p"):
        w = allocation_weights(k, G, weight=weight)
        counts = allocate_rollouts(w, budget, n_low, n_high)
        uniform = uniform_allocation(num, budget)
        objective = float(np.sum(w * w / counts))
        uniform_objective = float(np.sum(w * w / uniform))
        ms = 1e3 * median_seconds(lambda w=w: allocate_rollouts(w, budget, n_low, n_high), repeats)
        heap_ms = 1e3 * median_seconds(lambda w=w: heap_greedy(w, budget, n_low, n_high), 3)
        same = bool(np.array_equal(counts, heap_greedy(w, budget, n_low, n_high)))
        print(
            f"allocation N={num:5d} weight={weight:6s}: {ms:7.3f} ms (heap greedy {heap_ms:7.1f} ms, "
            f"identical={same}); objective {objective:.4f} vs uniform {uniform_objective:.4f} "
            f"(ratio {objective / uniform_objective:.3f}); n in [{counts.min()}, {counts.max()}]"
        )
        out.update(
            {
                f"{weight}_ms": round(ms, 4),
                f"{weight}_heap_ms": round(heap_ms, 2),
                f"{weight}_identical_to_heap": same,
                f"{weight}_objective": round(objective, 6),
                f"{weight}_uniform_objective": round(uniform_objective, 6),
                f"{weight}_objective_ratio": round(objective / uniform_objective, 4),
            }
        )
    return out


def chunked_logp(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log pi(target), in row chunks of the same size token_entropy uses on CPU (fair comparison)."""
    flat, tgt = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1, 1)
    chunk_rows = max(1, (1 << 18) // flat.shape[1])
    parts = [
        torch.log_softmax(c, -1).gather(-1, t).squeeze(-1)
        for c, t in zip(flat.split(chunk_rows), tgt.split(chunk_rows))
    ]
    return torch.cat(parts).reshape(targets.shape)


def bench_modulation(batch: int, length: int, vocab: int, repeats: int, seed: int = 0) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=g) * 2.0
    targets = torch.randint(0, vocab, (batch, length), generator=g)
    with torch.no_grad():
        logp_value = chunked_logp(logits, targets)
    old_logp = logp_value + 0.05 * torch.randn(batch, length, generator=g)
    lengths = torch.randint(length // 4, length + 1, (batch,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()
    adv = torch.randn(batch, 1, generator=g).expand(batch, length) * mask
    with torch.no_grad():
        entropy = token_entropy(logits)
    spec = DYNAMO.modulation

    def grpo_loss(logp: torch.Tensor) -> None:
        loss, _ = policy_loss(logp, old_logp, adv, mask, GRPO_LOSS)
        loss.backward()

    def dynamo_loss(logp: torch.Tensor, h: torch.Tensor) -> None:
        comp, stab = modulation_factors(logp.detach(), old_logp, adv, h, mask, spec, **EPS)
        loss, _ = policy_loss(logp, old_logp, adv * comp * stab, mask, GRPO_LOSS)
        loss.backward()

    def leaf() -> torch.Tensor:
        return logp_value.clone().requires_grad_(True)

    def plain_from_logits() -> None:
        with torch.no_grad():
            lp = chunked_logp(logits, targets)
        grpo_loss(lp.requires_grad_(True))

    def dynamo_from_logits() -> None:
        with torch.no_grad():
            lp = chunked_logp(logits, targets)
            h = token_entropy(logits)
        dynamo_loss(lp.requires_grad_(True), h)

    cases = {
        "grpo_loss": lambda: grpo_loss(leaf()),
        "dynamo_loss": lambda: dynamo_loss(leaf(), entropy),
        "grpo_from_logits": plain_from_logits,
        "dynamo_from_logits": dynamo_from_logits,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():  # warm-up: thread pool, allocator, first-touch of memory
        fn()
    # The from-logits cases take seconds at full size: fewer repeats there.
    logits_repeats = repeats if logits.numel() < 10**8 else 5
    for i in range(repeats):
        # Interleaved, so that load from other processes hits both sides alike.
        for name, fn in cases.items():
            if name.endswith("_loss") or i < logits_repeats:
                times[name].append(median_seconds(fn, 1))
    res: dict[str, float] = {"tokens": batch * length, "vocab": vocab}
    for name, ts in times.items():
        res[f"{name}_ms_median"] = 1e3 * statistics.median(ts)
        res[f"{name}_ms_min"] = 1e3 * min(ts)
    for stat in ("median", "min"):
        res[f"loss_only_ratio_{stat}"] = res[f"dynamo_loss_ms_{stat}"] / res[f"grpo_loss_ms_{stat}"]
        res[f"from_logits_ratio_{stat}"] = (
            res[f"dynamo_from_logits_ms_{stat}"] / res[f"grpo_from_logits_ms_{stat}"]
        )
    print(
        f"modulation {batch} x {length} tokens, vocab {vocab} (median / min of repeats):\n"
        f"  loss only:   GRPO {res['grpo_loss_ms_median']:.2f} / {res['grpo_loss_ms_min']:.2f} ms, "
        f"DynaMO {res['dynamo_loss_ms_median']:.2f} / {res['dynamo_loss_ms_min']:.2f} ms, "
        f"ratio x{res['loss_only_ratio_median']:.2f} / x{res['loss_only_ratio_min']:.2f}\n"
        f"  from logits: GRPO {res['grpo_from_logits_ms_median']:.0f} / {res['grpo_from_logits_ms_min']:.0f} ms, "
        f"DynaMO {res['dynamo_from_logits_ms_median']:.0f} / {res['dynamo_from_logits_ms_min']:.0f} ms, "
        f"ratio x{res['from_logits_ratio_median']:.2f} / x{res['from_logits_ratio_min']:.2f}"
    )
    return {key: round(v, 4) if isinstance(v, float) else v for key, v in res.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--repeats", type=int, default=50, help="allocation timing repeats")
    args = parser.parse_args()
    sizes = (512,) if args.quick else (512, 8192)
    batch, length, vocab = (8, 128, 4096) if args.quick else (64, 512, 32_000)
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}")
    figures = {
        "allocation": {str(n): bench_allocation(n, args.repeats) for n in sizes},
        "modulation": bench_modulation(batch, length, vocab, repeats=30),
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
