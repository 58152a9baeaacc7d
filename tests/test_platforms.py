"""Speedup at equal quality per platform (suite.analysis.platform_speedups, suite.platforms): the
hardware-independent steps ratio from learning curves, times each platform's step-time ratio."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from suite import platforms
from suite.analysis import (numerics_options, platform_speedups, platform_step_times, quality_per_step,
                            steps_to_quality)
from suite.schema import CURVE_COLUMNS, SUMMARY_COLUMNS

TPS = 65536


def train_row(model: str, seed: int, final_loss: float, steps: int = 1000, context: int = 2048, **kw) -> dict:
    return {"run_id": f"{model}-{seed}-{context}", "kind": "train", "status": "ok", "model": model,
            "variant": model + "+compile", "objective": "clm", "context": context, "seed": seed, "size": "quality",
            "tokens_per_step": TPS, "steps": steps, "final_eval_loss": final_loss, "final_bpb": final_loss / math.log(2),
            "train_time_s": 100.0, "model_options": "{}", "device_name": "GPU-A", "step_ms_median": 50.0,
            "precision": "bf16", "corpus": "c", "tokenizer": "bytes", "data_hash": "h", "lr": 1e-3,
            "config_json": json.dumps({"budget_s": None, "max_steps": steps}), **kw}


def curve_rows(run_id: str, losses: dict[int, float]) -> list[dict]:
    return [{"run_id": run_id, "step": s, "time_s": s * 0.05, "eval_loss": v, "eval_bpb": v / math.log(2)}
            for s, v in losses.items()]


def speed_row(platform: str, model: str, ms: float, tps: int = TPS, options: str = "{}", variant: str | None = None):
    return {"run_id": f"speed-{platform}-{model}-{ms}", "kind": "speed", "status": "ok", "model": model,
            "variant": variant or model, "objective": "clm", "context": 2048, "seed": 0, "size": "quality",
            "tokens_per_step": tps, "step_ms_median": ms, "model_options": options, "device_name": platform,
            "precision": "fp32", "backend": "pytorch", "torch_version": "2.13.0"}


@pytest.fixture
def curves_and_runs():
    # the baseline reaches 2.0 at step 1000 (two seeds: 2.0 and 2.1 final); flash gets to 2.0 at step 500 (seed 0)
    # and 2.1 at step 400 (seed 0), to 2.0 at step 800 and 2.1 at step 600 (seed 1)
    runs = pd.DataFrame([train_row("transformer_plus_plus", 0, 2.0), train_row("transformer_plus_plus", 1, 2.1),
                         train_row("flash", 0, 1.8, step_ms_median=100.0),
                         train_row("flash", 1, 1.9, step_ms_median=100.0)])
    curves = pd.DataFrame(
        curve_rows("transformer_plus_plus-0-2048", {500: 2.5, 1000: 2.0})
        + curve_rows("transformer_plus_plus-1-2048", {500: 2.6, 1000: 2.1})
        + curve_rows("flash-0-2048", {400: 2.1, 500: 2.0, 1000: 1.8})
        + curve_rows("flash-1-2048", {600: 2.1, 800: 2.0, 1000: 1.9}))
    return runs, curves


def test_steps_to_quality_interpolates_between_evaluations():
    c = pd.DataFrame(curve_rows("r", {100: 3.0, 200: 2.0, 300: 2.5}))
    assert steps_to_quality(c, 2.5) == pytest.approx(150.0)
    assert steps_to_quality(c, 3.5) == 100.0          # met at the first evaluation
    assert math.isnan(steps_to_quality(c, 1.0))      # never: no extrapolation


def test_numerics_options_leave_out_what_does_not_change_the_numbers():
    assert numerics_options('{"kernel": "triton", "chunk": 128, "attention_kernel": "sdpa"}') == '{"chunk": 128}'
    assert numerics_options('{"causal_chunk": 128, "n_features": 256}') == '{"n_features": 256}'  # Performer
    assert numerics_options("") == numerics_options(None) == "{}"


def test_quality_per_step_pairs_every_seed(curves_and_runs):
    runs, curves = curves_and_runs
    q = quality_per_step(runs, curves)
    flash = q[q["model"] == "flash"].set_index(["seed", "baseline_seed"])["steps"]
    assert flash.to_dict() == {(0, 0): 500.0, (0, 1): 400.0, (1, 0): 800.0, (1, 1): 600.0}
    base = q[q["model"] == "transformer_plus_plus"]  # against its other seed: the seed noise
    assert sorted(zip(base["seed"], base["baseline_seed"])) == [(0, 1), (1, 0)]
    assert base.set_index("seed").loc[1, "reached"] == False  # noqa: E712  (seed 1 ends at 2.1 > 2.0)


def test_platform_speedup_is_the_steps_ratio_times_the_step_time_ratio(curves_and_runs):
    runs, curves = curves_and_runs
    times = platform_step_times(pd.concat([runs, pd.DataFrame([
        speed_row("CPU-B", "transformer_plus_plus", 300.0, tps=8192),     # per token: scaled to 65,536 tokens
        speed_row("CPU-B", "flash", 200.0, tps=8192),
        speed_row("CPU-B", "flash", 150.0, tps=8192, options='{"kernel": "triton"}', variant="flash[kernel=triton]"),
        speed_row("CPU-C", "flash", 10.0)])], ignore_index=True))          # no baseline time there: no row
    tab = platform_speedups(runs, curves, times).set_index(["platform", "variant"])
    ratios = [1000 / 500, 1000 / 400, 1000 / 800, 1000 / 600]
    a = tab.loc[("GPU-A", "flash+compile")]
    assert a["step_time_ratio"] == pytest.approx(0.5)  # 50 ms against 100 ms
    assert a["speedup_mean"] == pytest.approx(0.5 * sum(ratios) / 4)
    assert (a["speedup_min"], a["speedup_max"]) == pytest.approx((0.5 * 1.25, 0.5 * 2.5))
    assert a["includes_one"] and a["n_pairs"] == 4 and not a["scaled"]
    b = tab.loc[("CPU-B", "flash+compile")]
    assert b["step_time_ratio"] == pytest.approx(2.0) and b["scaled"]  # the faster kernel's time counts
    assert b["step_ms"] == pytest.approx(150.0 * 8)
    assert b["speedup_min"] > 1 and not b["includes_one"]
    assert "CPU-C" not in tab.index.get_level_values(0)


def test_platforms_command_writes_tables_and_figures(tmp_path, curves_and_runs):
    runs, curves = curves_and_runs
    folder = tmp_path / "results" / "gpu-a" / "paper-figures"
    folder.mkdir(parents=True)
    runs.reindex(columns=SUMMARY_COLUMNS).to_csv(folder / "runs.csv", index=False)
    curves.reindex(columns=CURVE_COLUMNS).assign(model="m", objective="clm", context=2048, seed=0) \
        .to_csv(folder / "curves.csv", index=False)
    cpu = tmp_path / "results" / "cpu" / "paper-speed"
    cpu.mkdir(parents=True)
    pd.DataFrame([speed_row("CPU-B", "transformer_plus_plus", 300.0), speed_row("CPU-B", "flash", 200.0)]) \
        .reindex(columns=SUMMARY_COLUMNS).to_csv(cpu / "runs.csv", index=False)
    # a platform that timed one model on JAX alone: a backends panel of one row, its JAX version said
    gpu_c = tmp_path / "results" / "gpu-c" / "jax-paper-speed"
    gpu_c.mkdir(parents=True)
    pd.DataFrame([{**speed_row("GPU-C", "flash", 60.0), "backend": "jax", "compile_mode": "jit",
                   "jax_version": "0.11.2", "torch_version": "2.11.0"}]) \
        .reindex(columns=SUMMARY_COLUMNS + ["jax_version"]).to_csv(gpu_c / "runs.csv", index=False)
    out = tmp_path / "platforms"
    assert platforms.main([str(folder), "--times", str(tmp_path / "results"), "--out", str(out)]) == 0
    md = (out / "tables" / "platform_speedup.md").read_text()
    assert "### GPU-A" in md and "### CPU-B" in md and "(includes 1)" in md
    steps = pd.read_csv(out / "tables" / "step_times.csv").set_index("platform")
    assert steps.loc["GPU-C", "jax_version"] == "0.11.2" and "GPU-C, " in (out / "tables" / "backends.md").read_text()
    backends = (out / "tables" / "backends.md").read_text()
    assert "TPU: not measured" in backends and "FLASH, PyTorch eager" in backends and "1.50x FLASH faster" in backends
    assert "last crossing" in (out / "tables" / "gap.md").read_text()
    for stem in ("platform_speedup", "quality_vs_cost", "quality_vs_steps", "backends", "gap_vs_steps"):
        assert (out / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(cpu) in (out / "sources.md").read_text()


def test_backend_table_and_ranking_per_execution():
    from suite.analysis import backend_table, ranking_table
    rows = [speed_row("CPU-B", "transformer_plus_plus", 300.0), speed_row("CPU-B", "flash", 200.0),
            {**speed_row("CPU-B", "flash", 400.0), "backend": "jax", "compile_mode": "jit", "compile_s": 3.0},
            {**speed_row("CPU-B", "transformer_plus_plus", 200.0), "backend": "jax", "compile_mode": "jit"},
            speed_row("CPU-B", "flash", 100.0, options='{"kernel": "triton"}'),  # not the default: left out
            {**speed_row("CPU-B", "flash", 150.0), "loss": "liger"}]  # its own execution, not pooled
    b = backend_table(pd.DataFrame(rows))
    assert sorted(set(b["execution"])) == ["JAX jit", "PyTorch eager", "PyTorch eager, Liger loss"]
    assert b.set_index(["model", "execution"]).loc[("flash", "PyTorch eager"), "step_ms"] == 200.0
    r = ranking_table(b).set_index("execution")
    assert r.loc["PyTorch eager", "step_time_ratio"] == pytest.approx(1.5) and r.loc["PyTorch eager", "model_faster"]
    assert r.loc["JAX jit", "step_time_ratio"] == pytest.approx(0.5) and not r.loc["JAX jit", "model_faster"]


def test_step_times_come_from_the_newest_commit_that_ran_a_configuration():
    """A faster (or slower) commit's runs replace the older commit's in the medians of both step-time tables,
    instead of mixing with them; runs without a commit are all kept."""
    from suite.analysis import backend_table, newest_code, platform_step_times
    old = [{**speed_row("GPU-N", "flash", ms), "git_commit": "aaaaaaa", "timestamp": f"2026-11-01T0{i}:00:00+00:00"}
           for i, ms in enumerate((60.0, 61.0, 62.0))]
    new = [{**speed_row("GPU-N", "flash", ms), "git_commit": "bbbbbbb", "timestamp": f"2026-11-02T0{i}:00:00+00:00"}
           for i, ms in enumerate((56.0, 58.0))]
    runs = pd.DataFrame(old + new + [speed_row("GPU-N", "transformer_plus_plus", 40.0)])
    times = platform_step_times(runs).set_index("model")
    assert times.loc["flash", "step_ms"] == pytest.approx(57.0)
    # how far apart the runs behind a median lie (the newest commit's two: 58 / 56), 1.0 for a single run
    assert times.loc["flash", "run_spread"] == pytest.approx(58.0 / 56.0) and times.loc["flash", "n_runs"] == 2
    assert times.loc["transformer_plus_plus", "run_spread"] == 1.0
    b = backend_table(runs).set_index("model")
    assert b.loc["flash", "step_ms"] == pytest.approx(57.0) and b.loc["flash", "n_runs"] == 2
    assert b.loc["transformer_plus_plus", "step_ms"] == 40.0  # no commit recorded: kept
    assert len(newest_code(pd.DataFrame(old + new)[::-1])) == 2  # by timestamp, not by order in the file


def test_platforms_command_refuses_a_missing_folder(tmp_path, capsys):
    assert platforms.main([str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert platforms.main([str(tmp_path)]) == 2
    assert "no runs.csv" in capsys.readouterr().err


def test_gap_along_training_and_its_last_crossing(curves_and_runs):
    from suite.analysis import gap_along_training, last_crossing
    runs, curves = curves_and_runs
    gap = gap_along_training(runs, curves)
    at = gap.set_index("step")
    # flash seed 0 at step 500: 2.0 against the baselines' 2.5 and 2.6 there, in bits per byte
    assert at.loc[500.0, "n_pairs"] == 2
    assert at.loc[500.0, "gap_min"] == pytest.approx((2.0 - 2.6) / math.log(2))
    assert at.loc[1000.0, "gap_max"] == pytest.approx((1.9 - 2.0) / math.log(2))
    assert math.isnan(last_crossing(gap))          # always ahead
    flip = pd.DataFrame({"step": [1, 2, 3, 4], "gap_mean": [-0.2, 0.1, -0.1, -0.05]})
    assert last_crossing(flip) == 3.0
