"""The JAX backend against the PyTorch models it ports (implementations/jax, suite/jax_step.py).

1. every model, causal and bidirectional: PyTorch weights converted into the JAX model give the same
   logits, loss and gradients, in float64 on both sides (JAX's float64 switched on for these tests only);
2. the backend's knobs (scan, rematerialisation) change nothing, and bf16 compute stays close;
3. AdamW: a few optax steps equal torch.optim.AdamW's with suite.optim's groups and schedule;
4. refusals: an unknown model, a peer, an option the port does not honour, unknown knobs;
5. run_jax: a tiny training run gives the PyTorch row's columns (plus the JAX ones), a falling loss and
   the PyTorch run's final loss (same init, same batches).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import sys

import numpy as np
import pandas as pd
import pytest
import torch

# XLA's CPU compiler at LLVM optimisation level 0 compiles these tiny models about twice as fast and runs
# them slower, which this module does not mind; only before JAX's CPU backend starts, never over a user's flags
if "jax" not in sys.modules:
    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
jax = pytest.importorskip("jax", reason="the JAX backend is optional (requirements.txt: jax, optax)")
pytest.importorskip("optax", reason="the JAX backend is optional (requirements.txt: jax, optax)")

import jax.numpy as jnp  # noqa: E402

import implementations as impl  # noqa: E402
from implementations import jax as impl_jax  # noqa: E402
from suite import jax_step  # noqa: E402
from suite import train as train_mod  # noqa: E402
from suite.batches import corpus_batches  # noqa: E402
from suite.objectives import IGNORE_INDEX, loss_fn as torch_loss  # noqa: E402
from suite.optim import lr_factor  # noqa: E402
from suite.runs import RunConfig  # noqa: E402
from suite.step import Step  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SEVEN = ["transformer", "transformer_plus", "transformer_plus_plus", "performer", "combiner", "flash_quad", "flash"]
VOCAB, D, LAYERS, MAX_LEN = 61, 32, 2, 48
# T = 20 is not a multiple of the chunk (8, small_overrides) nor of Combiner's block (8): padding, three
# chunks (so the causal exclusive prefix over chunks is exercised), and masks all take part.
B, T = 2, 20
EXTRA = {"performer": {"causal_chunk": 8, "n_features": 16}}  # chunked prefix sums at T = 20; small m
# Tolerances in float64 (unit round-off 1.1e-16), relative to the largest entry of each tensor. The two
# sides compute the same formulas in other orders (einsum vs matmul contraction order, fused vs separate
# adds), so they differ by a few ulps per operation, amplified by the depth of the graph (2 Transformer
# blocks or 4 GAUs; exp in FAVOR+). Measured on this machine for the seven models in both modes: logits
# within 2e-15, gradients within 4e-15. The bounds leave >= 250x headroom for other BLAS builds and thread
# counts, and stay far below any modelling difference (a float32 rounding anywhere shows as ~1e-7).
LOGITS_RTOL = 1e-12
GRAD_RTOL = 1e-12


@pytest.fixture
def x64():
    """JAX float64 for one test, restored afterwards (the flag is process-wide)."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def torch_model(name: str, causal: bool = True, dtype=torch.float64, seed: int = 0, **extra) -> torch.nn.Module:
    """A tiny PyTorch model with every parameter moved off its initial value (zero biases and offsets
    would hide a wrong conversion of them)."""
    torch.manual_seed(seed)
    spec = impl.get_spec(name)
    model = impl.build_model(name, vocab_size=VOCAB, d_model=D, n_layers=LAYERS, max_len=MAX_LEN, causal=causal,
                             **{**spec.small_overrides, **EXTRA.get(name, {}), **extra}).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and targets, a few targets ignored (-100) as in masked LM."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (B, T), generator=g)
    targets = torch.randint(0, VOCAB, (B, T), generator=g)
    targets[:, ::7] = IGNORE_INDEX
    return tokens, targets


def jax_loss_and_grads(apply, params, tokens, targets):
    """((loss, logits), gradients) in one compiled function."""
    def loss(p, x, y):
        logits = apply(p, x)
        return jax_step.loss_fn(logits, y)[0], logits

    fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
    return fn(params, jnp.asarray(tokens.numpy()), jnp.asarray(targets.numpy()))


