"""The paper's figures, redrawn from a results folder's tables alone.

Every function takes the ``runs`` (and where needed ``curves``) tables of `suite.schema` and an
output directory, writes ``<stem>.png`` and ``<stem>.svg`` there, and returns the paths it wrote.
Where the data for a figure is missing (no speed runs, no baseline, no curves) it writes nothing and
returns ``[]``; it never raises for missing data.

Figures (file stems):
- ``speedup_vs_context``: training speedup at equal quality vs context length, one line per model,
  one panel per (objective, baseline); dashed line at 1.0x; a hollow triangle at the bottom edge
  where a model never reached the baseline's quality.
- ``quality_vs_time``: held-out bits per byte (or loss) vs training time, one panel per context
  length, one row per objective, a line per model (several seeds: their mean over a band of their range);
  dotted line at Transformer++'s final quality.
- ``latency_vs_context``: median training-step time vs context length; OOM marked with an x at the
  top edge.
- ``memory_vs_context``: peak accelerator memory vs context length; OOM marked the same way.

Lines are per variant (schema: model plus configuration, e.g. ``flash+compile``). Colours, markers
and labels are the model's, from its registry entry (`implementations.registry.ModelSpec`), so a model
looks the same in every figure, and its variants share them with another line style (+compile dashed,
another attention kernel dotted; solid again in a figure whose lines are all one kind, e.g. all
compiled); a model without a colour, or unknown to the registry, gets a stable fallback one. A panel with no runs says "not measured". Context lengths sit on a log2 axis
labelled 512, 1K, 2K, ... The hardware (``device_name`` of the runs) is named in every title.
Drawing uses matplotlib's Agg canvas on a bare `Figure`, never pyplot, so nothing is displayed
and no global figure state is kept.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator
from matplotlib.transforms import blended_transform_factory


from .analysis import (BASELINES, Variant, Variants, context_label, latency_table, objective_label, prepare_runs,
                       resolve_variant, speedup_table, train_runs, variants_of)


OBJECTIVE_ORDER = ("clm", "mlm")

_RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 9,
       "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
       "grid.linewidth": 0.6, "axes.spines.top": False, "axes.spines.right": False,
       "svg.hashsalt": "flash-repro"}


def linestyle(variant: Variant) -> str:
    """Variants of one model share its colour and differ in line style: plain solid, compiled dashed,
    configured otherwise (another kernel, model options, SDPA backend, compile mode) dotted, both dash-dot."""
    if variant.compiled and variant.configured:
        return "-."
    return "--" if variant.compiled else ":" if variant.configured else "-"


def _style(variant: Variant, solid: bool = False) -> dict:
    """solid: a figure whose lines are all one kind of variant (e.g. every run compiled) draws them solid."""
    return dict(color=variant.spec.display_color, marker=variant.spec.display_marker,
                ls="-" if solid else linestyle(variant))


def _one_line_style(names, V: Variants) -> bool:
    return len({linestyle(V[v]) for v in names}) <= 1


# ------------------------------------------------------------------------------------------ helpers
def _unique(df: pd.DataFrame, col: str) -> list[str]:
    if df is None or col not in df.columns:
        return []
    v = df[col].dropna().astype(str)
    return sorted(set(v[v.str.strip() != ""]))


def hardware_label(runs: pd.DataFrame) -> str:
    """'NVIDIA H200' (device_name), several joined with ' + ', else the device kind, else 'unknown hardware'."""
    names = _unique(runs, "device_name") or [d.upper() for d in _unique(runs, "device")]
    return " + ".join(names) if names else "unknown hardware"


def _subtitle(runs: pd.DataFrame, *, size: str | None = None, extra: list[str] | None = None) -> str:
    parts = [hardware_label(runs)]
    prec = _unique(runs, "precision")
    if prec:
        parts.append("/".join(prec))
    if size:
        parts.append(f"size {size}")
    tps = pd.to_numeric(runs["tokens_per_step"], errors="coerce").dropna() if "tokens_per_step" in runs else []
    if len(tps) and tps.nunique() == 1:
        parts.append(f"{int(tps.iloc[0]):,} tokens/step")
    return ", ".join(parts + list(extra or []))


def _objectives(df: pd.DataFrame) -> list[str]:
    objs = list(dict.fromkeys(df["objective"].astype(str)))
    return sorted(objs, key=lambda o: (OBJECTIVE_ORDER.index(o) if o in OBJECTIVE_ORDER else 99, o))


def _sorted(names, V: Variants) -> list[str]:
    return sorted(set(names), key=lambda v: V[v].sort_key)


def _variants(df: pd.DataFrame, V: Variants) -> list[str]:
    return _sorted(df["variant"].astype(str), V)


def _main_setting(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Restrict to one setting (data, budget, protocol: the one with most rows) when a table holds
    several, so that one figure never mixes runs that must not be compared; the note says which."""
    if "setting" not in df.columns or df.empty or df["setting"].astype(str).nunique() <= 1:
        return df, []
    counts = df["setting"].astype(str).value_counts()
    main = counts.index[0]
    return df[df["setting"].astype(str) == main], [f"setting {main} ({len(counts) - 1} other(s) in the tables)"]


