"""Tables from a results folder: speedup at equal quality, quality at equal steps, step latency,
final quality.

Pure pandas / numpy; no plotting. Inputs are the two tidy tables of `suite.schema`: ``runs``
(SUMMARY_COLUMNS, one row per run) and ``curves`` (CURVE_COLUMNS, one row per evaluation point).

Speedup at equal quality (the paper's definition): the training time a model needs to reach the
quality of the baseline, divided into the baseline's training time. Per (objective, context, size,
seed) the baseline's quality target is its final held-out loss (``final_eval_loss``) and its time is
its ``train_time_s``; every model's time to that target is read off its learning curve
(``curves.time_s`` against ``curves.eval_loss``, running minimum, linear interpolation between
evaluations). Curve times and ``train_time_s`` must be on the same clock (training time, evaluation
excluded), which is how the runner records them. A model that never reaches the target within its own
budget gets NaN and ``reached = False``: the table never extrapolates.

Rows are per ``variant`` (schema: the model name plus what distinguishes the configuration, e.g.
``flash+compile``, ``transformer_plus_plus[materialized]``, ``peer:hf_llama``; the model name where
a runs table has no variant); ``model`` stays alongside as the base architecture. A baseline is named
by variant or by model: ``"transformer_plus_plus"`` resolves to that exact variant if present, else to
``transformer_plus_plus+compile``, else to the shortest variant of that model (`resolve_variant`).
Runs are also grouped by ``size`` so that a sweep over model sizes never mixes sizes; with one size
that column is a constant.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

import implementations as impl

BASELINES = ("transformer_plus_plus", "transformer")

OBJECTIVE_LABELS = {"clm": "Causal LM", "mlm": "Masked LM"}

# Runs are compared only within one (objective, context, size, setting); `setting` is the protocol a run
# was measured under (data, batch, schedule, precision: `run_setting`), so that runs trained on other
# data or for another budget never meet in one row. Tables show a setting column only where a folder
# holds more than one.
_GROUP = ["objective", "context", "size", "setting"]


# ----------------------------------------------------------------------------------------- helpers
def model_label(name: str) -> str:
    """The registry's label of a model or peer; the name itself for one the registry does not know."""
    spec = impl.describe(name)
    return spec.display_label if spec is not None else str(name)


@dataclass(frozen=True)
class Variant:
    """How one configuration of a model is shown in tables and figures, from its runs' data (its model
    and configuration columns) and the model's registry entry; never parsed from the variant's name.
    `name` is the run's variant (RunConfig.variant: the model's name, then what was configured)."""

    name: str
    model: str
    compiled: bool = False
    configured: bool = False  # model options, an SDPA backend or a torch.compile mode were set

    @property
    def decoration(self) -> str:
        """What the name adds to the model's, e.g. '[materialized]+compile'."""
        return self.name[len(self.model):] if self.name.startswith(self.model) else ""

    @property
    def spec(self) -> impl.ModelSpec:
        """The registry's spec of the model; a bare one of its name when the registry does not know it
        (fallback colour and marker, stable per name)."""
        return impl.describe(self.model) or impl.ModelSpec(name=self.model, description="", build=None, flops=None)

    @property
    def label(self) -> str:
        """'FLASH +compile', 'Transformer++ [materialized]', 'FLASH' for a plain variant."""
        return self.spec.display_label + (f" {self.decoration}" if self.decoration else "")

    @property
    def sort_key(self) -> tuple[int, str, str]:
        """The registry's order of the model (models it does not know last, by name), then the decoration."""
        known = impl.describe(self.model) is not None
        return (self.spec.order if known else 10**6), self.model, self.decoration


class Variants(dict):
    """variant name -> Variant; a name without runs (e.g. a model's name) stands for that model, plain."""

    def __missing__(self, name: str) -> Variant:
        return Variant(str(name), str(name))


def _flag_set(value, unset: tuple[str, ...]) -> bool:
    return not (value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in unset)


def variants_of(*frames: pd.DataFrame) -> Variants:
    """The Variant of every variant in runs tables or result tables (rows with variant and model)."""
    out = Variants()
    for df in frames:
        if df is None or df.empty or "variant" not in df.columns:
            continue
        df = prepare_runs(df)
        for row in df.drop_duplicates("variant").to_dict("records"):
            mode = row.get("compile_mode")
            compiled = _flag_set(mode, ("eager",)) if _flag_set(mode, ()) else str(row.get("compile")) in ("True", "1")
            configured = (_flag_set(row.get("model_options"), ("{}",)) or _flag_set(row.get("sdpa_backend"), ("default",))
                          or _flag_set(mode, ("eager", "default")) or _flag_set(row.get("loss"), ("torch",)))
            out.setdefault(row["variant"], Variant(row["variant"], row["model"], compiled, configured))
    return out


def objective_label(name: str) -> str:
    return OBJECTIVE_LABELS.get(str(name), str(name).upper())


def context_label(n) -> str:
    """512 -> '512', 1024 -> '1K', 8192 -> '8K', 1536 -> '1536'."""
    try:
        n = int(n)
    except (TypeError, ValueError):
        return str(n)
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def _sort(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sort by keys (stable), with models and baselines in the registry's order rather than alphabetically."""
    if df.empty:
        return df.reset_index(drop=True)
    tmp, by = df.copy(), []
    for k in keys:
        if k not in tmp.columns:
            continue
        if k == "variant" and "model" in tmp.columns:  # the variant of each row's model
            keys_ = [Variant(str(v), str(m)).sort_key for v, m in zip(tmp["variant"], tmp["model"])]
            tmp["_rank_variant"] = ["%07d|%s|%s" % key for key in keys_]
            by.append("_rank_variant")
        elif k in ("model", "variant"):
            tmp[f"_rank_{k}"] = tmp[k].map(lambda m: "%07d|%s|%s" % Variant(str(m), str(m)).sort_key)
            by.append(f"_rank_{k}")
        else:
            by.append(k)
    out = tmp.sort_values(by, kind="stable").drop(columns=[c for c in by if c.startswith("_rank_")])
    return out.reset_index(drop=True)


def run_setting(row: dict) -> str:
    """The protocol a run was measured under, as one comparable text: for a training run its corpus,
    tokenizer and data hash, tokens per step, budget (steps or seconds) and precision; for a speed run
    its tokens per step, vocabulary and precision. The learning rate is left out: it is per model."""
    def get(key):
        v = row.get(key)
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)

    cfg = {}
    if get("config_json"):
        try:
            cfg = json.loads(row["config_json"])
        except ValueError:
            cfg = {}
    tps = get("tokens_per_step")
    tps = str(int(float(tps))) if tps else ""
    if get("kind") == "speed":
        return f"speed: {tps} tokens/step, vocabulary {get('vocab_size')}, {get('precision')}"
    budget = cfg.get("budget_s", "?")
    length = f"{cfg.get('max_steps')} steps" if budget is None else f"{budget} s" if cfg else "?"
    return (f"{get('corpus')}/{get('tokenizer')} ({get('data_hash')}), {tps} tokens/step, {length}, "
            f"{get('precision')}")


