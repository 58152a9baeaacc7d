"""Tables and figures of one results folder, from its runs.csv and curves.csv alone.

    python -m suite.report results/<platform>/<preset> [more folders]   # write, then print the summary
    python -m suite.report results/<platform>/<preset> --out OUT       # read the folder, write into OUT

The command first rebuilds the folder's runs.csv and curves.csv from its run files (runs/): damaged run
files are moved aside (runs/<id>.json.damaged, one warning line each) and the rows the old CSVs held
for them are kept, never dropped. A missing folder, or one without any run, is one error line and
exit status 2, with nothing written. It holds the folder's lock (`ResultsStore.lock`) while writing.

`write_report` writes, inside the folder or into `out` (layout in `suite.schema`):
    tables/speedup.csv  tables/speedup.md    speedup at equal quality over Transformer++ and Transformer
    tables/latency.csv  tables/latency.md    step time, throughput, peak memory, MFU (OOM kept)
    tables/quality.csv  tables/quality.md    final held-out bits per byte over seeds
    tables/equal_steps.csv  .md              bits per byte at equal steps, minus Transformer++'s
    tables/lr_sweep.csv  .md                 final bits per byte per learning rate (swept variants only);
                                             every other table takes each swept variant at its best rate
    figures/<stem>.png and .svg              see `suite.figures`
The CSVs are long (one row per objective, context, size, model[, baseline]); the Markdown files are
the same numbers pivoted to model x context for reading. A table or figure without data is skipped.

Every file is written atomically (temporary file + rename) and only when its bytes change. The
report's own files are listed in `.report-manifest.json` (beside tables/ and figures/); those it no
longer produces are removed, so no stale table contradicts the summary. A file under tables/ or
figures/ that is not the report's (a folder's own, not in the manifest) is never overwritten or
removed: the report refuses with an error naming it and writes nothing. A folder written before the
manifest existed counts the report's known file names (`KNOWN_OUTPUTS`) as the report's; a report
run that changes nothing writes nothing, manifest included.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures as F
from .analysis import (BASELINES, Variants, context_label, latency_table, lr_sweep_table, objective_label,
                       quality_at_equal_steps, quality_table, speedup_table, variants_of)
from .schema import CURVE_COLUMNS, SUMMARY_COLUMNS
from .store import ResultsError, ResultsStore, atomic_write_bytes, same_bytes, write_if_changed


# ------------------------------------------------------------------------------------------- loading
def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        # only empty fields are missing values: "n/a" (the attention kernel of a model without one) stays text
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        df = pd.DataFrame(columns=columns)
    return df


def load_results(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, curves) of a results folder; curves empty when curves.csv is absent."""
    folder = Path(folder)
    runs_path = folder / "runs.csv"
    if not runs_path.exists():
        raise FileNotFoundError(f"{runs_path} not found: run the sweep first (python run_all.py), "
                                "or pass runs= and curves= frames")
    runs = _read_csv(runs_path, SUMMARY_COLUMNS)
    curves_path = folder / "curves.csv"
    curves = _read_csv(curves_path, CURVE_COLUMNS) if curves_path.exists() else pd.DataFrame(columns=CURVE_COLUMNS)
    return runs, curves


# ------------------------------------------------------------------------------- markdown
def _cell(value, floatfmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if float(value).is_integer() and abs(value) < 1e15 and floatfmt.endswith("g"):
            return str(int(value))
        return format(float(value), floatfmt)
    try:
        if pd.isna(value):
            return "-"
    except (TypeError, ValueError):
        pass
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if text != "" else "-"


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3g", index: bool = False) -> str:
    """A GitHub-flavoured Markdown table (no tabulate): one header row, one separator, one line per
    row. NaN / None / empty strings render as '-'; floats with ``floatfmt``; numeric columns are
    right-aligned. ``index=True`` adds the index as the first column(s)."""
    if index:
        df = df.reset_index()
    cols = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in df.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(_cell(v, floatfmt) for v in row) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- markdown pivots
def _decimals(v: float, digits: int) -> int:
    """Decimals that show ``digits`` significant digits of v (none for large numbers)."""
    if v is None or not np.isfinite(v) or v == 0:
        return 0
    d = max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))
    if d > 0 and abs(round(v, d)) >= 10 ** (digits - d):      # 0.00999 -> 0.010, not 0.0100
        d -= 1
    return d


