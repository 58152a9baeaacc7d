"""suite.report / suite.figures / notebooks/figures.ipynb on a synthetic results folder (CPU, no torch)."""
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from suite import report
from suite.report import summary_markdown, write_report
from suite.schema import CURVE_COLUMNS, SCHEMA, SUMMARY_COLUMNS
from suite.store import ResultsError, ResultsStore
from test_store import lock_held_elsewhere

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "figures.ipynb"
DEVICE = "NVIDIA H200 (synthetic)"
MODELS = {"transformer_plus_plus": 1.0, "flash_quad": 1.4, "flash": 2.0}   # learning rate multipliers
CONTEXTS = (512, 1024)
OBJECTIVES = ("clm", "mlm")
FIGURE_STEMS = ("speedup_vs_context", "quality_vs_time", "latency_vs_context", "memory_vs_context",
                "step_speedup_vs_context")


def make_runs(rows: list[dict]) -> pd.DataFrame:
    """A runs table with every SUMMARY_COLUMNS column; unknown values NaN."""
    df = pd.DataFrame(rows)
    return df.reindex(columns=SUMMARY_COLUMNS + [c for c in df.columns if c not in SUMMARY_COLUMNS])


def synthetic_results(seeds=(0, 1), speed=True, with_curves=True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train runs for 2 objectives x 2 contexts x 3 models (x seeds) with exponential learning curves,
    and speed runs for the causal LM, where Transformer++ runs out of memory at 1024."""
    runs, curves = [], []
    common = {"schema": SCHEMA, "size": "tiny", "d_model": 64, "n_layers": 2, "vocab_size": 256,
              "device": "cuda", "device_name": DEVICE, "precision": "bf16", "tokens_per_step": 4096,
              "corpus": "shakespeare", "tokenizer": "bytes"}
    times = np.linspace(0.0, 60.0, 9)
    for obj in OBJECTIVES:
        for ctx in CONTEXTS:
            for model, mult in MODELS.items():
                for seed in seeds:
                    rid = f"train-{model}-{obj}-{ctx}-{seed}"
                    rate = 0.05 * mult * (1.3 if ctx == 1024 and model != "transformer_plus_plus" else 1.0)
                    floor = 1.5 + (0.3 if obj == "mlm" else 0.0) - 0.05 * seed
                    loss = floor + 3.0 * np.exp(-rate * times)
                    ms = 20.0 * (ctx / 512 if model == "transformer_plus_plus" else 1.0) / mult
                    runs.append(common | {
                        "run_id": rid, "status": "ok", "kind": "train", "model": model, "objective": obj,
                        "context": ctx, "seed": seed, "steps": 1000, "train_time_s": times[-1],
                        "final_eval_loss": loss[-1], "final_bpb": loss[-1] / math.log(2),
                        "final_train_loss": loss[-1] - 0.05, "step_ms_median": ms})
                    if with_curves:
                        curves += [{"run_id": rid, "model": model, "objective": obj, "context": ctx, "seed": seed,
                                    "step": int(i * 125), "time_s": t, "tokens": int(i * 125 * 4096),
                                    "train_loss": val - 0.05, "eval_loss": val, "eval_bpb": val / math.log(2)}
                                   for i, (t, val) in enumerate(zip(times, loss))]
    if speed:
        for ctx in (512, 1024, 2048):
            for model, mult in MODELS.items():
                oom = model == "transformer_plus_plus" and ctx >= 1024
                ms = math.nan if oom else 20.0 * (ctx / 512 if model == "transformer_plus_plus" else 1.0) / mult
                runs.append(common | {
                    "run_id": f"speed-{model}-{ctx}", "status": "oom" if oom else "ok",
                    "message": "CUDA out of memory" if oom else "", "kind": "speed", "model": model,
                    "objective": "clm", "context": ctx, "seed": 0, "step_ms_median": ms, "step_ms_p10": ms * 0.95,
                    "step_ms_p90": ms * 1.1, "tokens_per_s": 4096 / ms * 1000, "mfu": 0.3,
                    "peak_mem_gib": math.nan if oom else 2.0 * ctx / 512 / mult})
        # variants: a compiled FLASH, a materialised-attention Transformer++ that runs out of memory at 2K
        for ctx in (512, 1024, 2048):
            for variant, model, ms in (("flash+compile", "flash", 7.0), ("transformer_plus_plus[materialized]",
                                                                          "transformer_plus_plus", 30.0 * ctx / 512)):
                oom = variant.endswith("]") and ctx == 2048
                runs.append(common | {
                    "run_id": f"speed-{variant}-{ctx}", "status": "oom" if oom else "ok", "kind": "speed",
                    "model": model, "variant": variant, "objective": "clm", "context": ctx, "seed": 0,
                    "step_ms_median": math.nan if oom else ms, "peak_mem_gib": math.nan if oom else 3.0})
    return make_runs(runs), pd.DataFrame(curves).reindex(columns=CURVE_COLUMNS)


def write_folder(folder: Path, runs: pd.DataFrame, curves: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    runs.to_csv(folder / "runs.csv", index=False)
    curves.to_csv(folder / "curves.csv", index=False)
    return folder


def _assert_figures(folder: Path, stems=FIGURE_STEMS):
    for stem in stems:
        png, svg = folder / "figures" / f"{stem}.png", folder / "figures" / f"{stem}.svg"
        assert png.exists() and png.stat().st_size > 1000, png
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert svg.exists() and svg.stat().st_size > 1000 and "<svg" in svg.read_text()[:2000], svg


def test_write_report_writes_every_table_and_figure(tmp_path):
    folder = write_folder(tmp_path / "h200" / "test", *synthetic_results())
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a failing figure would only warn: make it fail the test
        written = write_report(folder)
    _assert_figures(folder)
    assert sorted(p.name for p in written["figures"]) == sorted(f"{s}.{e}" for s in FIGURE_STEMS for e in ("png", "svg"))
    for name in ("speedup", "latency", "quality"):
        for ext in ("csv", "md"):
            path = folder / "tables" / f"{name}.{ext}"
            assert path in written["tables"] and path.stat().st_size > 0
    speed = pd.read_csv(folder / "tables" / "speedup.csv")
    assert set(speed["baseline"]) == {"transformer_plus_plus"}        # no vanilla Transformer runs here
    flash = speed[(speed["model"] == "flash") & (speed["objective"] == "clm") & (speed["context"] == 512)].iloc[0]
    assert flash["speedup_mean"] > 1.5 and flash["n_seeds"] == 2 and flash["reached_all"]
    lat = pd.read_csv(folder / "tables" / "latency.csv")
    assert set(lat["source"]) == {"speed"}
    assert lat[(lat["variant"] == "transformer_plus_plus") & (lat["context"] == 2048)]["status"].item() == "oom"
    assert lat[(lat["variant"] == "transformer_plus_plus[materialized]") & (lat["context"] == 2048)]["status"].item() == "oom"
    assert lat[(lat["variant"] == "flash+compile") & (lat["context"] == 512)]["step_ms_median"].item() == 7.0
    md = (folder / "tables" / "latency.md").read_text()
    assert "OOM" in md and "Transformer++" in md and "| model | 512 | 1K | 2K |" in md
    assert "| FLASH +compile | 7.00 |" in md and "| Transformer++ [materialized] | 30.0 | 60.0 | OOM |" in md
    summary = summary_markdown(folder)
    assert "speedup over Transformer++" in summary and "OOM" in summary and DEVICE in summary


def test_write_report_with_missing_data_skips_without_crashing(tmp_path):
    # training runs only, no curves: no speedup or quality-vs-time figure, latency from training runs
    runs, curves = synthetic_results(seeds=(0,), speed=False, with_curves=False)
    folder = write_folder(tmp_path / "no-speed", runs, curves)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = write_report(folder)
    names = {p.name for p in written["figures"]}
    # no memory numbers, no curves: latency, and the step-time ratio derived from it
    assert names == {"latency_vs_context.png", "latency_vs_context.svg",
                     "step_speedup_vs_context.png", "step_speedup_vs_context.svg"}
    assert "from training runs" in (folder / "tables" / "latency.md").read_text()
    speed = pd.read_csv(folder / "tables" / "speedup.csv")                 # final losses, no curves: only the baseline
    assert set(speed.loc[speed["reached_all"], "model"]) == {"transformer_plus_plus"}
    # an empty results folder: nothing to draw, nothing raised
    empty = tmp_path / "empty"
    empty.mkdir()
    make_runs([]).to_csv(empty / "runs.csv", index=False)
    assert write_report(empty) == {"tables": [], "figures": []}
    assert "No runs" in summary_markdown(empty)
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nowhere")


def test_report_from_frames_and_unknown_model(tmp_path):
    runs, curves = synthetic_results(seeds=(0,))
    extra = runs[runs["model"] == "flash"].assign(model="my_new_model",
                                                  run_id=lambda d: d["run_id"].str.replace("flash", "mine"))
    extra_curves = curves[curves["model"] == "flash"].assign(
        model="my_new_model", run_id=lambda d: d["run_id"].str.replace("flash", "mine"))
    written = write_report(tmp_path, pd.concat([runs, extra]), pd.concat([curves, extra_curves]))
    assert len(written["figures"]) == 2 * len(FIGURE_STEMS)
    assert "my_new_model" in (tmp_path / "tables" / "quality.md").read_text()


def test_notebook_redraws_everything_into_a_scratch_folder(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    results = tmp_path / "results"
    folder = write_folder(results / "h200" / "test", *synthetic_results(seeds=(0,)))
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    assert "RESULTS = Path(os.environ.get(\"FLASH_REPRO_RESULTS\"" in nb.cells[0].source
    monkeypatch.setenv("FLASH_REPRO_RESULTS", str(results))
    monkeypatch.setenv("FLASH_REPRO_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.delenv("FLASH_REPRO_WRITE_IN_PLACE", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()                            # raises CellExecutionError on any failing cell
    scratch = tmp_path / "scratch" / "h200" / "test"
    _assert_figures(scratch)
    assert (scratch / "tables" / "speedup.md").exists()
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before   # the results folder: untouched
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(FIGURE_STEMS)
    assert any("speedup over Transformer++" in o.get("data", {}).get("text/markdown", "") for o in outputs)
    # FLASH_REPRO_WRITE_IN_PLACE=1: into the results folder itself (only the first cell, which decides where)
    code = nb.cells[0].source + "\nprint('OUT', out_folder(FOLDERS[0]))"
    env = {**os.environ, "FLASH_REPRO_WRITE_IN_PLACE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=NOTEBOOK.parent, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and f"OUT {folder}" in proc.stdout, proc.stderr


def test_line_styles_tell_variants_apart_only_when_mixed():
    from suite.analysis import Variant, Variants
    from suite.figures import _one_line_style, _style, linestyle

    V = Variants({v.name: v for v in (Variant("flash+compile", "flash", compiled=True),
                                      Variant("transformer_plus_plus+compile", "transformer_plus_plus", compiled=True),
                                      Variant("flash[chunk=128]", "flash", configured=True),
                                      Variant("flash[chunk=128]+compile", "flash", compiled=True, configured=True))})
    assert _one_line_style(["flash+compile", "transformer_plus_plus+compile"], V)  # all compiled: drawn solid
    assert _one_line_style(["flash", "transformer_plus_plus"], V)
    assert not _one_line_style(["flash", "flash+compile"], V)
    assert [linestyle(V[v]) for v in ("flash", "flash+compile", "flash[chunk=128]", "flash[chunk=128]+compile")] == \
        ["-", "--", ":", "-."]
    assert _style(V["flash+compile"])["ls"] == "--" and _style(V["flash+compile"], solid=True)["ls"] == "-"
    assert _style(V["flash"])["color"] == _style(V["flash+compile"])["color"]


# ------------------------------------------------------------------------ results that cannot be lost or mixed
def store_folder(folder: Path, runs: pd.DataFrame, curves: pd.DataFrame) -> Path:
    """A results folder as the sweep leaves it: one run file per run (runs/<run_id>.json)."""
    store = ResultsStore(folder)
    for row in runs.to_dict("records"):
        summary = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        store.write(summary, curves[curves["run_id"] == row["run_id"]].to_dict("records"))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_report(capsys, *argv) -> tuple[int, str, str]:
    rc = report.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_report_cli_keeps_the_rows_of_a_damaged_run_file(tmp_path, capsys):
    runs, curves = synthetic_results(seeds=(0,))
    folder = store_folder(tmp_path / "h200" / "test", runs, curves)
    assert run_report(capsys, folder)[0] == 0
    first = snapshot(folder)
    victim = folder / "runs" / "train-flash-clm-512-0.json"
    victim.write_text(victim.read_text()[:200])                            # truncated: a crash, a full disk
    rc, out, err = run_report(capsys, folder)
    assert rc == 0
    warning = [line for line in err.splitlines() if victim.name in line]
    assert len(warning) == 1 and "damaged" in warning[0] and "kept" in warning[0]
    assert not victim.exists() and victim.with_name(victim.name + ".damaged").read_text() == first[
        "runs/train-flash-clm-512-0.json"].decode()[:200]
    after = snapshot(folder)
    for name in ("runs.csv", "curves.csv", "tables/quality.csv", "tables/speedup.csv", "figures/quality_vs_time.svg"):
        assert after[name] == first[name], name                               # nothing lost, nothing changed
    rc, out, err = run_report(capsys, folder)                                 # and again, once moved aside
    assert rc == 0 and snapshot(folder)["runs.csv"] == first["runs.csv"] and "train-flash-clm-512-0" in err


@pytest.mark.parametrize("case", ["missing", "empty", "empty runs", "damaged runs only", "no rows"])
def test_report_cli_without_results_says_so_in_one_line(tmp_path, capsys, case):
    folder = tmp_path / "results" / "x"
    if case != "missing":
        folder.mkdir(parents=True)
    if case == "empty runs":
        (folder / "runs").mkdir()
    if case == "damaged runs only":
        (folder / "runs").mkdir()
        (folder / "runs" / "abc.json").write_text('{"schema": "flash-repro/run/v1", "sum')
    if case == "no rows":
        make_runs([]).to_csv(folder / "runs.csv", index=False)
    before = snapshot(tmp_path)
    rc, out, err = run_report(capsys, folder)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(folder) in err and "run the sweep first" in err and "runs= and curves=" not in err
    assert snapshot(tmp_path) == before and folder.exists() == (case != "missing")


def test_report_removes_its_stale_outputs_and_never_a_file_it_did_not_write(tmp_path, capsys):
    runs, curves = synthetic_results(seeds=(0,))
    folder = write_folder(tmp_path / "f", runs, curves)
    (folder / "tables").mkdir()
    (folder / "tables" / "notes.md").write_text("mine")
    write_report(folder)
    assert (folder / "tables" / "speedup.csv").exists() and (folder / "figures" / "speedup_vs_context.png").exists()
    manifest = json.loads((folder / report.MANIFEST).read_text())["written"]
    assert "tables/speedup.csv" in manifest and "tables/notes.md" not in manifest

    speed_only = runs[runs["kind"] == "speed"]                                # no training runs: no speedup
    write_folder(folder, speed_only, curves.iloc[:0])
    (folder / "figures" / "mine.png").write_bytes(b"a user's figure")
    written = write_report(folder)
    names = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    for gone in ("tables/speedup.csv", "tables/speedup.md", "tables/quality.md", "tables/equal_steps.csv",
                 "figures/speedup_vs_context.png", "figures/quality_vs_time.svg"):
        assert gone not in names and folder / gone in written.removed
    assert {"tables/latency.md", "figures/latency_vs_context.png", "tables/notes.md", "figures/mine.png"} <= names
    assert (folder / "tables" / "notes.md").read_text() == "mine"
    assert "No speedup table" in summary_markdown(folder)

    # a file of the report's name that the report did not write (not in its manifest): refused, nothing written
    (folder / "tables" / "quality.md").write_text("my own quality notes")
    write_folder(folder, runs, curves)
    before = snapshot(folder)
    with pytest.raises(ResultsError, match="tables/quality.md was not written by the report"):
        write_report(folder)
    assert snapshot(folder) == before
    rc, out, err = run_report(capsys, folder)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "quality.md" in err and "--out" in err
    assert snapshot(folder) == before

    # a folder written before the manifest existed: the report's known names are its own
    (folder / "tables" / "quality.md").unlink()
    write_report(folder)
    (folder / report.MANIFEST).unlink()
    write_folder(folder, speed_only, curves.iloc[:0])
    write_report(folder)
    assert not (folder / "tables" / "speedup.csv").exists() and (folder / "tables" / "notes.md").exists()
    assert (folder / "figures" / "mine.png").read_bytes() == b"a user's figure"

    # a manifest cannot make the report remove anything outside its own tables/ and figures/ files
    (tmp_path / "victim.txt").write_text("keep me")
    own = json.loads((folder / report.MANIFEST).read_text())["written"]
    (folder / report.MANIFEST).write_text(json.dumps({"written": own + ["../victim.txt", "tables/../../victim.txt",
                                                                        "runs.csv", "figures/mine.png"]}))
    write_report(folder)
    assert (tmp_path / "victim.txt").read_text() == "keep me" and (folder / "runs.csv").exists()
    assert not (folder / "figures" / "mine.png").exists()        # it said so: a name the report had written


def test_report_writes_atomically_and_only_what_changed(tmp_path, monkeypatch):
    runs, curves = synthetic_results(seeds=(0,))
    folder = write_folder(tmp_path / "f", runs, curves)
    write_report(folder)
    outputs = [p for p in folder.rglob("*") if p.is_file() and p.parent.name in ("tables", "figures")]
    assert len(outputs) == 2 * 4 + 2 * len(FIGURE_STEMS)
    for p in outputs:
        os.utime(p, (1_000_000_000, 1_000_000_000))
    before = snapshot(folder)
    written = write_report(folder)                                            # same results: nothing rewritten
    assert written.changed == [] and written.removed == []
    assert all(p.stat().st_mtime == 1_000_000_000 for p in outputs)

    # a report killed while replacing files (here: every rename fails) leaves every file whole, no temporary ones
    write_folder(folder, runs[runs["model"] != "flash"], curves[curves["model"] != "flash"])
    before = snapshot(folder)

    def broken_replace(src, dst):
        raise OSError("killed")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="killed"):
        write_report(folder)
    monkeypatch.undo()
    assert snapshot(folder) == before
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".report-staging")]
    # killed after its first file: the next report still knows the files it wrote as its own
    real, calls = report.atomic_write_bytes, []

    def killed_after_one(path, data):
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        real(path, data)
    monkeypatch.setattr(report, "atomic_write_bytes", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        write_report(folder)
    monkeypatch.undo()
    assert len(calls) == 1 and snapshot(folder)[str(calls[0].relative_to(folder))] != before[str(calls[0].relative_to(folder))]
    written = write_report(folder)
    assert written.changed and "| FLASH |" not in (folder / "tables" / "quality.md").read_text()
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".report-staging")]


def test_report_out_writes_elsewhere_and_leaves_the_folder_alone(tmp_path, capsys):
    runs, curves = synthetic_results(seeds=(0,), speed=False)
    folder = store_folder(tmp_path / "f", runs, curves)
    (folder / "runs" / "zzz.json").write_text("{ damaged")
    before = snapshot(folder)
    rc, out, err = run_report(capsys, folder, "--out", tmp_path / "elsewhere")
    assert rc == 0 and "zzz.json" in err and "speedup over Transformer++" in out
    assert snapshot(folder) == before                                         # not even runs.csv
    _assert_figures(tmp_path / "elsewhere", ("speedup_vs_context", "quality_vs_time"))
    written = write_report(folder, runs, curves, out=tmp_path / "api")
    assert all(tmp_path / "api" in p.parents for v in written.values() for p in v)
    assert snapshot(folder) == before


def test_report_waits_for_no_one_while_a_sweep_writes_the_folder(tmp_path, capsys):
    runs, curves = synthetic_results(seeds=(0,), speed=False, with_curves=False)
    folder = store_folder(tmp_path / "f", runs, curves)
    before = snapshot(folder)
    with lock_held_elsewhere(folder) as holder:
        rc, out, err = run_report(capsys, folder)
        assert rc == 2 and len(err.strip().splitlines()) == 1
        assert f"{folder} is being written by another sweep or report (pid {holder.pid}" in err
        with pytest.raises(ResultsError, match="being written by another"):
            write_report(folder, runs, curves)
    assert {k: v for k, v in snapshot(folder).items() if k != ".lock"} == before
    with ResultsStore(folder).lock():                # the sweep holds it in this process and writes the report
        write_report(folder, runs, curves)
    assert (folder / "tables" / "quality.md").exists() and not (folder / ".lock").exists()


def test_a_speedup_whose_range_over_seeds_holds_one_says_so():
    from suite.report import _speedup_cell
    row = {"n_reached": 3, "n_seeds": 3, "reached_all": True, "speedup_below_mean": float("nan")}
    assert _speedup_cell(pd.Series({**row, "speedup_mean": 1.1, "speedup_min": 0.9, "speedup_max": 1.3})) \
        == "1.10x [0.900-1.30] (includes 1)"
    assert "includes" not in _speedup_cell(pd.Series({**row, "speedup_mean": 1.3, "speedup_min": 1.1,
                                                      "speedup_max": 1.5}))


def test_seeds_are_drawn_as_their_mean_over_a_band_of_their_range():
    """quality_vs_time: a model's seeds become one line, their mean per evaluation step (a step only one seed
    reached keeps that seed's value), over a band from the lowest to the highest seed."""
    from suite.figures import seed_mean
    d = pd.DataFrame({"run_id": ["a", "a", "a", "b", "b"], "step": [10, 20, 30, 10, 20],
                      "time_s": [1.0, 2.0, 3.0, 3.0, 4.0], "eval_bpb": [3.0, 2.0, 1.5, 2.0, 1.0]})
    g = seed_mean(d, "eval_bpb")
    assert g["mean"].tolist() == [2.5, 1.5, 1.5] and g["time_s"].tolist() == [2.0, 3.0, 3.0]
    assert g["lo"].tolist() == [2.0, 1.0, 1.5] and g["hi"].tolist() == [3.0, 2.0, 1.5]
    assert g["runs"].tolist() == [2, 2, 1] and g["step"].tolist() == [10, 20, 30]
