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
    assert prov["inputs"] == {}  # none named here; tests/test_verify.py covers --inputs
    assert prov["commit"]  # a hash (possibly "-dirty") or "unknown" outside a git checkout


def test_pipeline_outputs_are_ignored_and_the_reference_copy_is_not():
    """Snakemake takes an output that exists as done: results/ in a clone would make the main job a no-op."""
    from pathlib import Path

    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().split()
    assert "/results/*" in ignored and "/paper_figures/*" in ignored
    # only the READMEs saying what appears there are tracked (tests/test_repo.py checks the clone)
    kept = [line for line in ignored if line.startswith("!")]
    assert kept == ["!/results/README.md", "!/paper_figures/README.md"]
    assert not any(line.strip("/").startswith("reference") for line in ignored)


def test_shipped_results_match_their_provenance():
    """Every shipped table and figure is the file its pipeline run hashed: none edited by hand, none stale."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "reference"  # a copy of the pipeline's results/, paper_figures/
    records = sorted([*root.glob("results/*.provenance.json"), *root.glob("paper_figures/*.provenance.json")])
    assert records, "no shipped results: regenerate them with the README's 'Reference results' commands"
    for record in records:
        prov = json.loads(record.read_text())
        assert prov["commit"] != "unknown" and not prov["commit"].endswith("-dirty"), record
        for name, digest in prov["outputs"].items():
            path = root / name
            assert path.exists(), f"{record.name} lists {name}, which is not shipped"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{name} differs from {record.name}"
        # Inputs (records written since provenance lists them): the shipped ones (results/scores.csv)
        # must be the files the tables were derived from; run files (runs/...) are not shipped.
        for name, digest in prov.get("inputs", {}).items():
            path = root / name
            if path.exists():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, (
                    f"{name} differs from {record.name}"
                )