def torch_grads_as_jax_tree(model, cfg):
    grads = {n: p.grad for n, p in model.named_parameters()}
    return impl_jax.convert(grads, impl_jax.layout(cfg)[0])


def assert_trees_close(actual, expected, rtol: float, what: str):
    """Leaf by leaf: |a - e| <= rtol * max|e| of the leaf; every expected leaf is nonzero (a parameter that
    does not reach the loss, or a leaf converted from the wrong entry, would show)."""
    flat_a = jax.tree_util.tree_leaves_with_path(actual)
    flat_e = jax.tree.leaves(expected)
    assert len(flat_a) == len(flat_e)
    for (path, a), e in zip(flat_a, flat_e):
        a, e = np.asarray(a), np.asarray(e)
        scale = np.abs(e).max()
        assert scale > 0, f"{what} {jax.tree_util.keystr(path)} is all zero"
        err = np.abs(a - e).max() / scale
        assert err <= rtol, f"{what} {jax.tree_util.keystr(path)}: relative error {err:.2e} > {rtol:.0e}"


# --------------------------------------------------------------------------- 1. logits and gradients

def check_parity(name: str, causal: bool, **options) -> None:
    model = torch_model(name, causal, **options)
    tokens, targets = batch()
    logits = model(tokens)
    loss = torch_loss(logits, targets)
    loss.backward()

    apply, params = impl_jax.from_torch(model)
    (jax_loss, out), grads = jax_loss_and_grads(apply, params, tokens, targets)
    out = np.asarray(out)
    assert out.dtype == np.float64 and out.shape == (B, T, VOCAB)
    ref = logits.detach().numpy()
    assert np.abs(out - ref).max() <= LOGITS_RTOL * np.abs(ref).max()
    assert abs(float(jax_loss) - loss.item()) <= LOGITS_RTOL * abs(loss.item())
    assert_trees_close(grads, torch_grads_as_jax_tree(model, model.config), GRAD_RTOL, f"{name} gradient")


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name", SEVEN)
def test_logits_loss_and_gradients_match_pytorch(name, causal, x64):
    check_parity(name, causal)


# every option the port honours, off its default at least once (with the defaults above: all of them)
OPTION_CASES = [
    ("flash", True, {"chunk_prefix": "matmul", "global_norm": "chunk", "rel_pos_form": "rope", "expansion": 1, "s": 16}),
    ("flash", False, {"parts": "local", "norm": "scalenorm", "init": "legacy"}),
    ("flash", True, {"parts": "global", "global_norm": "none", "rope": False, "rel_pos_bias": False, "chunk": 4}),
    ("flash_quad", True, {"quad_norm": "length", "rel_pos_form": "rope", "norm": "rmsnorm", "tie_embeddings": False}),
    ("transformer_plus_plus", True, {"attention_kernel": "materialized", "n_heads": 4, "norm": "rmsnorm"}),
    ("combiner", True, {"block": 4, "n_heads": 1}),
    ("performer", True, {"n_features": 8, "causal_chunk": 3, "tie_embeddings": False}),
]


@pytest.mark.parametrize("name, causal, options", OPTION_CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(OPTION_CASES)])
def test_model_options_match_pytorch(name, causal, options, x64):
    check_parity(name, causal, **options)


def test_option_cases_cover_every_honoured_option():
    """Each option the port honours is set off its default by some case above (shared options, such as
    norm, run the same JAX code in every model that has them)."""
    covered = {k for _, _, options in OPTION_CASES for k in options}
    assert covered == set().union(*impl_jax.HONOURED.values())


def test_converted_parameters_do_not_share_memory_with_torch(x64):
    """An in-place update of the PyTorch model (an optimiser step) must not reach the JAX copy."""
    model = torch_model("flash")
    _, params = impl_jax.from_torch(model)
    before = np.array(params["embed"])
    with torch.no_grad():
        model.embed.weight.add_(1.0)
    np.testing.assert_array_equal(np.asarray(params["embed"]), before)


def test_parameter_count_matches_pytorch():
    for name in ("flash", "transformer"):
        model = torch_model(name, dtype=torch.float32, tie_embeddings=False)
        _, params = impl_jax.from_torch(model)
        assert impl_jax.n_params(params) == sum(p.numel() for p in model.parameters())
        assert "head" in params


