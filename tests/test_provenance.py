"""Provenance files of shipped results: config, commit and a hash per output."""

from __future__ import annotations

import hashlib
import json

from dynamo.reporting.provenance import main


def test_provenance_names_config_commit_and_hashes(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("experiment: embedded\ntrain: {steps: 100}\n")
    out_file = tmp_path / "table1.csv"
    out_file.write_text("method,avg/pass@1\nbase,0.3\n")
    target = tmp_path / "table1.provenance.json"
    assert main(["--config", str(cfg), "--outputs", str(out_file), "--out", str(target)]) == 0
    prov = json.loads(target.read_text())
    assert prov["format"] == "dynamo.provenance/1"
    assert prov["config"] == {"experiment": "embedded", "train": {"steps": 100}}
    assert prov["outputs"] == {str(out_file): hashlib.sha256(out_file.read_bytes()).hexdigest()}
    assert prov["commit"]  # a hash (possibly "-dirty") or "unknown" outside a git checkout


def test_results_and_figures_are_not_ignored():
    from pathlib import Path

    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().split()
    assert "/results/" not in ignored and "/paper_figures/" not in ignored
