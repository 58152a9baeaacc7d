"""suite.report / suite.figures / notebooks/figures.ipynb on a synthetic results folder (CPU, no torch)."""
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from suite.report import summary_markdown, write_report
from suite.schema import CURVE_COLUMNS, SCHEMA, SUMMARY_COLUMNS

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


def test_notebook_redraws_everything(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    results = tmp_path / "results"
    folder = write_folder(results / "h200" / "test", *synthetic_results(seeds=(0,)))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    assert "RESULTS = Path(os.environ.get(\"FLASH_REPRO_RESULTS\"" in nb.cells[0].source
    monkeypatch.setenv("FLASH_REPRO_RESULTS", str(results))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()                            # raises CellExecutionError on any failing cell
    _assert_figures(folder)
    assert (folder / "tables" / "speedup.md").exists()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(FIGURE_STEMS)
    assert any("speedup over Transformer++" in o.get("data", {}).get("text/markdown", "") for o in outputs)


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