"""`dynamo doctor`: can this machine run this config? Versions, GPUs, packages, Ray, offline inputs.

    dynamo doctor                                               # the embedded default (config/config.yaml)
    dynamo doctor --config config/config.yaml config/experiments/qwen2.5-math-7b.yaml

Prints one line per item (`ok`, `--` for absent but not needed, `WARN`, `FAIL`) and, for each
missing piece, one line saying how to get it. Exits 1 when the chosen config cannot run here
(a FAIL line), else 0. Nothing is downloaded and no GPU work is started: packages are looked up
by their installed metadata (not imported), the driver through nvidia-smi, the model and data on
disk (their staged copies in cache/, or the Hugging Face cache).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from dynamo.config import ExperimentConfig

MIN_DRIVER_CUDA13 = 580  # torch 2.13.0's PyPI wheels are CUDA 13.0 builds (cuda-toolkit 13.0.3)
OPENRLHF_STACK = {  # package -> (pinned version, how to get it)
    "openrlhf": (
        "0.11.2",
        "pip install --no-deps openrlhf==0.11.2   (its other requirements: pip install -e '.[gpu]')",
    ),
    "vllm": ("0.29.0", "pip install -e '.[gpu]'   (vllm==0.29.0; Linux x86_64 + CUDA)"),
    "deepspeed": ("0.19.6", "pip install -e '.[gpu]'   (deepspeed==0.19.6)"),
    "ray": ("2.55.0", "pip install -e '.[gpu]'   (ray[default]==2.55.0)"),
    "flash-attn": (
        "2.8.3",
        "MAX_JOBS=8 pip install --no-build-isolation flash-attn==2.8.3   (source build: needs nvcc of torch's "
        "CUDA, 13.x, and torch installed first; README)",
    ),
}


@dataclass
class Report:
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (status, item, detail)
    fixes: list[str] = field(default_factory=list)

    def add(self, status: str, item: str, detail: str, fix: str = "") -> None:
        self.lines.append((status, item, detail))
        if fix:
            for i, line in enumerate(self.fixes):  # one line per remedy, naming every item it fixes
                names, remedy = line.split(": ", 1)
                if remedy == fix:
                    self.fixes[i] = f"{names}, {item}: {fix}"
                    return
            self.fixes.append(f"{item}: {fix}")

    @property
    def failed(self) -> list[tuple[str, str, str]]:
        return [line for line in self.lines if line[0] == "FAIL"]

    def render(self) -> str:
        out = [f"{status:>4}  {item:<22} {detail}" for status, item, detail in self.lines]
        if self.fixes:
            out += ["", "How to get what is missing:"] + [f"  - {fix}" for fix in self.fixes]
        return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Facts about this machine (each a small function, replaceable in tests)


def package_version(name: str) -> str | None:
    for candidate in (name, name.replace("-", "_")):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def driver_version() -> str | None:
    """The NVIDIA driver version, from nvidia-smi or /proc (None without a driver)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    proc = Path("/proc/driver/nvidia/version")
    if proc.exists():
        for word in proc.read_text().split():
            if word[:1].isdigit() and "." in word:
                return word
    return None


def nvcc_version() -> str | None:
    if not shutil.which("nvcc"):
        return None
    out = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout
    for part in out.replace(",", " ").split():
        if part.startswith("V") and part[1:2].isdigit():
            return part[1:]
    return "unknown"


def gpus() -> list[tuple[str, float]]:
    """(name, memory in GiB) per visible CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [
        (torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory / 2**30)
        for i in range(torch.cuda.device_count())
    ]


def ray_cluster() -> str | None:
    """The address of a Ray cluster this node would join with ray.init(address=None), if any."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    current = Path(os.environ.get("TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    return current.read_text().strip() or "running" if current.exists() else None


def hf_cached(repo: str, kind: str) -> bool:
    """Whether the Hugging Face cache holds repo (a model's config.json, or any dataset files)."""
    try:
        from huggingface_hub import scan_cache_dir, try_to_load_from_cache
    except ImportError:
        return False
    if kind == "model":
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    try:
        return any(r.repo_id == repo and r.repo_type == "dataset" for r in scan_cache_dir().repos)
    except Exception:  # no cache directory at all
        return False


