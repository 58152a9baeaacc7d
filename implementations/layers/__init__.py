"""Building blocks shared by every model, written once."""
from .block import Residual, transformer_block
from .embedding import TokenEmbedding, SinusoidalPositions
from .ffn import FeedForward, GLUFeedForward
from .linear import Linear
from .lm import LanguageModel
from .norm import ScaleNorm, make_norm
from .rope import RotaryEmbedding

__all__ = ["Residual", "transformer_block", "TokenEmbedding", "SinusoidalPositions", "FeedForward",
           "GLUFeedForward", "Linear", "LanguageModel", "ScaleNorm", "make_norm", "RotaryEmbedding"]