def prepare_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy with the grouping columns present and comparable (size '' when unknown), and each run's
    `setting` (`run_setting`)."""
    runs = runs.copy()
    for col in ("kind", "status", "model", "variant", "objective", "size", "run_id", "device_name"):
        if col not in runs.columns:
            runs[col] = np.nan
    runs["model"] = runs["model"].astype(object).where(runs["model"].notna(), "").astype(str)
    variant = runs["variant"].astype(object)
    has = variant.notna() & (variant.astype(str).str.strip() != "")
    runs["variant"] = variant.where(has, runs["model"]).astype(str)
    runs["size"] = runs["size"].astype(object).where(runs["size"].notna(), "").astype(str)
    runs["objective"] = runs["objective"].astype(object).where(runs["objective"].notna(), "").astype(str)
    for col in ("context", "seed"):
        if col not in runs.columns:
            runs[col] = 0
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    runs["setting"] = [run_setting(r) for r in runs.to_dict("records")] if len(runs) else pd.Series(dtype=str)
    return runs


def _frame(rows: list[dict], columns: list[str], *, keep_setting: bool = False) -> pd.DataFrame:
    """A result table with these columns, plus `setting` where its rows come from more than one (or
    always, for tables that other tables are computed from)."""
    df = pd.DataFrame(rows, columns=columns + ["setting"])
    return df if keep_setting or df["setting"].nunique() > 1 else df.drop(columns="setting")


def _keys(df: pd.DataFrame, keys: list[str]) -> list[str]:
    """The grouping keys a table has (`setting` is left out of tables with a single one)."""
    return [k for k in keys if k in df.columns]


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[col], errors="coerce").astype(float)


def _latest(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per key: the latest (by timestamp, else last in the file) when a run was repeated."""
    if df.empty:
        return df
    if "timestamp" in df.columns:
        df = df.assign(_ts=pd.to_datetime(df["timestamp"], errors="coerce", utc=True))
        df = df.sort_values("_ts", kind="stable", na_position="first").drop(columns="_ts")
    return df.drop_duplicates(subset=keys, keep="last")


