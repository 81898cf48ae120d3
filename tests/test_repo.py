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


@pytest.mark.parametrize(
    "ci, reason, code",
    [
        ("true", "openrlhf 0.11.2 is not importable (No module named 'openrlhf')", 1),
        ("", "openrlhf 0.11.2 is not importable (No module named 'openrlhf')", 0),
        ("true", "this machine has a GPU", 0),
    ],
    ids=["ci-openrlhf-missing-fails", "local-openrlhf-missing-skips", "ci-other-skip-passes"],
)
def test_ci_fails_when_openrlhf_tests_skip(tmp_path, ci, reason, code):
    """tests/conftest.py in a pytest run of its own: a module skipping because openrlhf is missing."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_engine.py").write_text(
        f"import pytest\npytest.skip({reason!r}, allow_module_level=True)\ndef test_after_the_skip():\n    pass\n"
    )
    (tmp_path / "test_other.py").write_text("def test_passes():\n    pass\n")
    env = {**os.environ, "CI": ci}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == code, out.stdout[-2000:]
    assert ("openrlhf missing in CI" in out.stdout) == (code == 1)
