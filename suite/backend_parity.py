"""Quality parity of the two backends: the same training run on PyTorch and on JAX, learning curve against
learning curve (the JAX backend's "quality parity in practice").

    python -m suite.backend_parity results/nvidia-h200/gpu-quality            # writes .../gpu-quality/parity
    python -m suite.backend_parity FOLDER --out DIR
    python -m suite.backend_parity FOLDER FOLDER ... --out DIR                # several folders' runs together

A pair is two finished training runs of the folders' runs.csv that differ only in their backend (column
`backend`; empty means PyTorch): the same model, objective, context, seed, size, tokens per step, steps,
learning rate, model options, precision, data (hash) and hardware (device_name); where a backend ran a
configuration more than once, its newest run (timestamp). Every other run (learning-rate sweeps, other
options or models without a JAX twin) is left out. Writes under --out (default: FOLDER/parity):

    tables/backend_parity.{csv,md}   one row per pair: both final bits per byte, their difference (JAX - PyTorch),
                                     the largest |difference| over the evaluation steps both runs recorded after
                                     the first 10% of training (early evaluations move fast), the spread of
                                     PyTorch's final bits per byte over every seed of that configuration in the
                                     folders, on any hardware (the seed noise; cards differ by bf16 roundings),
                                     and both runs' commits; without pairs, a note saying so
    figures/backend_parity.{png,svg} per (objective, context): held-out bits per byte vs training step, a colour
                                     per model, PyTorch solid and JAX dashed; below, JAX - PyTorch per shared
                                     evaluation step

A missing folder or runs.csv is an error (exit 2), and so are several folders without --out; missing data
(no pairs, no curves) is said, not raised.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis import (Variant, _latest, _num, context_label, curves_by_run, execution_name, model_label,
                       objective_label)
from .figures import _RC, _legend, _model_handles, _new_figure, _save, _style, _subtitle
from .report import _fmt, load_results, markdown_table
from .store import write_if_changed

PAIR_KEYS = ["model", "objective", "context", "seed", "size", "tokens_per_step", "steps", "lr", "model_options",
             "precision", "data_hash", "device_name"]
BACKENDS = ("pytorch", "jax")
EARLY_FRACTION = 0.1  # evaluations in the first tenth of a run's steps are left out of the largest difference
STEM = "backend_parity"

PARITY_COLUMNS = PAIR_KEYS + [
    "pytorch_run_id", "jax_run_id", "pytorch_final_bpb", "jax_final_bpb", "difference", "n_shared_steps",
    "max_abs_difference", "max_abs_difference_step", "pytorch_seeds", "pytorch_seed_range",
    "pytorch_execution", "jax_execution", "pytorch_commit", "jax_commit"]


# ----------------------------------------------------------------------------------------------- pairing
def _options(value) -> str:
    """A model_options cell as comparable text: '{}' when empty, keys sorted."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return "{}"
    try:
        return json.dumps(json.loads(value), sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def _text(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), "").astype(str)


