"""The paper's claims against one set of learning curves and every platform's step times (issue 11).

One row per (claim, platform): the paper's number, ours (mean, with the range over seed pairs where there
are several), a verdict and its reason, by the rules below, so that a claim's verdict changes only when the
committed runs do. `python -m suite.platforms CURVES` writes it as tables/claims.{csv,md}; the README's
claims table is that file's table (tests/test_claims.py checks they agree).

Rules, per setting (objective, context):
  speedup claims    faster where the lowest speedup over seed pairs is above 1, slower where the highest is
                    below 1 or no pair reached the baseline's final quality within the run, level where the
                    range holds 1 or only some pairs reached it. "reproduced": faster at
                    every context measured; "partly": at some; "not reproduced": at none and slower at
                    some; "not established": level everywhere. One row per platform (and per variant of
                    the model where a platform timed several, e.g. two backends). The reason says
                    where ours lies against the paper's range, and the steps ratio (quality per step) and
                    step-time ratio (the platform) it is made of.
  quality claims    a final difference in bits per byte counts only beyond the end-of-run noise
                    (`end_noise_bpb`: the spread of the last evaluations of the runs around their trend);
                    "at least level" claims are "reproduced" where no setting is worse beyond it,
                    "not reproduced" where every setting is.
  linear cost       FLASH's time per token at its longest context measured over its shortest, per platform
                    and model size, contexts from LINEAR_MIN_CONTEXT (512) on: "reproduced" when it grows by
                    less than LINEAR_TOLERANCE over at least a 4x longer context.
  learning rates    where a learning-rate check (training runs of one model at several rates, same setting,
                    any length: `lr_sweep_table` over every results folder) finds a rate beating the one the
                    curves used by more than the end-of-run noise, the setting is handicapped for that model
                    (`rate_handicaps`). A handicapped baseline inflates the claim there: that setting is
                    not counted (a speedup claim faster everywhere else is then "partly"), and the reason
                    says why; a handicapped FLASH makes the speedup there a lower bound, said so.
A claim with no runs behind it is "open". Every verdict from one seed (pair) says "one seed: provisional".
Paper numbers: Hua et al., "Transformer Quality in Linear Time", ICML 2022 (perplexities at 8K: a
secondary source), as collected in the project's design notes.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .analysis import context_label, curves_by_run, gap_along_training, lr_sweep_table, model_label, train_runs

CLAIM_COLUMNS = ["claim", "paper", "platform", "ours", "verdict", "reason", "n_pairs"]
ANY_PLATFORM = "any (quality per step)"
# the paper's speedups of FLASH over Transformer++ at equal quality, (low, high) over 512..8K
PAPER_SPEEDUP = {"clm": (1.2, 4.9), "mlm": (1.0, 4.8)}
PAPER_SPEEDUP_TEXT = {"clm": "1.2x-4.9x over 512-8K (Wiki-40B); up to 12.1x (PG-19)", "mlm": "1.0x-4.8x (C4)"}
END_EVALS = 6            # the evaluations whose spread around their linear trend measures end-of-run noise
LINEAR_TOLERANCE = 1.25  # "linear cost": time per token grows by less than this over >= 4x the context
LINEAR_MIN_RANGE = 4
# and only from the paper's shortest context on: below FLASH's 256-token chunk its attention is one quadratic chunk,
# and at tiny sizes fixed costs dominate (a tiny-size 64 -> 256 range once read "not reproduced")
LINEAR_MIN_CONTEXT = 512


def end_noise_bpb(curves: pd.DataFrame) -> float:
    """The noise of a final held-out bits per byte: per run, the spread (max - min) of its last END_EVALS
    evaluations around their least-squares line; the median over runs (NaN without such runs)."""
    spreads = []
    for c in curves_by_run(curves).values():
        c = c.dropna(subset=["eval_bpb"]).sort_values("step").tail(END_EVALS)
        if len(c) < END_EVALS:
            continue
        x, y = c["step"].to_numpy(float), c["eval_bpb"].to_numpy(float)
        resid = y - np.polyval(np.polyfit(x, y, 1), x)
        spreads.append(float(resid.max() - resid.min()))
    return float(np.median(spreads)) if spreads else math.nan


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _span(values: pd.Series) -> str:
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}"


def _seeds_note(n_pairs: int) -> str:
    return "; one seed: provisional" if n_pairs <= 1 else f"; {n_pairs} seed pairs"


def rate_handicaps(runs: pd.DataFrame, checks: pd.DataFrame | None, noise: float) -> dict[tuple[str, str, int], str]:
    """(model, objective, context) -> what a learning-rate check says, where the rate of `runs` (the curves'
    training runs) is beaten at that setting by another rate of `checks` (every folder's runs; the same
    variant, objective, context and size, one setting of data, tokens and steps) by more than `noise` bits
    per byte at the end."""
    if checks is None or checks.empty or runs.empty:
        return {}
    sweep = lr_sweep_table(checks)
    tr = train_runs(runs)
    if sweep.empty or tr.empty:
        return {}
    found = {}
    for (variant, model, objective, context, size), g in tr.groupby(["variant", "model", "objective", "context",
                                                                      "size"]):
        used = float(pd.to_numeric(g["lr"], errors="coerce").median())
        same = sweep[(sweep["variant"] == variant) & (sweep["objective"] == objective)
                     & (pd.to_numeric(sweep["context"]) == float(context)) & (sweep["size"] == size)]
        for setting, h in same.groupby("setting") if "setting" in same.columns else [("", same)]:
            mine = h[np.isclose(h["lr"].astype(float), used)]
            if mine.empty:
                continue
            best = h.loc[h["final_bpb_mean"].astype(float).idxmin()]
            gain = float(mine["final_bpb_mean"].iloc[0]) - float(best["final_bpb_mean"])
            if np.isclose(float(best["lr"]), used) or not gain > noise:
                continue
            where = ("causal " if objective == "clm" else "masked ") + context_label(context)
            found[(model, objective, int(context))] = (
                f"{model_label(model)}'s rate {used:g} is not its best at {where}: {float(best['lr']):g} ends "
                f"{gain:.3f} bpb lower in a learning-rate check")
    return found


def _speedup_rows(tab: pd.DataFrame, objective: str, model: str = "flash", handicaps: dict | None = None,
                  baseline: str = "transformer_plus_plus") -> list[dict]:
    claim = ("FLASH trains faster than Transformer++ at equal quality, "
             + ("causal LM" if objective == "clm" else "masked LM"))
    sel = tab[(tab["model"] == model) & (tab["objective"] == objective)]
    if sel.empty:
        return [{"claim": claim, "paper": PAPER_SPEEDUP_TEXT[objective], "platform": "-", "ours": "no runs yet",
                 "verdict": "open", "reason": "no learning curves of both models", "n_pairs": 0}]
    low, high = PAPER_SPEEDUP[objective]
    handicaps = handicaps or {}
    rows = []
    n_variants = sel.groupby("platform")["variant"].nunique()
    for (platform, variant), g in sel.groupby(["platform", "variant"], sort=True):
        g = g.sort_values("context")
        where = platform if n_variants[platform] == 1 else f"{platform}, {variant}"  # e.g. two backends
        cells, faster, slower, level, above, below, short, notes = [], [], [], [], [], [], [], []
        for r in g.to_dict("records"):
            ctx = context_label(r["context"])
            key = (objective, int(r["context"]))
            if (baseline, *key) in handicaps:  # the baseline held back by its rate: the claim inflated here
                cells.append(f"{r['speedup_mean']:.2f}x at {ctx} (not counted)")
                notes.append(f"not counted at {ctx}: {handicaps[(baseline, *key)]}")
                continue
            if (model, *key) in handicaps:
                notes.append(f"a lower bound at {ctx}: {handicaps[(model, *key)]}")
            if not r["n_reached"]:  # no pair reached the baseline's final quality within the run
                cells.append(f"never at the baseline's quality at {ctx}")
                slower.append(ctx)
                continue
            if r["n_reached"] < r["n_pairs"]:
                short.append(f"{ctx} ({r['n_pairs'] - r['n_reached']} of {r['n_pairs']} pairs)")
            rng = f" [{r['speedup_min']:.2f}, {r['speedup_max']:.2f}]" if r["n_pairs"] > 1 else ""
            cells.append(f"{r['speedup_mean']:.2f}x{rng} at {ctx}")
            if r["speedup_min"] > 1 and r["n_reached"] == r["n_pairs"]:
                faster.append(ctx)
            elif r["speedup_max"] < 1:
                slower.append(ctx)
            else:
                level.append(ctx)
            if r["speedup_min"] > high:
                above.append(ctx)
            elif r["speedup_max"] < low:
                below.append(ctx)
        verdict = ("reproduced" if len(faster) == len(g) else "partly" if faster
                   else "not reproduced" if slower else "not established")
        parts = [f"faster at {_list(faster)}" if faster else "", f"slower at {_list(slower)}" if slower else "",
                 f"range holds 1 at {_list(level)}" if level else "",
                 f"above the paper's range at {_list(above)}" if above else "",
                 f"below the paper's range at {_list(below)}" if below else "",
                 f"some seed pairs never reached the baseline's quality at {_list(short)} (counted level)" if short else "",
                 *notes]
        if g["steps_ratio_mean"].notna().any():
            parts.append(f"steps ratio {_span(g['steps_ratio_mean'].dropna())}, "
                         f"step-time ratio {_span(g['step_time_ratio'])}")
        n_pairs = int(g["n_pairs"].min())
        rows.append({"claim": claim, "paper": PAPER_SPEEDUP_TEXT[objective], "platform": where,
                     "ours": ", ".join(cells), "verdict": verdict,
                     "reason": "; ".join(p for p in parts if p) + _seeds_note(n_pairs), "n_pairs": n_pairs})
    return rows


def _final_gaps(gap: pd.DataFrame, model: str) -> pd.DataFrame:
    """The gap of `model` at the last evaluation step of each setting."""
    g = gap[gap["model"] == model]
    if g.empty:
        return g
    return g.sort_values("step").groupby(["objective", "context"], sort=True).tail(1).sort_values(
        ["objective", "context"])


def _level_row(claim: str, paper: str, final: pd.DataFrame, noise: float, what: str,
               skip: dict[tuple[str, int], str] | None = None) -> dict:
    """'at least level' claims from final gaps (the model minus its reference, bits per byte); `skip`:
    (objective, context) -> why that setting is not counted (the reference's rate handicapped)."""
    skip = skip or {}
    if final.empty:
        return {"claim": claim, "paper": paper, "platform": ANY_PLATFORM, "ours": "no runs yet", "verdict": "open",
                "reason": f"no learning curves of {what}", "n_pairs": 0}
    cells, ahead, behind, level, notes = [], [], [], [], []
    for r in final.to_dict("records"):
        ctx = ("causal " if r["objective"] == "clm" else "masked ") + context_label(r["context"])
        rng = f" [{r['gap_min']:+.3f}, {r['gap_max']:+.3f}]" if r["n_pairs"] > 1 else ""
        why = skip.get((r["objective"], int(r["context"])))
        cells.append(f"{r['gap_mean']:+.3f}{rng} {ctx}" + (" (not counted)" if why else ""))
        if why:
            notes.append(f"not counted at {ctx}: {why}")
            continue
        (ahead if r["gap_max"] < -noise else behind if r["gap_min"] > noise else level).append(ctx)
    verdict = "reproduced" if not behind else "not reproduced" if not ahead and not level else "partly"
    parts = [f"ahead at {_list(ahead)}" if ahead else "", f"level within noise at {_list(level)}" if level else "",
             f"behind at {_list(behind)}" if behind else ""]
    n_pairs = int(final["n_pairs"].min())
    return {"claim": claim, "paper": paper, "platform": ANY_PLATFORM, "ours": "final bpb difference " + ", ".join(cells),
            "verdict": verdict, "reason": "; ".join(p for p in parts if p) + f" (end-of-run noise {noise:.3f} bpb)"
            + "".join("; " + n for n in notes) + _seeds_note(n_pairs), "n_pairs": n_pairs}


def _below_row(gap: pd.DataFrame, noise: float) -> dict:
    """Performer and Combiner below FLASH in quality: their final gaps to FLASH (`gap`: every model's gap
    to FLASH along training), each beyond the noise."""
    claim, paper = "Performer and Combiner below FLASH in quality", "yes"
    finals = [(m, _final_gaps(gap, m)) for m in ("performer", "combiner")]
    finals = [(m, f) for m, f in finals if not f.empty]
    if not finals:
        return {"claim": claim, "paper": paper, "platform": ANY_PLATFORM, "ours": "no runs yet", "verdict": "open",
                "reason": "no learning curves of Performer or Combiner in this folder", "n_pairs": 0}
    cells, worse, total = [], 0, 0
    for m, f in finals:
        for r in f.to_dict("records"):
            total += 1
            worse += r["gap_min"] > noise
            cells.append(f"{m} {r['gap_mean']:+.3f} ({r['objective']} {context_label(r['context'])})")
    verdict = "reproduced" if worse == total else "partly" if worse else "not reproduced"
    n_pairs = int(min(f["n_pairs"].min() for _, f in finals))
    return {"claim": claim, "paper": paper, "platform": ANY_PLATFORM, "ours": "final bpb minus FLASH's: " + ", ".join(cells),
            "verdict": verdict, "reason": f"below beyond the noise ({noise:.3f} bpb) in {worse} of {total} settings"
            + _seeds_note(n_pairs), "n_pairs": n_pairs}


def _ms(row) -> str:
    """Milliseconds per 1,000 tokens, three significant digits (no exponent)."""
    v = 1e3 * float(row["ms_per_token"])
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _linear_rows(times: pd.DataFrame, model: str = "flash") -> list[dict]:
    """FLASH's time per token at its longest context over its shortest, per platform (the size with the
    widest range of contexts there), causal LM, default options; Transformer++'s beside it for contrast."""
    claim, paper = "FLASH's cost per token does not grow with the context (linear time)", "yes"
    rows = []
    times = times[times["options"].isin(["{}", ""])] if not times.empty else times  # the models as registered
    sel = times[(times["model"] == model) & (times["objective"] == "clm")
                & (times["context"] >= LINEAR_MIN_CONTEXT)] if not times.empty else times
    for platform, g in (sel.groupby("platform", sort=True) if not sel.empty else []):
        size = max(g["size"].unique(), key=lambda s: g.loc[g["size"] == s, "context"].max() / g.loc[g["size"] == s, "context"].min())
        g = g[g["size"] == size].sort_values("context")
        lo, hi = g.iloc[0], g.iloc[-1]
        span = float(hi["context"]) / float(lo["context"])
        if span < LINEAR_MIN_RANGE:
            continue
        growth = float(hi["ms_per_token"]) / float(lo["ms_per_token"])
        base = times[(times["platform"] == platform) & (times["model"] == "transformer_plus_plus")
                     & (times["objective"] == "clm") & (times["size"] == size)].set_index("context")["ms_per_token"]
        contrast = ""
        if lo["context"] in base.index and hi["context"] in base.index:
            contrast = f"; Transformer++ x{float(base[hi['context']] / base[lo['context']]):.2f} over the same range"
        rows.append({"claim": claim, "paper": paper, "platform": platform,
                     "ours": f"x{growth:.2f} per token from {context_label(lo['context'])} to "
                             f"{context_label(hi['context'])} (size {size}, {_ms(lo)} -> {_ms(hi)} ms per 1,000 tokens)",
                     "verdict": "reproduced" if growth < LINEAR_TOLERANCE else "not reproduced",
                     "reason": f"{span:.0f}x the context, {growth:.2f}x the time per token{contrast}", "n_pairs": 0})
    return rows or [{"claim": claim, "paper": paper, "platform": "-",
                     "ours": f"no step times over a {LINEAR_MIN_RANGE}x range of contexts from "
                             f"{context_label(LINEAR_MIN_CONTEXT)} on",
                     "verdict": "open", "reason": "no speed runs", "n_pairs": 0}]


def claims_table(runs: pd.DataFrame, curves: pd.DataFrame, speedups: pd.DataFrame, times: pd.DataFrame,
                 baseline: str = "transformer_plus_plus", checks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every claim's row(s): speedup claims per platform (`platform_speedups`), quality claims once (any
    platform), linear cost per platform (`platform_step_times`). `checks`: runs searched for learning-rate
    checks (`rate_handicaps`; every results folder's runs)."""
    tr = train_runs(runs)
    noise = end_noise_bpb(curves[curves["run_id"].isin(tr["run_id"])]) if not tr.empty else math.nan
    noise = 0.0 if not np.isfinite(noise) else noise
    gap = gap_along_training(runs, curves, baseline)
    to_flash = gap_along_training(runs, curves, "flash")
    handicaps = rate_handicaps(runs, checks, noise)

    def skip(model: str) -> dict[tuple[str, int], str]:  # the settings where `model` is held back by its rate
        return {(o, c): why for (m, o, c), why in handicaps.items() if m == model}
    rows = (_speedup_rows(speedups, "clm", handicaps=handicaps, baseline=baseline)
            + _speedup_rows(speedups, "mlm", handicaps=handicaps, baseline=baseline)
            + [_level_row("FLASH's quality at least level with Transformer++'s at equal steps",
                          "8K Wiki-40B perplexity 15.109 (FLASH) vs 15.254 (Transformer++)",
                          _final_gaps(gap, "flash"), noise, "FLASH and Transformer++", skip(baseline)),
               _level_row("FLASH-Quad at least as good as FLASH", "8K Wiki-40B perplexity 14.998 vs 15.109",
                          _final_gaps(to_flash, "flash_quad"), noise, "FLASH-Quad and FLASH", skip("flash")),
               _below_row(to_flash, noise)]
            + _linear_rows(times))
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def claims_markdown(tab: pd.DataFrame) -> str:
    """The claims table (the README's), one row per claim and platform."""
    lines = ["| claim (Hua et al., 2022) | paper | platform | ours | verdict | reason |", "|---|---|---|---|---|---|"]
    for r in tab.to_dict("records"):
        lines.append("| " + " | ".join(str(r[c]) for c in CLAIM_COLUMNS[:-1]) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["CLAIM_COLUMNS", "PAPER_SPEEDUP", "end_noise_bpb", "rate_handicaps", "claims_table", "claims_markdown"]