def _main_size(df: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Restrict to one model size (the one with most rows) when several are present."""
    if "size" not in df.columns or df.empty:
        return df, None
    sizes = df["size"].astype(str)
    if sizes.nunique() <= 1:
        s = sizes.iloc[0]
        return df, (s or None)
    main = sizes.value_counts().index[0]
    return df[sizes == main], main


def _context_axis(ax, contexts) -> None:
    ctx = sorted({int(c) for c in contexts if np.isfinite(c) and c > 0})
    ax.set_xscale("log", base=2)
    if ctx:
        ax.set_xlim(ctx[0] / 2 ** 0.35, ctx[-1] * 2 ** 0.35)
        ax.xaxis.set_major_locator(FixedLocator(ctx))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: context_label(int(round(x)))))
    ax.xaxis.set_minor_locator(NullLocator())


def _new_figure(nrows: int, ncols: int, panel_w: float = 4.2, panel_h: float = 3.0) -> Figure:
    fig = Figure(figsize=(max(5.5, panel_w * ncols), panel_h * nrows + 1.3), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    fig.savefig(png, dpi=150, bbox_inches="tight", pad_inches=0.08)
    fig.savefig(svg, bbox_inches="tight", pad_inches=0.08, metadata={"Date": None})
    return [png, svg]


def _model_handles(variants: list[str], V: Variants, solid: bool = False) -> list[Line2D]:
    return [Line2D([], [], **_style(V[v], solid), markersize=6, lw=1.8, label=V[v].label) for v in variants]


def _legend(fig: Figure, handles: list) -> None:
    if handles:
        per_row = max(2, int(fig.get_figwidth() / 1.9))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), per_row), frameon=False)


def _panel_grid(fig: Figure, nrows: int, ncols: int, **kw) -> np.ndarray:
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return axes


# ------------------------------------------------------------------------------ 1. speedup vs context
def plot_speedup(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: Path,
                 baselines: tuple[str, ...] = BASELINES, table: pd.DataFrame | None = None) -> list[Path]:
    """Training speedup at equal quality vs context length (`suite.analysis.speedup_table`).

    One panel per (objective row, baseline column), one line per model (the baseline itself is the
    dashed 1.0x line); error bars span min..max over seeds. Writes speedup_vs_context.{png,svg}."""
    if runs is None or runs.empty:
        return []
    tab = speedup_table(runs, curves, baselines) if table is None else table
    if tab is None or tab.empty or not (tab["variant"] != tab["baseline"]).any():
        return []            # nothing but the baselines themselves (e.g. no learning curves)
    tab, size = _main_size(tab)
    tab, note = _main_setting(tab)
    V = variants_of(runs, tab)
    objs = _objectives(tab)
    bases = list(dict.fromkeys(tab["baseline"].astype(str)))      # resolved baseline variants, in order
    contexts = pd.to_numeric(tab["context"], errors="coerce").tolist()
    with matplotlib.rc_context(_RC):
        fig = _new_figure(len(objs), len(bases))
        axes = _panel_grid(fig, len(objs), len(bases))
        models_seen, any_unreached, any_below = [], False, False
        solid = _one_line_style(_variants(tab, V), V)
        for i, obj in enumerate(objs):
            for j, base in enumerate(bases):
                ax = axes[i, j]
                sub = tab[(tab["objective"].astype(str) == obj) & (tab["baseline"] == base)]
                ax.axhline(1.0, color="black", ls="--", lw=1.0, zorder=1)
                bottom = blended_transform_factory(ax.transData, ax.transAxes)
                unreached: dict[float, list[str]] = {}    # context -> models that never reached the target
                ymax = 1.0
                for m in _variants(sub, V):
                    if m == base:
                        continue
                    d = sub[sub["variant"] == m].sort_values("context")
                    x = d["context"].astype(float).to_numpy()
                    y = d["speedup_mean"].astype(float).to_numpy()
                    lo = d["speedup_min"].astype(float).to_numpy()
                    hi = d["speedup_max"].astype(float).to_numpy()
                    ok = np.isfinite(y)
                    if ok.any():
                        yerr = np.vstack([y - lo, hi - y])[:, ok] if (d["n_seeds"] > 1).any() else None
                        ax.errorbar(x[ok], y[ok], yerr=yerr, **_style(V[m], solid), ms=6, lw=1.8, capsize=2.5, zorder=3)
                        ymax = max(ymax, float(np.nanmax(np.where(np.isfinite(hi), hi, y)[ok])))
                    below = pd.to_numeric(d.get("speedup_below_mean"), errors="coerce").to_numpy(dtype=float) \
                        if "speedup_below_mean" in d else np.full(len(d), np.nan)
                    has_below = ~ok & np.isfinite(below)
                    if has_below.any():  # slower than the baseline: the ratio at the model's own final quality
                        any_below = True
                        ax.plot(x[has_below], below[has_below], ls="none", marker=V[m].spec.display_marker, ms=7,
                                mfc="none", mec=V[m].spec.display_color, mew=1.5, zorder=3)
                    for xc in x[~ok & ~has_below]:
                        unreached.setdefault(float(xc), []).append(m)
                    models_seen.append(m)
                for xc, ms in unreached.items():       # a row of hollow triangles on the bottom edge
                    any_unreached = True
                    for k, m in enumerate(ms):
                        xk = xc * 2 ** (0.14 * (k - (len(ms) - 1) / 2))
                        ax.plot([xk], [0.035], ls="none", marker="v", ms=6, mfc="none", mec=V[m].spec.display_color,
                                mew=1.5, transform=bottom, clip_on=False, zorder=4)
                _context_axis(ax, contexts)
                ax.set_ylim(0, ymax * 1.15)
                ax.set_title(f"{objective_label(obj)}: speedup over {V[base].label}")
                if i == len(objs) - 1:
                    ax.set_xlabel("Context length (tokens)")
                if j == 0:
                    ax.set_ylabel("Training speedup at equal quality (x)")
        handles = _model_handles(_sorted(models_seen, V), V, solid)
        handles.append(Line2D([], [], color="black", ls="--", lw=1.0, label="baseline (1.0x)"))
        if any_below:
            handles.append(Line2D([], [], ls="none", marker="o", mfc="none", mec="black", ms=7,
                                  label="slower: ratio at the model's own final quality"))
        if any_unreached:
            handles.append(Line2D([], [], ls="none", marker="v", mfc="none", mec="black", ms=7,
                                  label="never reached baseline quality"))
        _legend(fig, handles)
        fig.suptitle("Training speedup at equal quality vs context length\n"
                     + _subtitle(train_runs(runs), size=size, extra=note))
        return _save(fig, out_dir, "speedup_vs_context")


# -------------------------------------------------------------------------- 2. quality vs training time
def plot_quality_vs_time(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: Path,
                         reference: str = "transformer_plus_plus") -> list[Path]:
    """Held-out bits per byte (eval_bpb; eval loss in nats/token when bpb is missing) vs training
    time, one panel per context length (columns), one row per objective; one curve per model and
    configuration: with several seeds their mean per evaluation step (time and quality) over a band from
    the lowest to the highest seed. A dotted line marks the reference model's final quality (the speedup
    target). Writes quality_vs_time.{png,svg}."""
    if runs is None or runs.empty or curves is None or curves.empty:
        return []
    tr = train_runs(runs)
    if tr.empty or "run_id" not in curves.columns:
        return []
    tr, size = _main_size(tr)
    tr, note = _main_setting(tr)
    V = variants_of(tr)
    reference = resolve_variant(tr, reference) or reference
    keep = ["run_id", "variant", "model", "objective", "context", "seed"]
    cur = curves.drop(columns=[c for c in keep[1:] if c in curves.columns]).merge(tr[keep], on="run_id")
    cur["time_s"] = pd.to_numeric(cur.get("time_s"), errors="coerce")
    bpb = pd.to_numeric(cur["eval_bpb"], errors="coerce") if "eval_bpb" in cur else pd.Series(dtype=float)
    if bpb.notna().any():
        metric, final_col, ylabel = "eval_bpb", "final_bpb", "Held-out bits per byte (lower is better)"
    else:
        metric, final_col, ylabel = "eval_loss", "final_eval_loss", "Held-out loss (nats/token, lower is better)"
    cur[metric] = pd.to_numeric(cur[metric], errors="coerce")
    cur = cur[np.isfinite(cur["time_s"]) & np.isfinite(cur[metric])]
    if cur.empty:
        return []
    objs = _objectives(cur)
    ctxs = sorted(pd.to_numeric(cur["context"], errors="coerce").dropna().astype(int).unique())
    with matplotlib.rc_context(_RC):
        fig = _new_figure(len(objs), len(ctxs), panel_w=3.6, panel_h=2.9)
        axes = _panel_grid(fig, len(objs), len(ctxs), sharey="row")
        models_seen, ref_drawn, seeded = [], False, False
        solid = _one_line_style(_variants(cur, V), V)
        for i, obj in enumerate(objs):
            row = cur[cur["objective"].astype(str) == obj]
            row_lo = float(row[metric].min()) if len(row) else math.nan
            row_hi = float(row[metric].max()) if len(row) else math.nan
            row_final = float(row.sort_values("time_s").groupby("run_id")[metric].last().max())
            for j, ctx in enumerate(ctxs):
                ax = axes[i, j]
                d = row[row["context"].astype(float) == ctx]
                if d.empty:  # a context measured for another objective only
                    ax.text(0.5, 0.5, f"{objective_label(obj)} at {context_label(ctx)}:\nnot measured",
                            ha="center", va="center", transform=ax.transAxes, color="0.4")
                    ax.set_axis_off()
                    continue
                for m in _variants(d, V):
                    g = seed_mean(d[d["variant"] == m], metric)
                    seeded |= draw_seed_mean(ax, g, "time_s", _style(V[m], solid), lw=1.5, alpha=0.9, ms=3.5,
                                             markevery=[len(g) - 1])
                    models_seen.append(m)
                ref = tr[(tr["variant"] == reference) & (tr["objective"].astype(str) == obj)
                         & (tr["context"].astype(float) == ctx)]
                ref_val = pd.to_numeric(ref[final_col], errors="coerce").mean() if len(ref) else math.nan
                if np.isfinite(ref_val):
                    ax.axhline(ref_val, color=V[reference].spec.display_color, ls=":", lw=1.2, zorder=1)
                    ref_drawn = True
                zoom_on_the_end(ax, row_lo, row_hi, row_final)
                ax.set_xlim(left=0)
                ax.set_title(f"{objective_label(obj)}, context {context_label(ctx)}")
                if i == len(objs) - 1:
                    ax.set_xlabel("Training time (s)")
                if j == 0:
                    ax.set_ylabel(ylabel.replace(" (lower is better)", "\n(lower is better)"))
        handles = _model_handles(_sorted(models_seen, V), V, solid)
        if ref_drawn:
            handles.append(Line2D([], [], color=V[reference].spec.display_color, ls=":", lw=1.2,
                                  label=f"{V[reference].label} final (speedup target)"))
        if seeded:
            handles.append(seed_band_handle())
        _legend(fig, handles)
        fig.suptitle("Quality vs training time\n" + _subtitle(tr, size=size, extra=note))
        return _save(fig, out_dir, "quality_vs_time")


def seed_mean(d: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One variant's curves (a run per seed) as one: per evaluation step (column `step`; rows without one
    stand alone) the mean step, time (where there is a `time_s`) and metric over the runs that reached it,
    the metric's min and max, and how many runs there were; sorted by step."""
    key = "step" if "step" in d.columns else "time_s"
    g = d.groupby(key)
    out = pd.DataFrame({"mean": g[metric].mean(), "lo": g[metric].min(), "hi": g[metric].max(),
                        "runs": g["run_id"].nunique()})
    for col in ("step", "time_s"):
        if col in d.columns:
            out[col] = g[col].mean() if col != key else out.index
    return out.sort_index().reset_index(drop=True)