def finished_train_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The ok training runs, their pairing keys comparable (numbers as numbers, model options normalised,
    missing text as '') and `backend` 'pytorch' where it is missing."""
    runs = runs.copy()
    for col in PAIR_KEYS + ["run_id", "kind", "status", "backend", "final_bpb", "git_commit", "git_dirty"]:
        if col not in runs.columns:
            runs[col] = np.nan
    tr = runs[(_text(runs["kind"]) == "train") & (_text(runs["status"]) == "ok")].copy()
    for col in ("context", "seed", "tokens_per_step", "steps", "lr", "final_bpb"):
        tr[col] = _num(tr, col)
    for col in ("model", "objective", "size", "precision", "data_hash", "device_name", "run_id"):
        tr[col] = _text(tr[col])
    tr["model_options"] = tr["model_options"].map(_options)
    backend = _text(tr["backend"]).str.strip().str.lower()
    tr["backend"] = backend.where(backend != "", "pytorch")
    return tr


def _commit(row: dict) -> str:
    commit = "" if pd.isna(row.get("git_commit")) else str(row["git_commit"])
    dirty = str(row.get("git_dirty")).lower() in ("true", "1")
    return commit + ("-dirty" if commit and dirty else "")


def _final_bpb(row: dict, curve: pd.DataFrame | None) -> float:
    """The run's recorded final bits per byte, else its curve's last evaluation."""
    v = row.get("final_bpb")
    if v is not None and np.isfinite(v):
        return float(v)
    if curve is not None and len(curve):
        return float(pd.to_numeric(curve.sort_values("step")["eval_bpb"], errors="coerce").iloc[-1])
    return float("nan")


def curve_difference(pt: pd.DataFrame | None, jx: pd.DataFrame | None) -> pd.DataFrame:
    """JAX - PyTorch held-out bits per byte at every evaluation step both curves recorded (columns step,
    pytorch, jax, difference), by step; empty when either curve is missing."""
    cols = ["step", "pytorch", "jax", "difference"]
    if pt is None or jx is None or pt.empty or jx.empty:
        return pd.DataFrame(columns=cols)

    def series(c: pd.DataFrame) -> pd.Series:
        c = c.assign(step=pd.to_numeric(c["step"], errors="coerce"),
                     eval_bpb=pd.to_numeric(c["eval_bpb"], errors="coerce"))
        c = c.dropna(subset=["step", "eval_bpb"]).drop_duplicates("step", keep="last")
        return c.set_index("step")["eval_bpb"]

    d = pd.concat({"pytorch": series(pt), "jax": series(jx)}, axis=1, join="inner").sort_index()
    d = d.rename_axis("step").reset_index()
    d["difference"] = d["jax"] - d["pytorch"]
    return d[cols]


def late_max_difference(diff: pd.DataFrame, steps: float) -> tuple[float, float]:
    """(largest |JAX - PyTorch|, its step) over the shared evaluations after the first EARLY_FRACTION of the
    run's `steps` (the curves' last shared step when steps is unknown); NaNs when there is none."""
    if diff.empty:
        return float("nan"), float("nan")
    last = steps if steps is not None and np.isfinite(steps) and steps > 0 else float(diff["step"].max())
    late = diff[diff["step"] > EARLY_FRACTION * last]
    if late.empty:
        return float("nan"), float("nan")
    at = late["difference"].abs().idxmax()
    return float(abs(late.loc[at, "difference"])), float(late.loc[at, "step"])


def parity_table(runs: pd.DataFrame, curves: pd.DataFrame | None) -> pd.DataFrame:
    """One row per pair (PARITY_COLUMNS), in the order of the runs' objective, context, model and seed."""
    tr = finished_train_runs(runs)
    latest = _latest(tr, PAIR_KEYS + ["backend"])
    by_run = curves_by_run(curves)
    pt_all = latest[latest["backend"] == "pytorch"]
    rows = []
    for key, g in latest.groupby(PAIR_KEYS, dropna=False, sort=False):
        if set(g["backend"]) != set(BACKENDS) or len(g) != 2:  # exactly one run of each backend after _latest
            continue
        pt, jx = (g[g["backend"] == b].iloc[0].to_dict() for b in BACKENDS)
        c_pt, c_jx = by_run.get(pt["run_id"]), by_run.get(jx["run_id"])
        diff = curve_difference(c_pt, c_jx)
        max_abs, at = late_max_difference(diff, pt["steps"])
        f_pt, f_jx = _final_bpb(pt, c_pt), _final_bpb(jx, c_jx)
        # the seed noise: PyTorch's final bits per byte over every seed of this configuration, on any hardware
        same = np.ones(len(pt_all), dtype=bool)
        for k, v in zip(PAIR_KEYS, key):
            if k not in ("seed", "device_name"):
                col = pt_all[k]
                same &= (col.isna() if isinstance(v, float) and math.isnan(v) else col == v).to_numpy()
        seeds = pt_all[same]
        finals = seeds["final_bpb"].dropna()
        rows.append(dict(zip(PAIR_KEYS, key)) | {
            "pytorch_run_id": pt["run_id"], "jax_run_id": jx["run_id"], "pytorch_final_bpb": f_pt,
            "jax_final_bpb": f_jx, "difference": f_jx - f_pt, "n_shared_steps": int(len(diff)),
            "max_abs_difference": max_abs, "max_abs_difference_step": at,
            "pytorch_seeds": int(seeds["seed"].nunique()),
            "pytorch_seed_range": float(finals.max() - finals.min()) if len(finals) > 1 else float("nan"),
            "pytorch_execution": execution_name(pt), "jax_execution": execution_name(jx),
            "pytorch_commit": _commit(pt), "jax_commit": _commit(jx)})
    tab = pd.DataFrame(rows, columns=PARITY_COLUMNS)
    if len(tab):
        order = [Variant(m, m).sort_key for m in tab["model"]]
        tab = tab.assign(_m=order).sort_values(["objective", "context", "_m", "seed", "lr"], kind="stable")
        tab = tab.drop(columns="_m").reset_index(drop=True)
    return tab


