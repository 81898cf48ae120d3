"""Multi-node openrlhf runs: Ray head + workers inside the Slurm allocation (commands recorded, no Slurm)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from repo_copy import copy_repo

from dynamo.engines.openrlhf import launcher, multinode
from dynamo.engines.openrlhf.config import OpenRLHFConfig

NODES = ["gpu-a", "gpu-b", "gpu-c"]


class Recorder:
    def __init__(self, worker_exit=None):
        self.calls: list[list[str]] = []
        self.worker_exit = worker_exit

    def run(self, cmd, **kw):
        self.calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    def call(self, cmd, **kw):
        self.calls.append(list(cmd))
        return 0

    def popen(self, cmd, **kw):
        self.calls.append(list(cmd))
        rec = self

        class Proc:
            returncode = rec.worker_exit

            def poll(self):
                return rec.worker_exit

            def terminate(self):
                rec.calls.append(["<terminate workers>"])

            def wait(self, timeout=None):
                return 0

        return Proc()


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(subprocess, "run", rec.run)
    monkeypatch.setattr(subprocess, "call", rec.call)
    monkeypatch.setattr(subprocess, "Popen", rec.popen)
    monkeypatch.setattr(multinode.socket, "gethostbyname", lambda host: "10.0.0.1")
    return rec


def test_head_then_workers_then_training_then_stop(recorder, monkeypatch):
    joined = iter([1, 2, 3])
    monkeypatch.setattr(multinode, "allocation_nodes", lambda: NODES)
    monkeypatch.setattr(multinode, "alive_nodes", lambda address: next(joined))
    monkeypatch.setattr(multinode.time, "sleep", lambda s: None)
    o = OpenRLHFConfig.from_dict({"actor_num_nodes": 3, "vllm_num_engines": 24, "ray_address": "slurm"})
    cmd = [
        sys.executable,
        "-m",
        "dynamo.engines.openrlhf.entry",
        "--dynamo.spec",
        "/run/openrlhf/method_spec.json",
        "--actor.num_nodes",
        "3",
    ]
    assert launcher._run_training(cmd, o) == 0

    head, workers, train, stop_workers, stop_head, terminate = recorder.calls
    assert head[:3] == ["ray", "start", "--head"] and "--num-gpus=8" in head
    assert workers[0] == "srun" and "--nodelist=gpu-b,gpu-c" in workers and "--nodes=2" in workers
    assert workers[-4:] == ["start", "--address=10.0.0.1:6379", "--num-gpus=8", "--block"]
    assert train[train.index("--dynamo.ray_address") + 1] == "10.0.0.1:6379"
    assert stop_workers[0] == "srun" and stop_workers[-3:] == ["ray", "stop", "--force"]
    assert stop_head == ["ray", "stop", "--force"] and terminate == ["<terminate workers>"]


def test_ray_is_stopped_when_a_worker_step_dies(recorder, monkeypatch):
    recorder.worker_exit = 1
    with pytest.raises(RuntimeError, match="worker step"):
        with multinode.ray_cluster(NODES, 8, count_nodes=lambda a: 1, poll_s=0):
            pytest.fail("must not get here")
    assert ["ray", "stop", "--force"] in recorder.calls


def test_multi_node_without_an_allocation_is_refused(monkeypatch):
    monkeypatch.setattr(multinode, "allocation_nodes", lambda: [])
    o = OpenRLHFConfig.from_dict({"actor_num_nodes": 2, "vllm_num_engines": 16, "ray_address": "slurm"})
    with pytest.raises(RuntimeError, match="needs a Slurm allocation of that many nodes"):
        launcher._run_training(["python", "--dynamo.spec", "f.json"], o)


def test_multi_node_without_a_ray_route_is_refused():
    """No untested default: a multi-node layout names an existing Ray cluster or asks for the Slurm start."""
    with pytest.raises(ValueError, match="needs openrlhf.ray_address"):
        OpenRLHFConfig.from_dict({"actor_num_nodes": 2, "vllm_num_engines": 16})


def test_node_list_from_squeue_when_the_jobstep_plugin_stripped_it(monkeypatch):
    seen = []

    def run(cmd, **kw):
        seen.append(cmd)
        out = "gpu-[a-b]\n" if cmd[0] == "squeue" else "gpu-a\ngpu-b\n"
        return subprocess.CompletedProcess(cmd, 0, stdout=out)

    monkeypatch.setattr(multinode.subprocess, "run", run)
    assert multinode.allocation_nodes({"SLURM_JOB_ID": "42"}) == ["gpu-a", "gpu-b"]
    assert seen == [["squeue", "-h", "-j", "42", "-o", "%N"], ["scontrol", "show", "hostnames", "gpu-[a-b]"]]
    assert multinode.allocation_nodes({}) == []


def test_single_node_and_given_cluster_run_directly(recorder):
    assert launcher._run_training(["x", "--dynamo.spec", "f.json"], OpenRLHFConfig.from_dict({})) == 0
    two = OpenRLHFConfig.from_dict({"actor_num_nodes": 2, "vllm_num_engines": 16, "ray_address": "head:6379"})
    assert launcher._run_training(["y", "--dynamo.spec", "f.json"], two) == 0
    assert recorder.calls == [["x", "--dynamo.spec", "f.json"], ["y", "--dynamo.spec", "f.json"]]


def test_train_job_asks_slurm_for_the_nodes(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    extra = repo / "two-nodes.yaml"
    extra.write_text(
        "openrlhf: {actor_num_nodes: 2, vllm_num_engines: 16, ray_address: slurm}\n"
        "resources: {train: {gpus: 16}}\n"
    )
    cmd = [sys.executable, "-m", "snakemake", "runs/qwen2.5-math-7b/grpo/seed1/summary.json", "-n", "-p"]
    cmd += [
        "--profile",
        "workflow/profiles/slurm",
        "--configfile",
        "config/experiments/qwen2.5-math-7b.yaml",
        str(extra),
    ]
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    block = out.stdout.split("rule train:")[1].split("\n\n")[0]
    assert "nodes=2" in block and "tasks=2" in block and "gres=gpu:8" in block
