"""A hostile user at the command line: every bad input is refused before any work, as exactly one line on
stderr that names the flag (exit status 2, no traceback, nothing written in the --out folder); Ctrl-C,
wherever it arrives, is one line too (exit status 130); results cannot be lost or mixed (a second sweep on
one folder, failed runs retried on request, an interrupted --fresh sweep resumed as one, a changed corpus
measured again). CPU, the smoke preset at 2 steps of 256 tokens, a few KB of local text.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import suite.train as train_mod
from suite import cli
from suite.runs import RunConfig
from suite.store import ResultsStore
from suite.sweep import FRESH_MARKER, execute

ROOT = Path(__file__).resolve().parents[1]


from conftest import write_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def base_args(corpus: str, out: Path, models: str = "transformer") -> list[str]:
    return ["--preset", "smoke", "--models", models, "--contexts", "32", "--steps", "2", "--tokens-per-step", "256",
            "--corpus", corpus, "--out", str(out)]


def snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    if folder.is_file():
        return {"": folder.read_bytes()}
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>") for p in folder.rglob("*")}


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a run trains or a corpus is loaded: bad input must be refused before any work."""
    import suite.batches as batches

    class NoLoading:
        def cache_clear(self):
            pass

        def __call__(self, *args, **kwargs):
            raise AssertionError("a corpus was loaded before the bad input was refused")

    def no_training(*args, **kwargs):
        raise AssertionError("a run trained before the bad input was refused")

    monkeypatch.setattr(batches, "tokenized", NoLoading())
    monkeypatch.setattr(train_mod, "run", no_training)


def refused(capsys, argv: list[str], out: Path) -> str:
    """cli.main(argv) must exit 2 with one stderr line, nothing on stdout, the --out folder untouched."""
    before = snapshot(out)
    rc = cli.main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2, (rc, captured.out, captured.err)
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("run_all.py: error: "), lines
    assert "Traceback" not in captured.err and captured.out == ""
    assert snapshot(out) == before, "the --out folder changed"
    return lines[0]


# --------------------------------------------------------------------------- 1. bad flags