# ----------------------------------------------------------------------------------------------- markdown
def _setting(paired: pd.DataFrame) -> str:
    """'NVIDIA H200, bf16, size quality, 65,536 tokens/step': the hardware and protocol of the paired runs."""
    sizes = sorted(set(paired["size"]) - {""})
    return _subtitle(paired, size=sizes[0] if len(sizes) == 1 else None)


def _diff_cell(d: float) -> str:
    """A signed difference: four decimals, or two significant digits when smaller than 0.001 (so that 1e-5
    does not read as zero)."""
    if d is None or not np.isfinite(d):
        return "-"
    if d == 0:
        return "0"
    return f"{d:+.4f}" if abs(d) >= 1e-3 else f"{d:+.1e}"


def _int_cell(v: float, sep: str = "") -> str:
    return f"{int(v):{sep}}" if v is not None and np.isfinite(v) else "-"


def _short(commit: str) -> str:
    """The commit's first 8 digits, '-dirty' kept."""
    return commit[:8] + ("-dirty" if commit.endswith("-dirty") else "")


def _max_cell(r: pd.Series) -> str:
    if not np.isfinite(r["max_abs_difference"]):
        return "-"
    return f"{_diff_cell(r['max_abs_difference']).lstrip('+')} (step {_int_cell(r['max_abs_difference_step'], ',')})"


def _where(folders: Path | list[Path]) -> str:
    """`a` or `a` and `b`: the folders a table was read from."""
    names = [f"`{f}`" for f in (folders if isinstance(folders, list) else [folders])]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def parity_markdown(tab: pd.DataFrame, runs: pd.DataFrame, folders: Path | list[Path]) -> str:
    """The table with its header paragraph; without pairs, a note that says why there is no table."""
    out = ["# PyTorch vs JAX: the same training run on both backends\n"]
    tr = finished_train_runs(runs)
    folder = _where(folders)
    if tab.empty:
        n_jax = int((tr["backend"] == "jax").sum())
        out.append(f"No pairs in {folder}: {len(tr)} finished training runs, {n_jax} of them on JAX. A pair is a "
                   "PyTorch and a JAX run with the same model, objective, context, seed, size, tokens per step, "
                   "steps, learning rate, model options, precision, data hash and hardware.\n")
        return "\n".join(out)
    ids = set(tab["pytorch_run_id"]) | set(tab["jax_run_id"])
    paired = tr[tr["run_id"].isin(ids)]
    execs = " vs ".join(", ".join(sorted(set(tab[f"{b}_execution"]))) for b in BACKENDS)
    out.append(
        f"Runs of {folder} ({_setting(paired)}; {execs}) that differ only in their backend: the same model, "
        "objective, context, seed, size, tokens per step, steps, learning rate, model options, precision, data "
        "and hardware (the newest run of each backend where one was repeated). Held-out bits per byte at the end "
        "of training; difference JAX - PyTorch (negative: JAX lower). Largest |difference|: over the evaluation "
        f"steps both runs recorded, after the first {EARLY_FRACTION:.0%} of training (early evaluations move "
        "fast). Seed range: max - min of PyTorch's final bits per byte over the seeds of the same configuration, "
        "on any hardware, the seed noise the difference is to be read against ('-': one seed only). Figure: "
        f"`figures/{STEM}.png`.\n")
    md = pd.DataFrame({
        "model": tab["model"].map(model_label), "objective": tab["objective"].map(objective_label),
        "context": tab["context"].map(context_label), "seed": tab["seed"].map(_int_cell),
        "steps": tab["steps"].map(lambda v: _int_cell(v, ",")), "lr": tab["lr"].map(lambda v: f"{v:g}"),
        "PyTorch final bpb": tab["pytorch_final_bpb"].map(lambda v: _fmt(v, decimals=4)),
        "JAX final bpb": tab["jax_final_bpb"].map(lambda v: _fmt(v, decimals=4)),
        "JAX - PyTorch": tab["difference"].map(_diff_cell),
        f"largest |JAX - PyTorch| after {EARLY_FRACTION:.0%}": tab.apply(_max_cell, axis=1),
        "PyTorch seed range": [f"{_fmt(r, decimals=4)} ({n} seeds)" if np.isfinite(r) else "-"
                               for r, n in zip(tab["pytorch_seed_range"], tab["pytorch_seeds"])],
        "PyTorch commit": tab["pytorch_commit"].map(_short), "JAX commit": tab["jax_commit"].map(_short)})
    if tab["device_name"].nunique() > 1:
        md.insert(0, "hardware", tab["device_name"])
    return "\n".join(out + [markdown_table(md)])


