"""suite.analysis on synthetic runs with known answers (no torch, no files)."""
import math

import numpy as np
import pandas as pd
import pytest

from suite.report import markdown_table
from suite.analysis import (bpb_at_step, latency_table, quality_at_equal_steps, quality_table,
                            resolve_variant, speedup_at_equal_quality, speedup_table, time_to_quality, variants_of)
from suite.schema import CURVE_COLUMNS, SUMMARY_COLUMNS


def make_runs(rows: list[dict]) -> pd.DataFrame:
    """A runs table with every SUMMARY_COLUMNS column; unknown values NaN."""
    df = pd.DataFrame(rows)
    return df.reindex(columns=SUMMARY_COLUMNS + [c for c in df.columns if c not in SUMMARY_COLUMNS])


def make_curves(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).reindex(columns=CURVE_COLUMNS)


def train_run(model, seed=0, context=512, objective="clm", *, final, time_s=100.0, bpb=None, status="ok"):
    return {"run_id": f"{model}-{objective}-{context}-{seed}", "schema": "flash-repro/run/v1", "status": status,
            "kind": "train", "model": model, "objective": objective, "context": context, "seed": seed,
            "size": "tiny", "train_time_s": time_s, "final_eval_loss": final,
            "final_bpb": final / math.log(2) if bpb is None else bpb, "device_name": "CPU test"}


def linear_curve(run_id, start, slope, times):
    """eval_loss = start + slope * t at the given times."""
    return [{"run_id": run_id, "time_s": t, "eval_loss": start + slope * t} for t in times]


