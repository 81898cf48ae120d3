"""The sbatch command the Slurm executor plugin would submit for the GPU configs' jobs.

The jobs come from Snakemake's own dry run of the workflow (as `--executor slurm -n`); the command
is built by the installed plugin's own submit-command builder (`get_submit_command` plus the GPU
flags of `set_gres_string`, which is what its `run_job` concatenates), so a plugin upgrade or a
resource change that makes a job unschedulable fails here, not on the cluster. Checked: one 8-GPU
node for the 7B train job with at most the node's CPUs (a single task), and N whole nodes in one
allocation for a multi-node layout.
"""

from __future__ import annotations

import re
import shlex
from importlib.metadata import version
from pathlib import Path

import pytest
from repo_copy import copy_repo

ROOT = Path(__file__).resolve().parents[1]
SEVEN_B = "config/experiments/qwen2.5-math-7b.yaml"
# CPUs of one 8-GPU node (an 8 x H100 DGX has 2 x 56 cores); the job must fit on one.
NODE_CPUS = 112


def dag_jobs(repo: Path, configfiles: list[str], target: str, all_jobs: bool = False, site: dict | None = None):
    """rule name -> job of a dry run as the Slurm executor plans it (threads uncapped by local cores);
    with all_jobs, the list of every job; `site`: default-resources and set-resources as a profile's."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(
                nodes=100,
                default_resources=(site or {}).get("default-resources"),
                overwrite_resources=(site or {}).get("set-resources", {}),
            ),
            config_settings=ConfigSettings(configfiles=[repo / c for c in configfiles]),
            snakefile=repo / "Snakefile",
            workdir=repo,
        )
        workflow.dag(DAGSettings(targets={target})).execute_workflow(executor="slurm", pseudo_executor="dryrun")
        jobs = list(workflow._workflow.dag.jobs)
        return jobs if all_jobs else {job.rule.name: job for job in jobs}


def sbatch_args(job) -> list[str]:
    """The plugin's sbatch call for `job` (site part empty: no account, partition or settings)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    validate_slurm_extra(job)
    params = {
        "run_uuid": "u",
        "slurm_logfile": "log",
        "comment_str": "c",
        "account": "",
        "partition": "",
        "workdir": "",
    }
    return shlex.split(get_submit_command(job, params) + set_gres_string(job))


def flag(args: list[str], name: str) -> str | None:
    """Value of `--name=V`, `--name V` or `-n V` in args (None if absent)."""
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name:
            return args[i + 1]
    return None


