"""Conformance tests applied to every registered model: a new model gets them for free."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import implementations as impl
from implementations.flops import forward_flops_per_token

MODELS = impl.list_models()
SEVEN = ["transformer", "transformer_plus", "transformer_plus_plus", "performer", "combiner", "flash_quad", "flash"]
VOCAB, D, LAYERS, MAX_LEN = 61, 32, 2, 48


def tiny(name: str, causal: bool = True, dtype=torch.float64, seed: int = 0, **extra):
    torch.manual_seed(seed)
    spec = impl.get_spec(name)
    model = impl.build_model(name, vocab_size=VOCAB, d_model=D, n_layers=LAYERS, max_len=MAX_LEN, causal=causal,
                             **{**spec.small_overrides, **extra})
    return model.to(dtype)


def skip_unless_mode(name: str, causal: bool) -> None:
    spec = impl.get_spec(name)
    if (causal and not spec.causal) or (not causal and not spec.bidirectional):
        pytest.skip(f"{name} declares no {'causal' if causal else 'bidirectional'} mode")


def randomise(model: torch.nn.Module) -> None:
    """Move zero-initialised parameters (biases, offsets) off zero so that no path hides behind them."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def test_the_seven_models_are_registered():
    assert set(SEVEN) <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("causal", [True, False])
def test_shapes(name, causal):
    skip_unless_mode(name, causal)
    model = tiny(name, causal)
    for T in (1, 17, MAX_LEN):
        out = model(torch.randint(0, VOCAB, (3, T)))
        assert out.shape == (3, T, VOCAB) and out.dtype == torch.float64


@pytest.mark.parametrize("name", [n for n in MODELS if impl.get_spec(n).causal])
def test_causal_future_tokens_do_not_change_the_past(name):
    model = tiny(name, causal=True)
    randomise(model)
    tokens = torch.randint(0, VOCAB, (2, MAX_LEN))
    base = model(tokens)
    for t in (1, 9, 30, MAX_LEN - 1):
        changed = tokens.clone()
        changed[:, t:] = torch.randint(0, VOCAB, (2, MAX_LEN - t))
        out = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=1e-10, atol=1e-10)
        assert not torch.allclose(out[:, t:], base[:, t:])