# ---------------------------------------------------------------------------------------------
# The checks


def check(cfg: ExperimentConfig, facts: dict | None = None) -> Report:
    """Compare the machine (facts, gathered here unless given) with what `cfg` needs."""
    f = facts if facts is not None else gather()
    r = Report()
    r.add("ok", "python", f["python"])
    if f["torch"] is None:
        r.add("FAIL", "torch", "not installed", "pip install torch==2.13.0 -e .   (README quick start)")
        return r
    gpu_list = f["gpus"]
    cuda = f["torch_cuda"]
    r.add("ok", "torch", f"{f['torch']} ({'CUDA ' + cuda if cuda else 'CPU build'})")
    driver = f["driver"]
    r.add("ok" if driver else "--", "NVIDIA driver", driver or "none found (nvidia-smi, /proc/driver/nvidia)")
    r.add("ok" if f["nvcc"] else "--", "nvcc", f["nvcc"] or "not on PATH (only needed to build flash-attn)")
    if gpu_list:
        r.add("ok", "GPUs", ", ".join(f"{name} {mem:.0f} GiB" for name, mem in gpu_list))
    else:
        r.add("--", "GPUs", "no CUDA device visible to torch")
    for name in OPENRLHF_STACK:
        version = f["packages"].get(name)
        r.add("ok" if version else "--", name, version or "not installed")
    ray_at = f["ray_cluster"]
    r.add(
        "ok",
        "Ray cluster",
        f"one runs at {ray_at} (the engine starts a private one unless openrlhf.ray_address is set)"
        if ray_at
        else "none running (the engine starts a private one)",
    )

    needs_gpu = cfg.engine == "openrlhf" or cfg.eval.backend == "vllm"
    if cfg.engine == "openrlhf":
        _check_openrlhf(cfg, f, r)
    if cfg.eval.backend == "vllm" and not f["packages"].get("vllm"):
        r.add("FAIL", "eval backend", "eval.backend: vllm, but vllm is not installed", OPENRLHF_STACK["vllm"][1])
    if needs_gpu:
        if not gpu_list:
            why = "the torch build has no CUDA" if not cuda else "no GPU is visible (CUDA_VISIBLE_DEVICES, driver)"
            r.add(
                "FAIL",
                "GPU",
                f"engine {cfg.engine!r} / eval backend {cfg.eval.backend!r} need CUDA GPUs: {why}",
                "run on a GPU node (Slurm profile: README) with the CUDA build of torch 2.13.0 (driver >= 580)",
            )
        if cuda and cuda.startswith("13") and driver and int(driver.split(".")[0]) < MIN_DRIVER_CUDA13:
            r.add(
                "FAIL",
                "driver",
                f"torch {f['torch']} is a CUDA {cuda} build: needs driver >= {MIN_DRIVER_CUDA13}, found {driver}",
                "ask the cluster admins for driver >= 580, or install a torch build for your CUDA (not our pins)",
            )
    _check_inputs(cfg, f, r)
    return r


def _check_openrlhf(cfg: ExperimentConfig, f: dict, r: Report) -> None:
    from dynamo.engines.openrlhf.config import OpenRLHFConfig

    o = OpenRLHFConfig.from_dict(cfg.openrlhf)
    for name, (pinned, how) in OPENRLHF_STACK.items():
        version = f["packages"].get(name)
        if version is None:
            r.add("FAIL", name, f"engine 'openrlhf' needs {name}=={pinned}", how)
        elif version.split("+")[0] != pinned:
            r.add("WARN", name, f"{version} installed, the engine is tested with {pinned}", how)
    count = len(f["gpus"])
    if count and count < o.actor_gpus_per_node:
        r.add(
            "FAIL",
            "GPU count",
            f"openrlhf.actor_gpus_per_node = {o.actor_gpus_per_node}, this node has {count}",
            "run on a node with that many GPUs, or lower actor_gpus_per_node/vllm_num_engines in the config",
        )
    try:
        from dynamo.plan import memory_plan

        est = memory_plan(cfg)
    except Exception as exc:  # the plan is advice; a config it cannot size is reported, not fatal
        r.add("WARN", "memory plan", f"not available: {exc}")
        return
    need = est.peak_gib
    if f["gpus"]:
        have = min(mem for _, mem in f["gpus"])
        status = "ok" if need <= have else "FAIL"
        r.add(
            status,
            "memory plan",
            f"peak ~{need:.0f} GiB per GPU ({est.peak_phase}), smallest GPU has {have:.0f} GiB",
            "" if status == "ok" else f"`dynamo plan --config ... --gpu-memory {have:.0f}` picks sizes that fit",
        )
    else:
        r.add("--", "memory plan", f"peak ~{need:.0f} GiB per GPU ({est.peak_phase}); `dynamo plan` for details")