BAD_FLAGS = [
    (["--device", "mps"], ["--device", "'mps'", "valid devices: cpu, cuda, cuda:N"]),
    (["--device", "gpu"], ["--device", "'gpu'", "valid devices"]),
    (["--device", "cuda:99"], ["--device cuda:99", "valid here: cpu"]),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "cuda:99"], ["--device cuda", "valid here"]),
    (["--contexts", ""], ["argument --contexts", "empty"]),
    (["--models", ""], ["argument --models", "empty"]),
    (["--models", "transformer,,flash"], ["argument --models", "empty item"]),
    (["--out", ""], ["argument --out", "empty"]),
    (["--contexts", "1e9"], ["argument --contexts", "item '1e9'", "whole number of tokens"]),
    (["--contexts", "0"], ["argument --contexts", "at least 1"]),
    (["--contexts", "-4"], ["argument --contexts", "at least 1"]),
    (["--contexts", "1k", "--tokens-per-step", "512"], ["--contexts 1024", "--tokens-per-step 512"]),
    (["--tokens-per-step", "0"], ["argument --tokens-per-step", "positive"]),
    (["--budget", "0"], ["argument --budget", "positive"]),
    (["--budget", "-1"], ["argument --budget", "positive"]),
    (["--budget", "nan"], ["argument --budget", "positive"]),
    (["--budget", "inf"], ["argument --budget", "finite"]),
    (["--steps", "0"], ["argument --steps", "positive"]),
    (["--steps", "2.5"], ["argument --steps"]),
    (["--lr", "0"], ["argument --lr", "positive"]),
    (["--lr", "nan"], ["argument --lr", "positive"]),
    (["--seeds", "x"], ["argument --seeds", "item 'x'", "whole number"]),
    (["--precision", "fp16"], ["argument --precision", "fp32", "bf16"]),
    (["--compile-mode", "fastest"], ["argument --compile-mode", "max-autotune"]),
    (["--corpus", ""], ["--corpus", "valid"]),
    (["--corpus", "Shakespear"], ["--corpus", "unknown corpus 'Shakespear'", "shakespeare"]),
    (["--preset", "nope"], ["unknown preset 'nope'", "smoke"]),
    (["--models", "gpt5"], ["unknown model 'gpt5'", "valid models"]),
    (["--budget", "1"], ["--budget", "--steps", "exclude each other"]),
    (["--set", "chunk"], ["argument --set", "KEY=VALUE"]),
    (["--set", "chunk=8"], ["unknown model option(s) ['chunk']", "valid options"]),
    (["--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
]


@pytest.mark.parametrize("extra, words", BAD_FLAGS, ids=[" ".join(e) or "empty" for e, _ in BAD_FLAGS])
def test_bad_flags_are_one_line_exit_2_before_any_work(capsys, tmp_path, corpus, no_work, extra, words):
    out = tmp_path / "out"
    line = refused(capsys, base_args(corpus, out) + extra, out)  # later flags win
    for w in words:
        assert w in line, line
    assert "tokens_per_step" not in line and "budget_s" not in line and "max_steps" not in line
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-4", "2.5", "abc"])
def test_bad_model_option_values_are_one_line(capsys, tmp_path, corpus, no_work, value):
    """The model registry refuses a value it cannot use (implementations.make_config, via sweep.check)."""
    out = tmp_path / "out"
    line = refused(capsys, base_args(corpus, out, "flash") + ["--set", f"chunk={value}"], out)
    assert "chunk" in line
    assert not out.exists()


@pytest.mark.parametrize("peer, package", [("peer:hf_llama", "transformers"), ("peer:flash_pytorch", "flash_pytorch")])
def test_a_peer_whose_package_is_missing_is_refused_up_front(capsys, tmp_path, corpus, no_work, monkeypatch,
                                                               peer, package):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    out = tmp_path / "out"
    line = refused(capsys, base_args(corpus, out, peer), out)
    assert peer in line and repr(package) in line and "pip install" in line
    assert not out.exists()


def test_a_text_corpus_that_is_not_utf8_is_refused_with_the_byte_offset(capsys, tmp_path, monkeypatch):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Caf\u00e9 au lait.\n\nUn deuxi\u00e8me paragraphe.\n".encode("latin-1"))
    monkeypatch.setattr(train_mod, "run", lambda *a, **k: pytest.fail("a run trained"))
    line = refused(capsys, base_args(f"text:{bad}", tmp_path / "out"), tmp_path / "out")
    assert str(bad) in line and "byte offset 3" in line and "0xe9" in line


# --------------------------------------------------------------------------- 2. the output folder, up front

def test_an_output_folder_that_is_a_file_is_refused(capsys, tmp_path, corpus, no_work):
    f = tmp_path / "a-file"
    f.write_text("not a folder\n")
    assert "not a folder" in refused(capsys, base_args(corpus, f), f)
    below = f / "results"
    assert "is a file, not a folder" in refused(capsys, base_args(corpus, below), f)


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
@pytest.mark.parametrize("out", ["/proc", "/proc/flash-repro-results"])
def test_an_output_folder_that_cannot_be_written_is_refused(capsys, tmp_path, corpus, no_work, out):
    assert "cannot write in /proc" in refused(capsys, base_args(corpus, Path(out)), tmp_path)  # (not rglob /proc)
    assert not Path(out).is_dir() or out == "/proc"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused(capsys, tmp_path, corpus, no_work):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert "cannot write in" in refused(capsys, base_args(corpus, ro / "out"), ro)
        assert "cannot write in" in refused(capsys, base_args(corpus, ro), ro)
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("name, header", [("runs.csv", "name,score\n"), ("curves.csv", "x,y\n")])
def test_a_foreign_table_in_the_output_folder_is_refused_before_training(capsys, tmp_path, corpus, no_work,
                                                                          name, header):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text(header + "1,2\n")
    line = refused(capsys, base_args(corpus, out), out)
    assert name in line and "not a flash-repro results table" in line


def test_a_dry_run_with_a_bad_output_folder_is_refused_too(capsys, tmp_path, corpus, no_work):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert "not a folder" in refused(capsys, base_args(corpus, f) + ["--dry-run"], f)


# --------------------------------------------------------------------------- 3. two sweeps on one folder

def test_a_second_sweep_on_a_folder_in_use_is_refused(capsys, tmp_path, corpus, no_work):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom suite.store import ResultsStore\n"
         f"with ResultsStore({str(out)!r}).lock():\n    print('held', flush=True)\n    time.sleep(60)\n"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        rc = cli.main(base_args(corpus, out))
        err = capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait(timeout=30)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "another sweep" in lines[0], err
    assert not (out / "runs").exists()


# --------------------------------------------------------------------------- Ctrl-C

def interrupted_line(err: str) -> str:
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("run_all.py: interrupted"), lines
    return lines[0]


@pytest.mark.parametrize("where", ["parser", "expand", "check_out_folder"])
def test_ctrl_c_while_parsing_or_checking_is_one_line_exit_130(capsys, monkeypatch, tmp_path, corpus, where):
    import suite.sweep as sweep

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep if where == "expand" else cli, where, interrupt)
    assert cli.main(base_args(corpus, tmp_path / "out")) == 130
    captured = capsys.readouterr()
    assert "before any run started" in interrupted_line(captured.err) and captured.out == ""
    assert not (tmp_path / "out").exists()