# --------------------------------------------------------------------------- 2. the backend's knobs

def test_scan_and_remat_change_no_number(x64):
    """A Python loop over the layers and each rematerialisation policy give the scanned model's loss and
    gradients (rounding only: XLA may fuse differently)."""
    model = torch_model("flash")
    tokens, targets = batch()
    apply, params = impl_jax.from_torch(model)
    (loss, _), grads = jax_loss_and_grads(apply, params, tokens, targets)
    for knobs in ({"scan": False}, {"remat": "dots"}):
        other, _ = impl_jax.from_torch(model, **knobs)
        (loss2, _), grads2 = jax_loss_and_grads(other, params, tokens, targets)
        assert abs(float(loss2) - float(loss)) <= LOGITS_RTOL * abs(float(loss)), knobs
        assert_trees_close(grads2, grads, GRAD_RTOL, f"gradient with {knobs}")


@pytest.mark.parametrize("name", ["flash", "transformer_plus_plus"])
def test_bf16_compute_stays_close_to_float32(name):
    """bf16 matmuls and relu^2 scores on float32 masters: logits in bf16, within bf16 rounding (8 bits of
    mantissa, 2^-8 ~ 0.4% per operation, a few percent over the model) of the float32 model's."""
    model = torch_model(name, dtype=torch.float32)
    tokens = jnp.asarray(batch()[0].numpy())
    apply32, params = impl_jax.from_torch(model)
    apply16, _ = impl_jax.from_torch(model, dtype="bfloat16")
    ref = np.asarray(jax.jit(apply32)(params, tokens))
    out = jax.jit(apply16)(params, tokens)
    assert out.dtype == jnp.bfloat16
    err = np.abs(np.asarray(out, dtype=np.float32) - ref).max() / np.abs(ref).max()
    assert 0 < err < 5e-2


# the element types of a dot_general's two operands in StableHLO text: "(tensor<2x20x32xbf16>, tensor<...>)"
DOT_OPERANDS = re.compile(r"stablehlo\.dot_general[^\n]*?: \(tensor<(?:\d+x)*([a-z]+\d+)>, tensor<(?:\d+x)*([a-z]+\d+)>\)")


@pytest.mark.parametrize("name, causal, options", [
    ("flash", True, {"chunk_prefix": "matmul"}), ("flash", True, {"chunk_prefix": "cumsum"}),
    ("flash", False, {}), ("flash_quad", True, {})])
def test_bf16_training_step_runs_every_gemm_in_bf16(name, causal, options):
    """Under bf16 compute every matmul of the GAU models' forward and backward takes bf16 operands, as
    PyTorch's autocast runs them: a float32 result requested anywhere (e.g. the chunk states) turns the
    GEMMs of its backward into float32 GEMMs on float32 copies of [tokens, e] tensors."""
    model = torch_model(name, causal=causal, dtype=torch.float32, **options)
    apply, params = impl_jax.from_torch(model, dtype="bfloat16")
    tokens, targets = (jnp.asarray(t.numpy()) for t in batch())

    def loss(p):
        return jax_step.loss_fn(apply(p, tokens), targets)[0]

    hlo = jax.jit(jax.grad(loss)).lower(params).as_text()
    operands = DOT_OPERANDS.findall(hlo)
    assert len(operands) >= 3 * LAYERS  # the forward's and the backward's GEMMs were all found
    assert {dtype for pair in operands for dtype in pair} == {"bf16"}, operands


# --------------------------------------------------------------------------- 3. AdamW steps

ADAMW_STEPS = 4
ADAMW_PARAM_RTOL = 1e-11


