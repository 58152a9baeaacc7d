"""The results store: one JSON file per finished run, consolidated into tidy CSV tables.

Writing one file per run, atomically (write to a temporary file, then rename), is what makes a
sweep resumable at any moment and safe with several processes: a run is either fully recorded or
not at all, and each run has its own file, so nothing is lost or duplicated.

A damaged run file is moved aside (quarantine_problems), and consolidate keeps the rows that the old
runs.csv and curves.csv held for it, so no numbers are lost to a damaged file. One sweep or report
writes a folder at a time: ResultsStore.lock() holds <folder>/.lock (fcntl.flock) while it does.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from .schema import CURVE_COLUMNS, SCHEMA, SUMMARY_COLUMNS
from .summary import backfill


class ResultsError(RuntimeError):
    """A results file that is not ours, or is damaged."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file whole or not at all: a temporary file in the same folder, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def same_bytes(path: Path, data: bytes) -> bool:
    """Whether the regular file at path holds exactly these bytes."""
    path = Path(path)
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def write_if_changed(path: Path, data: bytes | str) -> bool:
    """Write atomically unless the file already holds these bytes (its mtime then stays); True if written."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    if same_bytes(path, data):
        return False
    atomic_write_bytes(path, data)
    return True


def _read_table(path: Path) -> pd.DataFrame:
    """A results CSV as written by consolidate (only empty fields are missing values; floats round-trip)."""
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""], float_precision="round_trip")
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise ResultsError(f"{path} cannot be read ({exc.__class__.__name__}), and it holds the rows of damaged "
                           "run files; repair or move it away, then run again") from None


# locks held by this process: real path of the lock file -> [fd, depth, pid]
_HELD: dict[str, list] = {}
_HELD_GUARD = threading.RLock()


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ResultsStore:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.runs_dir = self.folder / "runs"
        self.problems: list[str] = []
        self.kept: list[str] = []  # run ids whose rows tables() kept from the old CSVs

    def path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def write(self, summary: dict[str, Any], curve: list[dict[str, Any]] | None = None) -> Path:
        record = {"schema": SCHEMA, "summary": {k: _clean(v) for k, v in summary.items()},
                  "curve": [{k: _clean(v) for k, v in row.items()} for row in (curve or [])]}
        path = self.path(summary["run_id"])
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True))
        return path

    def read(self, path: Path) -> dict[str, Any] | None:
        """A run record, or None (and a line in self.problems) for a damaged or foreign file."""
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            self.problems.append(f"{path}: unreadable ({exc.__class__.__name__}: {exc})")
            return None
        if not isinstance(record, dict) or record.get("schema") != SCHEMA or "summary" not in record:
            self.problems.append(f"{path}: not a {SCHEMA} record")
            return None
        if record["summary"].get("run_id") != path.stem:
            self.problems.append(f"{path}: run_id inside is {record['summary'].get('run_id')!r}")
            return None
        return record

    def records(self) -> list[dict[str, Any]]:
        self.problems = []
        if not self.runs_dir.is_dir():
            return []
        out = [self.read(p) for p in sorted(self.runs_dir.glob("*.json"))]
        return [r for r in out if r is not None]

    def unreadable_ids(self) -> set[str]:
        """Run ids whose file could not be read: damaged now (self.problems, after records()) or moved
        aside earlier (runs/<id>.json.damaged*), and without a readable runs/<id>.json."""
        ids = {Path(line.split(": ", 1)[0]).stem for line in self.problems}
        if self.runs_dir.is_dir():
            ids |= {p.name.split(".json.damaged", 1)[0] for p in self.runs_dir.glob("*.json.damaged*")}
        return {i for i in ids if i and self.read_quietly(self.path(i)) is None}

    def read_quietly(self, path: Path) -> dict[str, Any] | None:
        problems = list(self.problems)
        try:
            return self.read(path) if path.exists() else None
        finally:
            self.problems = problems

    def finished(self) -> set[str]:
        return {r["summary"]["run_id"] for r in self.records()}

    def quarantine_problems(self) -> list[str]:
        """Move damaged or foreign run files aside (never overwrite them); returns what was moved."""
        moved = []
        for line in list(self.problems):
            path = Path(line.split(": ", 1)[0])
            if path.exists():
                target = path.with_name(path.name + ".damaged")
                n = 1
                while target.exists():
                    n += 1
                    target = path.with_name(f"{path.name}.damaged{n}")
                os.replace(path, target)
                moved.append(f"{line} -> moved to {target.name}")
        return moved

    def supersede(self, run_ids: list[str]) -> list[Path]:
        """Move the records of these runs into superseded/<UTC time>/ (kept, never overwritten)."""
        import datetime as _dt

        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.folder / "superseded" / stamp
        moved = []
        for run_id in run_ids:
            path = self.path(run_id)
            if path.exists():
                target.mkdir(parents=True, exist_ok=True)
                os.replace(path, target / path.name)
                moved.append(target / path.name)
        return moved

    def tables(self, keep_unreadable: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(runs, curves) from the run files. keep_unreadable: also the rows (and curve rows) that the
        folder's runs.csv and curves.csv hold for run ids whose files cannot be read (see
        unreadable_ids), listed in self.kept; their numbers are never lost to a damaged file."""
        records = self.records()
        runs = pd.DataFrame([{**backfill(r["summary"]), "schema": r["schema"]} for r in records])
        curves = pd.DataFrame([row for r in records for row in r.get("curve", [])])
        self.kept = []
        if keep_unreadable:
            self.check_tables()
            lost = self.unreadable_ids()
            old_runs = _read_table(self.folder / "runs.csv") if lost and (self.folder / "runs.csv").exists() else None
            if old_runs is not None and "run_id" in old_runs:
                old_runs = old_runs[old_runs["run_id"].astype(str).isin(lost)]
                if len(old_runs):
                    self.kept = sorted(set(old_runs["run_id"].astype(str)))
                    # in the order of the run files (by run id), as if the kept ones had been readable
                    runs = pd.concat([runs, old_runs], ignore_index=True) if len(runs) else old_runs
                    runs = runs.sort_values("run_id", key=lambda c: c.astype(str), kind="stable")
                    path = self.folder / "curves.csv"
                    old_curves = _read_table(path) if path.exists() else pd.DataFrame()
                    if "run_id" in old_curves:
                        old_curves = old_curves[old_curves["run_id"].astype(str).isin(self.kept)]
                        curves = pd.concat([curves, old_curves], ignore_index=True) if len(curves) else old_curves
                        curves = curves.sort_values("run_id", key=lambda c: c.astype(str), kind="stable")
        runs = runs.reindex(columns=SUMMARY_COLUMNS + sorted(set(runs.columns) - set(SUMMARY_COLUMNS)))
        curves = curves.reindex(columns=CURVE_COLUMNS)
        if len(runs):
            try:
                runs = runs.sort_values(["kind", "objective", "context", "model", "seed"], kind="stable")
            except TypeError:  # kept rows of other types: leave them in run id order
                pass
        return runs.reset_index(drop=True), curves.reset_index(drop=True)

    def check_tables(self) -> None:
        """Refuse to touch a runs.csv or curves.csv that is not ours."""
        for name, first in (("runs.csv", "run_id,schema"), ("curves.csv", "run_id,model")):
            path = self.folder / name
            if path.exists():
                with open(path, errors="replace") as f:
                    head = f.readline()
                if not head.startswith(first):
                    raise ResultsError(f"{path} is not a flash-repro results table (header {head.strip()[:60]!r}); "
                                       "move it away or choose another --out")

    def consolidate(self, keep_unreadable: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rebuild runs.csv and curves.csv from the run files; refuses to replace a foreign CSV. The rows
        of runs whose files cannot be read are kept from the old CSVs (see tables). Each CSV is written
        atomically, and only when its bytes change."""
        self.check_tables()  # both before writing either
        runs, curves = self.tables(keep_unreadable=keep_unreadable)
        for name, frame in (("runs.csv", runs), ("curves.csv", curves)):
            write_if_changed(self.folder / name, frame.to_csv(index=False))
        return runs, curves

    @contextlib.contextmanager
    def lock(self) -> Iterator["ResultsStore"]:
        """Hold <folder>/.lock (fcntl.flock, exclusive, non-blocking) while writing the folder: one sweep or
        report at a time. Raises ResultsError, naming the holder's pid and command line, when another
        process holds it. Creates the folder; re-entrant within one process; released on exit (the lock
        file is removed then)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / ".lock"
        key = os.path.realpath(path)
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None and held[2] == os.getpid():
                held[1] += 1
            else:
                _HELD[key] = [_acquire(path, self.folder), 1, os.getpid()]
        try:
            yield self
        finally:
            with _HELD_GUARD:
                held = _HELD[key]
                held[1] -= 1
                if held[1] == 0:
                    del _HELD[key]
                    fd = held[0]
                    try:
                        os.unlink(path)  # while still holding it: a waiter then retries on a fresh file
                    except OSError:
                        pass
                    os.close(fd)


def _holder(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    pid = lines[0].strip() if lines and lines[0].strip() else "?"
    cmd = lines[1].strip() if len(lines) > 1 and lines[1].strip() else "unknown command"
    return f"pid {pid}: {cmd}"


def _acquire(path: Path, folder: Path) -> int:
    """An open descriptor of path, exclusively flocked, with this process's pid and command line inside."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ResultsError(f"{folder} is being written by another sweep or report ({_holder(path)}); "
                               "wait for it to finish or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the file may have been removed (released) between our open and flock: then lock the new one
            st, now = os.fstat(fd), os.stat(path)
            same = (st.st_ino, st.st_dev) == (now.st_ino, now.st_dev)
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        cmd = " ".join(sys.argv) if sys.argv and any(sys.argv) else "python"
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{cmd[:500]}\n".encode("utf-8", "replace"))
        return fd