def draw_seed_mean(ax, g: pd.DataFrame, x: str, style: dict, **line) -> bool:
    """`seed_mean`'s line against column x, over a band from the lowest to the highest run where there are
    several; whether a band was drawn."""
    ax.plot(g[x], g["mean"], **style, **line)
    many = g[g["runs"] > 1]
    if many.empty:
        return False
    ax.fill_between(many[x], many["lo"], many["hi"], color=style["color"], alpha=0.2, lw=0, zorder=1)
    return True


def seed_band_handle() -> Patch:
    """The legend entry of `draw_seed_mean`'s band."""
    return Patch(color="0.5", alpha=0.3, lw=0, label="range over seeds (line: their mean)")


def zoom_on_the_end(ax, lo: float, hi: float, final: float) -> float:
    """Set ax's quality axis to the end of training: from the best value `lo` up to four times the spread of
    the final values above it (`final`: the highest final value), at most the highest value `hi`, padded by
    5%. Returns that top (the axis is left alone where the values are not finite)."""
    top = min(hi, lo + 4.0 * max(final - lo, 0.02 * max(abs(lo), 1e-9)))
    if np.isfinite(lo) and np.isfinite(top) and top > lo:
        pad = 0.05 * (top - lo)
        ax.set_ylim(lo - pad, top + pad)
    return top


