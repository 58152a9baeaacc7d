"""The runner: run ids, one run (train and speed), failure rows, the results store, resuming a killed
sweep, bad command lines, and run_all.py end to end. CPU, tiny models, a small corpus written to a
temporary folder (no downloads, no committed data); the whole file runs in well under 90 s on 2 cores.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import suite.step as step_mod
import suite.train as train_mod
from suite.optim import lr_factor, make_optimizer
from suite import cli
from suite.batches import corpus_batches
from suite.runs import RunConfig
from suite.schema import CURVE_COLUMNS, SCHEMA, STATUSES, SUMMARY_COLUMNS
from suite.store import ResultsError, ResultsStore, atomic_write_text
from suite.sweep import execute

ROOT = Path(__file__).resolve().parents[1]
LN2 = math.log(2)
# summary columns a CPU run does not fill: peak_mem_gib is CUDA only; schema lives at the record's top
# level (see test_runs_csv_schema_column_is_filled).
NOT_IN_CPU_SUMMARY = {"schema", "peak_mem_gib"}
TRAIN_ONLY = {"tokens", "train_time_s", "epochs", "final_eval_loss", "final_bpb", "final_train_loss",
              "resumed_from_step", "compile_s", "eval_s", "checkpoint_s"}


pytestmark = pytest.mark.usefixtures("one_thread")  # the corpus and one_thread fixtures: conftest.py


# --------------------------------------------------------------------------- fixtures
def train_config(corpus: str, **kw) -> RunConfig:
    base = dict(model="transformer", context=32, tokens_per_step=512, budget_s=1.0, evals=3, eval_tokens=1024,
                warmup_steps=2, corpus=corpus)
    return RunConfig(**{**base, **kw})


def speed_config(**kw) -> RunConfig:
    base = dict(model="transformer", context=32, kind="speed", tokens_per_step=256, vocab_size=64,
                warmup_timing_steps=1, timed_steps=4)
    return RunConfig(**{**base, **kw})


def fake_summary(run_id: str, **kw) -> dict:
    return {"run_id": run_id, "status": "ok", "message": "", "kind": "speed", "model": "transformer",
            "variant": "transformer", "objective": "clm", "context": 32, "seed": 0, "step_ms_median": 1.5,
            "mfu": float("nan"), **kw}


def no_tmp_files(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- 1. run ids and validation

# one changed value per RunConfig field; the test fails when a field is added without an entry here
CHANGED = dict(model="flash", context=64, objective="mlm", seed=1, kind="speed", size="small", tokens_per_step=8192,
               corpus="eltec", tokenizer="bpe", bpe_vocab=1024, budget_s=11.0, max_steps=7, lr=1e-3, warmup_steps=3,
               weight_decay=0.0, grad_clip=0.5, evals=2, eval_tokens=1024, vocab_size=512, warmup_timing_steps=1,
               timed_steps=2, device="cuda", precision="bf16", compile=True, attention_kernel="materialized",
               sdpa_backend="math", overrides=(("chunk", 64),), backend="jax", loss="liger")


def test_run_id_is_a_content_hash():
    a = RunConfig(model="flash", context=32)
    b = RunConfig(model="flash", context=32)
    assert a.run_id == b.run_id
    assert re.fullmatch(r"[0-9a-f]{16}", a.run_id)
    assert RunConfig(**{**dataclasses.asdict(a), "overrides": tuple(a.overrides)}).run_id == a.run_id
    assert dataclasses.replace(a).run_id == a.run_id


def test_every_field_changes_the_run_id():
    names = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(CHANGED) == names, f"fields without a changed value in this test: {sorted(names - set(CHANGED))}"
    base = RunConfig(model="transformer", context=32)
    ids = {base.run_id}
    for name, value in CHANGED.items():
        assert getattr(base, name) != value, name
        other = dataclasses.replace(base, **{name: value})
        assert other.run_id != base.run_id, f"changing {name} kept the run id"
        ids.add(other.run_id)
    assert len(ids) == len(CHANGED) + 1  # all different from each other too


def test_fields_added_later_keep_earlier_run_ids():
    # a run id recorded before the backend field existed (results/nvidia-h200/paper-figures, commit 855aff8)
    cfg = RunConfig(model="flash", context=2048, kind="train", size="quality", tokens_per_step=65536, corpus="eltec",
                    budget_s=None, max_steps=3000, lr=4e-3, warmup_steps=50, evals=30, eval_tokens=262144,
                    device="cuda", precision="bf16", compile=True)
    assert cfg.run_id == "ae2f969c9818f88b"
    assert dataclasses.replace(cfg, backend="jax").variant == "flash+jax"


def test_equal_configs_have_equal_run_ids():
    a = RunConfig(model="flash", context=32, budget_s=10)
    b = RunConfig(model="flash", context=32, budget_s=10.0)
    assert a == b
    assert a.run_id == b.run_id


@pytest.mark.parametrize("kw, words", [
    (dict(objective="lm"), "unknown objective"),
    (dict(kind="bench"), "unknown run kind"),
    (dict(precision="fp16"), "unknown precision"),
    (dict(size="huge"), "unknown size"),
    (dict(context=0), "context 0"),
    (dict(context=-4), "context -4"),
    (dict(context=8192, tokens_per_step=4096), "at most tokens_per_step"),
])
def test_run_config_validation(kw, words):
    with pytest.raises(ValueError, match=words):
        RunConfig(**{"model": "transformer", "context": 32, **kw})


def test_context_equal_to_tokens_per_step_is_valid():
    assert RunConfig(model="transformer", context=512, tokens_per_step=512).batch_size == 1


# --------------------------------------------------------------------------- 2. one training run

@pytest.mark.parametrize("tokenizer", ["bytes", "bpe"])
def test_train_run(corpus, tokenizer, tmp_path):
    cfg = train_config(corpus, tokenizer=tokenizer, bpe_vocab=320, evals=5)  # 1 s of training
    data = corpus_batches(cfg)
    summary, curve = train_mod.run(cfg, data)
    assert summary["status"] == "ok", summary["message"]
    assert summary["message"] == ""

    # the learning curve (its length depends on the wall clock; see test_learning_curve_eval_points)
    assert len(curve) >= 1
    assert all(set(row) == set(CURVE_COLUMNS) for row in curve)
    times = [row["time_s"] for row in curve]
    steps = [row["step"] for row in curve]
    assert all(t1 > t0 for t0, t1 in zip(times, times[1:])), times
    assert all(s1 > s0 for s0, s1 in zip(steps, steps[1:])), steps
    for row in curve:
        assert row["run_id"] == cfg.run_id and row["model"] == cfg.model and row["context"] == cfg.context
        assert row["tokens"] == row["step"] * cfg.batch_size * cfg.context
        assert math.isfinite(row["eval_loss"]) and math.isfinite(row["train_loss"])
        assert row["eval_bpb"] == pytest.approx(row["eval_loss"] / LN2 / data.bytes_per_token)

    # quality and work
    assert math.isfinite(summary["final_eval_loss"])
    assert summary["final_eval_loss"] == curve[-1]["eval_loss"]
    assert summary["final_bpb"] == pytest.approx(summary["final_eval_loss"] / LN2 / data.bytes_per_token)
    if tokenizer == "bpe":
        assert data.bytes_per_token > 1.2  # so the test tells bits per byte from bits per token
    else:
        assert data.bytes_per_token == 1.0
    assert summary["steps"] == curve[-1]["step"] >= 1
    assert summary["tokens"] == summary["steps"] * cfg.tokens_per_step
    assert summary["train_time_s"] >= cfg.budget_s or summary["steps"] == cfg.max_steps
    assert summary["train_time_s"] == pytest.approx(curve[-1]["time_s"])
    assert summary["step_ms_median"] > 0 and summary["tokens_per_s"] > 0
    assert summary["eval_s"] > 0 and summary["wall_s"] > summary["train_time_s"] + summary["eval_s"]

    # identity and provenance
    missing = [k for k in SUMMARY_COLUMNS if k not in summary and k not in NOT_IN_CPU_SUMMARY]
    assert not missing, missing
    assert summary["run_id"] == cfg.run_id and summary["kind"] == "train"
    assert summary["model"] == "transformer" and summary["variant"] == cfg.variant == "transformer"
    assert summary["context"] == 32 and summary["objective"] == "clm" and summary["seed"] == 0
    assert summary["batch_size"] == 16 and summary["tokens_per_step"] == 512
    assert summary["vocab_size"] == data.vocab_size and summary["n_params"] > 0
    assert summary["corpus"] == corpus and summary["tokenizer"] == tokenizer
    assert re.fullmatch(r"[0-9a-f]{16}", summary["data_hash"])
    assert summary["git_commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", summary["git_commit"]) \
        or summary["git_commit"] == os.environ.get("FLASH_REPRO_COMMIT")  # outside git / a copy without .git
    assert isinstance(summary["git_dirty"], bool) and summary["timestamp"] and summary["python_version"]
    assert summary["torch_version"] == torch.__version__
    assert summary["device"] == "cpu" and summary["device_name"]
    assert json.loads(summary["config_json"]) == json.loads(json.dumps(cfg.as_dict()))

    # and it goes through the store into the tables
    store = ResultsStore(tmp_path / "res")
    store.write(summary, curve)
    runs, curves = store.consolidate()
    assert list(runs["run_id"]) == [cfg.run_id]
    assert len(curves) == len(curve)
    table = pd.read_csv(tmp_path / "res" / "runs.csv")
    assert list(table.columns[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert table.loc[0, "final_bpb"] == pytest.approx(summary["final_bpb"])
    assert math.isnan(table.loc[0, "mfu"])  # no peak known for a CPU: empty, not "nan" text
    assert not no_tmp_files(tmp_path / "res")


class FakeClock:
    """time.perf_counter for suite.train: every training step takes exactly `step_s` seconds."""

    def __init__(self, step_s: float):
        self.t, self.step_s = 0.0, step_s

    def perf_counter(self) -> float:  # called twice a step, before and after: each call is one step later
        self.t += self.step_s
        return self.t

    def monotonic(self) -> float:  # the progress display's clock: still
        return 0.0


def test_learning_curve_eval_points(monkeypatch, corpus):
    monkeypatch.setattr(train_mod, "time", FakeClock(step_s=1 / 32))   # exact binary fractions
    cfg = train_config(corpus, budget_s=0.5, evals=4)
    data = corpus_batches(cfg)
    summary, curve = train_mod.run(cfg, data)
    assert summary["status"] == "ok", summary["message"]
    assert summary["steps"] == 16 and summary["train_time_s"] == 0.5
    assert [row["step"] for row in curve] == [4, 8, 12, 16]              # evaluations spread evenly
    assert [row["time_s"] for row in curve] == [0.125, 0.25, 0.375, 0.5]
    assert [row["tokens"] for row in curve] == [4 * 512, 8 * 512, 12 * 512, 16 * 512]
    assert summary["step_ms_median"] == pytest.approx(1000 / 32)
    assert summary["timed_steps"] == 16 - 2                               # the warm-up steps are not timed
    assert curve[-1]["eval_loss"] < curve[0]["eval_loss"]                 # it learns
    assert summary["final_eval_loss"] == curve[-1]["eval_loss"]
    assert summary["final_bpb"] == pytest.approx(curve[-1]["eval_loss"] / LN2 / data.bytes_per_token)


def test_max_steps_ends_a_run(monkeypatch, corpus):
    cfg = train_config(corpus, budget_s=60.0, max_steps=3, evals=2)
    summary, curve = train_mod.run(cfg, corpus_batches(cfg))
    assert summary["status"] == "ok" and summary["steps"] == 3
    assert [row["step"] for row in curve] == [3]                          # the final evaluation only


def test_same_data_same_hash(corpus):
    a = corpus_batches(train_config(corpus))
    b = corpus_batches(train_config(corpus, context=64, seed=3))
    assert a.data_hash == b.data_hash  # the data's identity does not depend on how it is sampled
    assert corpus_batches(train_config(corpus, tokenizer="bpe", bpe_vocab=320)).data_hash != a.data_hash


# --------------------------------------------------------------------------- 3. a speed run

@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_speed_run(objective):
    cfg = speed_config(objective=objective)
    summary, curve = train_mod.run(cfg)
    assert summary["status"] == "ok", summary["message"]
    assert curve == []
    assert summary["step_ms_median"] > 0
    assert summary["step_ms_p10"] <= summary["step_ms_median"] <= summary["step_ms_p90"]
    assert summary["timed_steps"] == cfg.timed_steps
    assert summary["steps"] == cfg.warmup_timing_steps + cfg.timed_steps
    assert summary["tokens_per_s"] == pytest.approx(256 / (summary["step_ms_median"] / 1e3))
    assert summary["vocab_size"] == 64 and summary["kind"] == "speed"
    missing = [k for k in SUMMARY_COLUMNS if k not in summary and k not in NOT_IN_CPU_SUMMARY | TRAIN_ONLY]
    assert not missing, missing


# --------------------------------------------------------------------------- 4. failures are result rows

def raising_build(monkeypatch, exc: BaseException):
    """Build the real model, but make its forward raise `exc`."""
    real_build = train_mod.build

    def build(model_cfg, seed, device):
        model = real_build(model_cfg, seed, device)

        def forward(*args, **kwargs):
            raise exc
        model.forward = forward
        return model
    monkeypatch.setattr(train_mod, "build", build)


@pytest.mark.parametrize("kind", ["train", "speed"])
@pytest.mark.parametrize("exc, status, text", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom", "OutOfMemoryError"),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB\nsecond line of the message"), "oom",
     "RuntimeError: CUDA out of memory"),
    (MemoryError("cannot allocate"), "oom", "MemoryError"),
    (ValueError("something else broke"), "error", "ValueError: something else broke"),
])
def test_exceptions_become_rows(monkeypatch, corpus, kind, exc, status, text):
    raising_build(monkeypatch, exc)
    cfg = train_config(corpus, budget_s=0.5) if kind == "train" else speed_config()
    data = corpus_batches(cfg) if kind == "train" else None
    summary, curve = train_mod.run(cfg, data)  # nothing escapes
    assert summary["status"] == status
    assert text in summary["message"]
    assert "\n" not in summary["message"] and len(summary["message"]) < 400
    assert summary["run_id"] == cfg.run_id and summary["n_params"] > 0
    assert curve == []


def test_nan_loss(monkeypatch, corpus):
    real_loss = step_mod.loss_fn
    monkeypatch.setattr(step_mod, "loss_fn", lambda logits, targets: real_loss(logits, targets) * float("nan"))
    cfg = train_config(corpus, budget_s=2.0)
    summary, curve = train_mod.run(cfg, corpus_batches(cfg))
    assert summary["status"] == "nan"
    assert "non-finite" in summary["message"]
    assert summary["steps"] == 1  # stops at once, not after the whole budget
    assert math.isnan(summary["final_train_loss"])
    assert curve == [] and math.isnan(summary["final_eval_loss"])


def test_nan_evaluation_loss(monkeypatch, corpus):
    monkeypatch.setattr(step_mod.Step, "evaluate", lambda self, batches: float("nan"))
    cfg = train_config(corpus, budget_s=0.3)
    summary, curve = train_mod.run(cfg, corpus_batches(cfg))
    assert summary["status"] == "nan"
    assert "evaluation" in summary["message"]


def test_divergence(monkeypatch, corpus):
    real_loss = step_mod.loss_fn
    calls = itertools.count()
    # the same gradients, but a loss that climbs by 50 nats a call: far above the start and 2 ln V
    monkeypatch.setattr(step_mod, "loss_fn", lambda logits, targets: real_loss(logits, targets) + 50.0 * next(calls))
    cfg = train_config(corpus, budget_s=5.0, warmup_steps=1, evals=1)
    summary, curve = train_mod.run(cfg, corpus_batches(cfg))
    assert summary["status"] == "diverged", summary["message"]
    assert "training loss" in summary["message"]
    assert summary["steps"] == 2  # the first step after warm-up
    assert summary["train_time_s"] < cfg.budget_s


def test_statuses_are_the_schema_ones():
    assert set(STATUSES) == {"ok", "oom", "nan", "diverged", "error"}


# --------------------------------------------------------------------------- 5. the results store

def test_store_writes_atomically(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    path = store.write(fake_summary("aaaa"), [{"run_id": "aaaa", "step": 1, "eval_loss": float("inf")}])
    assert path == tmp_path / "runs" / "aaaa.json"
    record = json.loads(path.read_text())
    assert record["schema"] == SCHEMA and record["summary"]["run_id"] == "aaaa"
    assert record["summary"]["mfu"] is None and record["curve"][0]["eval_loss"] is None  # valid JSON, no NaN
    assert not no_tmp_files(tmp_path)

    # a write that fails half-way leaves the old file as it was, and no temporary file
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.write(fake_summary("aaaa", status="error"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not no_tmp_files(tmp_path)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["aaaa.json"]

    atomic_write_text(tmp_path / "deep" / "er" / "x.txt", "hello")  # creates the folders
    assert (tmp_path / "deep" / "er" / "x.txt").read_text() == "hello"
    assert not no_tmp_files(tmp_path)


def test_store_quarantines_damaged_files(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(fake_summary("good"))
    runs = tmp_path / "runs"
    (runs / "broken.json").write_text('{"schema": "flash-repro/run/v1", "summ')   # truncated
    (runs / "foreign.json").write_text(json.dumps({"schema": "someone-else/v3", "summary": {}}))
    (runs / "renamed.json").write_text(json.dumps({"schema": SCHEMA, "summary": fake_summary("other")}))
    (runs / "broken.json.damaged").write_text("an earlier damaged copy")  # must not be overwritten

    assert store.finished() == {"good"}
    assert len(store.problems) == 3
    assert any("broken.json" in p and "unreadable" in p for p in store.problems)
    assert any("foreign.json" in p for p in store.problems)
    assert any("renamed.json" in p and "'other'" in p for p in store.problems)

    moved = store.quarantine_problems()
    assert len(moved) == 3
    names = sorted(p.name for p in runs.iterdir())
    assert names == ["broken.json.damaged", "broken.json.damaged2", "foreign.json.damaged", "good.json",
                     "renamed.json.damaged"]
    assert (runs / "broken.json.damaged").read_text() == "an earlier damaged copy"
    assert (runs / "broken.json.damaged2").read_text().startswith('{"schema": "flash-repro/run/v1", "summ')
    assert store.finished() == {"good"} and store.problems == []
    runs_df, _ = store.consolidate()
    assert list(runs_df["run_id"]) == ["good"]


def test_execute_reports_damaged_files_and_skips_finished_runs(tmp_path):
    done_cfg, todo_cfg = speed_config(), speed_config(seed=1)
    store = ResultsStore(tmp_path)
    store.write(fake_summary(done_cfg.run_id, step_ms_median=123.0))
    damaged = store.path(todo_cfg.run_id)
    damaged.write_text("{ killed while writi")
    logs: list[str] = []
    counts = execute([done_cfg, todo_cfg], store, log=logs.append)
    assert counts == {"skipped": 1, "ok": 1}
    assert any("damaged results file" in line and damaged.name in line for line in logs)
    assert damaged.with_name(damaged.name + ".damaged").read_text() == "{ killed while writi"
    assert store.read(damaged)["summary"]["status"] == "ok"                             # the run, redone
    assert store.read(store.path(done_cfg.run_id))["summary"]["step_ms_median"] == 123.0  # not redone
    assert execute([done_cfg, todo_cfg], store, log=logs.append) == {"skipped": 2}


@pytest.mark.parametrize("name", ["runs.csv", "curves.csv"])
def test_consolidate_refuses_a_foreign_csv(tmp_path, name):
    store = ResultsStore(tmp_path)
    store.write(fake_summary("good"))
    foreign = "date,revenue\n2024-01-01,12\n"
    (tmp_path / name).write_text(foreign)
    with pytest.raises(ResultsError, match=name):
        store.consolidate()
    assert (tmp_path / name).read_text() == foreign
    # our own tables, on the other hand, are rebuilt
    (tmp_path / name).unlink()
    store.consolidate()
    store.consolidate()
    assert pd.read_csv(tmp_path / "runs.csv")["run_id"].tolist() == ["good"]
    assert not no_tmp_files(tmp_path)


def test_consolidate_with_no_runs(tmp_path):
    runs, curves = ResultsStore(tmp_path).consolidate()
    assert len(runs) == 0 and len(curves) == 0
    assert (tmp_path / "runs.csv").read_text().startswith("run_id,schema")
    assert (tmp_path / "curves.csv").read_text().startswith("run_id,model")


def test_runs_csv_schema_column_is_filled(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(fake_summary("good"))
    store.consolidate()
    assert pd.read_csv(tmp_path / "runs.csv")["schema"].tolist() == [SCHEMA]


# --------------------------------------------------------------------------- 6-8. the command line

def cli_error(capsys, argv: list[str]) -> str:
    """Run the command line in-process; it must fail with exit status 2 and one line on stderr."""
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("run_all.py: error: ")
    assert "Traceback" not in err and out == ""
    return lines[0]


@pytest.mark.parametrize("extra, words", [
    (["--models", "transformer,gpt5"], "unknown model 'gpt5'"),
    (["--corpus", "wikipedia-2031"], "unknown corpus 'wikipedia-2031'"),
    (["--corpus", "text:/nonexistent/dir/book.txt"], "text corpus path not found"),
    (["--corpus", "eltec", "--eltec-path", "/nonexistent/x.jsonl.gz"], "ELTeC corpus file not found"),
    (["--contexts", "0"], "argument --contexts: item '0': a context length must be at least 1"),
    (["--contexts", "1k", "--tokens-per-step", "512"], "--contexts 1024: must be >= 1 and at most --tokens-per-step 512"),
    (["--preset", "gpu-everything"], "unknown preset 'gpu-everything'"),
    (["--set", "chunk=8"], "unknown model option(s) ['chunk'] for model 'transformer'"),
])
def test_bad_input_is_one_error_line(capsys, tmp_path, corpus, extra, words):
    argv = ["--preset", "smoke", "--models", "transformer", "--contexts", "32", "--budget", "0.2",
            "--corpus", corpus, "--out", str(tmp_path / "out")]
    line = cli_error(capsys, argv + extra)  # later flags win
    assert words in line
    assert not (tmp_path / "out" / "runs").exists()  # nothing ran


def test_context_longer_than_the_data_is_bad_input(capsys, tmp_path, corpus):
    line = cli_error(capsys, ["--preset", "smoke", "--models", "transformer", "--contexts", "2048",
                              "--tokens-per-step", "2048", "--budget", "0.2", "--corpus", corpus,
                              "--out", str(tmp_path / "out")])
    assert "2,049" in line or "2049" in line


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def sigkill_when(cmd: list[str], log: Path, ready, what: str, after_s: float = 0.0) -> int:
    """Start `cmd` (run_all.py), SIGKILL it (no chance to clean up) `after_s` seconds after `ready()` first
    holds; fail if it ends before, or if `ready()` does not hold within 3 minutes ("`what` in time").
    Returns its exit status."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=subprocess_env())
        try:
            deadline = time.monotonic() + 180
            while not ready():
                assert proc.poll() is None, f"run_all.py ended before the kill:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"{what} in time:\n{log.read_text()}"
                time.sleep(0.02)
            time.sleep(after_s)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    return proc.returncode


