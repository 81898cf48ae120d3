"""Window statistics (dynamo.core.window): exact reductions in one process, and across two
torch.distributed (gloo, CPU) processes equal to one process over the concatenated data."""

import math
import os
import pickle
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dynamo.core.objective import TokenBatch
from dynamo.core.window import (
    LOCAL,
    DistributedReducer,
    window_count,
    window_kth_largest,
    window_max,
    window_random_pick,
    window_stats,
    window_sum,
    window_top_k,
)
from dynamo.methods import get_method

# Methods and overrides that exercise every statistic (the covariance band widened so it is not empty).
SPECS = {
    "dynamo": get_method("dynamo", {"window": "mini_batch"}),
    "fork-tokens": get_method("fork-tokens", {"window": "mini_batch"}),
    "kl-cov": get_method("kl-cov", {"window": "mini_batch", "covariance": {"ratio": 0.1}}),
    "clip-cov": get_method(
        "clip-cov", {"window": "mini_batch", "covariance": {"ratio": 0.1, "clip_lb": 0.0, "clip_ub": 100.0}}
    ),
    "entropy-adv+dynamo": get_method("dynamo", {"window": "mini_batch", "entropy_advantage": {"alpha": 0.4}}),
}


def make_parts(seed: int, shapes: list[tuple[int, int]]) -> list[TokenBatch]:
    g = torch.Generator().manual_seed(seed)
    parts = []
    for rows, cols in shapes:
        logp = -torch.rand(rows, cols, generator=g, dtype=torch.float64) * 3
        old = logp + 0.3 * torch.randn(rows, cols, generator=g, dtype=torch.float64)
        lengths = torch.randint(1, cols + 1, (rows,), generator=g)
        mask = (torch.arange(cols) < lengths[:, None]).to(torch.float64)
        adv = torch.randn(rows, generator=g, dtype=torch.float64)[:, None] * mask
        ent = torch.rand(rows, cols, generator=g, dtype=torch.float64) * 2
        parts.append(TokenBatch(logp, old, adv, mask, entropy=ent))
    return parts


# Rank r holds RANK_PARTS[r]; the single process holds all of them in rank order.
RANK_PARTS = [make_parts(1, [(3, 5), (2, 7)]), make_parts(2, [(4, 6)])]


def test_local_primitives_by_hand():
    values = [torch.tensor([[1.0, 5.0, -9.0]]), torch.tensor([[2.0, 7.0]])]
    masks = [torch.tensor([[1, 1, 0]]), torch.tensor([[1, 1]])]
    assert window_sum(values, masks) == 15.0
    assert window_count(masks) == 4
    assert window_max(values, masks) == 7.0
    assert window_kth_largest(values, masks, 2) == 5.0  # of 1, 5, 2, 7 (the masked -9 never counts)
    assert window_kth_largest(values, masks, 99) == 1.0 and window_kth_largest([], [], 1) == math.inf
    top = window_top_k(values, masks, 2)
    assert top[0].tolist() == [[False, True, False]] and top[1].tolist() == [[False, True]]
    assert window_max([torch.zeros(1, 2)], [torch.zeros(1, 2)]) == -math.inf  # empty window


def test_random_pick_counts_and_candidates():
    masks = [torch.ones(2, 4), torch.ones(1, 3)]
    cand = [torch.zeros(2, 4, dtype=torch.bool), torch.tensor([[True, False, True]])]
    picked = window_random_pick(cand, masks, 5, torch.Generator().manual_seed(0))
    assert picked[0].sum() == 0 and picked[1].tolist() == [[True, False, True]]  # only 2 candidates
    assert sum(int(p.sum()) for p in window_random_pick(cand, masks, 0, torch.Generator())) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_states() -> list[torch.ByteTensor]:
    """Generator states such that rank 1 continues where rank 0's draws end, so that the two
    ranks together draw exactly the keys one process draws over all parts in order."""
    states = []
    for name in SPECS:
        g = torch.Generator().manual_seed(123)
        per_rank = [g.get_state()]
        for p in RANK_PARTS[0]:
            torch.rand(p.mask.shape, generator=g, dtype=torch.float64)
        per_rank.append(g.get_state())
        states.append((name, per_rank))
    return states


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        reducer = DistributedReducer()
        results = {}
        for name, states in _rank_states():
            g = torch.Generator()
            g.set_state(states[rank])
            results[name] = window_stats(SPECS[name], RANK_PARTS[rank], generator=g, reducer=reducer)
        gathered = reducer.gather(torch.tensor([1.0 + rank, 2.0 + rank]) if rank == 0 else torch.tensor([9.0]))
        results["gather"] = gathered
        with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_distributed_equals_single_process_over_concatenated_data(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    assert ranks[0]["gather"].tolist() == ranks[1]["gather"].tolist() == [1.0, 2.0, 9.0]
    everything = RANK_PARTS[0] + RANK_PARTS[1]
    for name, _ in _rank_states():
        single = window_stats(SPECS[name], everything, generator=torch.Generator().manual_seed(123), reducer=LOCAL)
        for rank, result in enumerate(ranks):
            got = result[name]
            assert got.kind == "mini_batch" and single.kind == "mini_batch"
            assert got.num_tokens == single.num_tokens and got.loss_tokens == single.loss_tokens, name
            assert got.entropy_range == single.entropy_range, name
            assert got.max_change == single.max_change, name
            if single.cov_means is not None:
                assert got.cov_means == pytest.approx(single.cov_means, rel=1e-12, abs=1e-15), name
            mine = slice(0, 2) if rank == 0 else slice(2, 3)
            for field in ("fork_masks", "cov_masks"):
                expected = getattr(single, field)
                if expected is None:
                    assert getattr(got, field) is None
                    continue
                for a, b in zip(getattr(got, field), expected[mine], strict=True):
                    assert torch.equal(a, b), (name, field, rank)
        # Something was selected, so the comparison above is not vacuous.
        if single.cov_masks is not None:
            assert sum(int(m.sum()) for m in single.cov_masks) > 0
        if single.fork_masks is not None:
            assert sum(int(m.sum()) for m in single.fork_masks) == single.loss_tokens > 0
