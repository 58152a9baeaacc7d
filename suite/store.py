"""The results store: one JSON file per finished run, consolidated into tidy CSV tables.

Writing one file per run, atomically (write to a temporary file, then rename), is what makes a
sweep resumable at any moment and safe with several processes: a run is either fully recorded or
not at all, and each run has its own file, so nothing is lost or duplicated.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .schema import CURVE_COLUMNS, SCHEMA, SUMMARY_COLUMNS
from .summary import backfill


class ResultsError(RuntimeError):
    """A results file that is not ours, or is damaged."""


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ResultsStore:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.runs_dir = self.folder / "runs"
        self.problems: list[str] = []

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

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        records = self.records()
        runs = pd.DataFrame([{**backfill(r["summary"]), "schema": r["schema"]} for r in records])
        curves = pd.DataFrame([row for r in records for row in r.get("curve", [])])
        runs = runs.reindex(columns=SUMMARY_COLUMNS + sorted(set(runs.columns) - set(SUMMARY_COLUMNS)))
        curves = curves.reindex(columns=CURVE_COLUMNS)
        if len(runs):
            runs = runs.sort_values(["kind", "objective", "context", "model", "seed"], kind="stable")
        return runs.reset_index(drop=True), curves

    def consolidate(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rebuild runs.csv and curves.csv from the run files; refuses to replace a foreign CSV."""
        runs, curves = self.tables()
        tables = (("runs.csv", runs, "run_id,schema"), ("curves.csv", curves, "run_id,model"))
        for name, _, first in tables:  # check both before writing either
            path = self.folder / name
            if path.exists():
                with open(path) as f:
                    head = f.readline()
                if not head.startswith(first):
                    raise ResultsError(f"{path} is not a flash-repro results table (header {head.strip()[:60]!r}); "
                                       "move it away or choose another --out")
        for name, frame, _ in tables:
            atomic_write_text(self.folder / name, frame.to_csv(index=False))
        return runs, curves