# -------------------------------------------------------------------- 3./4. latency and memory vs context
def _plot_vs_context(runs: pd.DataFrame, out_dir: Path, *, column: str, ylabel: str, title: str,
                     stem: str, band: tuple[str, str] | None = None,
                     table: pd.DataFrame | None = None) -> list[Path]:
    if runs is None or runs.empty:
        return []
    tab = latency_table(runs) if table is None else table
    if tab is None or tab.empty:
        return []
    tab, size = _main_size(tab)
    tab, note = _main_setting(tab)
    val = pd.to_numeric(tab[column], errors="coerce")
    if not val.notna().any():
        return []            # nothing measured (OOM alone makes no figure)
    source = tab["source"].iloc[0]
    objs = _objectives(tab)
    sel = prepare_runs(runs)
    sel = sel[sel["kind"] == source]
    V = variants_of(runs, tab)
    with matplotlib.rc_context(_RC):
        fig = _new_figure(1, len(objs), panel_w=5.0, panel_h=3.4)
        axes = _panel_grid(fig, 1, len(objs))
        models_seen, any_oom = [], False
        solid = _one_line_style(_variants(tab, V), V)
        for j, obj in enumerate(objs):
            ax = axes[0, j]
            sub = tab[tab["objective"].astype(str) == obj]
            v = pd.to_numeric(sub[column], errors="coerce")
            finite = v[np.isfinite(v) & (v > 0)]
            log_y = len(finite) > 1 and finite.max() / finite.min() > 8
            top = blended_transform_factory(ax.transData, ax.transAxes)
            oom_stack: dict[float, list[str]] = {}        # context -> models out of memory there
            for m in _variants(sub, V):
                d = sub[sub["variant"] == m].sort_values("context")
                x = d["context"].astype(float).to_numpy()
                y = pd.to_numeric(d[column], errors="coerce").to_numpy(dtype=float)
                ok = np.isfinite(y)
                if ok.any():
                    ax.plot(x[ok], y[ok], **_style(V[m], solid), ms=6, lw=1.8, zorder=3)
                    if band is not None:
                        lo = pd.to_numeric(d[band[0]], errors="coerce").to_numpy(dtype=float)
                        hi = pd.to_numeric(d[band[1]], errors="coerce").to_numpy(dtype=float)
                        if np.isfinite(lo[ok]).all() and np.isfinite(hi[ok]).all() and ok.sum() > 1:
                            ax.fill_between(x[ok], lo[ok], hi[ok], color=V[m].spec.display_color, alpha=0.15, lw=0)
                    models_seen.append(m)
                is_oom = (d["status"].astype(str) == "oom").to_numpy()
                for xc in x[is_oom]:
                    oom_stack.setdefault(float(xc), []).append(m)
                    models_seen.append(m)
            for xc, ms in oom_stack.items():            # a row of x marks along the top edge, labelled OOM
                any_oom = True
                for k, m in enumerate(ms):
                    xk = xc * 2 ** (0.14 * (k - (len(ms) - 1) / 2))
                    ax.plot([xk], [0.90], ls="none", marker="x", ms=6, mew=2, color=V[m].spec.display_color,
                            transform=top, clip_on=False, zorder=5)
                ax.text(xc, 0.935, "OOM", transform=top, ha="center", va="bottom", fontsize=7, fontweight="bold")
            _context_axis(ax, pd.to_numeric(sub["context"], errors="coerce").tolist())  # this panel's lengths
            if log_y:
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
                ax.set_ylim(finite.min() / 1.3, finite.max() * (2.5 if oom_stack else 1.5))
            elif len(finite):
                ax.set_ylim(0, finite.max() * (1.25 if oom_stack else 1.12))
            ax.set_title(objective_label(obj) if len(objs) > 1 else f"{objective_label(obj)} training step")
            ax.set_xlabel("Context length (tokens)")
            if j == 0:
                ax.set_ylabel(ylabel)
        handles = _model_handles(_sorted(models_seen, V), V, solid)
        if any_oom:
            handles.append(Line2D([], [], ls="none", marker="x", mew=2, ms=7, color="black",
                                  label="OOM (out of memory)"))
        _legend(fig, handles)
        extra = note + ([] if source == "speed" else ["timings from training runs (no speed runs)"])
        fig.suptitle(f"{title}\n" + _subtitle(sel, size=size, extra=extra))
        return _save(fig, out_dir, stem)


