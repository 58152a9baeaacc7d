"""PyTorch vs JAX parity of one training run (suite.backend_parity): which runs pair, the sign of the
difference, the largest difference after the first 10% of training, and the command's files and exit codes."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from suite import backend_parity as bp
from suite.schema import CURVE_COLUMNS

STEPS = 100


def run_row(run_id: str, model: str = "flash", backend: str | None = "pytorch", seed: int = 0, lr: float = 0.004,
            final_bpb: float = 1.5, **kw) -> dict:
    return {"run_id": run_id, "kind": "train", "status": "ok", "model": model,
            "variant": model + ("+jax" if backend == "jax" else "+compile"), "objective": "clm", "context": 2048,
            "seed": seed, "size": "quality", "tokens_per_step": 65536, "steps": STEPS, "lr": lr, "model_options": "{}",
            "precision": "bf16", "data_hash": "h", "backend": backend, "final_bpb": final_bpb,
            "git_commit": f"{run_id}-commit", "git_dirty": False, "device_name": "GPU-A",
            "timestamp": "2026-11-30T00:00:00+00:00", **kw}


def curve(run_id: str, bpb: dict[int, float]) -> list[dict]:
    return [{"run_id": run_id, "model": "flash", "objective": "clm", "context": 2048, "seed": 0, "step": s,
             "time_s": s * 0.1, "tokens": s * 65536, "train_loss": v, "eval_loss": v * math.log(2), "eval_bpb": v}
            for s, v in bpb.items()]


# PyTorch: 3.0 at step 10, then 2.0 .. 1.5; JAX: 0.5 above at step 10 (the first 10%: never the largest),
# 0.05 above at step 50, 0.02 below at the end
PT = {10: 3.0, 30: 2.0, 50: 1.8, 100: 1.5}
JX = {10: 3.5, 30: 2.01, 50: 1.85, 100: 1.48}


def write(folder: Path, runs: list[dict], curves: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(runs).to_csv(folder / "runs.csv", index=False)
    pd.DataFrame(curves, columns=CURVE_COLUMNS).to_csv(folder / "curves.csv", index=False)
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    runs = [run_row("pt", final_bpb=1.5), run_row("jx", backend="jax", final_bpb=1.48),
            # not twins of "pt": another learning rate, another seed, other model options, a failed run
            run_row("jx-lr", backend="jax", lr=0.002, final_bpb=1.0),
            run_row("jx-seed", backend="jax", seed=1, final_bpb=1.0),
            run_row("jx-opt", backend="jax", model_options='{"chunk": 128}', final_bpb=1.0),
            run_row("jx-oom", backend="jax", status="oom", final_bpb=float("nan")),
            # an older JAX run of the same configuration: replaced by "jx"
            run_row("jx-old", backend="jax", final_bpb=9.0, timestamp="2026-11-01T00:00:00+00:00"),
            # a second pair, Transformer++, its PyTorch run with no backend recorded (older results)
            run_row("tpp-pt", model="transformer_plus_plus", backend=None, lr=0.002, final_bpb=1.6),
            run_row("tpp-jx", model="transformer_plus_plus", backend="jax", lr=0.002, final_bpb=1.7),
            # a PyTorch run alone at seed 2: no pair, but it is the seed noise of FLASH's configuration
            run_row("pt-seed2", seed=2, final_bpb=1.6)]
    return write(tmp_path / "res", runs, curve("pt", PT) + curve("jx", JX) + curve("jx-old", {10: 9.0, 100: 9.0}))


def test_pairs_only_runs_that_differ_in_backend_alone(folder: Path):
    runs, curves = bp.load_results(folder)
    tab = bp.parity_table(runs, curves).set_index("model")
    assert sorted(tab.index) == ["flash", "transformer_plus_plus"]
    assert tab.loc["flash", "pytorch_run_id"] == "pt"
    assert tab.loc["flash", "jax_run_id"] == "jx"  # the newest JAX run; the lr, seed, options and OOM runs left out
    assert tab.loc["transformer_plus_plus", ["pytorch_run_id", "jax_run_id"]].tolist() == ["tpp-pt", "tpp-jx"]
    assert tab.loc["flash", ["pytorch_commit", "jax_commit"]].tolist() == ["pt-commit", "jx-commit"]


def test_difference_is_jax_minus_pytorch(folder: Path):
    tab = bp.parity_table(*bp.load_results(folder)).set_index("model")
    assert tab.loc["flash", "difference"] == pytest.approx(1.48 - 1.5)
    assert tab.loc["transformer_plus_plus", "difference"] == pytest.approx(1.7 - 1.6)


def test_largest_difference_skips_the_first_tenth(folder: Path):
    tab = bp.parity_table(*bp.load_results(folder)).set_index("model")
    flash = tab.loc["flash"]
    assert flash["n_shared_steps"] == 4
    # step 10 (0.5 apart) is in the first 10% of 100 steps; the largest later one is step 50's 0.05
    assert flash["max_abs_difference"] == pytest.approx(0.05)
    assert flash["max_abs_difference_step"] == 50
    assert math.isnan(tab.loc["transformer_plus_plus", "max_abs_difference"])  # no curves: not invented


def test_curve_difference_and_late_max_directly():
    d = bp.curve_difference(pd.DataFrame(curve("a", {10: 2.0, 20: 1.0, 30: 1.0})),
                            pd.DataFrame(curve("b", {10: 2.5, 30: 0.9, 40: 0.1})))
    assert d["step"].tolist() == [10, 30]  # shared steps only
    assert d["difference"].tolist() == pytest.approx([0.5, -0.1])
    assert bp.late_max_difference(d, 100) == pytest.approx((0.1, 30))
    assert all(math.isnan(v) for v in bp.late_max_difference(d.iloc[:1], 100))  # only early evaluations


def test_seed_range_is_pytorch_spread_over_seeds(folder: Path):
    tab = bp.parity_table(*bp.load_results(folder)).set_index("model")
    assert tab.loc["flash", "pytorch_seeds"] == 2
    assert tab.loc["flash", "pytorch_seed_range"] == pytest.approx(0.1)
    assert math.isnan(tab.loc["transformer_plus_plus", "pytorch_seed_range"])


def test_command_writes_tables_and_figure(folder: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert bp.main([str(folder), "--out", str(out)]) == 0
    md = (out / "tables" / "backend_parity.md").read_text()
    assert "| FLASH | Causal LM | 2K | 0 | 100 | 0.004 | 1.5000 | 1.4800 | -0.0200 | 0.0500 (step 50) |" in md
    assert "Transformer++" in md and md in capsys.readouterr().out
    csv = pd.read_csv(out / "tables" / "backend_parity.csv")
    assert len(csv) == 2 and list(csv.columns) == bp.PARITY_COLUMNS
    for ext in ("png", "svg"):
        assert (out / "figures" / f"backend_parity.{ext}").stat().st_size > 1000
    assert bp.main([str(folder)]) == 0  # default: FOLDER/parity
    assert (folder / "parity" / "tables" / "backend_parity.md").is_file()


def test_no_pairs_writes_a_note_and_exits_0(tmp_path: Path, capsys):
    folder = write(tmp_path / "res", [run_row("pt"), run_row("jx", backend="jax", seed=3)], curve("pt", PT))
    assert bp.main([str(folder), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "tables" / "backend_parity.md").read_text()
    assert "No pairs" in md and "1 of them on JAX" in md
    assert not (tmp_path / "out" / "figures").exists()
    assert "No pairs" in capsys.readouterr().out


def test_no_backend_column_and_no_curves(tmp_path: Path):
    folder = tmp_path / "res"
    folder.mkdir()
    pd.DataFrame([{k: v for k, v in run_row("pt").items() if k != "backend"}]).to_csv(folder / "runs.csv", index=False)
    assert bp.main([str(folder)]) == 0
    assert "No pairs" in (folder / "parity" / "tables" / "backend_parity.md").read_text()


def test_missing_folder_or_runs_csv_exits_2(tmp_path: Path, capsys):
    assert bp.main([str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert bp.main([str(tmp_path / "empty")]) == 2
    assert "no runs.csv" in capsys.readouterr().err


def test_several_folders_pair_within_a_card_and_read_seed_noise_across_cards(tmp_path: Path, capsys):
    """Two folders, one pair each (seed 0 on card A, seed 1 on card B): two pairs, never one across cards, and
    the seed range of each is over both seeds; several folders need --out."""
    a = write(tmp_path / "a", [run_row("pt0", final_bpb=1.5), run_row("jx0", backend="jax", final_bpb=1.48)],
              curve("pt0", PT) + curve("jx0", JX))
    b = write(tmp_path / "b", [run_row("pt1", seed=1, final_bpb=1.6, device_name="GPU-B"),
                               run_row("jx1", backend="jax", seed=1, final_bpb=1.65, device_name="GPU-B"),
                               # card B's seed-0 JAX run: card A's seed 0 is no pair of it
                               run_row("jx0-b", backend="jax", final_bpb=1.0, device_name="GPU-B")],
              curve("pt1", PT) + curve("jx1", JX))
    out = tmp_path / "out"
    assert bp.main([str(a), str(b), "--out", str(out)]) == 0
    csv = pd.read_csv(out / "tables" / "backend_parity.csv").set_index("seed")
    assert list(csv["jax_run_id"]) == ["jx0", "jx1"] and list(csv["device_name"]) == ["GPU-A", "GPU-B"]
    assert csv.loc[1, "difference"] == pytest.approx(0.05)
    assert list(csv["pytorch_seed_range"]) == pytest.approx([0.1, 0.1])
    md = (out / "tables" / "backend_parity.md").read_text()
    assert f"`{a}` and `{b}`" in md and "| hardware |" in md
    assert (out / "figures" / "backend_parity.png").is_file()
    capsys.readouterr()
    assert bp.main([str(a), str(b)]) == 2
    assert "several folders need --out" in capsys.readouterr().err