def test_adamw_steps_match_pytorch(x64):
    """optax's steps against suite.step.Step (torch.optim.AdamW with suite.optim's groups), float64, with
    warm-up then cosine decay, weight decay, and gradient clipping active. Each step's loss agrees to 1e-12
    (measured 2e-16), the final parameters to 1e-11 of their scale (measured 6e-15 for FLASH; up to 2e-13
    for the performer): float64 rounding amplified by Adam's division by sqrt(v), whose early updates are
    ~lr * g / |g| and so sensitive where g is tiny."""
    cfg = RunConfig(model="flash", context=T, tokens_per_step=B * T, lr=1e-2, warmup_steps=2, max_steps=ADAMW_STEPS,
                    budget_s=None, weight_decay=0.1, grad_clip=0.05, overrides=(("chunk", 8),))
    model = torch_model("flash")
    apply, params = impl_jax.from_torch(model)
    initial = jax.tree.map(np.array, params)  # the step takes the parameters over (donated buffers)
    torch_loss(model(batch(seed=0)[0]), batch(seed=0)[1]).backward()
    norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters()))
    model.zero_grad(set_to_none=True)
    assert norm > 2 * cfg.grad_clip  # clipping is active (at least at the first step): this test checks it
    mask = jax_step.decay_mask(model, model.config)
    flags = jax.tree.leaves(mask)
    assert any(flags) and not all(flags)  # both groups present
    jstep = jax_step.JaxStep(apply, params, cfg, mask, jax.devices("cpu")[0])
    tstep = Step(model, cfg, torch.device("cpu"))
    for n in range(ADAMW_STEPS):
        tokens, targets = batch(seed=n)
        scale = lr_factor(cfg, n, n / cfg.max_steps)
        t_loss = tstep(tokens, targets, scale).item()
        j_loss = float(jstep(jnp.asarray(tokens.numpy()), jnp.asarray(targets.numpy()), scale))
        assert abs(j_loss - t_loss) <= LOGITS_RTOL * abs(t_loss), (n, j_loss, t_loss)
    expected = impl_jax.convert(dict(model.named_parameters()), impl_jax.layout(model.config)[0])
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), expected, initial)
    assert min(jax.tree.leaves(moved)) > 0  # every parameter moved
    assert_trees_close(jstep.params, expected, ADAMW_PARAM_RTOL, "parameter after AdamW")


def test_weight_decay_groups_are_suite_optims():
    """Decayed: the dense weights and the embedding; not: biases, norms, the GAU's gains and offsets, the
    relative bias (suite.optim.no_weight_decay, read through the converter's layout)."""
    model = torch_model("flash", dtype=torch.float32)
    mask = jax_step.decay_mask(model, model.config)
    assert mask["embed"] and mask["layers"]["hidden"]["w"] and mask["layers"]["out"]["w"]
    assert not any([mask["layers"]["hidden"]["b"], mask["layers"]["gamma"], mask["layers"]["beta"],
                    mask["layers"]["rel"]["weight"], mask["norm"]["weight"], mask["layers"]["norm"]["bias"]])


# --------------------------------------------------------------------------- 4. refusals

def small_config(name: str, **options) -> impl.ModelConfig:
    return impl.make_config(name, vocab_size=VOCAB, d_model=D, n_layers=1, max_len=MAX_LEN, **options)


def test_unknown_model_is_refused():
    cfg = dataclasses.replace(small_config("flash"), name="nope")
    with pytest.raises(ValueError, match="unknown model 'nope'.*flash"):
        impl_jax.build_model(cfg)


def test_peer_is_refused():
    cfg = impl.ModelConfig(name="peer:hf_llama", vocab_size=VOCAB, d_model=D, n_layers=1, max_len=MAX_LEN)
    with pytest.raises(ValueError, match="no JAX implementation.*flash"):
        impl_jax.check_supported(cfg)


def test_option_the_port_does_not_honour_is_refused():
    """An option the JAX port does not know (here the GAU's fused-kernel choice, or any future option) is
    accepted at its registry default and refused, by name, at any other value."""
    cfg = small_config("flash")
    impl_jax.check_supported(dataclasses.replace(cfg, options={**cfg.options}))
    bad = dataclasses.replace(cfg, options={**cfg.options, "kernel": "triton"})
    with pytest.raises(ValueError, match="model option kernel='triton' of model 'flash' is not supported by the JAX"):
        impl_jax.check_supported(bad)
    with pytest.raises(ValueError, match="kernel='triton'"):
        impl_jax.make_apply(bad)


def test_every_registry_option_of_the_seven_is_honoured():
    """The port keeps up with the registry: an option the PyTorch models gained is either honoured here or
    deliberately left to its default (listed below), never silently ignored at another value."""
    left_to_default = {"kernel"}  # the GAU's Triton kernels: a PyTorch implementation choice
    for name in SEVEN:
        unknown = set(impl.get_spec(name).options) - impl_jax.HONOURED[name] - left_to_default
        assert not unknown, f"{name}: options of the PyTorch model the JAX port does not know: {sorted(unknown)}"