def _fmt(v: float, digits: int = 3, decimals: int | None = None) -> str:
    """Significant digits (or fixed decimals), never scientific notation; '-' for NaN."""
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:.{_decimals(v, digits) if decimals is None else decimals}f}"


def _sections(tab: pd.DataFrame, extra: list[str] | None = None):
    """Yield (heading suffix, sub-frame) per objective (and size / extra keys when several)."""
    keys = list(extra or []) + ["objective"]
    multi_size = "size" in tab.columns and tab["size"].astype(str).nunique() > 1
    if multi_size:
        keys.append("size")
    for key, sub in tab.groupby(keys, sort=False, dropna=False):   # tables arrive sorted
        key = key if isinstance(key, tuple) else (key,)
        parts = dict(zip(keys, key))
        label = objective_label(parts["objective"])
        if multi_size:
            label += f", size {parts['size']}"
        yield parts, label, sub


def _pivot(sub: pd.DataFrame, cell) -> pd.DataFrame:
    """Rows: variants (the registry's order of models); columns: context lengths (1K style); cells from
    cell(row)."""
    ctxs = sorted(pd.to_numeric(sub["context"], errors="coerce").dropna().astype(int).unique())
    V = variants_of(sub)
    data = []
    for v in sorted(set(sub["variant"].astype(str)), key=lambda v: V[v].sort_key):
        line = {"model": V[v].label}
        for c in ctxs:
            r = sub[(sub["variant"] == v) & (pd.to_numeric(sub["context"], errors="coerce") == c)]
            line[context_label(c)] = cell(r.iloc[0]) if len(r) else "-"
        data.append(line)
    return pd.DataFrame(data, columns=["model"] + [context_label(c) for c in ctxs])


def _status_unless_ok(cell):
    """A table cell that shows a run's status (OOM, ERROR, ...) in place of its numbers when not ok."""
    def guarded(r: pd.Series) -> str:
        return cell(r) if str(r["status"]) == "ok" else str(r["status"]).upper()
    return guarded


def _speedup_cell(r: pd.Series) -> str:
    if int(r["n_reached"]) == 0:
        below = r.get("speedup_below_mean", float("nan"))
        if below is not None and np.isfinite(below):
            return f"{_fmt(below)}x*"
        return "not reached"
    text = f"{_fmt(r['speedup_mean'])}x"
    lo, hi = _fmt(r["speedup_min"]), _fmt(r["speedup_max"])
    if int(r["n_reached"]) > 1 and lo != hi:
        text += f" [{lo}-{hi}]"
        if float(r["speedup_min"]) <= 1.0 <= float(r["speedup_max"]):
            text += " (includes 1)"  # over the seeds, faster and slower: the sign is not established
    if not bool(r["reached_all"]):
        text += f" ({int(r['n_reached'])}/{int(r['n_seeds'])} seeds)"
    return text


def _seeds_note(n: int, spread: str) -> str:
    """'1 seed', or '3 seeds, <spread>' where the cells show the spread over seeds."""
    return f"{n} seed{'s' if n != 1 else ''}{', ' + spread if n > 1 else ''}"


