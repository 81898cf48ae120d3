"""Repository conventions that CI depends on."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("python3 -m venv")]


def test_ci_runs_the_readme_test_command():
    readme = _commands((ROOT / "README.md").read_text())
    assert len(readme) == 2, "the quick start has exactly two commands"
    assert "snakemake --cores all results/table1.csv" in readme[0]
    assert readme[1].endswith("pytest")
    assert readme[1] in _commands((ROOT / ".ci/run").read_text())


def test_ruff_lint_and_format_clean():
    import subprocess
    import sys

    for args in (["check", "."], ["format", "--check", "."]):
        out = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def test_a_clone_has_the_promised_top_level_and_ships_no_output():
    """Snakefile (with its default profile beside it), environment.yml and the project folders are
    tracked; results/ and paper_figures/ hold only their README, so a clone's main job runs every job."""
    import subprocess

    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"not a git checkout: {out.stderr.strip()}")
    tracked = out.stdout.splitlines()
    top = {path.split("/")[0] for path in tracked}
    expected = {"Snakefile", "environment.yml", "workflow", "dynamo", "baselines", "results", "paper_figures"}
    assert expected <= top, sorted(expected - top)
    assert "profiles/default/config.yaml" in tracked
    for folder in ("results", "paper_figures"):
        assert [p for p in tracked if p.startswith(folder + "/")] == [f"{folder}/README.md"]