def cpus_per_node(args: list[str]) -> int:
    nodes = int(flag(args, "--nodes") or 1)
    tasks = int(flag(args, "--ntasks") or nodes)  # Slurm's default: one task per node
    assert flag(args, "--ntasks-per-gpu") is None and flag(args, "--cpus-per-gpu") is None, args
    return -(-tasks // nodes) * int(flag(args, "--cpus-per-task"))


@pytest.fixture(scope="module")
def seven_b(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("r") / "repo")
    return dag_jobs(repo, [SEVEN_B], "runs/qwen2.5-math-7b/grpo/seed1/eval/math500/scores.json")


def test_seven_b_train_job_asks_one_node_eight_gpus_one_task(seven_b):
    args = sbatch_args(seven_b["train"])
    print("plugin", version("snakemake-executor-plugin-slurm"), "train:", " ".join(args))
    assert flag(args, "--nodes") == "1" and flag(args, "--gpus") == "8"
    assert flag(args, "--ntasks") is None  # one task (Slurm's default), not one per GPU
    assert flag(args, "--cpus-per-task") == "64" and cpus_per_node(args) == 64 <= NODE_CPUS
    assert flag(args, "--mem") == "500000" and flag(args, "-t") == "2880"


def test_seven_b_evaluate_job_asks_one_gpu_one_task(seven_b):
    args = sbatch_args(seven_b["evaluate"])
    assert flag(args, "--nodes") == "1" and flag(args, "--gpus") == "1" and cpus_per_node(args) == 8


def test_four_nodes_ask_four_whole_nodes_in_one_allocation(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    (repo / "four-nodes.yaml").write_text(
        "openrlhf: {actor_num_nodes: 4, vllm_num_engines: 32, ray_address: slurm}\n"
        "resources: {train: {gpus: 32}}\n"
    )
    job = dag_jobs(repo, [SEVEN_B, "four-nodes.yaml"], "runs/qwen2.5-math-7b/grpo/seed1/summary.json")["train"]
    args = sbatch_args(job)
    print("train (4 nodes):", " ".join(args))
    assert flag(args, "--nodes") == "4" and flag(args, "--ntasks") == "4"
    # GPUs per node (GRES), so Slurm cannot spread the 32 unevenly: nodes x per-node = the actor's GPUs.
    assert flag(args, "--gres") == "gpu:8" and flag(args, "--gpus") is None
    assert 4 * int(re.fullmatch(r"gpu:(\d+)", flag(args, "--gres")).group(1)) == 32
    assert cpus_per_node(args) == 64 <= NODE_CPUS
    # The jobstep plugin runs the command in the batch step (no one-task srun around it), so the
    # Ray workers' `srun --overlap` steps can use the other nodes.
    assert "mpi" in job.resources.keys()


def test_config_refuses_train_gpus_that_do_not_match_the_actor_layout():
    from dynamo.config import config_problems, read_config_files

    data, problems = read_config_files([ROOT / "config/config.yaml", ROOT / SEVEN_B])
    assert not problems and not config_problems(data)[1]
    data["resources"]["train"]["gpus"] = 16  # one node of 8 GPUs in the openrlhf section
    assert any(
        p.startswith("config.resources.train.gpus = 16 does not match openrlhf.actor_num_nodes x")
        for p in config_problems(data)[1]
    )


def test_checkpoint_pruning_is_opt_in_and_waits_for_the_evaluation(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    (repo / "one.yaml").write_text("seeds: [1]\nmethods: [grpo]\nablation_methods: []\n")
    (repo / "prune.yaml").write_text("openrlhf: {delete_checkpoints_after_eval: true}\n")
    assert set(dag_jobs(repo, [SEVEN_B, "one.yaml"], "prune_checkpoints")) == {"prune_checkpoints"}
    jobs = dag_jobs(repo, [SEVEN_B, "one.yaml", "prune.yaml"], "prune_checkpoints")
    prune = jobs["prune_run_checkpoints"]
    assert {"train", "evaluate"} <= set(jobs)
    assert set(jobs["evaluate"].output) <= set(prune.input)
    assert "runs/qwen2.5-math-7b/grpo/seed1/final" in prune.input
    assert list(prune.output) == ["runs/qwen2.5-math-7b/grpo/seed1/ckpt.deleted"]


def site_examples() -> dict:
    """The commented SITE examples of workflow/profiles/slurm/config.yaml, uncommented."""
    import yaml

    text = (ROOT / "workflow/profiles/slurm/config.yaml").read_text()
    defaults = dict(
        yaml.safe_load(
            "\n".join(
                line.strip().removeprefix("# ")
                for line in text.splitlines()
                if re.match(r"\s+# (qos|constraint):", line)
            )
        )
    )
    block = text[text.index("# set-resources:") :].split("\n\n")[0]
    overrides = yaml.safe_load("\n".join(line.removeprefix("# ") for line in block.splitlines()))["set-resources"]
    return {"default-resources": {"mem_mb": 4000, "runtime": 60, **defaults}, "set-resources": overrides}


def test_profile_site_examples_pass_the_plugin_and_ask_per_node_gres(tmp_path):
    site = site_examples()
    assert site["default-resources"]["qos"] and site["set-resources"]["train"]["gres"] == "gpu:8"
    repo = copy_repo(tmp_path / "repo")
    jobs = dag_jobs(repo, [SEVEN_B], "runs/qwen2.5-math-7b/grpo/seed1/eval/math500/scores.json", site=site)
    args = sbatch_args(jobs["train"])  # validate_slurm_extra and the GRES format check pass
    assert flag(args, "--qos") == "normal" and flag(args, "-C") == "h100"
    assert flag(args, "--gres") == "gpu:8" and flag(args, "--gpus") is None and flag(args, "--nodes") == "1"
    assert flag(args, "--ntasks-per-gpu") is None and cpus_per_node(args) == 64
    assert flag(sbatch_args(jobs["evaluate"]), "--gres") == "gpu:1"