# ----------------------------------------------------------------------------------------------- figure
def _label_ends(ax, labels: list[tuple[float, float, str, str]], gap: float = 0.07) -> None:
    """Text at the end of lines (x, y, text, colour), moved apart vertically where they would overlap
    (at least `gap` of the axes' height between two)."""
    if not labels:
        return
    lo, hi = ax.get_ylim()
    at = sorted(((y - lo) / (hi - lo) if hi > lo else 0.5, x, text, color) for x, y, text, color in labels)
    placed: list[float] = []
    for frac, *_ in at:
        placed.append(frac if not placed else max(frac, placed[-1] + gap))
    shift = max(0.0, placed[-1] - 0.97)  # keep the top one inside the axes
    for (_, x, text, color), frac in zip(at, placed):
        ax.annotate(text, (x, frac - shift), xycoords=("data", "axes fraction"), xytext=(5, 0),
                    textcoords="offset points", fontsize=7, color=color, va="center")


def plot_parity(tab: pd.DataFrame, runs: pd.DataFrame, curves: pd.DataFrame | None, out_dir: Path) -> list[Path]:
    """Held-out bits per byte vs step per (hardware, objective, context) panel, PyTorch solid and JAX dashed in
    each model's colour; below, JAX - PyTorch per shared evaluation step, the first 10% shaded. Nothing
    without pairs or curves."""
    by_run = curves_by_run(curves)
    if tab.empty or not any(r in by_run for r in tab["pytorch_run_id"]):
        return []
    import matplotlib
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    panels = list(dict.fromkeys(zip(tab["device_name"], tab["objective"], tab["context"])))
    several_hw = len({p[0] for p in panels}) > 1
    tr = finished_train_runs(runs)
    paired = tr[tr["run_id"].isin(set(tab["pytorch_run_id"]) | set(tab["jax_run_id"]))]
    models = list(dict.fromkeys(tab["model"]))
    with matplotlib.rc_context(_RC):
        fig = _new_figure(2, len(panels), panel_w=4.4, panel_h=2.7)
        axes = fig.subplots(2, len(panels), squeeze=False, sharex="col", gridspec_kw={"height_ratios": [3, 2]})
        for j, (hw, obj, ctx) in enumerate(panels):
            top, bottom = axes[0, j], axes[1, j]
            g = tab[(tab["device_name"] == hw) & (tab["objective"] == obj) & (tab["context"] == ctx)]
            several_seeds = g["seed"].nunique() > 1
            late_lo, late_hi, last = np.inf, -np.inf, 0.0
            labels: list[tuple[float, float, str, str]] = []
            for r in g.to_dict("records"):
                color = _style(Variant(r["model"], r["model"]))["color"]
                for backend, ls in (("pytorch", "-"), ("jax", "--")):
                    c = by_run.get(r[f"{backend}_run_id"])
                    if c is None:
                        continue
                    c = c.sort_values("step")
                    st, bpb = c["step"].to_numpy(float), c["eval_bpb"].to_numpy(float)
                    top.plot(st, bpb, color=color, ls=ls, lw=1.5 if backend == "pytorch" else 1.3,
                             alpha=0.85 if backend == "pytorch" else 1.0)
                    steps = r["steps"] if np.isfinite(r["steps"]) else st.max()
                    late = bpb[(st > EARLY_FRACTION * steps) & np.isfinite(bpb)]
                    if late.size:
                        late_lo, late_hi = min(late_lo, late.min()), max(late_hi, late.max())
                    last = max(last, steps)
                d = curve_difference(by_run.get(r["pytorch_run_id"]), by_run.get(r["jax_run_id"]))
                if len(d):
                    x, y = d["step"].to_numpy(float), d["difference"].to_numpy(float)
                    bottom.plot(x, y, color=color, lw=1.3, marker=_style(Variant(r["model"], r["model"]))["marker"],
                                ms=4)
                    if several_seeds:
                        labels.append((x[-1], y[-1], f"seed {_int_cell(r['seed'])}", color))
            if np.isfinite(late_lo):  # the late part fills the panel; the first evaluations may run off the top
                pad = 0.06 * max(late_hi - late_lo, 0.02)
                top.set_ylim(late_lo - pad, late_hi + pad)
            _label_ends(bottom, labels)
            bottom.axhline(0.0, color="0.3", lw=0.8)
            bottom.axvspan(0, EARLY_FRACTION * last, color="0.92", lw=0, zorder=0)
            bottom.set_xlim(0, last * (1.12 if several_seeds else 1.02))
            where = f"{hw}, " if several_hw else ""
            seed = f", seed {_int_cell(g['seed'].iloc[0])}" if several_hw and not several_seeds else ""
            top.set_title(f"{where}{objective_label(obj)} {context_label(ctx)}{seed}")
            bottom.set_xlabel("training step")
            if j == 0:
                top.set_ylabel("held-out bits per byte")
                bottom.set_ylabel("JAX \u2212 PyTorch (bits per byte)")
        lims = [ax.get_ylim() for ax in axes[1]]  # one scale for every panel's differences
        for ax in axes[1]:
            ax.set_ylim(min(lo for lo, _ in lims), max(hi for _, hi in lims))
        handles = _model_handles(models, {m: Variant(m, m) for m in models}, solid=True)
        for h in handles:
            h.set_marker("None")
        handles += [Line2D([], [], color="0.3", ls="-", lw=1.5, label="PyTorch"),
                    Line2D([], [], color="0.3", ls="--", lw=1.3, label="JAX"),
                    Patch(color="0.92", label=f"first {EARLY_FRACTION:.0%} of training")]
        _legend(fig, handles)
        fig.suptitle(f"PyTorch vs JAX: the same training runs on both backends\n{_setting(paired)}", fontsize=10)
        return _save(fig, out_dir, STEM)


