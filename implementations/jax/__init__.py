"""The seven models in JAX (pure functions over parameter trees), for `--backend jax`.

    import implementations as impl
    from implementations import jax as impl_jax
    cfg = impl.make_config("flash", vocab_size=256, d_model=64, n_layers=2, max_len=512)
    apply, params = impl_jax.build_model(cfg, seed=0, dtype="bfloat16")  # the PyTorch init, converted
    logits = apply(params, tokens)                                        # [B, T] -> [B, T, vocab]
    apply, params = impl_jax.from_torch(torch_model)                      # a PyTorch model's weights

Same names, options (checked by implementations.make_config), FLOP counts (implementations.flops) and
fidelity notes (the registry) as the PyTorch models: only the framework differs. Importing this package
imports JAX; `import implementations` alone never does. Files: layers.py (norms, positions, FFNs),
attention.py (the four mixers), convert.py (PyTorch state -> parameter trees), models.py (the shell,
scan over layers, the backend's knobs: compute dtype, rematerialisation, scan).
"""
from .convert import Source, convert, layout, map_sources, n_stacked
from .layers import REMAT_POLICIES
from .models import DTYPES, HONOURED, MODELS, build_model, check_supported, forward, from_torch, make_apply


def n_params(params) -> int:
    """Trainable parameters of a JAX parameter tree (the tied head counted once, as in PyTorch)."""
    import jax

    return sum(int(a.size) for a in jax.tree.leaves(params))


__all__ = ["Source", "convert", "layout", "map_sources", "n_stacked", "REMAT_POLICIES", "DTYPES", "HONOURED", "MODELS",
           "build_model", "check_supported", "forward", "from_torch", "make_apply", "n_params"]
