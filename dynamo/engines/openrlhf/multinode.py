"""A Ray cluster across the nodes of a Slurm allocation, for `openrlhf.actor_num_nodes > 1`.

The train rule asks Slurm for N whole nodes in one allocation and (resource `mpi`) has the
jobstep plugin run its command in the batch step, on the allocation's first node. `ray_cluster(...)` starts the Ray
head there (`ray start --head`), one Ray worker on every other node through `srun` (a job step
per node, `--overlap` so the step shares the allocation with the batch step), waits until all
nodes have joined, yields the head's address -- which the launcher passes to the entry point as
`--dynamo.ray_address`, so OpenRLHF places its actors on all nodes -- and stops Ray on every
node afterwards, also when training fails.

Used only when `openrlhf.ray_address: slurm` asks for it; the other multi-node route is an existing
Ray cluster (`openrlhf.ray_address: host:port`). A multi-node config naming neither is refused.

Checked on CPU only (tests/test_openrlhf_multinode.py: the commands, their order and the
cleanup, with subprocess calls recorded); not yet on a real multi-node allocation. Sites whose
job steps do not see the GPUs by default need `openrlhf.srun_args` (e.g. ["--gres=gpu:8"]).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

RAY_PORT = 6379


def allocation_nodes(env: dict[str, str] | None = None) -> list[str]:
    """Hostnames of this Slurm job's nodes (first = where the batch script runs); [] outside Slurm."""
    env = os.environ if env is None else env
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist and env.get("SLURM_JOB_ID"):
        # Snakemake's jobstep plugin keeps SLURM_JOB_ID but strips the other SLURM_* variables.
        query = ["squeue", "-h", "-j", env["SLURM_JOB_ID"], "-o", "%N"]
        out = subprocess.run(query, capture_output=True, text=True)
        nodelist = out.stdout.strip() if out.returncode == 0 else ""
    if not nodelist:
        return []
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def head_command(port: int, gpus_per_node: int) -> list[str]:
    return ["ray", "start", "--head", f"--port={port}", f"--num-gpus={gpus_per_node}", "--disable-usage-stats"]


def worker_command(address: str, nodes: list[str], gpus_per_node: int, srun_args: list[str]) -> list[str]:
    """One `ray start --block` per non-head node, as a single srun job step."""
    others = nodes[1:]
    return [
        "srun",
        f"--nodes={len(others)}",
        f"--ntasks={len(others)}",
        "--ntasks-per-node=1",
        f"--nodelist={','.join(others)}",
        "--overlap",
        *srun_args,
        "ray",
        "start",
        f"--address={address}",
        f"--num-gpus={gpus_per_node}",
        "--block",
    ]


def stop_commands(nodes: list[str], srun_args: list[str]) -> list[list[str]]:
    others = nodes[1:]
    stop_workers = ["srun", f"--nodes={len(others)}", f"--ntasks={len(others)}", "--ntasks-per-node=1"]
    stop_workers += [f"--nodelist={','.join(others)}", "--overlap", *srun_args, "ray", "stop", "--force"]
    return [stop_workers, ["ray", "stop", "--force"]]


def alive_nodes(address: str) -> int:
    """Nodes of the Ray cluster at address that are alive (a short-lived driver connection)."""
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(sum(n['Alive'] for n in ray.nodes())); ray.shutdown()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0


@contextlib.contextmanager
def ray_cluster(
    nodes: list[str],
    gpus_per_node: int,
    *,
    port: int = RAY_PORT,
    srun_args: list[str] | None = None,
    timeout_s: float = 600,
    poll_s: float = 5,
    count_nodes=None,
) -> Iterator[str]:
    """Start Ray on `nodes` (this process runs on nodes[0]), yield the head address, stop Ray after."""
    count_nodes = count_nodes or alive_nodes
    srun_args = list(srun_args or [])
    address = f"{socket.gethostbyname(nodes[0]) if nodes[0] != 'localhost' else '127.0.0.1'}:{port}"
    subprocess.run(head_command(port, gpus_per_node), check=True)
    workers = subprocess.Popen(worker_command(address, nodes, gpus_per_node, srun_args))
    try:
        deadline = time.time() + timeout_s
        while (joined := count_nodes(address)) < len(nodes):
            if workers.poll() is not None:
                raise RuntimeError(f"the Ray worker step (srun) exited with {workers.returncode}: see the job log")
            if time.time() > deadline:
                raise RuntimeError(
                    f"only {joined} of {len(nodes)} nodes joined the Ray cluster in {timeout_s:.0f} s"
                )
            time.sleep(poll_s)
        print(f"Ray cluster of {len(nodes)} nodes at {address}", flush=True)
        yield address
    finally:
        for cmd in stop_commands(nodes, srun_args):
            subprocess.run(cmd, check=False)
        workers.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            workers.wait(timeout=60)