# ----------------------------------------------------------------------------------------------- driver
def write_parity(folders: Path | list[Path], out: Path) -> dict[str, list[Path]]:
    """The table and figure of the module docstring, from the folders' runs.csv and curves.csv together."""
    loaded = [load_results(f) for f in (folders if isinstance(folders, list) else [folders])]
    runs = pd.concat([r for r, _ in loaded], ignore_index=True)
    curves = pd.concat([c for _, c in loaded], ignore_index=True)
    tab = parity_table(runs, curves)
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {"tables": [tables / f"{STEM}.csv", tables / f"{STEM}.md"], "figures": []}
    counts = ["context", "seed", "tokens_per_step", "steps", "max_abs_difference_step"]
    write_if_changed(written["tables"][0], tab.astype({c: "Int64" for c in counts}).to_csv(index=False))
    write_if_changed(written["tables"][1], parity_markdown(tab, runs, folders))
    written["figures"] = plot_parity(tab, runs, curves, out / "figures")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suite.backend_parity", description=__doc__.splitlines()[0])
    p.add_argument("folders", type=Path, nargs="+", metavar="FOLDER",
                   help="results folders with runs.csv and curves.csv (several: their runs together)")
    p.add_argument("--out", type=Path, default=None, help="where to write (default, for one folder: FOLDER/parity)")
    args = p.parse_args(argv)
    for folder in args.folders:
        if not folder.is_dir():
            print(f"python -m suite.backend_parity: no such folder: {folder}", file=sys.stderr)
            return 2
        if not (folder / "runs.csv").is_file():
            print(f"python -m suite.backend_parity: {folder} has no runs.csv (run python -m suite.report on it "
                  "first)", file=sys.stderr)
            return 2
    if args.out is None and len(args.folders) > 1:
        print("python -m suite.backend_parity: several folders need --out (where their table and figure go)",
              file=sys.stderr)
        return 2
    out = args.out if args.out is not None else args.folders[0] / "parity"
    written = write_parity(args.folders if len(args.folders) > 1 else args.folders[0], out)
    print(written["tables"][1].read_text())
    for kind, paths in written.items():
        for path in paths:
            print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
