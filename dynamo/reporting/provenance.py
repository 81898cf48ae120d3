"""Provenance of shipped results: which config and commit produced a table or figure set.

    python -m dynamo.reporting.provenance --config runs/embedded/config.yaml --inputs results/scores.csv \\
        --outputs results/table1.csv results/table1.md --out results/table1.provenance.json

The reference results in the repository (reference/results/, reference/paper_figures/: copies of
the pipeline's results/ and paper_figures/) each come with such a file: the resolved experiment
config, the commit (with "-dirty" when the checkout had uncommitted changes), the time, and the
sha256 of every input it was derived from and of every output (`dynamo verify` checks both; records
written before inputs were listed have no "inputs" key). They live outside results/ because
Snakemake takes an output that exists as done: shipped in results/, they would make the main job
of a fresh clone a no-op.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
from pathlib import Path

import yaml

from dynamo.io import write_json_atomic
from dynamo.provenance_info import git_commit


def provenance(config_path: str | Path, outputs: list[str | Path], inputs: list[str | Path] = ()) -> dict:
    return {
        "format": "dynamo.provenance/1",
        "commit": git_commit(short=True),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "config_file": str(config_path),
        "config": yaml.safe_load(Path(config_path).read_text()),
        "inputs": {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in inputs},
        "outputs": {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in outputs},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the resolved experiment config (runs/<exp>/config.yaml)")
    p.add_argument("--inputs", nargs="*", default=[], help="files the outputs were derived from")
    p.add_argument("--outputs", nargs="+", required=True, help="files the provenance describes")
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    write_json_atomic(Path(args.out), provenance(args.config, args.outputs, args.inputs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