@pytest.mark.parametrize("knobs, words", [({"remat": "some"}, "unknown remat policy 'some'"),
                                          ({"dtype": "float16"}, "unknown JAX compute dtype 'float16'")])
def test_unknown_knobs_are_refused(knobs, words):
    with pytest.raises(ValueError, match=words):
        impl_jax.make_apply(small_config("flash"), **knobs)


def test_float64_model_without_jax_float64_is_refused():
    if jax.config.jax_enable_x64:
        pytest.skip("JAX float64 is on in this process")
    with pytest.raises(ValueError, match="jax_enable_x64"):
        impl_jax.from_torch(torch_model("transformer"))


def test_importing_implementations_does_not_import_jax():
    import subprocess
    import sys

    code = "import sys, implementations as i; i.list_models(); i.build_model('flash', vocab_size=8, d_model=16, " \
           "n_layers=1, max_len=8); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- 5. run_jax

def test_run_jax_trains_like_the_pytorch_run(corpus):
    """The same run on both backends: the JAX row has the PyTorch row's columns plus the JAX ones, its
    loss falls, and (same initial weights, same batches, float32) its final held-out loss is the
    PyTorch run's to float32 rounding accumulated over the steps."""
    cfg = RunConfig(model="flash", context=32, corpus=corpus, tokens_per_step=128, budget_s=None, max_steps=20,
                    evals=2, eval_tokens=512, warmup_steps=5, overrides=(("chunk", 8),))
    data = corpus_batches(cfg)
    row, curve = jax_step.run_jax(cfg, data)
    assert row["status"] == "ok", row["message"]
    ref, ref_curve = train_mod.run(cfg, data)
    assert ref["status"] == "ok", ref["message"]
    assert set(ref) <= set(row), f"columns the JAX row lacks: {sorted(set(ref) - set(row))}"
    assert set(row) - set(ref) <= set(jax_step.JAX_FIELDS), sorted(set(row) - set(ref) - set(jax_step.JAX_FIELDS))
    assert row["backend"] == "jax" and row["jax_platform"] == "cpu" and row["compile_s"] > 0
    assert row["epochs"] == ref["epochs"] and row["resumed_from_step"] is None
    assert row["n_params"] == ref["n_params"] and row["steps"] == ref["steps"] == 20
    assert [set(r) for r in curve] == [set(r) for r in ref_curve]
    assert [r["step"] for r in curve] == [r["step"] for r in ref_curve]
    assert curve[-1]["eval_loss"] < curve[0]["eval_loss"] < math.log(data.vocab_size)
    assert row["final_train_loss"] < math.log(data.vocab_size)
    assert abs(row["final_eval_loss"] - ref["final_eval_loss"]) < 1e-3 * ref["final_eval_loss"]


def test_run_jax_speed_row(monkeypatch):
    """A speed row; remat "auto" on a device too small for every policy's compiled step ends with the last
    policy ("full") and counts every compile."""
    monkeypatch.setattr(jax_step, "memory_limit", lambda device: 1.0)  # one byte: nothing fits
    cfg = RunConfig(model="transformer_plus_plus", kind="speed", context=32, tokens_per_step=128, vocab_size=64,
                    warmup_timing_steps=1, timed_steps=3)
    row, curve = jax_step.run_jax(cfg, remat="auto")
    assert row["status"] == "ok", row["message"]
    assert curve == [] and row["timed_steps"] == 3 and row["step_ms_median"] > 0 and row["tokens_per_s"] > 0
    assert row["sdpa_backend_seen"] == "xla" and row["step_mem_gib"] > 0
    assert row["jax_remat"] == jax_step.REMAT_AUTO[-1] and row["compile_s"] > 0


def test_run_jax_auto_remat_takes_the_first_policy_that_fits(monkeypatch):
    monkeypatch.setattr(jax_step, "memory_limit", lambda device: float("inf"))
    cfg = RunConfig(model="transformer", kind="speed", context=16, tokens_per_step=32, vocab_size=64,
                    warmup_timing_steps=0, timed_steps=1)
    assert jax_step.run_jax(cfg, remat="auto")[0]["jax_remat"] == "none"


