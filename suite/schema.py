"""The results schema: what one run records. Every table on disk follows it.

Layout of a results folder (one per platform and preset): results/<platform>/<preset>/
    runs/<run_id>.json   one file per finished run: {"schema": SCHEMA, "summary": {...}, "curve": [...]}
    runs.csv             one row per run (SUMMARY_COLUMNS first), rebuilt from runs/
    curves.csv           one row per evaluation point (CURVE_COLUMNS), rebuilt from runs/
    tables/              speedup-at-equal-quality and latency tables (CSV and Markdown)
    figures/             PNG and SVG figures
"""
from __future__ import annotations

SCHEMA = "flash-repro/run/v1"

# variant: the model name plus what distinguishes this configuration of it, e.g. "flash+compile",
# "transformer_plus_plus[materialized]", "peer:hf_llama+compile"; tables and figures group by it.

# status of a run: ok | oom (out of memory) | nan (non-finite loss) | diverged | error
STATUSES = ("ok", "oom", "nan", "diverged", "error")

SUMMARY_COLUMNS = [
    # identity
    "run_id", "schema", "status", "message", "kind",          # kind: "train" (learning curve) or "speed"
    "model", "variant", "objective", "context", "seed", "size", "d_model", "n_layers", "vocab_size", "n_params",
    # work; epochs: passes over the training stream the run's tokens make (train runs); wall_s: the whole
    # run, of which (train runs) compile_s compiling before the clock, eval_s evaluating, checkpoint_s saving
    "batch_size", "tokens_per_step", "steps", "tokens", "train_time_s", "epochs",
    "wall_s", "compile_s", "eval_s", "checkpoint_s",
    # protocol (train runs): peak learning rate; schedule "steps" (fixed steps) or "time" (time budget)
    "lr", "schedule",
    # quality (train runs): final held-out loss in nats per token and bits per byte
    "final_eval_loss", "final_bpb", "final_train_loss",
    # speed
    "step_ms_median", "step_ms_p10", "step_ms_p90", "timed_steps", "tokens_per_s", "peak_mem_gib",
    "train_flops_per_token", "model_tflops", "mfu", "peak_tflops",
    # how it ran
    "device", "device_name", "precision", "compile", "attention_kernel", "sdpa_backend", "world_size",
    # the step a train run resumed from, its last checkpoint (suite/checkpoint.py); empty if it never stopped
    "resumed_from_step",
    # what distinguishes a configuration, as data (the variant column is a label built from these):
    # backend ("pytorch"), compile_mode ("eager", "default" or a torch.compile mode), loss (the training step's
    # loss: "torch" or "liger"), model_options (JSON object of the options set on top of the model's defaults,
    # e.g. {"chunk": 128})
    "backend", "compile_mode", "loss", "model_options",
    # data provenance
    "corpus", "tokenizer", "data_hash",
    # software provenance
    "git_commit", "git_dirty", "torch_version", "python_version", "host", "timestamp", "config_json",
]

CURVE_COLUMNS = ["run_id", "model", "objective", "context", "seed", "step", "time_s", "tokens",
                 "train_loss", "eval_loss", "eval_bpb"]
