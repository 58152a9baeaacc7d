"""Speedup at equal quality on every platform, from one set of learning curves (issue 11).

    python -m suite.platforms results/nvidia-h200/paper-figures            # curves; step times from results/
    python -m suite.platforms CURVES --times results/ other/folder --out results/platforms
    python -m suite.platforms                                               # the backends table alone

Quality per step is measured once (the learning curves of CURVES, e.g. the paper-figures preset on an
H200); the time of a step is measured per platform, by any run at the same model size, objective and
context (the curves' own training runs, or the paper-speed preset on another device, with no
retraining). For each platform that has step times for both a model and the baseline, the speedup is

    steps_ratio (baseline steps / steps the model needs to reach the baseline's final quality)
    x step_time_ratio (baseline step time / the model's step time, on that platform)

per pair of seeds, with the mean and the range over pairs (`suite.analysis.platform_speedups`).
Writes under --out (default: results/platforms):

    tables/platform_speedup.{csv,md}   the speedups, one table per platform, side by side in one file
    tables/step_times.{csv,md}         each platform's step times, with the run configuration and software
    tables/quality_per_step.{csv,md}   the hardware-independent half: steps to the baseline's quality
    tables/claims.{csv,md}             the paper's claims: its number, ours, a verdict and its reason
                                       (suite/claims.py; the README's claims table)
    tables/gap.{csv,md}                each model's bits per byte minus the baseline's along training (mean,
                                       range over seed pairs) and where they last crossed
    figures/gap_vs_steps.{png,svg}     that gap against training steps, a row per objective, a panel per context
    figures/platform_speedup.{png,svg} speedup vs context, one panel per (objective, platform)
    figures/quality_vs_steps.{png,svg} held-out bits per byte vs training steps, a row per objective, a panel per
                                       context (any hardware); seeds as their mean over a band of their range
    figures/quality_vs_cost.{png,svg}  the same vs training cost (steps x step time) per platform and
                                       context, the paper's quality-vs-cost figures
    tables/backends.{csv,md}           every platform and execution (PyTorch eager, PyTorch compiled, JAX jit):
                                       step time, tokens/s, MFU, compile seconds per model and context, and
                                       whether FLASH's step is faster than Transformer++'s on each
    figures/backends.{png,svg}         step time vs context per platform and size, a line per model and execution
    sources.md                         the folders read

TPU: the JAX backend has a TPU path (JAX_PLATFORMS=tpu, --device tpu is not a PyTorch device), untested here:
the tables say "not measured" for it.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from .claims import claims_markdown, claims_table
from .analysis import (Variant, backend_table, curves_by_run, context_label, gap_along_training, last_crossing, model_label, objective_label,
                       platform_speedups, platform_step_times, quality_per_step, ranking_table, variants_of)
from .figures import (_RC, _context_axis, _legend, _model_handles, _new_figure, _one_line_style, _save, _style,
                      draw_seed_mean, seed_band_handle, seed_mean, zoom_on_the_end)
from .report import _fmt, load_results, markdown_table
from .store import write_if_changed

DEFAULT_OUT = Path("results/platforms")


def find_folders(roots: list[Path]) -> list[Path]:
    """Every results folder (one with a runs.csv) under the roots, sorted, leaving out superseded records and
    the notebook's scratch copies; the platform tables' own output folder is never one (it holds none)."""
    found = set()
    for root in roots:
        if (root / "runs.csv").is_file():
            found.add(root)
        found.update(p.parent for p in root.rglob("runs.csv") if not {"superseded", "scratch"} & set(p.parts))
    return sorted(found)


def collect_runs(folders: list[Path]) -> pd.DataFrame:
    """The runs of all folders in one table, each row with the `folder` it came from."""
    parts = []
    for folder in folders:
        runs, _ = load_results(folder)
        if len(runs):
            parts.append(runs.assign(folder=str(folder)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _speedup_cell(r: pd.Series) -> str:
    if r["n_reached"] == 0:
        return "not reached"
    cell = f"{_fmt(r['speedup_mean'])}x"
    if r["n_pairs"] > 1:
        cell += f" [{_fmt(r['speedup_min'])}, {_fmt(r['speedup_max'])}]"
    if r["n_reached"] < r["n_pairs"]:
        cell += f" ({r['n_reached']}/{r['n_pairs']} reached)"
    if r["includes_one"]:
        cell += " (includes 1)"
    return cell + (" *" if r["scaled"] else "")


def speedup_markdown(tab: pd.DataFrame, times: pd.DataFrame) -> str:
    """One section per platform: a model x context table per objective, then where its step times came from."""
    if tab.empty:
        return "## Speedup at equal quality per platform\n\nNo platform has step times for these curves.\n"
    V = variants_of(tab)
    out = ["## Speedup at equal quality per platform",
           "Speedup over the baseline at its final quality = (steps ratio from the learning curves) x (step-time ratio "
           "on the platform); mean over seed pairs, [min, max] where there are several; \"includes 1\": the range "
           "holds 1.0, so the sign is not established. * step times scaled per token from another number of tokens "
           "per step.\n"]
    for platform, p in tab.groupby("platform", sort=False):
        out.append(f"### {platform}\n")
        for obj, g in p.groupby("objective", sort=False):
            piv = g.assign(cell=g.apply(_speedup_cell, axis=1), label=g["variant"].map(lambda v: V[v].label))
            piv = piv.pivot_table(index="label", columns="context", values="cell", aggfunc="first", sort=False)
            piv.columns = [context_label(c) for c in piv.columns]
            out.append(f"**{objective_label(obj)}** (baseline {V[g['baseline'].iloc[0]].label})\n")
            out.append(markdown_table(piv.rename_axis("model"), index=True))
        t = times[times["platform"] == platform]
        sw = sorted({f"jax {j}" if b == "jax" else f"{b} {v}" for b, v, j in
                     zip(t["backend"].astype(str), t["torch_version"].astype(str),
                         t.get("jax_version", pd.Series("", index=t.index)).astype(str))})
        out.append(f"Step times: {len(t)} configurations ({', '.join(sorted(set(t['kind'].astype(str))))} runs), "
                   f"{', '.join(sorted(set(t['precision'].astype(str))))}, {'; '.join(sw)}; "
                   f"see step_times.md.\n")
    return "\n".join(out)


def _label_of(variant: str) -> str:
    """A baseline variant's label, e.g. 'Transformer++ +compile', from its name (it has no rows of its own in
    the tables it names)."""
    model = variant.split("[")[0].split("+")[0]
    return Variant(variant, model).label


GAP_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)  # the gap table's columns: these fractions of the run


def gap_markdown(gap: pd.DataFrame) -> str:
    """The gap to the baseline at a few points of training, and where it last changed sign."""
    out = ["## The gap to the baseline along training",
           "Held-out bits per byte minus the baseline's at the same step (negative: better per step); mean over seed "
           "pairs, [min, max] where there are several. Last crossing: the last evaluation where the sign changed.\n"]
    if gap.empty:
        return "\n".join(out + ["No learning curves.\n"])
    V = variants_of(gap)
    for (obj, ctx), g in gap.groupby(["objective", "context"], sort=False):
        last = float(g["step"].max())
        rows = []
        for v, gv in g.groupby("variant", sort=False):
            row = {"model": V[v].label}
            for f in GAP_FRACTIONS:
                at = gv.iloc[(gv["step"] - f * last).abs().argsort()[:1]].iloc[0]
                cell = f"{at['gap_mean']:+.3f}"
                if at["n_pairs"] > 1:
                    cell += f" [{at['gap_min']:+.3f}, {at['gap_max']:+.3f}]"
                row[f"step {int(at['step']):,}"] = cell
            crossed = last_crossing(gv)
            row["last crossing"] = "none" if np.isnan(crossed) else f"step {int(crossed):,}"
            rows.append(row)
        out.append(f"**{objective_label(obj)} {context_label(int(ctx))}** (minus {_label_of(g['baseline'].iloc[0])})\n")
        out.append(markdown_table(pd.DataFrame(rows)))
    return "\n".join(out)


def _objective_grid(panels: list[tuple[str, int]]) -> tuple[dict[tuple[str, int], tuple[int, int]], tuple[int, int]]:
    """(objective, context) panels laid out a row per objective, its contexts left to right: each panel's
    (row, column) and the grid's shape."""
    objs = list(dict.fromkeys(o for o, _ in panels))
    place = {p: (objs.index(p[0]), [q for q in panels if q[0] == p[0]].index(p)) for p in panels}
    return place, (len(objs), max(col for _, col in place.values()) + 1)