def speedup_markdown(tab: pd.DataFrame, V: Variants | None = None) -> str:
    """Speedup at equal quality, one table per (baseline, objective): model x context. `V`: the
    variants of the runs (`variants_of`), which name the baseline; by default the table's own."""
    if tab is None or tab.empty:
        return ""
    V = variants_of(tab) if V is None else V
    out = []
    for parts, label, sub in _sections(tab, extra=["baseline"]):
        base = parts["baseline"]
        sub = sub[sub["variant"] != base]
        if sub.empty:
            continue
        n = int(sub["n_seeds"].max())
        out.append(f"**{label}: training speedup over {V[base].label} at equal quality** "
                   f"(its final held-out loss; {_seeds_note(n, '[min-max]')})\n")
        out.append(markdown_table(_pivot(sub, _speedup_cell)))
        if sub["n_reached"].astype(int).eq(0).any() and "speedup_below_mean" in sub and \
                pd.to_numeric(sub["speedup_below_mean"], errors="coerce").notna().any():
            out.append(f"\n\\* did not reach {V[base].label}'s final quality in its budget; the ratio is "
                       "taken at the model's own final quality instead (time the baseline needed to reach it, "
                       "over the model's training time; an upper bound when the baseline was already better at its "
                       "first evaluation).\n")
    return "\n".join(out)


def equal_steps_markdown(tab: pd.DataFrame, V: Variants | None = None) -> str:
    """Bits per byte at equal steps, minus the baseline's, per model x context (negative: better). `V`:
    the variants of the runs (`variants_of`), which name the baseline."""
    if tab is None or tab.empty:
        return ""
    V = variants_of(tab) if V is None else V
    def cell(r):
        text = f"{r['delta_mean']:+.3f} ({int(round(r['steps_mean']))} steps)"
        if int(r["n_seeds"]) > 1:
            text += f" [{r['delta_min']:+.3f} to {r['delta_max']:+.3f}]"
            if r["delta_min"] <= 0 <= r["delta_max"]:
                text += " (includes 0)"
        return text
    out = []
    for _, label, sub in _sections(tab):
        base = V[str(sub["baseline"].iloc[0])].label
        n = int(sub["n_seeds"].max())
        out.append(f"**{label}: held-out bits per byte at equal steps, minus {base}'s** (negative: better per "
                   f"step; compared at the shorter run's step count; {_seeds_note(n, '[min to max]')})\n")
        out.append(markdown_table(_pivot(sub, cell)))
    return "\n".join(out)


def latency_markdown(tab: pd.DataFrame) -> str:
    """Median step time (ms) per model x context, OOM written out; then peak memory if measured."""
    if tab is None or tab.empty:
        return ""
    @_status_unless_ok
    def step(r):
        ms = r["step_ms_median"]
        return _fmt(ms, decimals=1 if np.isfinite(ms) and abs(ms) >= 10 else 2)
    @_status_unless_ok
    def mem(r):
        return _fmt(r["peak_mem_gib"], 3)
    source = tab["source"].iloc[0]
    src = "" if source == "speed" else " (from training runs; no speed runs)"
    hw = ", ".join(sorted({d for d in tab["device_name"].astype(str) if d and d != "nan"})) or "unknown hardware"
    tps = pd.to_numeric(tab["tokens_per_step"], errors="coerce").dropna()
    tps_txt = f", {int(tps.iloc[0]):,} tokens/step" if len(tps) and tps.nunique() == 1 else ""
    out = []
    for _, label, sub in _sections(tab):
        out.append(f"**{label}: median training-step time (ms)** ({hw}{tps_txt}){src}\n")
        out.append(markdown_table(_pivot(sub, step)))
        if pd.to_numeric(sub["peak_mem_gib"], errors="coerce").notna().any():
            out.append(f"**{label}: peak memory (GiB)**\n")
            out.append(markdown_table(_pivot(sub, mem)))
    return "\n".join(out)