def _check_inputs(cfg: ExperimentConfig, f: dict, r: Report) -> None:
    from dynamo.stage import is_hub_id, plan

    p = plan(cfg)
    staged = f["exists"]
    how = "snakemake stage_inputs --cores 1 --configfile <your config>   (or `dynamo stage ...`, needs internet)"
    if cfg.model.build_tiny or cfg.warmstart.enabled:
        r.add("ok", "model", f"built by the pipeline ({cfg.base_model_path})")
    elif p.model:
        repo, local = p.model
        where = local if staged(local) else ("the Hugging Face cache" if f["hf_cached"](repo, "model") else None)
        r.add(
            "ok" if where else "WARN",
            "model offline",
            f"{repo}: {where or 'not on this machine'}",
            "" if where else how,
        )
    else:
        ok = not is_hub_id(cfg.model.path) and staged(cfg.model.path)
        r.add(
            "ok" if ok else "FAIL",
            "model",
            cfg.model.path,
            "" if ok else "set model.path to an existing directory",
        )
    if cfg.data.task == "arithmetic":
        r.add("ok", "training data", f"generated by the pipeline ({cfg.train_pool_path})")
    elif p.train:
        repo, local = p.train
        where = local if staged(local) else ("the Hugging Face cache" if f["hf_cached"](repo, "dataset") else None)
        r.add(
            "ok" if where else "WARN",
            "data offline",
            f"{repo}: {where or 'not on this machine'}",
            "" if where else how,
        )
    else:
        ok = staged(cfg.data.train_path)
        r.add("ok" if ok else "FAIL", "training data", cfg.data.train_path, "" if ok else "no such file")
    missing = [name for name, _, local in p.benchmarks if not staged(local)]
    if p.benchmarks:
        detail = "all staged in cache/benchmarks" if not missing else f"not staged: {', '.join(missing)}"
        r.add("ok" if not missing else "WARN", "benchmarks offline", detail, "" if not missing else how)


def gather() -> dict:
    try:
        import torch

        torch_version, torch_cuda = torch.__version__, torch.version.cuda
    except ImportError:
        torch_version = torch_cuda = None
    return {
        "python": f"{platform.python_version()} ({sys.executable})",
        "torch": torch_version,
        "torch_cuda": torch_cuda,
        "driver": driver_version(),
        "nvcc": nvcc_version(),
        "gpus": gpus() if torch_version else [],
        "packages": {name: package_version(name) for name in OPENRLHF_STACK},
        "ray_cluster": ray_cluster(),
        "exists": os.path.exists,
        "hf_cached": hf_cached,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        nargs="+",
        default=["config/config.yaml"],
        help="experiment YAML file(s), merged left to right (default: config/config.yaml)",
    )


def run(args: argparse.Namespace) -> int:
    from dynamo.config import load_config

    cfg = load_config(*args.config)
    report = check(cfg)
    print(
        f"dynamo doctor: experiment {cfg.experiment!r}, engine {cfg.engine!r}, eval backend {cfg.eval.backend!r}"
    )
    print(report.render())
    if report.failed:
        print(f"\nThis config cannot run here ({len(report.failed)} FAIL line(s) above).")
        return 1
    print("\nThis config can run here.")
    return 0