def plot_gap(gap: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The gap to the baseline against training steps, a row per objective and a panel per context, the
    range over seed pairs shaded, zero drawn; each panel's axis fits the gap after the first tenth of
    training (the early gaps are many times larger)."""
    if gap.empty:
        return []
    import matplotlib
    V = variants_of(gap)
    panels = sorted({(o, int(c)) for o, c in zip(gap["objective"], gap["context"])})
    place, shape = _objective_grid(panels)
    with matplotlib.rc_context(_RC):
        fig = _new_figure(*shape, panel_w=3.4, panel_h=2.8)
        axes = fig.subplots(*shape, squeeze=False)
        for row, col in np.ndindex(*shape):
            if (row, col) not in place.values():
                axes[row, col].set_axis_off()
        for (obj, ctx), (row, col) in place.items():
            ax = axes[row, col]
            g = gap[(gap["objective"] == obj) & (gap["context"].astype(int) == ctx)]
            late = g[g["step"] >= 0.1 * g["step"].max()]
            for v, gv in g.groupby("variant", sort=False):
                st = gv["step"].to_numpy(float)
                style = _style(V[v], True)
                ax.plot(st, gv["gap_mean"].to_numpy(float), lw=1.4, color=style["color"], ls=style["ls"])
                ax.fill_between(st, gv["gap_min"].to_numpy(float), gv["gap_max"].to_numpy(float), color=style["color"],
                                alpha=0.15, lw=0)
            lo, hi = min(0.0, float(late["gap_min"].min())), max(0.0, float(late["gap_max"].max()))
            pad = 0.08 * (hi - lo) if hi > lo else 0.01
            ax.set_ylim(lo - pad, hi + pad)
            ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
            ax.set_title(f"{objective_label(obj)} {context_label(ctx)}", fontsize=8)
            ax.set_xlabel("training steps")
            if col == 0:
                ax.set_ylabel(f"bits per byte minus\n{_label_of(gap['baseline'].iloc[0])}'s")
        _legend(fig, _model_handles(list(dict.fromkeys(gap["variant"])), V, solid=True))
        fig.suptitle("The gap to the baseline along training (below zero: better per step; shaded: range over "
                     "seed pairs; axes fit the steps after the first tenth)")
        return _save(fig, out_dir, "gap_vs_steps")


def _table_md(title: str, df: pd.DataFrame) -> str:
    return f"## {title}\n\n" + (markdown_table(df) if len(df) else "No rows.\n")


EXECUTIONS = ("PyTorch eager", "PyTorch compiled", "JAX jit")
TPU_NOTE = ("TPU: not measured. The JAX backend has a TPU path (`JAX_PLATFORMS=tpu`), untested here; its "
            "peak FLOPs are in `suite/hardware.py`.")


def _step_cell(ms: float, mfu: float, compile_s: float) -> str:
    """'123 (41%, compile 12 s)': the step time, and what else is known of it."""
    extra = ([f"{_fmt(100 * mfu, 2)}%"] if np.isfinite(mfu) else []) + \
        ([f"compile {_fmt(compile_s, 2)} s"] if np.isfinite(compile_s) else [])
    return _fmt(ms) + (f" ({', '.join(extra)})" if extra else "")


def backends_markdown(tab: pd.DataFrame, ranks: pd.DataFrame) -> str:
    """Per platform and size: step time (ms) per model and execution x context, with MFU and compile seconds;
    then FLASH's step against Transformer++'s per execution x context."""
    out = ["## Step time per platform and execution", "Median ms per training step (MFU; compile seconds where "
           "recorded) for each model at its default options. " + TPU_NOTE + "\n"]
    if tab.empty:
        return "\n".join(out + ["No step times.\n"])
    for (platform, size, obj, tps), g in tab.groupby(["platform", "size", "objective", "tokens_per_step"], sort=False):
        cell = g.assign(label=[f"{model_label(m)}, {e}" for m, e in zip(g["model"], g["execution"])],
                        cell=[_step_cell(ms, mfu, c) for ms, mfu, c in zip(g["step_ms"], g["mfu"], g["compile_s"])])
        piv = cell.pivot_table(index="label", columns="context", values="cell", aggfunc="first", sort=False)
        piv.columns = [context_label(c) for c in piv.columns]
        out.append(f"### {platform}, size {size}, {objective_label(obj)}, {int(tps):,} tokens per step\n")
        out.append(markdown_table(piv.rename_axis("model, execution"), index=True))
        r = ranks[(ranks["platform"] == platform) & (ranks["size"] == size) & (ranks["objective"] == obj)
                  & (ranks["tokens_per_step"] == tps)]
        if len(r):
            rp = r.assign(cell=[f"{_fmt(x)}x" + (" FLASH faster" if f else "") for x, f in
                                zip(r["step_time_ratio"], r["model_faster"])])
            rp = rp.pivot_table(index="execution", columns="context", values="cell", aggfunc="first", sort=False)
            rp.columns = [context_label(c) for c in rp.columns]
            out.append("Transformer++'s step time / FLASH's:\n")
            out.append(markdown_table(rp, index=True))
    return "\n".join(out)


def plot_backends(tab: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Step time vs context, one panel per (platform, size, objective, tokens per step); a line per model
    (its colour) and execution (its line style)."""
    if tab.empty:
        return []
    import matplotlib
    panels = [(key, g) for key, g in tab.groupby(["platform", "size", "objective", "tokens_per_step"], sort=False)]
    styles = dict(zip(EXECUTIONS, ("-", "--", ":")))
    V = variants_of(tab.assign(variant=tab["model"]))
    with matplotlib.rc_context(_RC):
        ncols = min(3, len(panels))
        nrows = -(-len(panels) // ncols)
        fig = _new_figure(nrows, ncols)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for ax, (key, g) in zip(axes.flat, panels):  # (a panel of one row is a frame too)
            for (m, e), line in g.groupby(["model", "execution"], sort=False):
                line = line.sort_values("context")
                ax.plot(line["context"], line["step_ms"], lw=1.5, ms=4,
                        **{**_style(V[m], True), "ls": styles.get(e, "-.")})
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            _context_axis(ax, g["context"])
            ax.set_title(f"{key[0]}, {key[1]}, {objective_label(key[2])}, {int(key[3]):,} tok", fontsize=8)
            ax.set_xlabel("context length")
            ax.set_ylabel("ms per step")
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        from matplotlib.lines import Line2D
        handles = _model_handles(list(dict.fromkeys(tab["model"])), V, solid=True)
        handles += [Line2D([], [], color="0.3", ls=styles[e], label=e) for e in EXECUTIONS if e in set(tab["execution"])]
        _legend(fig, handles)
        fig.suptitle("Training step time per platform and execution")
        return _save(fig, out_dir, "backends")


def _say_no_step_times(ax, fontsize: float, **ticks) -> None:
    """A panel whose platform timed none of its models: a note in place of lines, and its ticks as `ticks`."""
    ax.text(0.5, 0.5, "no step times\non this platform", transform=ax.transAxes, ha="center", va="center",
            color="0.45", fontsize=fontsize)
    ax.tick_params(**ticks)


SPEEDUP_TICKS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0, 128.0)


def plot_platform_speedup(tab: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Speedup at equal quality vs context: rows objectives, columns platforms, one line per model with
    its range over seed pairs. The speedup axis is logarithmic (a ratio: 0.5x and 2x lie as far from 1x),
    shared within an objective; a platform with no step times for an objective says so."""
    if tab.empty:
        return []
    import matplotlib
    V = variants_of(tab)
    objs, platforms = list(dict.fromkeys(tab["objective"])), list(dict.fromkeys(tab["platform"]))
    with matplotlib.rc_context(_RC):
        fig = _new_figure(len(objs), len(platforms))
        axes = fig.subplots(len(objs), len(platforms), squeeze=False, sharey="row")
        for i, obj in enumerate(objs):
            values = tab.loc[tab["objective"] == obj, ["speedup_min", "speedup_max"]].to_numpy(float)
            values = values[np.isfinite(values) & (values > 0)]
            lo, hi = (min(0.8, values.min() / 1.15), max(1.25, values.max() * 1.15)) if values.size else (0.5, 2.0)
            axes[i, 0].set_yscale("log", base=2)
            axes[i, 0].set_ylim(lo, hi)
            ticks = [v for v in SPEEDUP_TICKS if lo <= v <= hi]
            if len(ticks) > 8:  # a wide range: powers of two only
                ticks = [v for v in ticks if math.log2(v).is_integer()]
            axes[i, 0].yaxis.set_major_locator(FixedLocator(ticks))
            axes[i, 0].yaxis.set_minor_locator(NullLocator())
            for j, platform in enumerate(platforms):
                ax = axes[i, j]
                d = tab[(tab["objective"] == obj) & (tab["platform"] == platform)]
                ax.set_title(f"{objective_label(obj)}, {platform}")
                if j == 0:
                    ax.set_ylabel("speedup at equal quality (x)")
                if d.empty:
                    _say_no_step_times(ax, 9, bottom=False, labelbottom=False)
                    continue
                for v, g in d.groupby("variant", sort=False):
                    g = g.sort_values("context")
                    x, y = g["context"].to_numpy(float), g["speedup_mean"].to_numpy(float)
                    err = np.vstack([y - g["speedup_min"].to_numpy(float), g["speedup_max"].to_numpy(float) - y])
                    ax.errorbar(x, y, yerr=np.nan_to_num(err), capsize=2, lw=1.6, ms=5, **_style(V[v], solid=True))
                ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
                ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}x"))
                ax.yaxis.set_minor_formatter(NullFormatter())
                _context_axis(ax, tab["context"])
                ax.set_xlabel("context length")
        _legend(fig, _model_handles(list(dict.fromkeys(tab["variant"])), V, solid=True))
        fig.suptitle("Speedup over the baseline at its final quality, per platform (range over seed pairs)")
        return _save(fig, out_dir, "platform_speedup")


def plot_quality_curves(runs: pd.DataFrame, curves: pd.DataFrame, times: pd.DataFrame | None,
                        out_dir: Path) -> list[Path]:
    """Held-out bits per byte against training steps (`times` None: `quality_vs_steps`, the
    hardware-independent half; a row per objective, a column per context) or against training cost in
    hours, steps x each platform's step time (`quality_vs_cost`: a row per platform, a column per
    (objective, context); the paper's quality-vs-cost figures). One line per model and configuration: with
    several seeds their mean per evaluation step over a band from the lowest to the highest seed. Each
    column's quality axis zooms on its end of training (its best value to four times the spread of the
    final values above it)."""
    from .analysis import _options_column, train_runs
    tr = train_runs(runs)
    if tr.empty or curves.empty or (times is not None and times.empty):
        return []
    import matplotlib
    tr = tr.assign(options=_options_column(tr))
    V = variants_of(tr)
    panels = sorted({(o, int(c)) for o, c in zip(tr["objective"], tr["context"])}, key=lambda k: (k[0], k[1]))
    platforms = sorted(times["platform"].unique()) if times is not None else [None]
    index = ({(r["platform"], r["objective"], r["context"], r["size"], r["model"], r["options"]): r["ms_per_token"]
              for r in times.to_dict("records")} if times is not None else {})
    by_run = {rid: g.sort_values("step").assign(run_id=rid) for rid, g in curves_by_run(curves).items()}
    solid = _one_line_style(list(dict.fromkeys(tr["variant"])), V)  # variants of one model told apart by style
    if times is None:  # a row per objective: (row, column) of each panel
        place, shape = _objective_grid(panels)
    else:  # a row per platform, a column per panel
        place = {p: (0, j) for j, p in enumerate(panels)}
        shape = (len(platforms), len(panels))
    with matplotlib.rc_context(_RC):
        fig = _new_figure(*shape, panel_w=3.4, panel_h=2.8)
        axes = fig.subplots(*shape, squeeze=False)
        used, drawn, banded = set(), [], False
        for i, platform in enumerate(platforms):
            for (obj, ctx), (row, col) in place.items():
                row = row if platform is None else i
                ax = axes[row, col]
                used.add((row, col))
                where = f", {platform}" if platform else ""
                ax.set_title(f"{objective_label(obj)} {context_label(ctx)}{where}", fontsize=8)
                if col == 0:
                    ax.set_ylabel("held-out bits per byte")
                lines = []
                for variant, g in tr[(tr["objective"] == obj) & (tr["context"] == ctx)].groupby("variant", sort=False):
                    r = g.iloc[0]
                    mpt = 1.0 if platform is None else index.get((platform, obj, r["context"], r["size"], r["model"],
                                                                  r["options"]))
                    c = [by_run[rid] for rid in g["run_id"] if rid in by_run]
                    if mpt is None or not c:
                        continue
                    m = seed_mean(pd.concat(c, ignore_index=True), "eval_bpb")
                    if platform is not None:  # hours of training on that platform
                        m["step"] = m["step"] * mpt * float(r["tokens_per_step"]) / 3.6e6
                    banded |= draw_seed_mean(ax, m, "step", {**_style(V[variant], solid), "marker": None}, lw=1.2)
                    drawn.append(variant)
                    lines.append(m)
                if not lines:  # this platform timed none of this setting's models: say so
                    _say_no_step_times(ax, 8, left=False, bottom=False, labelleft=col == 0, labelbottom=False)
                    continue
                top = zoom_on_the_end(ax, min(float(m["lo"].min()) for m in lines),
                                      max(float(m["hi"].max()) for m in lines),
                                      max(float(m["mean"].iloc[-1]) for m in lines))
                ax.set_xscale("log")
                shown = [float(m.loc[m["mean"] <= top, "step"].min()) for m in lines if (m["mean"] <= top).any()]
                if shown and min(shown) > 0:  # from where the first line enters the zoomed range
                    ax.set_xlim(left=min(shown) / 1.25)
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_xlabel("training steps" if platform is None else "training cost (hours)")
        for row, col in np.ndindex(*shape):
            if (row, col) not in used:
                axes[row, col].set_axis_off()
        handles = _model_handles(list(dict.fromkeys(drawn)), V, solid=solid)
        if banded:
            handles.append(seed_band_handle())
        _legend(fig, handles)
        seeds = " (mean and range over seeds)" if banded else ""
        if platform is None:
            fig.suptitle(f"Quality vs training steps{seeds}: the same on any hardware")
            return _save(fig, out_dir, "quality_vs_steps")
        fig.suptitle(f"Quality vs training cost (steps x the platform's step time){seeds}")
        return _save(fig, out_dir, "quality_vs_cost")


def write_platform_report(curves_folder: Path | None, time_roots: list[Path], out: Path,
                          baseline: str = "transformer_plus_plus") -> dict[str, list[Path]]:
    """The platform tables and figures (the module docstring's list); without `curves_folder`, the step-time
    and backends tables alone."""
    folders = find_folders(time_roots + ([curves_folder] if curves_folder else []))
    every = collect_runs(folders)
    times = platform_step_times(every)
    backends = backend_table(every)
    ranks = ranking_table(backends)
    docs = [("step_times", times, _table_md("Step times per platform (the fastest configuration)", times)),
            ("backends", backends, backends_markdown(backends, ranks))]
    figures = plot_backends(backends, out / "figures")
    if curves_folder is not None:
        runs, curves = load_results(curves_folder)
        tab = platform_speedups(runs, curves, times, baseline)
        q = quality_per_step(runs, curves, baseline)
        gap = gap_along_training(runs, curves, baseline)
        claims = claims_table(runs, curves, tab, times, baseline, checks=every)
        docs += [("platform_speedup", tab, speedup_markdown(tab, times)),
                 ("claims", claims, "## The paper's claims against these curves\n\n" + claims_markdown(claims)),
                 ("quality_per_step", q, _table_md("Steps to the baseline's final quality, per seed pair", q)),
                 ("gap", gap, gap_markdown(gap))]
        figures += plot_gap(gap, out / "figures")
        figures += plot_platform_speedup(tab, out / "figures")
        figures += plot_quality_curves(runs, curves, None, out / "figures")
        figures += plot_quality_curves(runs, curves, times, out / "figures")
    written: dict[str, list[Path]] = {"tables": [], "figures": figures}
    tables = out / "tables"
    for name, df, md in docs:
        for path, data in ((tables / f"{name}.csv", df.to_csv(index=False)), (tables / f"{name}.md", md)):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_if_changed(path, data)
            written["tables"].append(path)
    write_if_changed(out / "sources.md", "# Sources\n\nLearning curves: {}\n\nStep times from:\n\n{}\n".format(
        f"`{curves_folder}`" if curves_folder else "none", "\n".join(f"- `{f}`" for f in folders)))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suite.platforms", description=__doc__.splitlines()[0])
    p.add_argument("curves", type=Path, nargs="?", help="results folder with the learning curves (e.g. the "
                   "paper-figures preset); without it, the step-time and backends tables alone")
    p.add_argument("--times", type=Path, nargs="+", default=[Path("results")],
                   help="folders searched (recursively) for runs whose step times count (default: results/)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write (default {DEFAULT_OUT})")
    p.add_argument("--baseline", default="transformer_plus_plus")
    args = p.parse_args(argv)
    for folder in ([args.curves] if args.curves else []) + args.times:
        if not folder.is_dir():
            print(f"python -m suite.platforms: no such folder: {folder}", file=sys.stderr)
            return 2
    if args.curves and not (args.curves / "runs.csv").is_file():
        print(f"python -m suite.platforms: {args.curves} has no runs.csv (run python -m suite.report on it first)",
              file=sys.stderr)
        return 2
    t0 = time.time()
    written = write_platform_report(args.curves, args.times, args.out, args.baseline)
    print((args.out / "tables" / ("platform_speedup.md" if args.curves else "backends.md")).read_text())
    for kind, paths in written.items():
        for path in paths:
            print(f"{kind}: {path}")
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
