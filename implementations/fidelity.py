"""The paper-fidelity table: every place a model departs from the paper or the paper is unknown here.

    python -m implementations.fidelity     # prints the Markdown table used in README.md
"""
from __future__ import annotations

from .registry import get_spec, list_models


def fidelity_rows() -> list[tuple[str, str, str, str, str]]:
    rows = []
    for name in list_models():
        for note in get_spec(name).fidelity:
            rows.append((name, note.topic, note.paper, note.ours, note.configurable or "-"))
    return rows


def fidelity_markdown() -> str:
    lines = ["| model | topic | paper | ours | option |", "|---|---|---|---|---|"]
    for row in fidelity_rows():
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def capabilities_markdown() -> str:
    lines = ["| model | description | causal | bidirectional | attention cost | options |", "|---|---|---|---|---|---|"]
    for name in list_models():
        s = get_spec(name)
        lines.append(f"| `{name}` | {s.description} | {'yes' if s.causal else 'no'} | "
                     f"{'yes' if s.bidirectional else 'no'} | {'quadratic' if s.quadratic else 'linear'} in T | "
                     f"{', '.join(f'`{k}`' for k in s.options)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(capabilities_markdown())
    print()
    print(fidelity_markdown())