TIMES = [0.0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


# ------------------------------------------------------------------------------- time_to_quality
def test_time_to_quality_exact_interpolation():
    curve = pd.DataFrame({"time_s": [0.0, 10.0, 20.0], "eval_loss": [5.0, 4.0, 2.0]})
    assert time_to_quality(curve, 3.0) == pytest.approx(15.0)
    assert time_to_quality(curve, 4.0) == pytest.approx(10.0)   # reached exactly at an evaluation
    assert time_to_quality(curve, 4.5) == pytest.approx(5.0)
    assert time_to_quality(curve, 2.0) == pytest.approx(20.0)


def test_time_to_quality_first_point_and_never():
    curve = pd.DataFrame({"time_s": [3.0, 10.0], "eval_loss": [2.0, 1.0]})
    assert time_to_quality(curve, 2.5) == pytest.approx(3.0)    # first point already meets it
    assert math.isnan(time_to_quality(curve, 0.5))
    assert math.isnan(time_to_quality(curve, float("nan")))
    assert math.isnan(time_to_quality(curve.iloc[:0], 1.0))


def test_time_to_quality_running_minimum():
    # a noisy curve: dips to 3.0 at t=20, bounces up, then goes lower; time order scrambled on purpose
    curve = pd.DataFrame({"time_s": [30.0, 0.0, 20.0, 10.0, 40.0],
                          "eval_loss": [3.5, 5.0, 3.0, 4.0, 2.0]})
    assert time_to_quality(curve, 3.0) == pytest.approx(20.0)
    # 2.5: best-so-far is 3.0 from t=20 to t=30, then 2.0 at t=40: interpolate between (30, 3.0) and (40, 2.0)
    assert time_to_quality(curve, 2.5) == pytest.approx(35.0)
    # a bounce never counts as reaching a lower target
    assert math.isnan(time_to_quality(curve, 1.9))


def test_time_to_quality_ignores_missing_points():
    curve = pd.DataFrame({"time_s": [0.0, 5.0, 10.0], "eval_loss": [4.0, np.nan, 2.0]})
    assert time_to_quality(curve, 3.0) == pytest.approx(5.0)


# ------------------------------------------------------------------------ speedup at equal quality
def _two_model_world(seeds=(0,)):
    runs, curves = [], []
    for s in seeds:
        base = train_run("transformer_plus_plus", s, final=3.0)
        fast = train_run("flash", s, final=2.0)
        slow = train_run("performer", s, final=3.5)
        runs += [base, fast, slow]
        curves += linear_curve(base["run_id"], 5.0, -0.02, TIMES)      # 3.0 at t=100
        curves += linear_curve(fast["run_id"], 5.0, -0.04, TIMES)      # 3.0 at t=50
        curves += linear_curve(slow["run_id"], 5.0, -0.015, TIMES)     # 3.5 at t=100: never 3.0
    return make_runs(runs), make_curves(curves)


def test_speedup_half_time_is_two():
    runs, curves = _two_model_world()
    tab = speedup_at_equal_quality(runs, curves).set_index("model")
    assert tab.loc["flash", "speedup_mean"] == pytest.approx(2.0)
    assert bool(tab.loc["flash", "reached_all"])
    assert tab.loc["transformer_plus_plus", "speedup_mean"] == pytest.approx(1.0)
    assert math.isnan(tab.loc["performer", "speedup_mean"])
    assert not bool(tab.loc["performer", "reached_all"])
    assert tab.loc["performer", "n_reached"] == 0
    assert tab.loc["flash", "baseline_final_bpb_mean"] == pytest.approx(3.0 / math.log(2))
    assert tab.loc["flash", "final_bpb_mean"] == pytest.approx(2.0 / math.log(2))


def test_speedup_aggregates_seeds_and_skips_failed_runs():
    runs, curves = _two_model_world(seeds=(0, 1))
    # seed 1: flash reaches 3.0 at t=40 (slope -0.05) -> speedup 2.5
    curves = curves[curves["run_id"] != "flash-clm-512-1"]
    curves = pd.concat([curves, make_curves(linear_curve("flash-clm-512-1", 5.0, -0.05, TIMES))])
    # a failed and a speed run must be ignored
    extra = make_runs([train_run("combiner", 0, final=1.0, status="nan"),
                       {**train_run("flash", 0, final=1.0), "run_id": "speed-x", "kind": "speed"}])
    runs = pd.concat([runs, extra], ignore_index=True)
    tab = speedup_at_equal_quality(runs, curves).set_index("model")
    assert "combiner" not in tab.index
    assert tab.loc["flash", "n_seeds"] == 2
    assert tab.loc["flash", "speedup_mean"] == pytest.approx(2.25)
    assert tab.loc["flash", "speedup_min"] == pytest.approx(2.0)
    assert tab.loc["flash", "speedup_max"] == pytest.approx(2.5)


def test_speedup_without_baseline_is_empty_and_table_has_both_baselines():
    runs, curves = _two_model_world()
    assert speedup_at_equal_quality(runs, curves, baseline="transformer").empty
    t = train_run("transformer", 0, final=3.6)
    runs = pd.concat([runs, make_runs([t])], ignore_index=True)
    curves = pd.concat([curves, make_curves(linear_curve(t["run_id"], 5.0, -0.014, TIMES))])
    both = speedup_table(runs, curves)
    assert list(dict.fromkeys(both["baseline"])) == ["transformer_plus_plus", "transformer"]
    vs_t = both[both["baseline"] == "transformer"].set_index("model")
    # the transformer reaches 3.6 at t=100; flash (5 - 0.04 t) at t=35
    assert vs_t.loc["flash", "speedup_mean"] == pytest.approx(100 / 35)
    assert vs_t.loc["performer", "speedup_mean"] == pytest.approx(100 / (1.4 / 0.015))


def test_variants_are_separate_rows_and_baselines_resolve():
    runs, curves = _two_model_world()
    # every run compiled (as in a GPU preset): variants "<model>+compile"; plus an eager FLASH twice as slow
    runs["variant"] = runs["model"] + "+compile"
    eager = make_runs([{**train_run("flash", 0, final=2.0), "run_id": "flash-eager", "variant": "flash"}])
    curves = pd.concat([curves, make_curves(linear_curve("flash-eager", 5.0, -0.02, TIMES))])
    runs = pd.concat([runs, eager], ignore_index=True)
    assert resolve_variant(runs, "transformer_plus_plus") == "transformer_plus_plus+compile"
    assert resolve_variant(runs, "flash") == "flash"                     # an exact variant wins
    assert resolve_variant(runs, "combiner") is None
    tab = speedup_at_equal_quality(runs, curves).set_index("variant")
    assert set(tab["baseline"]) == {"transformer_plus_plus+compile"}
    assert tab.loc["flash+compile", "speedup_mean"] == pytest.approx(2.0)
    assert tab.loc["flash", "speedup_mean"] == pytest.approx(1.0)
    assert tab.loc["flash", "model"] == "flash" and tab.loc["flash+compile", "model"] == "flash"
    assert list(tab.index) == ["transformer_plus_plus+compile", "performer+compile", "flash", "flash+compile"]


def test_variants_are_described_by_their_runs_data_not_their_names():
    """Label, order and line-style flags come from the model and configuration columns; a model name
    that looks like another's prefix, or a decoration that looks like a flag, misleads nothing."""
    runs = make_runs([
        train_run("transformer_plus_plus", final=1.0) | {"variant": "transformer_plus_plus[materialized]+compile",
                                                        "compile_mode": "default",
                                                        "model_options": '{"attention_kernel": "materialized"}'},
        train_run("flash", final=1.0) | {"variant": "flash", "compile_mode": "eager", "model_options": "{}"},
        train_run("flash_quad", final=1.0) | {"variant": "flash_quad+compile", "compile_mode": "default",
                                             "model_options": "{}"},
        train_run("mystery[x]", final=1.0) | {"variant": "mystery[x]+y", "compile_mode": "eager",
                                             "model_options": "{}"},
    ])
    V = variants_of(runs)
    tpp = V["transformer_plus_plus[materialized]+compile"]
    assert (tpp.model, tpp.label, tpp.compiled, tpp.configured) == (
        "transformer_plus_plus", "Transformer++ [materialized]+compile", True, True)
    assert (V["flash"].label, V["flash"].compiled, V["flash"].configured) == ("FLASH", False, False)
    assert V["flash_quad+compile"].model == "flash_quad" and V["flash_quad+compile"].label == "FLASH-Quad +compile"
    assert V["mystery[x]+y"].model == "mystery[x]" and V["mystery[x]+y"].label == "mystery[x] +y"
    order = sorted(V, key=lambda v: V[v].sort_key)
    assert order == ["transformer_plus_plus[materialized]+compile", "flash_quad+compile", "flash", "mystery[x]+y"]
    assert V["combiner"].label == "Combiner"  # a name without runs stands for its model


# --------------------------------------------------------------------------- latency and quality
def test_latency_table_keeps_oom_and_prefers_speed_runs():
    rows = []
    for ctx, ms in ((512, 10.0), (1024, 20.0)):
        rows.append({"run_id": f"s{ctx}", "kind": "speed", "status": "ok", "model": "flash", "objective": "clm",
                     "context": ctx, "seed": 0, "size": "tiny", "step_ms_median": ms, "tokens_per_s": 1e5,
                     "peak_mem_gib": 1.0, "tokens_per_step": 4096})
    rows.append({"run_id": "soom", "kind": "speed", "status": "oom", "model": "transformer", "objective": "clm",
                 "context": 1024, "seed": 0, "size": "tiny", "tokens_per_step": 4096})
    rows.append({**train_run("flash", final=3.0), "step_ms_median": 999.0})
    lat = latency_table(make_runs(rows))
    assert set(lat["source"]) == {"speed"}
    oom = lat[lat["model"] == "transformer"].iloc[0]
    assert oom["status"] == "oom" and math.isnan(oom["step_ms_median"])
    assert lat[lat["model"] == "flash"]["step_ms_median"].tolist() == [10.0, 20.0]
    # no speed runs: the training runs' timings, flagged
    lat2 = latency_table(make_runs([rows[-1]]))
    assert lat2["source"].tolist() == ["train"] and lat2["step_ms_median"].tolist() == [999.0]


def test_quality_table_mean_and_spread():
    runs = make_runs([train_run("flash", 0, final=1.0, bpb=1.0), train_run("flash", 1, final=1.0, bpb=1.2)])
    q = quality_table(runs).iloc[0]
    assert q["n_seeds"] == 2
    assert q["final_bpb_mean"] == pytest.approx(1.1)
    assert q["final_bpb_min"] == pytest.approx(1.0) and q["final_bpb_max"] == pytest.approx(1.2)
    assert q["final_bpb_std"] == pytest.approx(np.std([1.0, 1.2], ddof=1))


# ---------------------------------------------------------------------------------- markdown
def test_markdown_table():
    df = pd.DataFrame({"model": ["flash", "performer", None], "speedup": [2.0, np.nan, 1.23456],
                       "n": [1, 2, 3], "ok": [True, False, True]})
    md = markdown_table(df)
    lines = md.strip().split("\n")
    assert len(lines) == 2 + len(df)
    assert lines[0] == "| model | speedup | n | ok |"
    assert lines[1] == "|---|---:|---:|---|"
    assert lines[2] == "| flash | 2 | 1 | yes |"
    assert lines[3] == "| performer | - | 2 | no |"
    assert lines[4] == "| - | 1.23 | 3 | yes |"
    assert all(line.count("|") == 5 for line in lines)
    assert "| 1.2346 |" in markdown_table(df, floatfmt=".4f") and "| 2.0000 |" in markdown_table(df, floatfmt=".4f")
    assert markdown_table(pd.DataFrame({"a|b": ["x|y"]})).split("\n")[2] == "| x\\|y |"


def test_a_slower_model_gets_the_ratio_at_its_own_final_quality():
    """Baseline reaches loss 3.0 at t = 2 s; the model ends at 3.0 after 4 s: it is 2x slower (0.5x)."""
    import pandas as pd

    from suite.analysis import speedup_at_equal_quality

    runs = pd.DataFrame([
        dict(run_id="b", kind="train", status="ok", model="transformer_plus_plus", variant="transformer_plus_plus",
             objective="clm", context=512, size="tiny", seed=0, final_eval_loss=2.0, train_time_s=4.0, final_bpb=1.0),
        dict(run_id="m", kind="train", status="ok", model="flash", variant="flash", objective="clm", context=512,
             size="tiny", seed=0, final_eval_loss=3.0, train_time_s=4.0, final_bpb=1.5),
    ])
    curves = pd.DataFrame([
        dict(run_id="b", time_s=1.0, eval_loss=4.0), dict(run_id="b", time_s=2.0, eval_loss=3.0),
        dict(run_id="b", time_s=4.0, eval_loss=2.0),
        dict(run_id="m", time_s=1.0, eval_loss=4.5), dict(run_id="m", time_s=2.0, eval_loss=3.5),
        dict(run_id="m", time_s=4.0, eval_loss=3.0),
    ])
    tab = speedup_at_equal_quality(runs, curves).set_index("variant")
    assert not tab.loc["flash", "reached_all"] and tab.loc["flash", "n_reached"] == 0
    assert tab.loc["flash", "speedup_below_mean"] == 0.5
    assert tab.loc["transformer_plus_plus", "speedup_mean"] == 1.0


# ------------------------------------------------------------------------------ quality at equal steps
def test_bpb_at_step_interpolates_inside_the_curve_only():
    curve = pd.DataFrame({"step": [100, 0, 200], "eval_bpb": [3.0, 5.0, 2.0]})  # order scrambled on purpose
    assert bpb_at_step(curve, 150) == pytest.approx(2.5)
    assert bpb_at_step(curve, 200) == pytest.approx(2.0)
    assert math.isnan(bpb_at_step(curve, 201)) and math.isnan(bpb_at_step(curve, -1))
    assert math.isnan(bpb_at_step(curve.iloc[:0], 10))


def test_equal_steps_compares_at_the_shorter_run_and_aggregates_seeds():
    runs, curves = [], []
    for seed, (fast_steps, slow_final) in enumerate([(400, 1.8), (400, 1.6)]):
        base = train_run("transformer_plus_plus", seed, final=1.0) | {"steps": fast_steps}
        slow = train_run("flash", seed, final=1.0) | {"steps": 200}      # fewer steps in the same time
        runs += [base, slow]
        # baseline: bpb 4 - 0.005 * step (2.0 at step 400, 3.0 at step 200); the slow model ends at slow_final
        curves += [{"run_id": base["run_id"], "step": st, "eval_bpb": 4 - 0.005 * st} for st in (0, 200, 400)]
        curves += [{"run_id": slow["run_id"], "step": st, "eval_bpb": b} for st, b in ((0, 4.0), (200, slow_final))]
    tab = quality_at_equal_steps(make_runs(runs), make_curves(curves))
    assert list(tab["variant"]) == ["flash"]           # the baseline has no row of its own
    r = tab.iloc[0]
    assert r["n_seeds"] == 2 and r["steps_mean"] == 200
    assert r["baseline_bpb_mean"] == pytest.approx(3.0)
    assert r["delta_min"] == pytest.approx(-1.4) and r["delta_max"] == pytest.approx(-1.2)  # better per step
    assert r["delta_mean"] == pytest.approx(-1.3)
    assert quality_at_equal_steps(make_runs(runs), make_curves(curves).iloc[:0]).empty


# ------------------------------------------------------------------------------- learning-rate sweeps
def test_lr_sweep_marks_the_best_rate_and_other_tables_take_it():
    from suite.analysis import lr_sweep_table, train_runs
    rows = []
    for lr, final in ((1e-3, 1.2), (2e-3, 1.0), (4e-3, 1.1)):
        r = train_run("flash", final=final)
        rows.append(r | {"run_id": f"flash-{lr}", "lr": lr})
    rows.append(train_run("transformer_plus_plus", final=1.3) | {"lr": 1e-3})  # not swept: one rate
    runs = make_runs(rows)
    tab = lr_sweep_table(runs)
    assert list(tab["lr"]) == [1e-3, 2e-3, 4e-3] and list(tab["best"]) == [False, True, False]
    assert set(tab["variant"]) == {"flash"}  # a variant with one rate is no sweep
    kept = train_runs(runs)
    assert sorted(kept["run_id"]) == ["flash-0.002", "transformer_plus_plus-clm-512-0"]
    q = quality_table(runs)
    assert q.set_index("variant").loc["flash", "final_bpb_mean"] == pytest.approx(1.0 / math.log(2))


def test_lr_sweep_picks_by_the_mean_over_seeds():
    from suite.analysis import lr_sweep_table
    finals = {(1e-3, 0): 1.0, (1e-3, 1): 1.4, (2e-3, 0): 1.1, (2e-3, 1): 1.2}  # means 1.2 and 1.15
    runs = make_runs([train_run("flash", seed=s, final=f) | {"run_id": f"{lr}-{s}", "lr": lr}
                      for (lr, s), f in finals.items()])
    tab = lr_sweep_table(runs)
    assert tab.loc[tab["best"].astype(bool), "lr"].tolist() == [2e-3]
    assert tab["n_seeds"].tolist() == [2, 2]


# ------------------------------------------------------------------------------- no mixing of settings
def _with_setting(run: dict, corpus: str, steps: int) -> dict:
    import json
    return run | {"corpus": corpus, "tokenizer": "bytes", "data_hash": f"h-{corpus}", "tokens_per_step": 4096,
                  "precision": "bf16", "config_json": json.dumps({"budget_s": None, "max_steps": steps})}


def test_runs_of_other_data_or_budgets_are_never_compared():
    """FLASH trained on one corpus is not set against Transformer++ trained on another; a folder that
    holds two settings shows them as separate rows with a setting column."""
    runs, curves = _two_model_world()
    rows = runs.to_dict("records")
    mixed = make_runs([_with_setting(r, "eltec" if r["model"] == "flash" else "shakespeare", 600) for r in rows])
    tab = speedup_at_equal_quality(mixed, curves)
    assert "flash" not in set(tab["model"])  # its setting has no Transformer++ run to compare with
    q = quality_table(mixed)
    assert "setting" in q.columns and q["setting"].nunique() == 2
    same = make_runs([_with_setting(r, "eltec", 600) for r in rows])
    tab = speedup_at_equal_quality(same, curves).set_index("model")
    assert tab.loc["flash", "speedup_mean"] == pytest.approx(2.0) and "setting" not in tab.columns
    budgets = make_runs([_with_setting(r, "eltec", 600 if r["model"] == "flash" else 3000) for r in rows])
    assert "flash" not in set(speedup_at_equal_quality(budgets, curves)["model"])  # another budget