def run_all(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return subprocess.Popen([sys.executable, "run_all.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the import under way")
def test_ctrl_c_while_importing_pytorch_is_one_line_exit_130(tmp_path, corpus):
    out = tmp_path / "out"
    proc = run_all(base_args(corpus, out))
    try:
        deadline = time.monotonic() + 60
        while "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "before any run started" in interrupted_line(err)
    assert not out.exists()


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.0])
def test_ctrl_c_in_the_first_second_is_one_line_exit_130(tmp_path, corpus, delay):
    for attempt in range(3):
        proc = run_all(base_args(corpus, tmp_path / f"out{attempt}"))
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        # Python's own start-up (before run_all.py's first line) cannot catch it; on a loaded machine that
        # can outlast the delay: then the traceback names no file of ours, and the test tries again later
        if proc.returncode == 130 or "run_all.py" in err or "suite/" in err:
            break
        delay += 0.5
    assert proc.returncode == 130, err
    # once the sweep has started, its own progress lines precede the interrupt's line
    progress = [line for line in err.splitlines() if " runs of preset " in line or line.startswith("[")]
    interrupted_line("\n".join(line for line in err.splitlines() if line not in progress))


# --------------------------------------------------------------------------- 4, 5, 7: measuring again (execute)

def runs_for(n: int, kind: str = "speed", **kw) -> list[RunConfig]:
    return [RunConfig(model="transformer", context=32, kind=kind, tokens_per_step=256, seed=s, **kw) for s in range(n)]


class FakeRun:
    """train.run without training: a record per run, with a status and data hash the test chooses."""

    def __init__(self, status=None, data_hash="h1", interrupt_at: int | None = None):
        self.status = status or {}
        self.data_hash = data_hash
        self.interrupt_at = interrupt_at
        self.calls: list[str] = []

    def __call__(self, cfg, data, progress=None, ddp=False, checkpoints=None):
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls.append(cfg.run_id)
        summary = {"run_id": cfg.run_id, "status": self.status.get(cfg.seed, "ok"), "message": "", "kind": cfg.kind,
                   "model": cfg.model, "seed": cfg.seed, "corpus": cfg.corpus}
        if cfg.kind == "train":
            summary["data_hash"] = self.data_hash
        return summary, []


