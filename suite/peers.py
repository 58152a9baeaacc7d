"""External reference implementations, measured beside ours but kept out of the default sweep.

    peer:hf_llama       Hugging Face `transformers` LlamaForCausalLM: RoPE + SwiGLU + RMSNorm, i.e. a
                        Transformer++, with SDPA attention ("peer:hf_llama_eager" for materialised)
    peer:flash_pytorch  the PyPI package `flash-pytorch` (the public FLASH implementation)

Sizes are matched to our `base` preset: d = 768, 12 layers (24 GAU layers), GLU hidden 2048,
12 heads, chunk (group) 256, s = 128. Each is built only when its package is installed; an
absent package is a clear error, not a silent skip. Neither has a bidirectional mode here.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from implementations.layers.ffn import glu_hidden

PREFIX = "peer:"


class LogitsOnly(nn.Module):
    """Adapts a model whose forward returns an object with `.logits` to tokens -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens, use_cache=False).logits


def _hf_llama(attn: str) -> Callable[..., nn.Module]:
    def build(*, vocab_size: int, d_model: int, n_layers: int, max_len: int, causal: bool) -> nn.Module:
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=glu_hidden(d_model),
                          num_hidden_layers=n_layers, num_attention_heads=max(1, d_model // 64),
                          num_key_value_heads=max(1, d_model // 64), max_position_embeddings=max_len,
                          tie_word_embeddings=True, attn_implementation=attn)
        return LogitsOnly(LlamaForCausalLM(cfg))
    return build


def _flash_pytorch(*, vocab_size: int, d_model: int, n_layers: int, max_len: int, causal: bool) -> nn.Module:
    from flash_pytorch import FLASHTransformer

    return FLASHTransformer(num_tokens=vocab_size, dim=d_model, depth=2 * n_layers, group_size=256,
                            query_key_dim=128, expansion_factor=2.0, causal=causal)


# name -> (builder, package it needs, our model with the same architecture: used for its FLOP count)
PEERS: dict[str, tuple[Callable[..., nn.Module], str, str]] = {
    "hf_llama": (_hf_llama("sdpa"), "transformers", "transformer_plus_plus"),
    "hf_llama_eager": (_hf_llama("eager"), "transformers", "transformer_plus_plus"),
    "flash_pytorch": (_flash_pytorch, "flash_pytorch", "flash"),
}


def equivalent(name: str) -> str:
    return PEERS[name[len(PREFIX):]][2]


def is_peer(name: str) -> bool:
    return name.startswith(PREFIX)


def check_peer(name: str, causal: bool) -> None:
    key = name[len(PREFIX):]
    if key not in PEERS:
        raise ValueError(f"unknown peer {name!r}; valid peers: {', '.join(PREFIX + k for k in PEERS)}")
    if not causal:
        raise ValueError(f"peer {name!r} is measured in causal mode only")


def build_peer(name: str, **kw) -> nn.Module:
    check_peer(name, kw.get("causal", True))
    builder, package, _ = PEERS[name[len(PREFIX):]]
    try:
        return builder(**kw)
    except ImportError as exc:
        raise ValueError(f"peer {name!r} needs the package {package!r} ({exc}); it is optional and not in "
                         "requirements.txt: install it to measure this peer") from None