def run_all_args(corpus: str, out: Path, models: str, budget: str) -> list[str]:
    return ["--preset", "smoke", "--models", models, "--contexts", "32", "--budget", budget,
            "--tokens-per-step", "512", "--corpus", corpus, "--out", str(out)]


@pytest.mark.slow
def test_resume_after_kill(capsys, tmp_path, corpus):
    out = tmp_path / "out"
    args = run_all_args(corpus, out, "transformer,flash,performer", "0.5")
    assert cli.main(args + ["--dry-run"]) == 0
    listing = capsys.readouterr().out.splitlines()
    expected = [line.split()[0] for line in listing if re.match(r"[0-9a-f]{16} ", line)]
    assert len(expected) == 3 and listing[-1].startswith("3 runs")
    assert not out.exists()  # a dry run writes nothing

    # first attempt: killed (SIGKILL, no chance to clean up) once the first run is on disk
    cmd = [sys.executable, "run_all.py", *args]
    assert sigkill_when(cmd, tmp_path / "first.log", lambda: list((out / "runs").glob("*.json")),
                        "no run finished") == -signal.SIGKILL
    finished = ResultsStore(out).finished()
    assert finished and finished <= set(expected)
    before = {rid: (out / "runs" / f"{rid}.json").read_bytes() for rid in finished}

    # second attempt: the same command, to the end
    proc2 = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert "damaged" not in proc2.stderr
    m = re.search(r"(\d+) runs done, (\d+) already finished", proc2.stdout)
    assert m, proc2.stdout
    assert (int(m.group(1)), int(m.group(2))) == (3 - len(finished), len(finished))
    for rid, data in before.items():  # finished runs were not redone
        assert (out / "runs" / f"{rid}.json").read_bytes() == data

    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["run_id"]) == sorted(expected)  # each exactly once
    assert not runs["run_id"].duplicated().any()
    assert set(runs["status"]) == {"ok"}, runs[["model", "status", "message"]].to_string()
    assert sorted(p.name for p in (out / "runs").iterdir() if not p.name.endswith(".tmp")) == \
        sorted(f"{rid}.json" for rid in expected)  # no damaged files (a .tmp of the killed write may remain)
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["run_id"]) == set(expected)