def test_retry_failed_measures_again_only_error_and_oom_runs(monkeypatch, tmp_path):
    runs = runs_for(5)
    store = ResultsStore(tmp_path)
    monkeypatch.setattr(train_mod, "run", FakeRun({1: "error", 2: "oom", 3: "nan", 4: "diverged"}))
    assert execute(runs, store, log=lambda m: None) == {"skipped": 0, "ok": 1, "error": 1, "oom": 1, "nan": 1,
                                                        "diverged": 1}
    before = {r.run_id: store.path(r.run_id).read_bytes() for r in runs}
    again = FakeRun()
    monkeypatch.setattr(train_mod, "run", again)
    assert execute(runs, store, log=lambda m: None) == {"skipped": 5}  # without the flag: never retried
    logs = []
    counts = execute(runs, store, log=logs.append, retry_failed=True)
    assert counts == {"skipped": 3, "ok": 2} and again.calls == [runs[1].run_id, runs[2].run_id]
    for r in (runs[0], runs[3], runs[4]):  # ok, nan and diverged stay as they were
        assert store.path(r.run_id).read_bytes() == before[r.run_id]
    kept = {p.name: p.read_bytes() for p in (tmp_path / "superseded").rglob("*.json")}
    assert kept == {f"{r.run_id}.json": before[r.run_id] for r in (runs[1], runs[2])}  # moved aside, not lost
    assert any("--retry-failed" in m for m in logs)


def test_an_interrupted_fresh_sweep_resumes_as_a_fresh_sweep(monkeypatch, tmp_path):
    runs = runs_for(3)
    store = ResultsStore(tmp_path)
    monkeypatch.setattr(train_mod, "run", FakeRun())
    execute(runs, store, log=lambda m: None)
    old = {r.run_id: store.path(r.run_id).read_bytes() for r in runs}
    for r in runs:  # recorded well before the --fresh sweep
        os.utime(store.path(r.run_id), (time.time() - 3600, time.time() - 3600))

    first = FakeRun(interrupt_at=1)  # Ctrl-C after the first run of the --fresh sweep is recorded
    monkeypatch.setattr(train_mod, "run", first)
    with pytest.raises(KeyboardInterrupt):
        execute(runs, store, log=lambda m: None, fresh=True)
    assert (tmp_path / FRESH_MARKER).exists()
    remeasured = store.path(runs[0].run_id).read_bytes()
    assert store.finished() == {runs[0].run_id}

    second = FakeRun()
    monkeypatch.setattr(train_mod, "run", second)
    logs = []
    counts = execute(runs, store, log=logs.append, fresh=True)  # the same command again
    assert counts == {"skipped": 1, "ok": 2}
    assert second.calls == [runs[1].run_id, runs[2].run_id]
    assert store.path(runs[0].run_id).read_bytes() == remeasured  # kept, not measured a third time
    assert any("resuming the --fresh sweep" in m for m in logs)
    assert not (tmp_path / FRESH_MARKER).exists()  # the sweep completed
    assert sorted(p.read_bytes() for p in (tmp_path / "superseded").rglob("*.json")) == sorted(old.values())

    third = FakeRun()  # a new --fresh sweep measures everything again
    monkeypatch.setattr(train_mod, "run", third)
    assert execute(runs, store, log=lambda m: None, fresh=True) == {"skipped": 0, "ok": 3}


def test_a_train_run_whose_data_changed_is_measured_again(monkeypatch, tmp_path):
    runs = runs_for(2, kind="train", corpus="text:/data/book.txt") + runs_for(1, kind="speed")
    key = ("text:/data/book.txt", "bytes", 4096)
    store = ResultsStore(tmp_path)
    monkeypatch.setattr(train_mod, "run", FakeRun(data_hash="h1"))
    execute(runs, store, log=lambda m: None, data_hashes={key: "h1"})
    again = FakeRun(data_hash="h2")
    monkeypatch.setattr(train_mod, "run", again)
    assert execute(runs, store, log=lambda m: None, data_hashes={key: "h1"}) == {"skipped": 3}
    logs = []
    assert execute(runs, store, log=logs.append, data_hashes={key: "h2"}) == {"skipped": 1, "ok": 2}
    assert again.calls == [runs[0].run_id, runs[1].run_id]  # the speed run has no data
    assert sum("data changed" in m and "h1" in m and "h2" in m for m in logs) == 2
    assert len(list((tmp_path / "superseded").rglob("*.json"))) == 2