def plot_latency(runs: pd.DataFrame, out_dir: Path, table: pd.DataFrame | None = None) -> list[Path]:
    """Median training-step time (forward + backward + optimizer, ms) vs context length, one line per
    model, band p10..p90; OOM marked with an x at the top edge. Speed runs, else training runs.
    ``table``: a precomputed `suite.analysis.latency_table(runs)`. Writes latency_vs_context.{png,svg}."""
    return _plot_vs_context(runs, out_dir, column="step_ms_median", ylabel="Training step time (ms, median)",
                            title="Training step latency vs context length", stem="latency_vs_context",
                            band=("step_ms_p10", "step_ms_p90"), table=table)


def plot_memory(runs: pd.DataFrame, out_dir: Path, table: pd.DataFrame | None = None) -> list[Path]:
    """Peak accelerator memory (GiB) of a training step vs context length; OOM marked with an x at
    the top edge. Writes memory_vs_context.{png,svg}."""
    return _plot_vs_context(runs, out_dir, column="peak_mem_gib", ylabel="Peak memory (GiB)",
                            title="Peak training memory vs context length", stem="memory_vs_context",
                            table=table)


def step_speedup_table(lat: pd.DataFrame, baseline: str = "transformer_plus_plus") -> pd.DataFrame:
    """Per model: its fastest variant's step time divided into the fastest baseline variant's, per
    (objective, context). Rows keep the latency table's columns, with `variant` = the model and the
    ratio in `step_speedup`; a model whose variants all failed keeps their status."""
    if lat is None or lat.empty:
        return pd.DataFrame()
    lat = lat.copy()
    lat["_ms"] = pd.to_numeric(lat["step_ms_median"], errors="coerce")
    rows = []
    for (obj, ctx), g in lat.groupby(["objective", "context"], sort=False):
        base = g.loc[g["model"].astype(str) == baseline, "_ms"].min()
        for model, gm in g.groupby("model", sort=False):
            ok = gm[gm["status"].astype(str) == "ok"]
            row = (ok.loc[ok["_ms"].idxmin()] if len(ok) else gm.iloc[0]).copy()
            row["variant"] = str(model)
            row["step_speedup"] = base / row["_ms"] if len(ok) and np.isfinite(base) else np.nan
            rows.append(row)
    return pd.DataFrame(rows).drop(columns="_ms").reset_index(drop=True)


def plot_step_speedup(runs: pd.DataFrame, out_dir: Path, table: pd.DataFrame | None = None) -> list[Path]:
    """Step-time speedup of each model (its fastest variant) over the fastest Transformer++ variant."""
    if runs is None or runs.empty:
        return []
    tab = step_speedup_table(latency_table(runs) if table is None else table)
    if tab.empty or not pd.to_numeric(tab["step_speedup"], errors="coerce").notna().any():
        return []
    return _plot_vs_context(runs, out_dir, column="step_speedup", stem="step_speedup_vs_context",
                            ylabel="Step-time speedup over the\nfastest Transformer++ (x)",
                            title="Training-step speedup vs context length (each model's fastest variant)",
                            table=tab)


__all__ = ["linestyle", "hardware_label", "plot_speedup",
           "plot_quality_vs_time", "plot_latency", "plot_memory", "plot_step_speedup"]
