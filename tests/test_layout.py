"""The tree shows the pipeline, and imports only go one way: data -> model -> run -> store -> analysis
-> figures / report -> command lines. A module may import from its own layer's foundations (a lower
layer) only; `implementations` (the models) never imports the suite."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# suite modules, lowest layer first
LAYERS = [
    ("foundations", {"data", "schema", "provenance", "hardware", "timing", "distributed"}),
    ("tokens", {"tokenizer", "objectives"}),
    ("what to run", {"runs", "presets"}),
    ("a run's data, model and optimiser", {"batches", "model", "optim"}),
    ("one step", {"step"}),
    ("a run's checkpoints", {"checkpoint"}),
    ("the result row", {"summary"}),
    ("the training loop", {"train"}),
    ("the JAX backend's run", {"jax_step"}),
    ("results on disk", {"store"}),
    ("sweeps", {"sweep"}),
    ("tables", {"analysis"}),
    ("the paper's claims", {"claims"}),
    ("figures", {"figures"}),
    ("report", {"report"}),
    ("command line", {"cli"}),
    ("profiler command line", {"profile"}),
    ("platform comparison command line", {"platforms"}),
    ("backend parity command line", {"backend_parity"}),
]
LAYER_OF = {m: i for i, (_, ms) in enumerate(LAYERS) for m in ms}


def suite_imports(path: Path) -> set[str]:
    """The suite modules a file imports, at any depth (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:                    # from .train import x
                out.add(node.module.split(".")[0])
            elif node.level == 1:                                  # from . import distributed
                out.update(a.name for a in node.names)
            elif node.module and node.module.startswith("suite."):  # from suite.data import x
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("suite."))
    return out


def test_every_suite_module_has_a_layer():
    modules = {p.stem for p in (ROOT / "suite").glob("*.py") if p.stem != "__init__"}
    assert modules == set(LAYER_OF), f"modules without a layer: {sorted(modules - set(LAYER_OF))}; " \
                                     f"layers without a module: {sorted(set(LAYER_OF) - modules)}"


def test_suite_imports_go_one_way():
    wrong = []
    for path in sorted((ROOT / "suite").glob("*.py")):
        if path.stem == "__init__":
            continue
        for dep in suite_imports(path):
            if dep in LAYER_OF and LAYER_OF[dep] >= LAYER_OF[path.stem]:
                wrong.append(f"suite/{path.name} ({LAYERS[LAYER_OF[path.stem]][0]}) imports suite.{dep} "
                             f"({LAYERS[LAYER_OF[dep]][0]})")
    assert not wrong, "\n".join(wrong)


def test_the_models_never_import_the_suite():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "implementations").rglob("*.py")
                 if any(isinstance(n, (ast.Import, ast.ImportFrom)) and
                        (getattr(n, "module", None) or "").startswith("suite") or
                        isinstance(n, ast.Import) and any(a.name.startswith("suite") for a in n.names)
                        for n in ast.walk(ast.parse(p.read_text())))]
    assert not offenders, offenders


def test_the_checker_sees_a_backward_import(tmp_path):
    """The rule can fail: a function-level import of a higher layer is found."""
    bad = tmp_path / "batches.py"
    bad.write_text("def f():\n    from .train import run\n    from suite.report import write_report\n")
    assert suite_imports(bad) == {"train", "report"}