@pytest.mark.slow
def test_run_all_end_to_end(tmp_path, corpus):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "run_all.py", *run_all_args(corpus, out, "transformer,performer", "0.3")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["model"]) == ["performer", "transformer"]
    assert set(runs["status"]) == {"ok"}, runs[["model", "status", "message"]].to_string()
    assert (runs["context"] == 32).all() and (runs["world_size"] == 1).all()
    assert runs["final_bpb"].notna().all() and runs["data_hash"].nunique() == 1
    curves = pd.read_csv(out / "curves.csv")
    assert list(curves.columns) == CURVE_COLUMNS and set(curves["run_id"]) == set(runs["run_id"])
    tables = sorted((out / "tables").glob("*.md"))
    figures = sorted((out / "figures").glob("*.png"))
    assert tables and figures, proc.stdout
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    assert all(t.read_text().strip() for t in tables)
    assert f"results: {out}/runs.csv" in proc.stdout
    assert not no_tmp_files(out)


@pytest.mark.slow
def test_fresh_measures_again_and_keeps_the_old_records(capsys, tmp_path, corpus):
    out = tmp_path / "out"
    args = run_all_args(corpus, out, "transformer", "0.2")
    assert cli.main(args) == 0
    first = ResultsStore(out).finished()
    assert len(first) == 1
    old = (out / "runs" / f"{next(iter(first))}.json").read_text()
    assert cli.main(args) == 0  # again: skipped, and told so
    assert "already finished" in capsys.readouterr().out
    assert cli.main(args + ["--fresh"]) == 0
    kept = list((out / "superseded").rglob("*.json"))
    assert len(kept) == 1 and kept[0].read_text() == old  # the old record moved, not overwritten
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 1 and runs["run_id"].iloc[0] in first
    assert (out / "runs" / kept[0].name).read_text() != old  # measured again


