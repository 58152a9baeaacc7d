"""The one configuration object every model is built from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    name: str
    vocab_size: int
    d_model: int
    n_layers: int  # Transformer-block equivalents; GAU models build 2 * n_layers GAU layers
    max_len: int
    causal: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vocab_size": self.vocab_size, "d_model": self.d_model,
                "n_layers": self.n_layers, "max_len": self.max_len, "causal": self.causal,
                **{f"opt.{k}": v for k, v in sorted(self.options.items())}}


# Named sizes: (d_model, n_layers). n_layers counts Transformer blocks (24 GAU layers at "base").
SIZE_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 64, "n_layers": 2},      # CPU tests and the smoke sweep
    "small": {"d_model": 256, "n_layers": 4},    # CPU demos
    "quality": {"d_model": 512, "n_layers": 8},  # ~30M params with a 32K vocab: the GPU quality preset
    "base": {"d_model": 768, "n_layers": 12},    # the paper's ~110M scale
}
