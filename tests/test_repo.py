"""Repository conventions that CI depends on."""

from pathlib import Path

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
