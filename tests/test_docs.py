"""The README stays true to the code: its fidelity table and two commands."""
from __future__ import annotations

from pathlib import Path

from implementations.fidelity import capabilities_markdown, fidelity_markdown

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_fidelity_table_matches_the_registry():
    assert fidelity_markdown() in README, "README's fidelity table is stale: paste `python -m implementations.fidelity`"
    assert capabilities_markdown() in README


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    assert "pip install -r requirements.txt && python run_all.py" in README
    assert "python -m pytest -q" in README
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == "python -m pytest -q"