def _num_col(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df.columns else pd.Series(dtype=float)


def quality_markdown(tab: pd.DataFrame) -> str:
    """Final held-out bits per byte per model x context: mean (± standard deviation over seeds)."""
    if tab is None or tab.empty:
        return ""
    def cell(r):
        mean, std = r["final_bpb_mean"], r["final_bpb_std"]
        text = _fmt(mean, 4)
        if int(r["n_seeds"]) > 1 and np.isfinite(std):
            text += f" ± {_fmt(std, decimals=_decimals(mean, 4))}"      # same decimals as the mean
        return text
    out = []
    for _, label, sub in _sections(tab):
        n = int(sub["n_seeds"].max())
        out.append(f"**{label}: final held-out bits per byte** (lower is better; mean"
                   f"{' ± std over ' + str(n) + ' seeds' if n > 1 else ', 1 seed'})\n")
        out.append(markdown_table(_pivot(sub, cell)))
        epochs = _num_col(sub, "epochs_mean")
        drop = _num_col(sub, "late_drop_mean")
        if epochs.notna().any() or drop.notna().any():
            out.append(f"Epochs over the training stream: {_fmt(epochs.min(), 3)}"
                       f"{'' if epochs.nunique() <= 1 else ' to ' + _fmt(epochs.max(), 3)}. Held-out bits per byte "
                       f"gained over the last tenth of the steps: {_fmt(drop.min(), 2)} to {_fmt(drop.max(), 2)} "
                       f"({'still falling everywhere' if drop.min() > 0 else 'not falling for every run: see quality.csv'}).\n")
    return "\n".join(out)


def lr_sweep_markdown(tab: pd.DataFrame) -> str:
    """Final bits per byte per model x learning rate, one block per objective and context; best in bold."""
    if tab is None or tab.empty:
        return ""
    out = []
    for (objective, context), sub in tab.groupby(["objective", "context"], sort=False):
        lrs = sorted(sub["lr"].astype(float).unique())
        data = []
        V = variants_of(sub)
        for v in sorted(set(sub["variant"].astype(str)), key=lambda v: V[v].sort_key):
            line = {"model": V[v].label}
            for lr in lrs:
                r = sub[(sub["variant"] == v) & np.isclose(sub["lr"].astype(float), lr)]
                text = _fmt(r["final_bpb_mean"].iloc[0], 4) if len(r) else "-"
                line[f"lr {lr:g}"] = f"**{text}**" if len(r) and bool(r["best"].iloc[0]) else text
            data.append(line)
        n = int(sub["n_seeds"].max())
        out.append(f"**{objective_label(objective)} {context_label(int(context))}: final held-out bits per byte by "
                   f"peak learning rate** (best in bold; {'mean over ' + str(n) + ' seeds' if n > 1 else '1 seed'})\n")
        out.append(markdown_table(pd.DataFrame(data)))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------- report
TABLE_NAMES = ("speedup", "latency", "quality", "equal_steps", "lr_sweep")
FIGURE_STEMS = ("speedup_vs_context", "quality_vs_time", "latency_vs_context", "memory_vs_context",
                "step_speedup_vs_context")
# the report's own files by name: in a folder without a manifest (written before it existed) these are the report's
KNOWN_OUTPUTS = frozenset([f"tables/{n}.{e}" for n in TABLE_NAMES for e in ("csv", "md")] +
                          [f"figures/{s}.{e}" for s in FIGURE_STEMS for e in ("png", "svg")])
MANIFEST = ".report-manifest.json"
_STAGING = ".report-staging-"


class Written(dict):
    """{"tables": [...], "figures": [...]}: every table and figure of the report (written or already
    identical); .changed: those written now; .removed: the report's earlier outputs it no longer produces."""
    changed: list[Path]
    removed: list[Path]


def _table_files(name: str, df: pd.DataFrame, md: str, title: str) -> dict[str, bytes]:
    if df is None or df.empty:
        return {}
    return {f"tables/{name}.csv": df.to_csv(index=False).encode("utf-8"),
            f"tables/{name}.md": f"## {title}\n\n{md}".encode("utf-8")}


def _read_manifest(out: Path) -> set[str] | None:
    """The report's outputs recorded in out/.report-manifest.json; None when there is none (an older folder)."""
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        names = {str(p) for p in json.loads(path.read_text())["written"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResultsError(f"{path} is damaged ({exc.__class__.__name__}); delete it to let the report treat "
                           "its known file names as its own, or choose another --out") from None
    # only plain names directly under tables/ and figures/: a manifest cannot make the report touch anything else
    return {n for n in names if len(parts := n.split("/")) == 2 and parts[0] in ("tables", "figures")
            and parts[1] not in ("", ".", "..") and not parts[1].startswith(".") and "\\" not in parts[1]}


def _owned(out: Path, manifest: set[str] | None) -> set[str]:
    """Files under out/tables and out/figures that the report wrote: the manifest's, or (no manifest yet)
    those with the report's known names."""
    names = manifest if manifest is not None else KNOWN_OUTPUTS
    return {rel for rel in names if (out / rel).is_file() or (out / rel).is_symlink()}


def _clean_leftovers(out: Path) -> None:
    """Temporary files and staging folders of an earlier report that was killed (we hold the lock)."""
    for d in out.glob(_STAGING + "*"):
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
    for sub in ("tables", "figures"):
        for tmp in (out / sub).glob(".*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass


def write_report(folder: Path, runs: pd.DataFrame | None = None,
                 curves: pd.DataFrame | None = None, out: Path | None = None) -> dict[str, list[Path]]:
    """Write out/tables/{speedup,latency,quality,equal_steps,lr_sweep}.{csv,md} and out/figures/*.{png,svg}
    (out: the folder itself by default).

    Reads folder/runs.csv and folder/curves.csv unless the frames are given. Returns
    {"tables": [...], "figures": [...]}, the paths of the report (see `Written`). Tables or figures without
    data are skipped; a figure that fails for another reason is reported as a warning, not raised, so the
    tables are always written (and that figure's earlier files are left as they were).

    Safe to run again and at any moment: it holds out's lock (`ResultsStore.lock`); every file is written
    atomically and only when its bytes change; the report's earlier outputs that it no longer produces
    are removed; out/.report-manifest.json records which files are the report's. A file under tables/ or
    figures/ that the report did not write is never overwritten or removed: the report refuses
    (ResultsError naming it) before writing anything."""
    folder = Path(folder)
    out = folder if out is None else Path(out)
    if runs is None:
        runs, file_curves = load_results(folder)
        curves = file_curves if curves is None else curves
    if curves is None:
        path = folder / "curves.csv"
        curves = _read_csv(path, CURVE_COLUMNS) if path.exists() else pd.DataFrame(columns=CURVE_COLUMNS)

    speed = speedup_table(runs, curves, BASELINES)
    lat = latency_table(runs)
    qual = quality_table(runs, curves)
    steps = quality_at_equal_steps(runs, curves, BASELINES[0])
    V = variants_of(runs)
    sweep = lr_sweep_table(runs)
    files: dict[str, bytes] = {}
    files |= _table_files("speedup", speed, speedup_markdown(speed, V), "Speedup at equal quality")
    files |= _table_files("latency", lat, latency_markdown(lat), "Step latency and memory")
    files |= _table_files("quality", qual, quality_markdown(qual), "Final quality")
    files |= _table_files("equal_steps", steps, equal_steps_markdown(steps, V), "Quality at equal steps")
    files |= _table_files("lr_sweep", sweep, lr_sweep_markdown(sweep), "Learning-rate sweep")

    with ResultsStore(out).lock():
        _clean_leftovers(out)
        staging = Path(tempfile.mkdtemp(dir=out, prefix=_STAGING))
        try:
            failed: set[str] = set()
            for name, fn in (("speedup_vs_context", lambda: F.plot_speedup(runs, curves, staging, table=speed)),
                             ("quality_vs_time", lambda: F.plot_quality_vs_time(runs, curves, staging)),
                             ("latency_vs_context", lambda: F.plot_latency(runs, staging, table=lat)),
                             ("memory_vs_context", lambda: F.plot_memory(runs, staging, table=lat)),
                             ("step_speedup_vs_context", lambda: F.plot_step_speedup(runs, staging, table=lat))):
                try:
                    drawn = fn()
                except Exception as exc:  # a broken figure must not cost the tables
                    failed.add(name)
                    warnings.warn(f"figure {name} failed: {exc.__class__.__name__}: {exc}", RuntimeWarning,
                                  stacklevel=2)
                    continue
                for p in drawn:
                    files[f"figures/{Path(p).name}"] = Path(p).read_bytes()
            return _install(out, files, failed)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _install(out: Path, files: dict[str, bytes], failed: set[str]) -> Written:
    """Put the report's files in place (atomically, only those that changed), remove its stale ones,
    update the manifest; refuse, before writing anything, to touch a file that is not the report's."""
    manifest = _read_manifest(out)
    owned = _owned(out, manifest)
    foreign = [out / rel for rel in files if (out / rel).exists() and rel not in owned]
    if foreign:
        raise ResultsError(f"{foreign[0]} was not written by the report (not in {out / MANIFEST}); move it away "
                           "or choose another --out (python -m suite.report FOLDER --out OUT)")
    keep = {rel for rel in owned if rel.startswith("figures/") and Path(rel).stem in failed}
    to_write = [rel for rel, data in files.items() if not same_bytes(out / rel, data)]
    to_remove = sorted(owned - set(files) - keep)
    record = sorted(set(files) | keep)
    # a report that changes nothing leaves the folder as it is (an older folder without a manifest included)
    if to_write or to_remove or (manifest is not None and manifest != set(record)):
        # first claim every file about to be written, so that a report killed half-way still owns them
        _write_manifest(out, sorted(set(record) | owned | (manifest or set())))
        for rel in to_write:
            atomic_write_bytes(out / rel, files[rel])
        for rel in to_remove:
            (out / rel).unlink()
        _write_manifest(out, record)
    written = Written(tables=[out / rel for rel in files if rel.startswith("tables/")],
                      figures=[out / rel for rel in files if rel.startswith("figures/")])
    written.changed, written.removed = [out / rel for rel in to_write], [out / rel for rel in to_remove]
    return written


def _write_manifest(out: Path, names: list[str]) -> None:
    text = json.dumps({"written": names, "by": "suite.report (its own files under tables/ and figures/; "
                       "the report removes those it no longer produces and never touches any other)"}, indent=1)
    write_if_changed(out / MANIFEST, text + "\n")


def summary_markdown(folder: Path, runs: pd.DataFrame | None = None, curves: pd.DataFrame | None = None) -> str:
    """A short Markdown block (speedup over Transformer++ and step latency) for printing and the README."""
    folder = Path(folder)
    if runs is None:
        runs, file_curves = load_results(folder)
        curves = file_curves if curves is None else curves
    if curves is None:
        curves = pd.DataFrame(columns=CURVE_COLUMNS)
    n = len(runs)
    statuses = runs["status"].astype(str).value_counts().to_dict() if n and "status" in runs else {}
    hw = F.hardware_label(runs) if n else "no runs"
    lines = [f"### Results: `{folder.as_posix()}`", "",
             f"{n} runs on {hw} (" + ", ".join(f"{v} {k}" for k, v in statuses.items()) + ")." if n
             else "No runs recorded yet.", ""]
    speed = speedup_table(runs, curves, BASELINES[:1])
    lat = latency_table(runs)
    if len(speed):
        lines += [speedup_markdown(speed, variants_of(runs))]
    else:
        lines += ["No speedup table: it needs finished training runs of the baseline (Transformer++).", ""]
    if len(lat):
        lines += [latency_markdown(lat)]
    return "\n".join(lines).rstrip() + "\n"


def _refuse(folder: Path, what: str) -> ResultsError:
    return ResultsError(f"{folder}: {what}; run the sweep first (python run_all.py --out {folder}) "
                        "or name a results folder that has runs")


def _frames(runs_text: str, curves_text: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frames exactly as load_results reads them back from these CSV texts."""
    return _read_csv(io.StringIO(runs_text), SUMMARY_COLUMNS), _read_csv(io.StringIO(curves_text), CURVE_COLUMNS)


def _report_folder(folder: Path, out: Path | None, say) -> tuple[dict[str, list[Path]], pd.DataFrame, pd.DataFrame]:
    """Consolidate folder (unless writing elsewhere), then write the report into out; ResultsError when
    there is nothing to report (nothing is written then)."""
    if not folder.is_dir():
        raise _refuse(folder, "no such results folder")
    store = ResultsStore(folder)
    in_place = out is None or Path(os.path.realpath(out)) == Path(os.path.realpath(folder))
    if not store.runs_dir.is_dir():  # a folder of CSVs alone (copied, or written by hand)
        if not (folder / "runs.csv").exists():
            raise _refuse(folder, "no runs/ and no runs.csv in it")
        runs, curves = load_results(folder)
        if runs.empty:
            raise _refuse(folder, "its runs.csv holds no runs")
        return write_report(folder, runs, curves, out=None if in_place else out), runs, curves
    with contextlib.ExitStack() as stack:
        if in_place:
            stack.enter_context(store.lock())
        runs, curves = store.tables(keep_unreadable=True)  # refuses a foreign runs.csv / curves.csv
        if runs.empty:
            damaged = f"; {len(store.problems)} damaged, left as they are" if store.problems else ""
            raise _refuse(folder, f"no readable run file in {store.runs_dir}{damaged}")
        if in_place:
            for line in store.quarantine_problems():
                say(f"warning: damaged results file: {line}; its rows in runs.csv and curves.csv are kept")
            runs, curves = store.consolidate()
        else:
            for line in store.problems:
                say(f"warning: damaged results file: {line}; left in place (--out), its rows in runs.csv are used")
        if store.kept:
            say(f"warning: {len(store.kept)} run(s) of {folder} have no readable run file (runs/<id>.json.damaged*); "
                f"their rows are kept from the old runs.csv: {', '.join(store.kept[:5])}"
                f"{' ...' if len(store.kept) > 5 else ''}")
        runs, curves = _frames(runs.to_csv(index=False), curves.to_csv(index=False))
        return write_report(folder, runs, curves, out=None if in_place else out), runs, curves


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suite.report", description="Write the tables and figures of "
                                "results folders (default: every results/**/runs.csv) and print their summary.")
    p.add_argument("folders", nargs="*", type=Path, metavar="FOLDER", help="results folder(s)")
    p.add_argument("--out", type=Path, help="write tables/ and figures/ here instead of into FOLDER (then FOLDER "
                   "is only read; one FOLDER only)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    folders = args.folders or sorted(q.parent for q in Path("results").rglob("runs.csv"))

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    if not folders:
        say("suite.report: error: no results folders (results/**/runs.csv); run the sweep first (python run_all.py)")
        return 2
    if args.out is not None and len(folders) > 1:
        say(f"suite.report: error: --out {args.out} takes one results folder, got {len(folders)}; "
            "report them one at a time")
        return 2
    rc = 0
    for folder in folders:
        try:
            written, runs, curves = _report_folder(folder, args.out, say)
        except ResultsError as exc:
            say(f"suite.report: error: {exc}")
            rc = 2
            continue
        out = folder if args.out is None else args.out
        print(summary_markdown(folder, runs, curves))
        for kind, paths in written.items():
            print(f"{kind}: {len(paths)} files under {out / kind}")
        for path in getattr(written, "removed", []):
            print(f"removed (no longer produced): {path}")
        print()
    return rc


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["load_results", "write_report", "summary_markdown", "speedup_markdown", "latency_markdown",
           "quality_markdown", "equal_steps_markdown", "main"]
