"""A run's result row: identity, provenance, FLOPs, and the speed numbers (throughput, MFU, memory)."""
from __future__ import annotations

import json
from typing import Any

import torch

import implementations as impl
from implementations.flops import train_flops_per_token

from . import provenance
from .batches import Batches
from .hardware import peak_tflops
from .runs import LATER_FIELDS, RunConfig
from .timing import summarise


BACKEND = "pytorch"  # the framework of every run recorded before RunConfig.backend existed (backfill)


def compile_mode(compile: bool | str) -> str:
    """'eager' when not compiled, 'default' for torch.compile's default mode, else the mode."""
    return "eager" if compile is False else "default" if compile is True else str(compile)


def model_options_json(overrides) -> str:
    """A run's model options (those set on top of the model's defaults) as a JSON object, sorted."""
    return json.dumps(dict(overrides), sort_keys=True)


def base_summary(cfg: RunConfig, cfg_model: impl.ModelConfig, device: torch.device, data: Batches) -> dict[str, Any]:
    name = provenance.device_name(str(device))
    peak, _ = peak_tflops(name)
    return {
        "run_id": cfg.run_id, "status": "ok", "message": "", "kind": cfg.kind, "model": cfg.model, "variant": cfg.variant,
        "objective": cfg.objective, "context": cfg.context, "seed": cfg.seed, "size": cfg.size,
        "d_model": cfg.d_model, "n_layers": cfg.n_layers, "vocab_size": data.vocab_size,
        "batch_size": cfg.batch_size, "tokens_per_step": cfg.batch_size * cfg.context,
        "lr": cfg.lr, "schedule": "steps" if cfg.by_steps else "time",
        "train_flops_per_token": train_flops_per_token(cfg.model, cfg_model, cfg.context), "peak_tflops": peak,
        "device": str(device), "device_name": name, "precision": cfg.precision, "compile": cfg.compile,
        "backend": cfg.backend, "compile_mode": compile_mode(cfg.compile), "loss": cfg.loss,
        "model_options": model_options_json(cfg.model_overrides().items()),
        "attention_kernel": ("peer" if impl.is_peer(cfg.model) else cfg_model.options.get("attention_kernel", "n/a")),
        "sdpa_backend": cfg.sdpa_backend or "default", "world_size": 1,
        "corpus": data.corpus, "tokenizer": data.tokenizer, "data_hash": data.data_hash,
        **provenance.software(), "config_json": json.dumps(cfg.as_dict(), sort_keys=True),
    }


def backfill(summary: dict[str, Any]) -> dict[str, Any]:
    """A result row of an older run file with the columns added since, derived from its config_json
    (the backend of every run before those columns was PyTorch; the loss of every run before the loss column
    is its config's, "torch" before the option existed)."""
    if not summary.get("config_json") or ("model_options" in summary and "loss" in summary):
        return summary
    cfg = json.loads(summary["config_json"])
    out = {**summary, "loss": summary.get("loss") or cfg.get("loss", LATER_FIELDS["loss"])}
    if "model_options" not in summary:
        options = [tuple(kv) for kv in cfg.get("overrides", [])]
        if cfg.get("attention_kernel"):  # what RunConfig.model_overrides() passes to the model
            options.append(("attention_kernel", cfg["attention_kernel"]))
        out.update(backend=BACKEND, compile_mode=compile_mode(cfg.get("compile", False)),
                   model_options=model_options_json(options))
    return out


def speed_numbers(summary: dict[str, Any], ms: list[float], device: torch.device) -> dict[str, Any]:
    out = summarise(ms)
    tokens = summary["tokens_per_step"]
    out["timed_steps"] = len(ms)
    out["tokens_per_s"] = tokens / (out["step_ms_median"] / 1e3) if ms else float("nan")
    out["model_tflops"] = summary["train_flops_per_token"] * out["tokens_per_s"] / 1e12
    peak = summary["peak_tflops"] * summary.get("world_size", 1)  # data-parallel: every process's GPU
    out["mfu"] = out["model_tflops"] / peak if peak == peak else float("nan")
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out