def test_set_gives_model_options_typed_and_merged_with_the_presets(capsys):
    from suite.cli import parse_key_value

    assert parse_key_value("chunk=128") == ("chunk", 128) and parse_key_value("rope=false") == ("rope", False)
    assert parse_key_value("norm=scalenorm") == ("norm", "scalenorm") and parse_key_value("x=0.5") == ("x", 0.5)
    for bad in ("chunk", "=3", "chunk="):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_key_value(bad)
    # a GPU preset lists its runs without a GPU; --set joins the preset's own model overrides
    assert cli.main(["--preset", "gpu-ablation", "--models", "flash", "--set", "norm=scalenorm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "flash[chunk=128,norm=scalenorm]+compile" in out and "flash[norm=scalenorm]+compile" in out
    assert "flash[parts=local,norm=scalenorm]+compile" in out


def test_compile_mode_flag_makes_its_own_variant(capsys):
    assert cli.main(["--preset", "gpu-speed", "--models", "flash", "--contexts", "2k", "--objectives", "clm",
                     "--no-variants", "--compile-mode", "max-autotune-no-cudagraphs", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "speed:flash[mode=max-autotune-no-cudagraphs]+compile:clm:T=2048" in out and "1 runs" in out
    assert cli.main(["--compile-mode", "fastest", "--dry-run"]) == 2  # argparse refuses an unknown mode
    assert "argument --compile-mode: invalid choice: 'fastest'" in capsys.readouterr().err


def test_listing_into_a_closed_pipe_ends_quietly(monkeypatch):
    """`run_all.py --list | head -1`: when the reader has gone, the listing stops with the shell's
    SIGPIPE code instead of a BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    with open(write_end, "w", buffering=1) as closed_pipe:
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        assert cli.main(["--list"]) == 141


# --------------------------------------------------------------------------- the fixed-steps protocol
def test_fixed_steps_run_schedules_and_evaluates_on_steps(monkeypatch, corpus):
    """budget_s None: exactly max_steps steps, evaluations at the same steps for every model, and the
    learning rate a function of the step alone."""
    scales = []
    original = step_mod.Step.__call__

    def spy(self, inputs, targets, lr_scale=1.0):
        scales.append(lr_scale)
        return original(self, inputs, targets, lr_scale)

    monkeypatch.setattr(step_mod.Step, "__call__", spy)
    for model in ("transformer_plus_plus", "flash"):
        scales.clear()
        cfg = train_config(corpus, model=model, budget_s=None, max_steps=9, evals=3, warmup_steps=2)
        summary, curve = train_mod.run(cfg, corpus_batches(cfg))
        assert summary["status"] == "ok" and summary["steps"] == 9 and summary["schedule"] == "steps"
        assert [row["step"] for row in curve] == [3, 6, 9]
        assert scales == [lr_factor(cfg, n, n / 9) for n in range(9)]
        assert summary["lr"] == cfg.lr


def test_weight_decay_spares_gains_offsets_biases_norms_and_position_biases():
    import implementations as impl
    model = impl.build_model("flash", vocab_size=20, d_model=16, n_layers=1, max_len=32, chunk=8, s=8)
    opt = make_optimizer(model, RunConfig(model="flash", context=32), torch.device("cpu"))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in decayed}
    assert names == {"embed.weight", "layers.0.fn.to_hidden.weight", "layers.0.fn.to_out.weight",
                     "layers.1.fn.to_hidden.weight", "layers.1.fn.to_out.weight"}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


@pytest.mark.parametrize("bad", [dict(budget_s=0.0), dict(budget_s=-1.0), dict(budget_s=float("nan")),
                                 dict(max_steps=0), dict(lr=0.0), dict(lr=float("inf"))])
def test_impossible_budgets_steps_and_rates_are_refused(bad):
    with pytest.raises(ValueError, match="budget|steps|learning rate"):
        RunConfig(model="flash", context=32, **bad)


def test_presets_give_each_model_its_learning_rate_unless_told_otherwise():
    from suite.presets import Preset
    from suite.sweep import expand
    preset = Preset(description="t", models=["flash", "transformer_plus_plus"], groups=[("clm", [32])],
                    base=dict(lr=1e-3, budget_s=None, max_steps=5), lr={"flash": 2e-3},
                    variants=[(["flash"], {"lr": 4e-3})])
    lrs = sorted((r.model, r.lr) for r in expand(preset))
    assert lrs == [("flash", 2e-3), ("flash", 4e-3), ("transformer_plus_plus", 1e-3)]
    assert {r.lr for r in expand(preset, lr=5e-4, variants=False)} == {5e-4}


def test_cli_steps_and_budget(capsys):
    assert cli.main(["--preset", "smoke", "--models", "flash", "--steps", "5", "--budget", "3", "--dry-run"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    runs = cli.expand(cli.get_preset("gpu-quality"), models=["flash"], contexts=[512], seeds=[0], variants=False,
                      budget_s=5.0, max_steps=RunConfig.max_steps)
    assert runs[0].budget_s == 5.0 and not runs[0].by_steps
    assert cli.main(["--preset", "smoke", "--models", "flash", "--contexts", "64", "--steps", "5", "--lr", "2e-3",
                     "--dry-run"]) == 0


def test_lr_from_takes_each_models_best_swept_rate(tmp_path, capsys):
    rows = [{"run_id": f"r{i}", "status": "ok", "kind": "train", "model": m, "variant": m + "+compile",
             "objective": "clm", "context": 2048, "seed": 0, "size": "quality", "lr": lr, "final_bpb": bpb,
             "final_eval_loss": bpb} for i, (m, lr, bpb) in enumerate(
                 [("flash", 1e-3, 1.6), ("flash", 2e-3, 1.5), ("transformer_plus_plus", 1e-3, 1.4),
                  ("transformer_plus_plus", 2e-3, 1.45)])]
    pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
    assert cli.swept_learning_rates(tmp_path) == {"flash": 2e-3, "transformer_plus_plus": 1e-3}
    assert cli.main(["--preset", "gpu-quality", "--lr-from", str(tmp_path), "--models", "flash",
                     "--contexts", "512", "--seeds", "0", "--no-variants", "--dry-run"]) == 0
    assert cli.main(["--preset", "gpu-quality", "--lr-from", str(tmp_path / "nowhere"), "--dry-run"]) == 2
    assert "no runs.csv" in capsys.readouterr().err


def test_a_presets_setting_rate_wins_over_the_models_rate_there_only():
    from suite.presets import PRESETS
    from suite.sweep import expand
    base = PRESETS["paper-figures"]
    preset = dataclasses.replace(base, setting_lr={("flash", "mlm", 8192): 1e-3})
    runs = expand(preset, models=["flash", "transformer_plus_plus"], seeds=[0])
    lr = {(r.model, r.objective, r.context): r.lr for r in runs}
    assert lr[("flash", "mlm", 8192)] == 1e-3
    assert lr[("flash", "mlm", 2048)] == lr[("flash", "clm", 8192)] == base.lr["flash"]
    assert lr[("transformer_plus_plus", "mlm", 8192)] == base.lr["transformer_plus_plus"]
    assert {r.lr for r in expand(preset, models=["flash"], seeds=[0], lr=5e-4)} == {5e-4}  # the command line wins


def test_result_rows_carry_the_configuration_as_data(corpus):
    """backend, compile mode and model options are columns, not only parts of the variant's label; run
    files written before these columns get them from their config_json."""
    from suite.summary import backfill
    cfg = train_config(corpus, model="flash", overrides=(("chunk", 16),), budget_s=None, max_steps=2, evals=1)
    summary, _ = train_mod.run(cfg, corpus_batches(cfg))
    assert (summary["backend"], summary["compile_mode"], summary["model_options"]) == ("pytorch", "eager", '{"chunk": 16}')
    assert summary["variant"] == "flash[chunk=16]"
    old = {k: v for k, v in summary.items() if k not in ("backend", "compile_mode", "model_options")}
    assert {k: backfill(old)[k] for k in ("backend", "compile_mode", "model_options")} == \
        {"backend": "pytorch", "compile_mode": "eager", "model_options": '{"chunk": 16}'}
    kernel = RunConfig(model="transformer", context=32, attention_kernel="materialized", compile="max-autotune")
    old = {"config_json": json.dumps(kernel.as_dict())}
    assert backfill(old)["model_options"] == '{"attention_kernel": "materialized"}'
    assert backfill(old)["compile_mode"] == "max-autotune"
    assert summary["loss"] == "torch" and backfill(old)["loss"] == "torch"  # before the loss option: the plain one
    liger = {**summary, "config_json": json.dumps(RunConfig(model="flash", context=32, loss="liger").as_dict())}
    del liger["loss"]  # a row written before the loss column
    assert backfill(liger)["loss"] == "liger" and backfill(liger)["model_options"] == summary["model_options"]


def test_the_fused_loss_step_takes_the_same_step_as_the_plain_one(monkeypatch):
    """loss="liger": the step hands the head's weight, the final hidden states and the targets to the fused
    op. With a plain reference in its place (Liger's kernels need a GPU), one step gives the same loss and
    parameters as the logits path, so the plumbing (tied head, flattening, ignored targets) is right."""
    import copy

    import torch.nn.functional as F

    import implementations as impl
    monkeypatch.setattr(step_mod, "fused_linear_cross_entropy",
                        lambda: lambda w, h, t: F.cross_entropy(h @ w.t(), t, ignore_index=-100))
    torch.manual_seed(0)
    model = impl.build_model("flash", vocab_size=64, d_model=32, n_layers=1, max_len=16, causal=False)
    twin = copy.deepcopy(model)
    cfg = RunConfig(model="flash", context=16, tokens_per_step=32, vocab_size=64, objective="mlm")
    x = torch.randint(0, 64, (2, 16))
    y = torch.where(torch.rand(2, 16) < 0.3, x, torch.full_like(x, -100))
    plain = step_mod.Step(model, cfg, torch.device("cpu"))(x, y)
    fused = step_mod.Step(twin, dataclasses.replace(cfg, loss="liger"), torch.device("cpu"))(x, y)
    assert float(fused) == pytest.approx(float(plain), rel=1e-6)
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert dataclasses.replace(cfg, loss="liger").variant == "flash[loss=liger]"


def test_the_fused_loss_is_refused_where_it_cannot_run(capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "liger_kernel" else real(name, *a))
    assert cli.main(["--preset", "smoke", "--loss", "liger", "--dry-run"]) == 2
    assert "--loss liger needs the package liger-kernel" in capsys.readouterr().err
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "liger_kernel" else real(name, *a))
    assert cli.main(["--preset", "smoke", "--loss", "liger", "--dry-run"]) == 2
    assert "--loss liger runs on a GPU only" in capsys.readouterr().err


def test_cpu_platform_name_carries_the_vector_extension():
    """A VM's CPU may be named only "AMD EPYC" whatever its host: the widest vector extension tells a Zen 3 host
    (AVX2) from a Zen 4 one (AVX-512), whose step times differed by 1.3x-1.9x (NOTES entry 31)."""
    from suite.provenance import cpu_description

    def info(flags):
        return "".join(f"processor\t: {i}\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\n" for i in range(2))

    assert cpu_description(info("fpu sse2 avx avx2 fma"), 2, "x86_64") == "AMD EPYC (2 cores, AVX2)"
    assert cpu_description(info("avx2 avx512f avx512bw"), 2, "x86_64") == "AMD EPYC (2 cores, AVX-512)"
    assert cpu_description(info("fpu sse2"), 2, "x86_64") == "AMD EPYC (2 cores)"
    assert cpu_description("", 4, "aarch64") == "aarch64 (4 cores)"  # no cpuinfo (another OS): the fallback