def test_run_jax_peak_is_the_runs_own_or_unknown(monkeypatch):
    """The device's peak is process-wide: a run below an earlier run's peak gets nan and says so, never the
    earlier run's number; a run that sets a new peak (or the first) gets it."""
    peaks = iter([0.0, 3 * 2**30, 5 * 2**30, 5 * 2**30, 5 * 2**30, 7 * 2**30])  # (before, after) per run
    monkeypatch.setattr(jax_step, "peak_bytes", lambda device: next(peaks))
    cfg = RunConfig(model="transformer", kind="speed", context=16, tokens_per_step=32, vocab_size=64,
                    warmup_timing_steps=0, timed_steps=1)
    first, below, above = (jax_step.run_jax(cfg, remat="none")[0] for _ in range(3))
    assert first["peak_mem_gib"] == 3 and not first["message"]
    assert math.isnan(below["peak_mem_gib"]) and "at most 5.0 GiB" in below["message"] and below["status"] == "ok"
    assert above["peak_mem_gib"] == 7
    assert jax_step.own_peak(math.nan, 2.0) == 2.0 and math.isnan(jax_step.own_peak(2.0, math.nan))


def test_run_jax_failure_is_a_row():
    cfg = RunConfig(model="flash", kind="speed", context=32, tokens_per_step=128, vocab_size=64, device="cuda:7")
    row, _ = jax_step.run_jax(cfg)
    assert row["status"] == "error" and row["message"]
    assert set(jax_step.JAX_FIELDS) <= set(row) and row["backend"] == "jax"


# --------------------------------------------------------------------------- 6. the command line

def test_run_all_trains_on_the_jax_backend(tmp_path):
    from suite import cli
    out = tmp_path / "out"
    assert cli.main(["--preset", "smoke", "--models", "flash", "--backend", "jax", "--contexts", "32",
                     "--tokens-per-step", "256", "--steps", "6", "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs["variant"]) == ["flash+jax"] and list(runs["backend"]) == ["jax"]
    assert runs["status"].eq("ok").all() and runs["jax_version"].notna().all()


def test_run_all_refuses_what_the_jax_backend_cannot_do(capsys, tmp_path):
    import argparse

    from suite import cli
    from suite.runs import RunConfig
    from suite.sweep import UsageError
    assert cli.main(["--preset", "smoke", "--backend", "jax", "--ddp", "--out", str(tmp_path / "o")]) == 2
    assert "--backend jax: --ddp" in capsys.readouterr().err
    with pytest.raises(UsageError, match="peer:hf_llama have no JAX implementation"):
        cli.check_backend([RunConfig(model="peer:hf_llama", context=32, backend="jax")], argparse.Namespace(ddp=False))


def test_a_resumed_jax_run_continues_the_curve_of_one_never_stopped(tmp_path, monkeypatch, corpus):
    """Checkpoints on the JAX backend: the parameters and optimiser state saved as host arrays and put back."""
    from suite.batches import corpus_batches
    from suite.checkpoint import Checkpointing
    from suite.runs import RunConfig
    cfg = RunConfig(model="flash", context=32, tokens_per_step=256, corpus=corpus, budget_s=None, max_steps=12,
                    evals=4, eval_tokens=512, warmup_steps=2, lr=3e-3, backend="jax")
    whole, whole_curve = jax_step.run_jax(cfg, corpus_batches(cfg))
    ckpt = Checkpointing(tmp_path, every_steps=4, every_s=None)
    real, calls = jax_step.JaxStep.__call__, {"n": 0}

    def stop_at_7(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(jax_step.JaxStep, "__call__", stop_at_7)
    with pytest.raises(KeyboardInterrupt):
        jax_step.run_jax(cfg, corpus_batches(cfg), checkpoints=ckpt)
    monkeypatch.setattr(jax_step.JaxStep, "__call__", real)
    resumed, resumed_curve = jax_step.run_jax(cfg, corpus_batches(cfg), checkpoints=ckpt)
    assert whole["status"] == resumed["status"] == "ok" and resumed["resumed_from_step"] == 4
    assert [r["step"] for r in resumed_curve] == [r["step"] for r in whole_curve] == [3, 6, 9, 12]
    for a, b in zip(whole_curve, resumed_curve):
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-6)
