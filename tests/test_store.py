"""suite.store: atomic writes, the folder lock, and consolidation that never loses a run's rows (CPU, fast)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from suite.store import ResultsError, ResultsStore, atomic_write_bytes, write_if_changed

ROOT = Path(__file__).resolve().parents[1]


def fake_summary(run_id: str, **kw) -> dict:
    return {"run_id": run_id, "status": "ok", "message": "", "kind": "speed", "model": "transformer",
            "variant": "transformer", "objective": "clm", "context": 32, "seed": 0, "step_ms_median": 1.5, **kw}


def tmp_files(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.name.endswith(".tmp")]


@contextmanager
def lock_held_elsewhere(folder: Path):
    """Another process holding folder's lock until the block ends (it says so on stdout first: no sleeps)."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from suite.store import ResultsStore
        with ResultsStore({str(folder)!r}).lock():
            print("held", flush=True)
            sys.stdin.readline()
        print("released", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, "--sweep-marker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.stdout.read().strip() == "released"
        proc.wait(timeout=60)


def try_lock_in_another_process(folder: Path) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from suite.store import ResultsStore\n"
            f"with ResultsStore({str(folder)!r}).lock(): print('got it')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


# ----------------------------------------------------------------------------------------- the lock
def test_lock_refuses_a_second_process_and_names_the_holder(tmp_path):
    folder = tmp_path / "new" / "folder"             # created by the lock
    with lock_held_elsewhere(folder) as holder:
        assert folder.is_dir()
        with pytest.raises(ResultsError) as err:
            with ResultsStore(folder).lock():
                pass
        msg = str(err.value)
        assert "\n" not in msg
        assert msg.startswith(f"{folder} is being written by another sweep or report (pid {holder.pid}: ")
        assert "--sweep-marker" in msg and msg.endswith("wait for it to finish or choose another --out")
        other = try_lock_in_another_process(folder)
        assert other.returncode != 0 and "being written by another sweep or report" in other.stderr
    assert try_lock_in_another_process(folder).stdout.strip() == "got it"    # released at the holder's exit
    assert not (folder / ".lock").exists()                                   # and leaves no file behind


def test_lock_is_reentrant_and_released_on_exceptions(tmp_path):
    store = ResultsStore(tmp_path / "out")
    with store.lock():
        with ResultsStore(tmp_path / "out" / ".." / "out").lock():        # the same folder, spelt otherwise
            assert "got it" not in try_lock_in_another_process(store.folder).stdout
        assert "got it" not in try_lock_in_another_process(store.folder).stdout   # the outer one still holds it
    with pytest.raises(KeyError):
        with store.lock():
            raise KeyError("boom")
    assert try_lock_in_another_process(store.folder).stdout.strip() == "got it"
    with store.lock():                                                        # and can be taken again
        pass


# ------------------------------------------------------------------------------------- atomic writes
def test_atomic_bytes_and_write_if_changed(tmp_path, monkeypatch):
    path = tmp_path / "a" / "fig.png"
    atomic_write_bytes(path, b"\x89PNG one")
    assert path.read_bytes() == b"\x89PNG one"
    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert write_if_changed(path, b"\x89PNG one") is False                    # same bytes: not rewritten
    assert path.stat().st_mtime == 1_000_000_000
    assert write_if_changed(path, b"\x89PNG two") is True
    assert path.read_bytes() == b"\x89PNG two"

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_if_changed(path, b"\x89PNG three")
    assert path.read_bytes() == b"\x89PNG two" and not tmp_files(tmp_path)


def test_consolidate_leaves_unchanged_csvs_untouched(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(fake_summary("good"))
    store.consolidate()
    for name in ("runs.csv", "curves.csv"):
        os.utime(tmp_path / name, (1_000_000_000, 1_000_000_000))
    store.consolidate()
    assert all((tmp_path / n).stat().st_mtime == 1_000_000_000 for n in ("runs.csv", "curves.csv"))


# ------------------------------------------------------------------ rows of runs whose file is damaged
def test_consolidate_keeps_the_rows_of_damaged_run_files(tmp_path):
    store = ResultsStore(tmp_path)
    for rid, ms in (("aaa", 1.25), ("bbb", 2.5), ("ccc", 3.75)):
        store.write(fake_summary(rid, step_ms_median=ms),
                    [{"run_id": rid, "model": "transformer", "step": s, "eval_loss": 2.0 - s / 10} for s in (1, 2)])
    runs0, _ = store.consolidate()
    old_runs, old_curves = (tmp_path / "runs.csv").read_text(), (tmp_path / "curves.csv").read_text()
    store.path("bbb").write_text('{"schema": "flash-repro/run/v1", "summ')          # truncated by a crash

    runs, curves = store.consolidate()
    assert store.kept == ["bbb"]
    assert sorted(runs["run_id"]) == ["aaa", "bbb", "ccc"]
    assert runs.set_index("run_id").loc["bbb", "step_ms_median"] == 2.5
    assert sorted(set(curves["run_id"])) == ["aaa", "bbb", "ccc"] and len(curves) == 6
    assert (tmp_path / "runs.csv").read_text() == old_runs                  # the row survives, byte for byte
    assert (tmp_path / "curves.csv").read_text() == old_curves

    store.records()
    store.quarantine_problems()                                             # moved aside: still kept
    store.consolidate()
    assert (tmp_path / "runs.csv").read_text() == old_runs and store.kept == ["bbb"]

    store.write(fake_summary("bbb", step_ms_median=9.0))                    # measured again: the new record wins
    runs, _ = store.consolidate()
    assert store.kept == [] and runs.set_index("run_id").loc["bbb", "step_ms_median"] == 9.0

    store.path("ccc").unlink()                                              # a removed run file removes its row
    runs, _ = store.consolidate()
    assert sorted(runs["run_id"]) == ["aaa", "bbb"]
    assert len(runs0) == 3 and not tmp_files(tmp_path)
    assert pd.read_csv(tmp_path / "runs.csv")["run_id"].tolist() == ["aaa", "bbb"]