# --------------------------------------------------------------------------- the same, through the command line

def test_retry_failed_flag(capsys, monkeypatch, tmp_path, corpus):
    out = tmp_path / "out"
    real = train_mod.run

    def flash_fails(cfg, *args, **kwargs):
        summary, curve = real(cfg, *args, **kwargs)
        if cfg.model == "flash":
            summary.update(status="error", message="RuntimeError: injected")
        return summary, curve

    monkeypatch.setattr(train_mod, "run", flash_fails)
    args = base_args(corpus, out, "transformer,flash")
    assert cli.main(args) == 0
    monkeypatch.setattr(train_mod, "run", real)
    assert cli.main(args) == 0
    assert "0 runs done, 2 already finished" in capsys.readouterr().out
    assert cli.main(args + ["--retry-failed"]) == 0
    assert "1 runs done, 1 already finished" in capsys.readouterr().out
    assert {r["summary"]["status"] for r in ResultsStore(out).records()} == {"ok"}


def test_fresh_interrupted_says_how_to_resume(capsys, monkeypatch, tmp_path, corpus):
    monkeypatch.setattr(train_mod, "run", FakeRun(interrupt_at=0))
    assert cli.main(base_args(corpus, tmp_path / "out") + ["--fresh"]) == 130
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("run_all.py: interrupted") and "--fresh" in line and "Traceback" not in err


def test_editing_a_text_corpus_measures_its_runs_again(capsys, tmp_path):
    text = write_corpus(tmp_path / "book.txt", seed=3)
    out = tmp_path / "out"
    args = base_args(f"text:{text}", out)
    assert cli.main(args) == 0
    first = {r["summary"]["run_id"]: r["summary"]["data_hash"] for r in ResultsStore(out).records()}
    assert cli.main(args) == 0
    assert "0 runs done, 1 already finished" in capsys.readouterr().out
    with open(text, "a") as f:
        f.write("\nOne more paragraph, written after the first sweep.\n")
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert "data changed" in captured.err and "1 runs done, 0 already finished" in captured.out
    now = {r["summary"]["run_id"]: r["summary"]["data_hash"] for r in ResultsStore(out).records()}
    assert now.keys() == first.keys() and set(now.values()).isdisjoint(first.values())
    assert len(list((out / "superseded").rglob("*.json"))) == 1


# --------------------------------------------------------------------------- 6. one spelling per corpus

def run_ids(capsys, argv: list[str]) -> list[str]:
    assert cli.main(argv + ["--dry-run"]) == 0
    return [line.split()[0] for line in capsys.readouterr().out.splitlines() if " train:" in line]


def test_equal_corpus_inputs_give_equal_run_ids(capsys, tmp_path, monkeypatch):
    out = ["--out", str(tmp_path / "out"), "--models", "transformer", "--contexts", "64"]
    ids = run_ids(capsys, out + ["--corpus", "shakespeare"])
    assert ids and run_ids(capsys, out + ["--corpus", "Shakespeare"]) == ids
    assert run_ids(capsys, out + ["--corpus", " SHAKESPEARE "]) == ids
    assert run_ids(capsys, out) == ids  # the preset's corpus
    book = write_corpus(tmp_path / "book.txt")
    monkeypatch.chdir(tmp_path)
    absolute = run_ids(capsys, out + ["--corpus", f"text:{book}"])
    assert run_ids(capsys, out + ["--corpus", "text:book.txt"]) == absolute
    assert run_ids(capsys, out + ["--corpus", "text:./sub/../book.txt"]) == absolute
    assert absolute != ids
