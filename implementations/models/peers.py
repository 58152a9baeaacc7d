"""External reference implementations ("peers"), registered beside ours but kept out of list_models()
and of the default sweep (`run_all.py --peers`, or `--models peer:NAME`).

    peer:hf_llama        Hugging Face `transformers` LlamaForCausalLM: RoPE + SwiGLU + RMSNorm, i.e. a
                         Transformer++, with SDPA attention
    peer:hf_llama_eager  the same with materialised ("eager") attention
    peer:flash_pytorch   the PyPI package `flash-pytorch` (the public FLASH implementation)

Sizes follow our config: d_model, n_layers Transformer blocks (2 n_layers GAU layers), GLU hidden 8d/3
rounded up to 64, d_model // 64 heads, chunk (group) 256, s = 128. Each is built only when its package is
installed; an absent package is a clear error, not a silent skip. None has a bidirectional mode here, and
none takes model options. FLOPs are those of our model of the same architecture (`equivalent`).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..config import ModelConfig
from ..layers.ffn import glu_hidden
from ..registry import ModelSpec, get_spec, make_config, register_model


class LogitsOnly(nn.Module):
    """Adapts a model whose forward returns an object with `.logits` to tokens -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens, use_cache=False).logits


def _hf_llama(cfg: ModelConfig, attn: str) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    d = cfg.d_model
    llama = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=d, intermediate_size=glu_hidden(d),
                        num_hidden_layers=cfg.n_layers, num_attention_heads=max(1, d // 64),
                        num_key_value_heads=max(1, d // 64), max_position_embeddings=cfg.max_len,
                        tie_word_embeddings=True, attn_implementation=attn)
    return LogitsOnly(LlamaForCausalLM(llama))


def _flash_pytorch(cfg: ModelConfig) -> nn.Module:
    from flash_pytorch import FLASHTransformer

    return FLASHTransformer(num_tokens=cfg.vocab_size, dim=cfg.d_model, depth=2 * cfg.n_layers, group_size=256,
                            query_key_dim=128, expansion_factor=2.0, causal=cfg.causal)


def _needs(package: str, builder: Callable[[ModelConfig], nn.Module], name: str):
    def build(cfg: ModelConfig) -> nn.Module:
        try:
            return builder(cfg)
        except ImportError as exc:
            raise ValueError(f"peer {name!r} needs the package {package!r} ({exc}); it is optional and not in "
                             "requirements.txt: install it to measure this peer") from None
    return build


def equivalent_config(cfg: ModelConfig) -> ModelConfig:
    """The config of our model with a peer's architecture, at the peer's sizes (for FLOP counts)."""
    return make_config(get_spec(cfg.name).equivalent, vocab_size=cfg.vocab_size, d_model=cfg.d_model,
                       n_layers=cfg.n_layers, max_len=cfg.max_len, causal=cfg.causal)


def _peer(name: str, description: str, package: str, builder, equivalent: str, **display) -> ModelSpec:
    return register_model(ModelSpec(
        name=name, description=description, build=_needs(package, builder, name),
        flops=lambda cfg, T: get_spec(equivalent).flops(equivalent_config(cfg), T),
        options={}, causal=True, bidirectional=False, tags=("peer",), equivalent=equivalent, requires=package,
        pip_name=package.replace("_", "-"), **display))


_peer("peer:hf_llama", "Hugging Face Llama (= Transformer++), SDPA attention", "transformers",
      lambda cfg: _hf_llama(cfg, "sdpa"), "transformer_plus_plus",
      label="HF Llama (peer)", color="#0b3d66", marker="d", order=51)          # dark blue: a public Transformer++
_peer("peer:hf_llama_eager", "Hugging Face Llama, materialised attention", "transformers",
      lambda cfg: _hf_llama(cfg, "eager"), "transformer_plus_plus",
      label="HF Llama eager (peer)", color="#5b7fa3", marker="d", order=52)
_peer("peer:flash_pytorch", "flash-pytorch FLASHTransformer (the public FLASH code)", "flash_pytorch",
      _flash_pytorch, "flash", quadratic=False,
      label="flash-pytorch (peer)", color="#7a1010", marker="p", order=50)     # dark red: the public FLASH