def newest_code(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the newest commit among `runs` (the commit of the latest run by timestamp; every run where
    none is recorded): what the code as it stands costs, so that a faster or slower commit's measurements
    replace the older ones in a median instead of mixing with them."""
    if runs.empty or "git_commit" not in runs.columns:
        return runs
    commits = runs["git_commit"].astype(object).where(runs["git_commit"].notna(), "").astype(str).str[:7]
    if (commits == "").all():
        return runs
    ts = pd.to_datetime(runs["timestamp"], errors="coerce", utc=True) if "timestamp" in runs.columns else None
    newest = commits.iloc[-1] if ts is None or ts.isna().all() else commits.loc[ts.idxmax()]
    return runs[commits == newest]


def train_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished training runs (kind == "train", status == "ok"), one per (objective, context, size, seed,
    variant): the latest when a configuration was repeated. Where a variant ran at several learning
    rates (a learning-rate sweep, `lr_sweep_table`), the runs of its best one (`best_lr`)."""
    runs = prepare_runs(runs)
    ok = runs[(runs["kind"] == "train") & (runs["status"] == "ok")]
    if "lr" in ok.columns and len(ok):
        best = best_lr(ok)
        if len(best):
            lr = _num(ok, "lr")
            keep = pd.Series(True, index=ok.index)
            for _, b in best.iterrows():
                mine = np.ones(len(ok), dtype=bool)
                for k in _keys(best, _GROUP + ["variant"]):
                    mine &= (ok[k] == b[k]).to_numpy()
                keep &= ~pd.Series(mine, index=ok.index) | np.isclose(lr, b["lr"])
            ok = ok[keep]
    return _latest(ok, _GROUP + ["seed", "variant"])


LR_SWEEP_COLUMNS = ["objective", "context", "size", "variant", "model", "lr", "n_seeds", "final_bpb_mean",
                    "final_bpb_min", "final_bpb_max", "best"]


def lr_sweep_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Final held-out bits per byte per learning rate, for every variant that ran at more than one
    (objective, context, size, variant, lr; mean and range over seeds); `best` marks the lowest mean."""
    runs = prepare_runs(runs)
    ok = runs[(runs["kind"] == "train") & (runs["status"] == "ok")]
    if "lr" not in ok.columns or ok.empty:
        return pd.DataFrame(columns=LR_SWEEP_COLUMNS)
    ok = _latest(ok.assign(lr=_num(ok, "lr")), _GROUP + ["seed", "variant", "lr"])
    rows = []
    for key, g in ok.groupby(_GROUP + ["variant"], sort=False, dropna=False):
        if g["lr"].nunique() < 2:
            continue
        per_lr = [(lr, _num(s, "final_bpb")) for lr, s in g.groupby("lr")]
        best = min(per_lr, key=lambda t: t[1].mean())[0]
        for lr, bpb in per_lr:
            rows.append(dict(zip(_GROUP + ["variant"], key)) | {
                "model": g["model"].iloc[0], "lr": lr, "n_seeds": int(bpb.notna().sum()),
                "final_bpb_mean": bpb.mean(), "final_bpb_min": bpb.min(), "final_bpb_max": bpb.max(),
                "best": lr == best})
    return _sort(_frame(rows, LR_SWEEP_COLUMNS), _GROUP + ["variant", "lr"])


def best_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """(objective, context, size, variant, model, lr) of the best learning rate of every swept variant."""
    tab = lr_sweep_table(runs)
    return tab[tab["best"].astype(bool)][_keys(tab, _GROUP + ["variant", "model", "lr"])].reset_index(drop=True)


def resolve_variant(runs: pd.DataFrame, name: str) -> str | None:
    """The variant a name stands for: itself if some run has that variant; else, among the variants of
    the model ``name``, the plain one, then ``name+compile``, then the shortest. None if absent."""
    runs = prepare_runs(runs) if "variant" not in runs.columns else runs
    variants = set(runs["variant"].astype(str))
    if name in variants:
        return name
    cands = sorted({v for v, m in zip(runs["variant"].astype(str), runs["model"].astype(str)) if m == name},
                   key=lambda v: (len(v), v))
    if not cands:
        return None
    return name + "+compile" if name + "+compile" in cands else cands[0]


def curves_by_run(curves: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """run_id -> that run's learning-curve rows (empty without curves)."""
    if curves is None or curves.empty:
        return {}
    return {rid: g for rid, g in curves.groupby("run_id", sort=False)}


def against_baseline(runs: pd.DataFrame, curves: pd.DataFrame | None,
                     baseline: str) -> tuple[pd.DataFrame, str, dict[str, pd.DataFrame]] | None:
    """What the per-step comparisons with a baseline start from: the finished training runs, the baseline's
    resolved variant and the curves by run; None without the baseline or without curves."""
    tr = train_runs(runs)
    base_variant = resolve_variant(tr, baseline) if len(tr) else None
    by_run = curves_by_run(curves)
    return None if base_variant is None or not by_run else (tr, base_variant, by_run)


# ---------------------------------------------------------------------------------- time to quality
def time_to_quality(curve: pd.DataFrame, target_loss: float, x: str = "time_s") -> float:
    """Training time at which one run's best-so-far held-out loss first reaches ``target_loss``
    (``x="step"``: the step count instead, `steps_to_quality`).

    ``curve`` has columns ``x`` and ``eval_loss`` (rows without either are ignored). The curve
    is the running minimum of eval_loss against x; between two evaluations it is interpolated
    linearly, so the answer lies between the last evaluation above the target and the first one at or
    below it. If the first evaluation already meets the target, its x is returned. NaN if the
    target is never reached (or is NaN).
    """
    if target_loss is None or not np.isfinite(target_loss) or curve is None or len(curve) == 0:
        return math.nan
    t = pd.to_numeric(curve[x], errors="coerce").to_numpy(dtype=float)
    loss = pd.to_numeric(curve["eval_loss"], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(t) & np.isfinite(loss)
    if not keep.any():
        return math.nan
    order = np.argsort(t[keep], kind="stable")
    t, loss = t[keep][order], loss[keep][order]
    best = np.minimum.accumulate(loss)
    hit = np.flatnonzero(best <= target_loss)
    if hit.size == 0:
        return math.nan
    i = int(hit[0])
    if i == 0:
        return float(t[0])
    l0, l1 = best[i - 1], best[i]          # l0 > target >= l1, and l1 < l0 (a new minimum)
    frac = (l0 - target_loss) / (l0 - l1)
    return float(t[i - 1] + frac * (t[i] - t[i - 1]))


def steps_to_quality(curve: pd.DataFrame, target_loss: float) -> float:
    """Training steps at which one run's best-so-far held-out loss first reaches ``target_loss``
    (interpolated between evaluations; NaN if never): `time_to_quality` on the step axis."""
    return time_to_quality(curve, target_loss, x="step")


# ------------------------------------------------------------------------------ speedup at equal quality
SPEEDUP_SEED_COLUMNS = ["objective", "context", "size", "seed", "variant", "model", "baseline", "target_loss",
                        "baseline_time_s", "time_s", "speedup", "reached", "speedup_below",
                        "final_bpb", "baseline_final_bpb"]

SPEEDUP_COLUMNS = ["objective", "context", "size", "variant", "model", "baseline", "speedup_mean", "speedup_min",
                   "speedup_max", "n_seeds", "n_reached", "reached_all", "speedup_below_mean",
                   "time_s_mean", "baseline_time_s_mean",
                   "target_loss_mean", "final_bpb_mean", "baseline_final_bpb_mean"]


def speedup_per_seed(runs: pd.DataFrame, curves: pd.DataFrame,
                     baseline: str = "transformer_plus_plus") -> pd.DataFrame:
    """One row per (objective, context, size, seed, variant) where the baseline ran with that seed.

    Columns (SPEEDUP_SEED_COLUMNS): baseline (the resolved baseline variant), target_loss (its final
    eval loss, nats/token), baseline_time_s (its train_time_s), time_s (the variant's time to reach
    target_loss, NaN if never), speedup = baseline_time_s / time_s, reached (bool), final_bpb and
    baseline_final_bpb. The baseline's own row has time_s = baseline_time_s and speedup 1 by
    definition. speedup_below, for a variant that never reached the baseline's final quality: the same
    ratio at the variant's own final quality instead (the baseline's time to reach it over the variant's
    training time), a number below 1 that says how much slower it is; NaN otherwise. A run without a learning curve in ``curves`` has no row (its time is unknown).
    """
    tr = train_runs(runs)
    base_variant = resolve_variant(tr, baseline) if len(tr) else None
    if base_variant is None:
        return pd.DataFrame(columns=SPEEDUP_SEED_COLUMNS)
    by_run = curves_by_run(curves)
    rows = []
    for key, group in tr.groupby(_GROUP + ["seed"], sort=True, dropna=False):
        base = group[group["variant"] == base_variant]
        if base.empty:
            continue
        b = base.iloc[0]
        b_curve = by_run.get(b["run_id"])
        target = float(_num(base, "final_eval_loss").iloc[0])
        b_time = float(_num(base, "train_time_s").iloc[0])
        if not np.isfinite(target) and b_curve is not None:      # fall back to the curve's last point
            last = b_curve.assign(_t=_num(b_curve, "time_s")).dropna(subset=["eval_loss"]).sort_values("_t")
            target = float(last["eval_loss"].iloc[-1]) if len(last) else math.nan
        if not np.isfinite(b_time) and b_curve is not None:
            b_time = float(_num(b_curve, "time_s").max())
        if not (np.isfinite(target) and np.isfinite(b_time) and b_time > 0):
            continue
        b_bpb = float(_num(base, "final_bpb").iloc[0])
        for _, r in group.iterrows():
            if r["variant"] == base_variant:
                t = b_time
            elif r["run_id"] not in by_run:
                continue            # no learning curve recorded: unknown, not "never reached"
            else:
                t = time_to_quality(by_run[r["run_id"]], target)
            reached = bool(np.isfinite(t))
            speedup = b_time / t if reached and t > 0 else (math.inf if reached else math.nan)
            below = math.nan
            if not reached and b_curve is not None:  # equal quality at the variant's own final loss
                own, own_time = float(pd.to_numeric(r.get("final_eval_loss"), errors="coerce")), \
                    float(pd.to_numeric(r.get("train_time_s"), errors="coerce"))
                t_b = time_to_quality(b_curve, own)
                if np.isfinite(t_b) and np.isfinite(own_time) and own_time > 0:
                    below = t_b / own_time
            rows.append(dict(zip(_GROUP + ["seed"], key)) | {
                "variant": r["variant"], "model": r["model"], "baseline": base_variant, "target_loss": target,
                "baseline_time_s": b_time, "time_s": t, "speedup": speedup, "reached": reached,
                "speedup_below": below,
                "final_bpb": pd.to_numeric(r.get("final_bpb"), errors="coerce"), "baseline_final_bpb": b_bpb})
    out = _frame(rows, SPEEDUP_SEED_COLUMNS, keep_setting=True)
    return _sort(out, _GROUP + ["variant", "seed"])


def speedup_at_equal_quality(runs: pd.DataFrame, curves: pd.DataFrame,
                             baseline: str = "transformer_plus_plus") -> pd.DataFrame:
    """Training speedup of every variant over ``baseline`` at the baseline's final quality.

    Only runs with kind == "train" and status == "ok" count; ``baseline`` is a variant or a model
    name (`resolve_variant`). Per (objective, context, size, seed): target = the baseline's
    final_eval_loss, baseline time = its train_time_s, a variant's time = when its learning curve
    first reaches the target (`time_to_quality`), speedup = baseline time / that time (NaN, reached
    False, if never reached). Then aggregated over seeds, one row per (objective, context, size,
    variant), columns SPEEDUP_COLUMNS:

    - variant, model (its base architecture), baseline (the resolved baseline variant);
    - speedup_mean, speedup_min, speedup_max: over the seeds where the target was reached (NaN if
      never);
    - n_seeds: seeds where both the variant and the baseline finished; n_reached: seeds where the
      target was reached; reached_all: n_reached == n_seeds;
    - time_s_mean (time to target, reached seeds), baseline_time_s_mean, target_loss_mean (nats/token);
    - final_bpb_mean: the variant's own final bits per byte; baseline_final_bpb_mean: the baseline's.
    The baseline's own row has speedup 1.
    """
    per_seed = speedup_per_seed(runs, curves, baseline)
    if per_seed.empty:
        return pd.DataFrame(columns=SPEEDUP_COLUMNS)
    rows = []
    for key, g in per_seed.groupby(_GROUP + ["variant"], sort=False, dropna=False):
        reached = g[g["reached"]]
        s = reached["speedup"].astype(float)
        rows.append(dict(zip(_GROUP + ["variant"], key)) | {
            "model": g["model"].iloc[0], "baseline": g["baseline"].iloc[0],
            "speedup_mean": s.mean() if len(s) else math.nan,
            "speedup_min": s.min() if len(s) else math.nan,
            "speedup_max": s.max() if len(s) else math.nan,
            "n_seeds": int(len(g)), "n_reached": int(len(reached)), "reached_all": bool(len(reached) == len(g)),
            "speedup_below_mean": g["speedup_below"].astype(float).mean(),
            "time_s_mean": reached["time_s"].astype(float).mean() if len(reached) else math.nan,
            "baseline_time_s_mean": g["baseline_time_s"].astype(float).mean(),
            "target_loss_mean": g["target_loss"].astype(float).mean(),
            "final_bpb_mean": g["final_bpb"].astype(float).mean(),
            "baseline_final_bpb_mean": g["baseline_final_bpb"].astype(float).mean(),
        })
    out = _frame(rows, SPEEDUP_COLUMNS)
    return _sort(out, _GROUP + ["variant"])


def speedup_table(runs: pd.DataFrame, curves: pd.DataFrame,
                  baselines: tuple[str, ...] = BASELINES) -> pd.DataFrame:
    """`speedup_at_equal_quality` for each baseline, concatenated (column ``baseline`` tells which,
    as the resolved variant). Baselines without finished runs are left out."""
    parts = [speedup_at_equal_quality(runs, curves, b) for b in baselines]
    parts = [p.assign(_b=i) for i, p in enumerate(parts) if len(p)]
    if not parts:
        return pd.DataFrame(columns=SPEEDUP_COLUMNS)
    out = pd.concat(parts, ignore_index=True).sort_values("_b", kind="stable")
    return out.drop(columns="_b").reset_index(drop=True)


# --------------------------------------------------------------------------- quality at equal steps
EQUAL_STEPS_COLUMNS = ["objective", "context", "size", "variant", "model", "baseline", "n_seeds", "steps_mean",
                       "bpb_mean", "baseline_bpb_mean", "delta_mean", "delta_min", "delta_max"]


def bpb_at_step(curve: pd.DataFrame, step: float) -> float:
    """One run's held-out bits per byte at a step count, interpolated linearly between its evaluations;
    NaN before its first evaluation, after its last, or without bits per byte."""
    if curve is None or len(curve) == 0 or "eval_bpb" not in curve:
        return math.nan
    st = pd.to_numeric(curve["step"], errors="coerce").to_numpy(dtype=float)
    bpb = pd.to_numeric(curve["eval_bpb"], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(st) & np.isfinite(bpb)
    st, bpb = st[keep], bpb[keep]
    if st.size == 0 or not (st.min() <= step <= st.max()):
        return math.nan
    order = np.argsort(st, kind="stable")
    return float(np.interp(step, st[order], bpb[order]))


def quality_at_equal_steps(runs: pd.DataFrame, curves: pd.DataFrame,
                           baseline: str = "transformer_plus_plus") -> pd.DataFrame:
    """Each variant against ``baseline`` after the same number of training steps (the paper compares
    models trained for the same steps; our runs have the same time instead, so the faster model takes
    more steps). Per (objective, context, size, seed): m = the fewer steps of the two runs; both
    runs' held-out bits per byte at step m, read off their learning curves (`bpb_at_step`); delta =
    variant - baseline (negative: the variant is better per step). Aggregated over seeds, columns
    EQUAL_STEPS_COLUMNS; the baseline itself has no row."""
    start = against_baseline(runs, curves, baseline)
    if start is None:
        return pd.DataFrame(columns=EQUAL_STEPS_COLUMNS)
    tr, base_variant, by_run = start
    per_seed = []
    for key, group in tr.groupby(_GROUP + ["seed"], sort=True, dropna=False):
        base = group[group["variant"] == base_variant]
        if base.empty or base["run_id"].iloc[0] not in by_run:
            continue
        b_curve, b_steps = by_run[base["run_id"].iloc[0]], float(_num(base, "steps").iloc[0])
        for _, r in group[group["variant"] != base_variant].iterrows():
            if r["run_id"] not in by_run:
                continue
            m = min(b_steps, float(pd.to_numeric(r.get("steps"), errors="coerce")))
            v, b = bpb_at_step(by_run[r["run_id"]], m), bpb_at_step(b_curve, m)
            if np.isfinite(v) and np.isfinite(b):
                per_seed.append(dict(zip(_GROUP, key[:len(_GROUP)])) | {"variant": r["variant"], "model": r["model"],
                                                               "steps": m, "bpb": v, "baseline_bpb": b})
    if not per_seed:
        return pd.DataFrame(columns=EQUAL_STEPS_COLUMNS)
    df = pd.DataFrame(per_seed)
    rows = []
    for key, g in df.groupby(_GROUP + ["variant"], sort=False, dropna=False):
        d = g["bpb"] - g["baseline_bpb"]
        rows.append(dict(zip(_GROUP + ["variant"], key)) | {
            "model": g["model"].iloc[0], "baseline": base_variant, "n_seeds": int(len(g)),
            "steps_mean": g["steps"].mean(), "bpb_mean": g["bpb"].mean(), "baseline_bpb_mean": g["baseline_bpb"].mean(),
            "delta_mean": d.mean(), "delta_min": d.min(), "delta_max": d.max()})
    return _sort(_frame(rows, EQUAL_STEPS_COLUMNS), _GROUP + ["variant"])


# ---------------------------------------------------------------------------------------- latency
LATENCY_COLUMNS = ["objective", "context", "size", "variant", "model", "source", "status", "n_runs",
                   "step_ms_median", "step_ms_p10", "step_ms_p90", "tokens_per_s", "peak_mem_gib", "mfu",
                   "tokens_per_step", "precision", "attention_kernel", "device_name"]


def latency_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Step latency, throughput, memory and MFU per (objective, context, size, variant).

    Source: the speed runs (kind == "speed"); when the folder has none, the training runs' own step
    timings instead; the ``source`` column says which ("speed" or "train"). Numbers are medians over
    the runs with status "ok" (peak memory: the maximum). A row whose runs all failed keeps its
    status ("oom" first, else the most common failure) with NaN numbers, so an OOM stays visible.
    """
    runs = prepare_runs(runs)
    source = "speed" if (runs["kind"] == "speed").any() else "train"
    sel = runs[runs["kind"] == source]
    if sel.empty:
        return pd.DataFrame(columns=LATENCY_COLUMNS)
    rows = []
    for key, g in sel.groupby(_GROUP + ["variant"], sort=False, dropna=False):
        ok = g[g["status"] == "ok"]
        statuses = g["status"].astype(str)
        if len(ok):
            status = "ok"
        elif (statuses == "oom").any():
            status = "oom"
        else:
            status = statuses.mode().iloc[0] if len(statuses) else "error"

        def med(col):
            v = _num(ok, col)
            return float(v.median()) if v.notna().any() else math.nan

        def joined(col):
            if col not in g.columns:
                return ""
            v = g[col].dropna().astype(str)
            v = v[v != ""]
            return ", ".join(sorted(set(v))) if len(v) else ""

        mem = _num(ok, "peak_mem_gib")
        rows.append(dict(zip(_GROUP + ["variant"], key)) | {
            "model": g["model"].iloc[0], "source": source, "status": status, "n_runs": int(len(g)),
            "step_ms_median": med("step_ms_median"), "step_ms_p10": med("step_ms_p10"),
            "step_ms_p90": med("step_ms_p90"), "tokens_per_s": med("tokens_per_s"),
            "peak_mem_gib": float(mem.max()) if mem.notna().any() else math.nan, "mfu": med("mfu"),
            "tokens_per_step": med("tokens_per_step") if len(ok) else float(_num(g, "tokens_per_step").median()),
            "precision": joined("precision"), "attention_kernel": joined("attention_kernel"),
            "device_name": joined("device_name")})
    out = _frame(rows, LATENCY_COLUMNS)
    return _sort(out, _GROUP + ["variant"])


# ---------------------------------------------------------------------------------------- quality
QUALITY_COLUMNS = ["objective", "context", "size", "variant", "model", "n_seeds", "final_bpb_mean",
                   "final_bpb_std", "final_bpb_min", "final_bpb_max", "final_eval_loss_mean", "train_time_s_mean",
                   "steps_mean", "epochs_mean", "late_drop_mean"]
LATE_FRACTION = 0.1  # late_drop: the held-out bits per byte gained over the last tenth of a run's steps


def late_drop(curve: pd.DataFrame, steps: float) -> float:
    """Held-out bits per byte at (1 - LATE_FRACTION) of a run's steps minus at its end: positive while the
    model still improves at the end of training; zero or negative once it has stopped or over-fits."""
    return bpb_at_step(curve, (1 - LATE_FRACTION) * steps) - bpb_at_step(curve, steps)


def quality_table(runs: pd.DataFrame, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """Final held-out quality per (objective, context, size, variant) over the finished training runs:
    bits per byte mean, standard deviation (NaN with one seed), min and max over seeds; the mean
    final eval loss (nats/token), training time, steps and epochs (passes over the training stream); and
    with `curves`, the mean `late_drop` (still improving at the end, or not)."""
    tr = train_runs(runs)
    if tr.empty:
        return pd.DataFrame(columns=QUALITY_COLUMNS)
    by_run = curves_by_run(curves)
    rows = []
    for key, g in tr.groupby(_GROUP + ["variant"], sort=False, dropna=False):
        bpb = _num(g, "final_bpb")
        drops = [late_drop(by_run[r], st) for r, st in zip(g["run_id"], _num(g, "steps")) if r in by_run]
        rows.append(dict(zip(_GROUP + ["variant"], key)) | {
            "model": g["model"].iloc[0], "n_seeds": int(len(g)), "final_bpb_mean": bpb.mean(),
            "final_bpb_std": bpb.std(), "final_bpb_min": bpb.min(), "final_bpb_max": bpb.max(),
            "final_eval_loss_mean": _num(g, "final_eval_loss").mean(),
            "train_time_s_mean": _num(g, "train_time_s").mean(), "steps_mean": _num(g, "steps").mean(),
            "epochs_mean": _num(g, "epochs").mean(), "late_drop_mean": float(np.nanmean(drops)) if
            np.isfinite(drops).any() else math.nan})
    out = _frame(rows, QUALITY_COLUMNS)
    return _sort(out, _GROUP + ["variant"])

# ---------------------------------------------------------- speedup at equal quality, per platform
# Quality per step does not depend on the hardware, the time of a step does (issue 11). The speedup of a
# model over the baseline at the baseline's final quality is
#     (baseline steps x baseline step time) / (steps the model needs to reach that quality x its step time)
# = steps_ratio x step_time_ratio: the first factor from the learning curves (measured once, on any
# device), the second from each platform's step times at the same shapes.

# Model options that change how a model computes, not what: runs that differ only in these share a
# learning curve (and a step time is looked up across them).
SPEED_ONLY_OPTIONS = ("attention_kernel", "chunk_prefix", "kernel", "causal_chunk")  # (Performer's causal chunk)

QUALITY_PER_STEP_COLUMNS = ["objective", "context", "size", "tokens_per_step", "variant", "model", "options", "seed",
                            "baseline", "baseline_seed", "target_loss", "baseline_steps", "steps", "steps_ratio",
                            "reached", "final_bpb", "baseline_final_bpb"]


def numerics_options(model_options) -> str:
    """A run's model options (JSON) without SPEED_ONLY_OPTIONS, as sorted JSON: what its numbers depend on."""
    try:
        opts = json.loads(model_options) if isinstance(model_options, str) and model_options.strip() else {}
    except ValueError:
        opts = {}
    return json.dumps({k: v for k, v in sorted(opts.items()) if k not in SPEED_ONLY_OPTIONS}, sort_keys=True)


def _options_column(df: pd.DataFrame) -> pd.Series:
    col = df["model_options"] if "model_options" in df.columns else pd.Series("", index=df.index)
    return col.map(numerics_options)


def quality_per_step(runs: pd.DataFrame, curves: pd.DataFrame,
                     baseline: str = "transformer_plus_plus") -> pd.DataFrame:
    """How many fewer steps each variant needs than the baseline to reach the baseline's final quality,
    per pair of seeds (every seed of the variant against every seed of the baseline: seeds are
    independent draws, so all pairs are equally valid). Columns QUALITY_PER_STEP_COLUMNS: target_loss
    (the baseline run's final eval loss), baseline_steps (its steps), steps (the variant's steps to that
    loss, `steps_to_quality`; NaN and reached False if never), steps_ratio = baseline_steps / steps.
    The baseline against its own other seeds gives the seed noise; against itself (one seed) 1.0."""
    start = against_baseline(runs, curves, baseline)
    if start is None:
        return pd.DataFrame(columns=QUALITY_PER_STEP_COLUMNS)
    tr, base_variant, by_run = start
    tr = tr.assign(options=_options_column(tr))
    rows = []
    for key, group in tr.groupby(_GROUP, sort=True, dropna=False):
        bases = group[group["variant"] == base_variant]
        for _, b in bases.iterrows():
            target, b_steps = float(pd.to_numeric(b.get("final_eval_loss"), errors="coerce")), float(b["steps"])
            if not (np.isfinite(target) and b_steps > 0):
                continue
            for _, r in group.iterrows():
                same_variant = r["variant"] == base_variant
                if r["run_id"] not in by_run or (same_variant and r["run_id"] == b["run_id"] and len(bases) > 1):
                    continue  # no curve; or the baseline against itself where other seeds give its noise
                st = b_steps if r["run_id"] == b["run_id"] else steps_to_quality(by_run[r["run_id"]], target)
                reached = bool(np.isfinite(st))
                rows.append(dict(zip(_GROUP, key)) | {
                    "tokens_per_step": float(pd.to_numeric(r.get("tokens_per_step"), errors="coerce")),
                    "variant": r["variant"], "model": r["model"], "options": r["options"], "seed": r["seed"],
                    "baseline": base_variant, "baseline_seed": b["seed"], "target_loss": target,
                    "baseline_steps": b_steps, "steps": st,
                    "steps_ratio": b_steps / st if reached and st > 0 else math.nan, "reached": reached,
                    "final_bpb": pd.to_numeric(r.get("final_bpb"), errors="coerce"),
                    "baseline_final_bpb": pd.to_numeric(b.get("final_bpb"), errors="coerce")})
    return _sort(_frame(rows, QUALITY_PER_STEP_COLUMNS, keep_setting=True), _GROUP + ["variant", "seed"])


STEP_TIME_COLUMNS = ["platform", "objective", "context", "size", "model", "options", "ms_per_token",
                     "step_ms", "tokens_per_step", "variant", "kind", "compile_mode", "precision", "backend",
                     "torch_version", "jax_version", "git_commit", "timestamp", "n_runs", "run_spread"]


def platform_name(row: dict) -> str:
    """The hardware a run's step time belongs to: its device name, 'N x ' in front for N processes."""
    name = str(row.get("device_name") or row.get("device") or "unknown hardware")
    world = pd.to_numeric(row.get("world_size"), errors="coerce")
    return f"{int(world)} x {name}" if np.isfinite(world) and world > 1 else name


def platform_step_times(runs: pd.DataFrame) -> pd.DataFrame:
    """Each platform's fastest step per (objective, context, size, model, numerics options), from every
    finished run that timed its steps (speed runs and training runs alike; any compile mode or kernel:
    they compute the same numbers): the configuration (variant, tokens per step) with the lowest median
    time per token over its runs of the newest commit that ran it (`newest_code`; runs may differ in tokens
    per step: a CPU times fewer).
    STEP_TIME_COLUMNS say which configuration, with which software, over how many runs, and how far apart those
    runs lie (run_spread: the slowest run's time over the fastest's, 1.0 for one run; a shared host drifts)."""
    runs = prepare_runs(runs)
    ok = runs[(runs["status"] == "ok") & _num(runs, "step_ms_median").gt(0) & _num(runs, "tokens_per_step").gt(0)]
    if ok.empty:
        return pd.DataFrame(columns=STEP_TIME_COLUMNS)
    ok = ok.assign(platform=[platform_name(r) for r in ok.to_dict("records")], options=_options_column(ok),
                   ms_per_token=_num(ok, "step_ms_median") / _num(ok, "tokens_per_step"))
    rows = []
    for key, g in ok.groupby(["platform", "objective", "context", "size", "model", "options"], sort=True):
        # the fastest configuration (variant, tokens per step) by its median over the repeated runs of the
        # newest commit that ran it
        g = pd.concat([newest_code(c) for _, c in g.groupby(["variant", "tokens_per_step"], sort=False)])
        per = g.groupby(["variant", "tokens_per_step"], sort=True)["ms_per_token"].median()
        variant, tps = per.idxmin()
        mine = g[(g["variant"] == variant) & (g["tokens_per_step"] == tps)]
        last = mine.iloc[-1]
        rows.append(dict(zip(["platform", "objective", "context", "size", "model", "options"], key)) | {
            "ms_per_token": float(per.min()), "step_ms": float(per.min() * float(tps)), "tokens_per_step": float(tps),
            **{c: last.get(c, "") for c in ("variant", "kind", "compile_mode", "precision", "backend", "torch_version",
                                             "jax_version", "git_commit", "timestamp")},
            "n_runs": int(len(mine)),
            "run_spread": float(mine["ms_per_token"].max() / mine["ms_per_token"].min())})
    return pd.DataFrame(rows, columns=STEP_TIME_COLUMNS)


PLATFORM_SPEEDUP_COLUMNS = ["platform", "objective", "context", "size", "variant", "model", "baseline",
                            "speedup_mean", "speedup_min", "speedup_max", "includes_one", "n_pairs", "n_reached",
                            "steps_ratio_mean", "steps_ratio_min", "steps_ratio_max", "step_time_ratio",
                            "step_ms", "baseline_step_ms", "scaled", "final_bpb_mean", "baseline_final_bpb_mean"]


def platform_speedups(runs: pd.DataFrame, curves: pd.DataFrame, step_times: pd.DataFrame,
                      baseline: str = "transformer_plus_plus") -> pd.DataFrame:
    """Speedup at equal quality on every platform of `step_times` (`platform_step_times`) over the
    learning curves of `runs` / `curves`: per seed pair, `quality_per_step`'s steps_ratio times the
    platform's step_time_ratio = baseline step time / the model's, both at the curves' tokens per step
    (a platform timed at another number of tokens per step is scaled per token; ``scaled`` says so).
    Aggregated over seed pairs (mean, min, max); ``includes_one``: several pairs whose range holds 1.0,
    so the sign of the difference is not established. A platform lacking the model's or the baseline's
    step time at a setting has no row there."""
    q = quality_per_step(runs, curves, baseline)
    if q.empty or step_times is None or step_times.empty:
        return pd.DataFrame(columns=PLATFORM_SPEEDUP_COLUMNS)
    keys = ["objective", "context", "size", "model", "options"]
    times = {tuple(r[k] for k in keys) + (r["platform"],): r for r in step_times.to_dict("records")}
    base_model = q["baseline"].map(lambda v: v.split("[")[0].split("+")[0])
    base_opts = {v: o for v, o in zip(q["variant"], q["options"])}
    rows = []
    for platform in sorted(step_times["platform"].unique()):
        for key, g in q.assign(_bm=base_model).groupby(["objective", "context", "size", "variant"], sort=False):
            r0 = g.iloc[0]
            mine = times.get((r0["objective"], r0["context"], r0["size"], r0["model"], r0["options"], platform))
            base = times.get((r0["objective"], r0["context"], r0["size"], r0["_bm"],
                              base_opts.get(r0["baseline"], "{}"), platform))
            if mine is None or base is None:
                continue
            tps = float(r0["tokens_per_step"])
            step_ms, base_ms = mine["ms_per_token"] * tps, base["ms_per_token"] * tps
            ratio = base_ms / step_ms
            reached = g[g["reached"]]
            sp = reached["steps_ratio"].astype(float) * ratio
            n = len(g)
            rows.append({"platform": platform, **dict(zip(["objective", "context", "size", "variant"], key)),
                         "model": r0["model"], "baseline": r0["baseline"],
                         "speedup_mean": sp.mean() if len(sp) else math.nan,
                         "speedup_min": sp.min() if len(sp) else math.nan,
                         "speedup_max": sp.max() if len(sp) else math.nan,
                         "includes_one": bool(len(sp) > 1 and sp.min() <= 1.0 <= sp.max()),
                         "n_pairs": n, "n_reached": int(len(reached)),
                         "steps_ratio_mean": reached["steps_ratio"].mean() if len(reached) else math.nan,
                         "steps_ratio_min": reached["steps_ratio"].min() if len(reached) else math.nan,
                         "steps_ratio_max": reached["steps_ratio"].max() if len(reached) else math.nan,
                         "step_time_ratio": ratio, "step_ms": step_ms, "baseline_step_ms": base_ms,
                         "scaled": bool(mine["tokens_per_step"] != tps or base["tokens_per_step"] != tps),
                         "final_bpb_mean": g["final_bpb"].astype(float).mean(),
                         "baseline_final_bpb_mean": g["baseline_final_bpb"].astype(float).mean()})
    out = pd.DataFrame(rows, columns=PLATFORM_SPEEDUP_COLUMNS)
    return _sort(out, ["platform", "objective", "context", "size", "variant"])


# ------------------------------------------------------------------ backends and platforms side by side
# How one step ran: the framework and its compilation (issue 13's hardware comparison).
BACKEND_COLUMNS = ["platform", "size", "objective", "context", "model", "execution", "tokens_per_step", "step_ms",
                   "tokens_per_s", "mfu", "compile_s", "peak_mem_gib", "n_runs", "software"]


def execution_name(row: dict) -> str:
    """'PyTorch eager', 'PyTorch compiled' (with its mode unless the default) or 'JAX jit', with the training
    loss where it is not the plain one (', Liger loss')."""
    backend = str(row.get("backend") or "pytorch")
    mode = str(row.get("compile_mode") or "eager")
    loss = str(row.get("loss") or "torch")
    if backend == "jax":
        name = "JAX jit"
    elif mode in ("eager", "nan", "False"):
        name = "PyTorch eager"
    else:
        name = "PyTorch compiled" + ("" if mode in ("default", "True") else f" ({mode})")
    return name + ("" if loss in ("torch", "nan") else f", {loss.capitalize()} loss")


def backend_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Median step time, throughput, MFU, compile seconds and peak memory per (platform, size, objective,
    context, model, execution, tokens per step) over the finished runs of each model with no option set
    (not even a kernel: its default configuration; speed and training runs alike) of the newest commit that
    ran it (`newest_code`), with the software versions they ran with."""
    runs = prepare_runs(runs)
    ok = runs[(runs["status"] == "ok") & _num(runs, "step_ms_median").gt(0)]
    if ok.empty:
        return pd.DataFrame(columns=BACKEND_COLUMNS)
    raw = ok["model_options"] if "model_options" in ok.columns else pd.Series("", index=ok.index)
    ok = ok[raw.map(lambda o: not o or not isinstance(o, str) or not json.loads(o or "{}"))]  # default options only
    records = ok.to_dict("records")
    ok = ok.assign(platform=[platform_name(r) for r in records], execution=[execution_name(r) for r in records],
                   software=[" ".join(x for x in (f"torch {r.get('torch_version')}" if r.get("torch_version") else "",
                                                  f"jax {r.get('jax_version')}" if r.get("backend") == "jax" else "")
                                      if x) for r in records])
    keys = ["platform", "size", "objective", "context", "model", "execution", "tokens_per_step"]
    rows = []
    for key, g in ok.groupby(keys, sort=True):
        g = newest_code(g)
        rows.append(dict(zip(keys, key)) | {
            "step_ms": float(_num(g, "step_ms_median").median()), "tokens_per_s": float(_num(g, "tokens_per_s").median()),
            "mfu": float(_num(g, "mfu").median()), "compile_s": float(_num(g, "compile_s").median()),
            "peak_mem_gib": float(_num(g, "peak_mem_gib").max()), "n_runs": int(len(g)),
            "software": ", ".join(sorted(set(g["software"]) - {""}))})
    return _sort(pd.DataFrame(rows, columns=BACKEND_COLUMNS), ["platform", "size", "objective", "context", "model"])


RANKING_COLUMNS = ["platform", "size", "objective", "context", "execution", "tokens_per_step", "model", "baseline",
                   "step_ms", "baseline_step_ms", "step_time_ratio", "model_faster"]


def ranking_table(backends: pd.DataFrame, model: str = "flash", baseline: str = "transformer_plus_plus") -> pd.DataFrame:
    """Whether `model`'s step is faster than `baseline`'s on every platform and execution (same size,
    objective, context and tokens per step): step_time_ratio = baseline's step time / the model's."""
    if backends.empty:
        return pd.DataFrame(columns=RANKING_COLUMNS)
    keys = ["platform", "size", "objective", "context", "execution", "tokens_per_step"]
    rows = []
    for key, g in backends.groupby(keys, sort=True):
        m, b = g[g["model"] == model], g[g["model"] == baseline]
        if m.empty or b.empty:
            continue
        ms, bs = float(m["step_ms"].iloc[0]), float(b["step_ms"].iloc[0])
        rows.append(dict(zip(keys, key)) | {"model": model, "baseline": baseline, "step_ms": ms,
                                             "baseline_step_ms": bs, "step_time_ratio": bs / ms, "model_faster": bs > ms})
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)


# ---------------------------------------------------------------- the per-step gap along training
GAP_COLUMNS = ["objective", "context", "size", "variant", "model", "baseline", "step", "n_pairs", "gap_mean",
               "gap_min", "gap_max"]


def gap_along_training(runs: pd.DataFrame, curves: pd.DataFrame,
                       baseline: str = "transformer_plus_plus") -> pd.DataFrame:
    """Each variant's held-out bits per byte minus the baseline's at every evaluation step of the variant's
    runs (the baseline read off its curve there, `bpb_at_step`), over every pair of seeds: mean, min and
    max per step. Where the gap changes sign is where the two cross (`last_crossing`)."""
    start = against_baseline(runs, curves, baseline)
    if start is None:
        return pd.DataFrame(columns=GAP_COLUMNS)
    tr, base_variant, by_run = start
    rows = []
    for key, group in tr.groupby(_GROUP, sort=True, dropna=False):
        bases = [by_run[r] for r in group.loc[group["variant"] == base_variant, "run_id"] if r in by_run]
        if not bases:
            continue
        for variant, runs_v in group[group["variant"] != base_variant].groupby("variant", sort=False):
            gaps: dict[float, list[float]] = {}
            for rid in runs_v["run_id"]:
                c = by_run.get(rid)
                if c is None:
                    continue
                for st, bpb in zip(_num(c, "step"), _num(c, "eval_bpb")):
                    for b in bases:
                        gap = bpb - bpb_at_step(b, st)
                        if np.isfinite(gap):
                            gaps.setdefault(float(st), []).append(gap)
            for st, g in sorted(gaps.items()):
                rows.append(dict(zip(_GROUP, key)) | {
                    "variant": variant, "model": runs_v["model"].iloc[0], "baseline": base_variant, "step": st,
                    "n_pairs": len(g), "gap_mean": float(np.mean(g)), "gap_min": float(np.min(g)),
                    "gap_max": float(np.max(g))})
    return _sort(_frame(rows, GAP_COLUMNS), _GROUP + ["variant", "step"])


def last_crossing(gap: pd.DataFrame) -> float:
    """The last evaluation step at which one variant's mean gap (`gap_along_training`, one setting) has a
    different sign from the evaluation before it; NaN if it never changes sign."""
    g = gap.sort_values("step")
    sign = np.sign(g["gap_mean"].to_numpy(float))
    changed = np.flatnonzero(sign[1:] * sign[:-1] < 0)
    return float(g["step"].to_numpy(float)[changed[-1] + 1]) if changed.size else math.nan


__all__ = ["BASELINES", "OBJECTIVE_LABELS", "SPEEDUP_COLUMNS", "newest_code",
           "SPEEDUP_SEED_COLUMNS", "LATENCY_COLUMNS", "QUALITY_COLUMNS", "model_label", "Variant", "Variants", "variants_of",
           "objective_label", "context_label", "prepare_runs", "train_runs",
           "resolve_variant", "time_to_quality", "steps_to_quality", "speedup_per_seed",
           "SPEED_ONLY_OPTIONS", "QUALITY_PER_STEP_COLUMNS", "STEP_TIME_COLUMNS", "PLATFORM_SPEEDUP_COLUMNS",
           "numerics_options", "quality_per_step", "platform_name", "platform_step_times", "platform_speedups",
           "BACKEND_COLUMNS", "RANKING_COLUMNS", "execution_name", "backend_table", "ranking_table",
           "GAP_COLUMNS", "gap_along_training", "last_crossing", "curves_by_run", "against_baseline",
           "speedup_at_equal_quality", "speedup_table", "EQUAL_STEPS_COLUMNS", "bpb_at_step",
           "quality_at_equal_steps", "latency_table", "quality_table"]
