"""flash-repro model implementations behind one registry.

    from implementations import list_models, build_model
    model = build_model("flash", vocab_size=256, d_model=64, n_layers=2, max_len=512)
"""
from .config import SIZE_PRESETS, ModelConfig
from .registry import (FidelityNote, ModelSpec, build_from_config, build_model, check_length, describe, get_spec, is_peer, list_models,
                       make_config, register_model, unregister_model)

__all__ = ["SIZE_PRESETS", "ModelConfig", "FidelityNote", "ModelSpec", "build_from_config", "build_model", "check_length", "describe",
           "get_spec", "is_peer", "list_models", "make_config", "register_model", "unregister_model"]
