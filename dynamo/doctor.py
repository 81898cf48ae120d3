"""`dynamo doctor`: can this machine run this config? Versions, GPUs, packages, Ray, offline inputs.

    dynamo doctor                                               # the embedded default (config/config.yaml)
    dynamo doctor --config config/config.yaml config/experiments/qwen2.5-math-7b.yaml

Checked: the NVIDIA driver (nvidia-smi) against what the installed torch's CUDA needs -- or, with a
CPU build of torch (a login node), against what the `gpu` extra's torch will need; DeepSpeed's
FusedAdam prebuilt, or else nvcc and ninja to compile it just in time; flash-attn importable (a
subprocess import: its CUDA extension must match torch); the Slurm executor plugin's version; the
free disk where the run directories go against the config's checkpoint footprint (`dynamo plan`);
the openrlhf stack's versions, GPU count and memory, offline inputs.

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
# Smallest driver major of each CUDA major (NVIDIA's minor-version compatibility: 12.x runs on >= 525).
MIN_DRIVER = {13: MIN_DRIVER_CUDA13, 12: 525, 11: 450}
GPU_EXTRA_TORCH = ("2.13.0", "13.0")  # the `gpu` extra's torch pin and its CUDA build
SLURM_PLUGIN = ("snakemake-executor-plugin-slurm", "2.6.1")  # pyproject's pin (tests/test_doctor.py checks)
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


def deepspeed_prebuilt_ops() -> dict[str, bool] | None:
    """DeepSpeed's ops compiled at install (DS_BUILD_*=1), from its generated git_version_info_installed.py
    (read, not imported: importing deepspeed probes the accelerator). None without deepspeed."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("deepspeed")
    if spec is None or not spec.submodule_search_locations:
        return None
    info = Path(next(iter(spec.submodule_search_locations))) / "git_version_info_installed.py"
    if not info.is_file():
        return {}
    for node in ast.parse(info.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "installed_ops":
            return ast.literal_eval(node.value)
    return {}


def flash_attn_import() -> str | None:
    """None if flash-attn is not installed; "ok" if it and its CUDA extension import; else the error."""
    if package_version("flash-attn") is None:
        return None
    code = "import flash_attn, flash_attn_2_cuda"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "import timed out after 300 s"
    if out.returncode == 0:
        return "ok"
    lines = out.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {out.returncode}"


def disk_free_gb(path: str = "runs") -> float:
    """Free space (decimal GB) on the filesystem that holds `path` (its nearest existing parent)."""
    where = Path(path).resolve()
    while not where.exists():
        where = where.parent
    return shutil.disk_usage(where).free / 1e9


def nvcc_version() -> str | None:
    if not shutil.which("nvcc"):
        return None
    out = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout
    for part in out.replace(",", " ").split():
        if part.startswith("V") and part[1:2].isdigit():
            return part[1:]
    return "unknown"


def ninja_version() -> str | None:
    if not shutil.which("ninja"):
        return None
    out = subprocess.run(["ninja", "--version"], capture_output=True, text=True).stdout.strip()
    return out or "unknown"


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
    needs_gpu = cfg.engine == "openrlhf" or cfg.eval.backend == "vllm"
    _check_driver(f, r, needs_gpu)
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

    plugin, pinned = SLURM_PLUGIN
    version = f["packages"].get(plugin)
    if version is None:
        r.add("--", "Slurm plugin", f"{plugin} not installed (only the Slurm profile needs it)")
    else:
        r.add(
            "ok" if version == pinned else "WARN",
            "Slurm plugin",
            f"{plugin} {version}" + ("" if version == pinned else f": the profile and its tests use {pinned}"),
            "" if version == pinned else f"pip install {plugin}=={pinned}",
        )
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
    _check_inputs(cfg, f, r)
    return r


def _check_driver(f: dict, r: Report, needs_gpu: bool) -> None:
    """The driver against the installed torch's CUDA, or (CPU build of torch) the `gpu` extra's."""
    driver, cuda = f["driver"], f["torch_cuda"]
    if cuda:
        what, major = f"torch {f['torch']} (CUDA {cuda} build)", int(cuda.split(".")[0])
    else:
        what, major = f"the gpu extra's torch {GPU_EXTRA_TORCH[0]} (CUDA {GPU_EXTRA_TORCH[1]})", 13
    need = MIN_DRIVER.get(major, MIN_DRIVER_CUDA13)
    fix = f"ask the cluster admins for driver >= {need}, or install a torch build for your CUDA (not our pins)"
    if driver is None:
        where = "this machine" if cuda or needs_gpu else "the GPU nodes"
        r.add(
            "--",
            "NVIDIA driver",
            f"none found (nvidia-smi, /proc/driver/nvidia); {what} needs >= {need} on {where}",
        )
    elif int(driver.split(".")[0]) >= need:
        r.add("ok", "NVIDIA driver", f"{driver} (>= {need}, as {what} needs)")
    else:
        # Fatal where this torch must run on this driver; a warning on a CPU-torch login node.
        status = "FAIL" if cuda and needs_gpu else "WARN"
        r.add(status, "NVIDIA driver", f"{what} needs driver >= {need}, found {driver}", fix)


def _check_build_tools(f: dict, r: Report) -> None:
    """OpenRLHF's optimizer is DeepSpeed's FusedAdam: prebuilt at install, or compiled on first use."""
    ops = f["deepspeed_ops"]
    if ops is None:
        return  # deepspeed missing: reported with the stack
    if ops.get("fused_adam"):
        r.add("ok", "DeepSpeed ops", "FusedAdam prebuilt (DS_BUILD_FUSED_ADAM=1): no compiler needed")
        return
    how = (
        "DS_BUILD_FUSED_ADAM=1 pip install --no-build-isolation --force-reinstall --no-deps deepspeed==0.19.6 "
        "on a GPU node (README), or put nvcc of torch's CUDA and ninja on PATH"
    )
    cuda = f["torch_cuda"]
    missing = [name for name in ("nvcc", "ninja") if not f[name]]
    if not missing and cuda and f["nvcc"].split(".")[0] != cuda.split(".")[0]:
        r.add(
            "FAIL" if f["gpus"] else "WARN",
            "DeepSpeed ops",
            f"FusedAdam is compiled on first use: nvcc {f['nvcc']} does not match torch's CUDA {cuda}",
            how,
        )
    elif not missing:
        r.add("ok", "DeepSpeed ops", f"FusedAdam compiled on first use (nvcc {f['nvcc']}, ninja {f['ninja']})")
    else:
        status = "FAIL" if f["gpus"] else "WARN"  # the train job compiles it on a GPU node
        r.add(status, "DeepSpeed ops", f"FusedAdam is not prebuilt and {' and '.join(missing)} not on PATH", how)


def _check_disk(cfg: ExperimentConfig, f: dict, r: Report) -> None:
    from dynamo.plan import disk_plan

    try:
        d = disk_plan(cfg)
    except Exception as exc:  # no model shape: the plan is advice
        r.add("WARN", "disk", f"checkpoint footprint not available: {exc}")
        return
    free = f["disk_free_gb"]
    detail = (
        f"{free:,.0f} GB free for runs/; one run keeps up to {d.per_run_gb:,.0f} GB, the sweep "
        f"{d.per_sweep_gb:,.0f} GB ({d.runs} runs x {d.kept} ckpt of {d.per_checkpoint_gb:,.0f} GB + final)"
    )
    fix = "free space, openrlhf.max_ckpt_num: 1, or openrlhf.delete_checkpoints_after_eval: true (dynamo plan)"
    if free < d.per_run_gb:
        r.add("FAIL", "disk", detail, fix)
    elif free < d.per_sweep_gb:
        r.add("WARN", "disk", detail + ": not enough for all runs at once", fix)
    else:
        r.add("ok", "disk", detail)


def _check_openrlhf(cfg: ExperimentConfig, f: dict, r: Report) -> None:
    from dynamo.engines.openrlhf.config import OpenRLHFConfig

    o = OpenRLHFConfig.from_dict(cfg.openrlhf)
    for name, (pinned, how) in OPENRLHF_STACK.items():
        version = f["packages"].get(name)
        if version is None:
            r.add("FAIL", name, f"engine 'openrlhf' needs {name}=={pinned}", how)
        elif version.split("+")[0] != pinned:
            r.add("WARN", name, f"{version} installed, the engine is tested with {pinned}", how)
    fa = f["flash_attn_import"]
    if fa is not None and fa != "ok":
        r.add("FAIL", "flash-attn import", fa, OPENRLHF_STACK["flash-attn"][1] + " against this torch")
    elif fa == "ok":
        r.add("ok", "flash-attn import", "flash_attn and its CUDA extension import")
    _check_build_tools(f, r)
    _check_disk(cfg, f, r)
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
        "ninja": ninja_version(),
        "deepspeed_ops": deepspeed_prebuilt_ops(),
        "flash_attn_import": flash_attn_import(),
        "disk_free_gb": disk_free_gb(),
        "gpus": gpus() if torch_version else [],
        "packages": {name: package_version(name) for name in [*OPENRLHF_STACK, SLURM_PLUGIN[0]]},
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