@pytest.mark.parametrize("name", [n for n in MODELS if impl.get_spec(n).causal])
def test_causal_prefix_equals_whole_sequence(name):
    """Running a prefix alone gives the same outputs as the prefix positions of the whole sequence."""
    model = tiny(name, causal=True)
    randomise(model)
    tokens = torch.randint(0, VOCAB, (2, MAX_LEN))
    whole = model(tokens)
    for t in (5, 23, 40):
        torch.testing.assert_close(model(tokens[:, :t]), whole[:, :t], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", [n for n in MODELS if impl.get_spec(n).bidirectional])
def test_bidirectional_sees_the_future(name):
    model = tiny(name, causal=False)
    randomise(model)
    tokens = torch.randint(0, VOCAB, (2, MAX_LEN))
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % VOCAB
    diff = (model(changed)[:, 0] - model(tokens)[:, 0]).abs().max()
    assert diff > 1e-9


# ---- no dead attention at initialisation ----------------------------------------------------------
# Measured at d 256, one block, seed 0 (float64): a changed token moves its neighbours' logits by 0.25-1.8
# of the logits' standard deviation in the softmax models and by 1.9e-4 to 4.3e-4 in the GAU models with
# the paper's initialisation; by 2e-10 to 1e-8 with the old zero relative bias (FLASH-Quad, and FLASH's
# within-chunk neighbours). The score-shaping gradients, against the RMS of all weight-matrix gradients:
# 0.16-0.64 for softmax and FAVOR+ q/k, 7e-3 to 4e-2 for the GAU's relu^2 part with the paper's init,
# 3.5e-5 to 2.2e-4 with the zero bias.
LIVE_D, NEIGHBOURS = 256, 3
MIN_LOGIT_CHANGE, MIN_SCORE_GRADIENT = 1e-6, 1e-3


def fresh(name: str, causal: bool, **extra):
    """A model as built, not randomised: its initialisation is what is under test."""
    torch.manual_seed(0)
    spec = impl.get_spec(name)
    return impl.build_model(name, vocab_size=VOCAB, d_model=LIVE_D, n_layers=1, max_len=MAX_LEN, causal=causal,
                            **{**spec.small_overrides, **extra}).double()


def neighbour_logit_change(model, causal: bool, i: int = 20) -> float:
    """Mean change of the logits at the NEIGHBOURS positions after token i (and before it, bidirectional)
    when token i changes, relative to the logits' standard deviation."""
    tokens = torch.randint(0, VOCAB, (4, MAX_LEN), generator=torch.Generator().manual_seed(1))
    changed = tokens.clone()
    changed[:, i] = (changed[:, i] + 1) % VOCAB
    with torch.no_grad():
        base, out = model(tokens), model(changed)
    per_position = (out - base).abs().amax(dim=(0, 2)) / base.std()
    near = list(range(i + 1, i + 1 + NEIGHBOURS)) + ([] if causal else list(range(i - NEIGHBOURS, i)))
    return per_position[near].mean().item()


def score_gradient_ratios(model) -> dict[str, float]:
    """Each attention module's score-shaping gradients (`gradient_probe`) over the RMS of every
    weight-matrix gradient of the model; the smallest over layers, per part."""
    tokens = torch.randint(0, VOCAB, (4, MAX_LEN), generator=torch.Generator().manual_seed(2))
    F.cross_entropy(model(tokens).flatten(0, 1), torch.randint(0, VOCAB, (4 * MAX_LEN,))).backward()
    rms = lambda ts: torch.cat([t.flatten() for t in ts]).pow(2).mean().sqrt().item()  # noqa: E731
    reference = rms([p.grad for p in model.parameters() if p.dim() >= 2])
    ratios: dict[str, float] = {}
    for module in model.modules():
        if hasattr(module, "gradient_probe"):
            for part, grads in module.gradient_probe().items():
                ratios[part] = min(ratios.get(part, float("inf")), rms(grads) / reference)
    return ratios


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("causal", [True, False])
def test_attention_carries_information_at_initialisation(name, causal):
    """Changing one token moves its neighbours' logits (the later ones; the earlier ones too when
    bidirectional) by a non-negligible fraction of the logits' scale."""
    skip_unless_mode(name, causal)
    change = neighbour_logit_change(fresh(name, causal), causal)
    assert change > MIN_LOGIT_CHANGE, (f"{name}: a changed token moves its neighbours' logits by {change:.1e} of "
                                       "their scale at initialisation: its attention is switched off")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("causal", [True, False])
def test_attention_scores_get_gradients_at_initialisation(name, causal):
    """Every attention module declares its score-shaping parameters (`gradient_probe`), and their
    gradients are not negligible against the model's weight gradients."""
    skip_unless_mode(name, causal)
    ratios = score_gradient_ratios(fresh(name, causal))
    assert ratios, f"{name}: no attention module has a gradient_probe() naming its score parameters"
    for part, ratio in ratios.items():
        assert ratio > MIN_SCORE_GRADIENT, f"{name}: {part} gradients are {ratio:.1e} of the weight gradients"


@pytest.mark.parametrize("name", ["flash_quad", "flash"])
@pytest.mark.parametrize("causal", [True, False])
def test_the_old_zero_bias_initialisation_is_caught(name, causal):
    """The two checks above fail on the initialisation this suite had until 2026-11-29."""
    model = fresh(name, causal, init="legacy", rel_pos_form="toeplitz")
    dead_forward = neighbour_logit_change(model, causal) < MIN_LOGIT_CHANGE
    dead_backward = min(score_gradient_ratios(model).values()) < MIN_SCORE_GRADIENT
    assert dead_backward and (dead_forward or (name == "flash" and not causal))  # FLASH's global part is
    # alive bidirectionally and reaches the neighbours; its dead local part shows in the gradients


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("causal", [True, False])
def test_gradients_are_finite_and_reach_every_parameter(name, causal):
    skip_unless_mode(name, causal)
    model = tiny(name, causal, dtype=torch.float32)
    tokens = torch.randint(0, VOCAB, (2, 40))
    loss = F.cross_entropy(model(tokens).flatten(0, 1), torch.randint(0, VOCAB, (80,)))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient in {pname}"


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_model_and_output(name):
    tokens = torch.randint(0, VOCAB, (2, 20))
    a, b, c = tiny(name, seed=3), tiny(name, seed=3), tiny(name, seed=4)
    torch.testing.assert_close(a(tokens), b(tokens), rtol=0, atol=0)
    assert not torch.allclose(a(tokens), c(tokens))


@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast_is_finite(name):
    model = tiny(name, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randint(0, VOCAB, (2, MAX_LEN)))
    assert torch.isfinite(out.float()).all()


def count_params(name: str, d_model: int, n_layers: int, vocab: int = 32768) -> int:
    with torch.device("meta"):
        model = impl.build_model(name, vocab_size=vocab, d_model=d_model, n_layers=n_layers, max_len=8192)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", ["base", "quality", "small"])
def test_parameter_counts_match_transformer_plus_plus(size):
    preset = impl.SIZE_PRESETS[size]
    ref = count_params("transformer_plus_plus", **preset)
    for name in MODELS:
        n = count_params(name, **preset)
        assert abs(n / ref - 1) <= 0.10, f"{name} has {n:,} parameters vs {ref:,} for transformer_plus_plus"


def test_base_preset_is_the_papers_110m_scale():
    n = count_params("transformer_plus_plus", **impl.SIZE_PRESETS["base"])
    assert 100e6 < n < 125e6


@pytest.mark.parametrize("name", MODELS)
def test_flops_are_positive_and_grow_with_context(name):
    cfg = impl.make_config(name, vocab_size=32768, d_model=768, n_layers=12, max_len=32768)
    f512, f8k = forward_flops_per_token(name, cfg, 512), forward_flops_per_token(name, cfg, 8192)
    # matmul FLOPs per token of the dense layers alone: at least 2 x (parameters without embeddings)
    assert f512 > 2 * 80e6 and f8k >= f512


def test_flash_flops_grow_slower_than_transformer_plus_plus():
    f = {}
    for name in ("flash", "transformer_plus_plus"):
        cfg = impl.make_config(name, vocab_size=32768, d_model=768, n_layers=12, max_len=32768)
        f[name] = [forward_flops_per_token(name, cfg, T) for T in (512, 32768)]
    assert f["flash"][1] / f["flash"][0] < 1.2 < f["transformer_plus_plus"][1] / f["transformer_plus_plus"][0]


# ---- the registry's error paths -------------------------------------------------------------

def test_unknown_model_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid models: .*flash"):
        impl.build_model("flashy", vocab_size=10, d_model=8, n_layers=1, max_len=8)


def test_unknown_override_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid options: .*chunk"):
        impl.build_model("flash", vocab_size=10, d_model=8, n_layers=1, max_len=8, chunk_size=4)


@pytest.mark.parametrize("bad", [dict(d_model=0), dict(n_layers=-1), dict(max_len=2.5)])
def test_impossible_sizes_are_refused(bad):
    kw = dict(vocab_size=10, d_model=8, n_layers=1, max_len=8) | bad
    with pytest.raises(ValueError, match="must be a positive int"):
        impl.build_model("transformer", **kw)


def test_sequence_longer_than_max_len_is_refused():
    model = tiny("transformer")
    with pytest.raises(ValueError, match="exceeds max_len"):
        model(torch.randint(0, VOCAB, (1, MAX_LEN + 1)))


@pytest.mark.parametrize("name", MODELS)
def test_every_model_documents_its_fidelity(name):
    spec = impl.get_spec(name)
    assert spec.description and spec.fidelity
    for note in spec.fidelity:
        assert note.topic and note.paper and note.ours
        for opt in filter(None, (o.strip() for o in note.configurable.split(","))):
            assert opt in spec.options, f"{name}: fidelity note names unknown option {opt!r}"


@pytest.mark.parametrize("name", MODELS)
def test_bad_option_values_are_refused_before_building(name):
    """Every option of every model is checked by make_config (so a sweep refuses it before any work):
    a text option against its valid values, a flag as a bool, a size as a positive integer."""
    spec = impl.get_spec(name)
    for key, default in spec.options.items():
        bad = ["no such value"] if key in spec.choices else ["yes"] if isinstance(default, bool) else \
            [0, -4, 2.5, "abc", True] if default is None or isinstance(default, int) else []
        for value in bad:
            with pytest.raises(ValueError, match=f"model option {key}="):
                impl.make_config(name, vocab_size=10, d_model=8, n_layers=1, max_len=8, **{key: value})
        impl.make_config(name, vocab_size=10, d_model=8, n_layers=1, max_len=8, **{key: default})  # the default is valid
