"""Checkpoints (suite/checkpoint.py): a run killed at any moment resumes from its last checkpoint, and its
learning curve continues without a gap or a repeated step, equal to the curve of a run never stopped."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from suite import cli
from suite import train as train_mod
from suite.batches import corpus_batches
from suite.checkpoint import Checkpointing, LoopState
from suite.runs import RunConfig
from suite.store import ResultsStore

from test_runner import ROOT, sigkill_when, subprocess_env

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(corpus: str, model: str = "flash", steps: int = 24, **kw) -> RunConfig:
    return RunConfig(model=model, context=32, tokens_per_step=256, corpus=corpus, budget_s=None, max_steps=steps,
                     evals=6, eval_tokens=512, warmup_steps=4, lr=3e-3, **kw)


def curve_of(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)[["step", "train_loss", "eval_loss"]].reset_index(drop=True)


@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_a_resumed_run_continues_the_curve_of_one_never_stopped(tmp_path, corpus, objective, monkeypatch):
    cfg = tiny(corpus, objective=objective)
    whole, whole_curve = train_mod.run(cfg, corpus_batches(cfg))
    assert whole["status"] == "ok"

    # the same run, stopped after step 14 (an exception out of the 15th step), checkpoints every 7 steps
    ckpt = Checkpointing(tmp_path / "ckpt", every_steps=7, every_s=None)
    real_call = train_mod.Step.__call__
    calls = {"n": 0}

    def stop_at_15(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt  # not an Exception: the run does not record it, as a kill would not
        return real_call(self, *a, **k)

    monkeypatch.setattr(train_mod.Step, "__call__", stop_at_15)
    with pytest.raises(KeyboardInterrupt):
        train_mod.run(cfg, corpus_batches(cfg), checkpoints=ckpt)
    monkeypatch.setattr(train_mod.Step, "__call__", real_call)
    assert ckpt.path(cfg.run_id).exists()
    assert torch.load(ckpt.path(cfg.run_id), weights_only=False)["loop"]["n"] == 14

    resumed, resumed_curve = train_mod.run(cfg, corpus_batches(cfg), checkpoints=ckpt)
    assert resumed["status"] == "ok" and resumed["resumed_from_step"] == 14
    assert resumed["steps"] == whole["steps"] == 24
    a, b = curve_of(whole_curve), curve_of(resumed_curve)
    assert list(b["step"]) == list(a["step"]) == [4, 8, 12, 16, 20, 24]  # no gap, no repeated step
    pd.testing.assert_frame_equal(a, b, rtol=1e-5, atol=0)
    assert resumed["final_bpb"] == pytest.approx(whole["final_bpb"], rel=1e-5)


def test_checkpoint_refused_for_other_data_or_processes(tmp_path, corpus):
    cfg = tiny(corpus, steps=8)
    ckpt = Checkpointing(tmp_path, every_steps=4, every_s=None)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    states = {"model": model.state_dict(), "optimizer": opt.state_dict()}
    path = ckpt.save(cfg.run_id, loop=LoopState(n=4), states=states, generator=torch.Generator(),
                     data_hash="abc")
    assert path == ckpt.path(cfg.run_id) and not list(tmp_path.glob(".*.tmp"))  # written by a rename
    assert ckpt.load(cfg.run_id, world_size=1, data_hash="abc")["loop"]["n"] == 4
    for kw, words in (({"world_size": 2, "data_hash": "abc"}, "1 processes"),
                      ({"world_size": 1, "data_hash": "xyz"}, "data")):
        with pytest.warns(UserWarning, match=words):
            assert ckpt.load(cfg.run_id, **kw) is None
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        assert ckpt.load(cfg.run_id, world_size=1, data_hash="abc") is None
    with pytest.raises(ValueError, match="at least 1 step"):
        Checkpointing(tmp_path, every_steps=0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        Checkpointing(tmp_path, every_s=0.0)


@pytest.mark.parametrize("text, expected", [("500", (500, None)), ("90s", (None, 90.0)), ("10m", (None, 600.0)),
                                            ("off", None), ("2.5m", (None, 150.0))])
def test_checkpoint_interval_flag(text, expected):
    assert cli.checkpoint_interval(text) == expected


@pytest.mark.parametrize("text", ["0", "-5", "1.5", "ten", "5h", ""])
def test_checkpoint_interval_flag_refuses(capsys, tmp_path, text):
    assert cli.main(["--preset", "smoke", "--checkpoint-every", text, "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    assert "--checkpoint-every" in capsys.readouterr().err


def sweep_args(corpus: str, out: Path, steps: int) -> list[str]:
    return ["--preset", "smoke", "--models", "flash", "--contexts", "32", "--tokens-per-step", "256",
            "--steps", str(steps), "--corpus", corpus, "--out", str(out), "--checkpoint-every", "20"]


@pytest.mark.slow
def test_a_killed_sweep_resumes_its_run_from_the_last_checkpoint(tmp_path, corpus):
    steps = 400
    ref, out = tmp_path / "never-stopped", tmp_path / "killed"
    assert cli.main(sweep_args(corpus, ref, steps)) == 0

    cmd = [sys.executable, "run_all.py", *sweep_args(corpus, out, steps)]
    # killed a few steps after the first checkpoint: between checkpoints
    assert sigkill_when(cmd, tmp_path / "first.log", lambda: list((out / "checkpoints").glob("*.pt")),
                        "no checkpoint", after_s=0.3) == -signal.SIGKILL
    assert not ResultsStore(out).finished()  # the run was in flight

    proc2 = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    runs = pd.read_csv(out / "runs.csv")
    start = int(runs["resumed_from_step"].iloc[0])
    assert 20 <= start < steps and start % 20 == 0
    assert not list((out / "checkpoints").glob("*"))  # removed once the result was recorded
    a = pd.read_csv(ref / "curves.csv")[["step", "train_loss", "eval_loss"]]
    b = pd.read_csv(out / "curves.csv")[["step", "train_loss", "eval_loss"]]
    assert list(a["step"]) == list(b["step"]) and b["step"].is_unique
    pd.testing.assert_frame_equal(a, b, rtol=1e-5, atol=0)


def test_fresh_removes_checkpoints_older_than_its_sweep(capsys, tmp_path, corpus):
    out = tmp_path / "out"
    args = sweep_args(corpus, out, 8)
    assert cli.main(args + ["--dry-run"]) == 0
    run_ids = re.findall(r"^([0-9a-f]{16}) ", capsys.readouterr().out, flags=re.M)
    assert len(run_ids) == 1
    stale = out / "checkpoints" / f"{run_ids[0]}.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier sweep")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # had the stale file been read, its warning would fail the run
        assert cli.main(args + ["--fresh"]) == 0
    assert not stale.exists()
    assert pd.read_csv(out / "runs.csv")["resumed_from_step"].isna().all()
