"""torch.compile gives the same numbers as eager for the GAU models (the fused path we time on GPU)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import implementations as impl
from suite.model import compile_model


@pytest.mark.parametrize("name", ["flash", "flash_quad"])
def test_compiled_layers_match_eager_outputs_and_gradients(name):
    torch.manual_seed(0)
    eager = impl.build_model(name, vocab_size=40, d_model=32, n_layers=1, max_len=64, s=16, chunk=16) \
        if name == "flash" else impl.build_model(name, vocab_size=40, d_model=32, n_layers=1, max_len=64, s=16)
    compiled = impl.build_model(name, vocab_size=40, d_model=32, n_layers=1, max_len=64,
                                **({"s": 16, "chunk": 16} if name == "flash" else {"s": 16}))
    compiled.load_state_dict(eager.state_dict())
    try:
        compiled = compile_model(compiled)
        tokens = torch.randint(0, 40, (2, 40))
        out_c = compiled(tokens)
    except Exception as exc:  # pragma: no cover - depends on a C++ compiler being present
        pytest.skip(f"torch.compile unavailable on this machine: {exc.__class__.__name__}")
    out_e = eager(tokens)
    torch.testing.assert_close(out_c, out_e, rtol=1e-4, atol=1e-5)
    out_c.square().sum().backward()
    out_e.square().sum().backward()
    for (n, a), b in zip(compiled.named_parameters(), eager.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=n)


def _tiny_compiled(seed: int, T: int):
    """A compiled one-block Transformer++ after one forward at length T (its two residual blocks,
    attention and FFN, share one forward code object: two Dynamo cache entries)."""
    torch.manual_seed(seed)
    model = compile_model(impl.build_model("transformer_plus_plus", vocab_size=40, d_model=32, n_layers=1,
                                           max_len=64))
    model(torch.randint(0, 40, (2, T)))
    return model


@pytest.fixture
def compiler_or_skip():
    try:
        _tiny_compiled(0, 4)
    except Exception as exc:  # pragma: no cover - depends on a C++ compiler being present
        pytest.skip(f"torch.compile unavailable on this machine: {exc.__class__.__name__}: {exc}")


def test_runs_in_one_process_stay_compiled(compiler_or_skip, monkeypatch):
    """A sweep compiles model after model in one process: every run must get compiled graphs, not fall
    back to eager (or fail) once Dynamo's recompile limit for the layers' shared forward code is reached."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 2)  # one run's worth of graphs
    for i, T in enumerate((8, 16, 24)):  # three runs, three shapes: each needs its own graphs
        before = counters["stats"]["unique_graphs"]
        _tiny_compiled(i, T)
        assert counters["stats"]["unique_graphs"] > before, f"run {i} (T={T}) fell back to eager"


def test_exceeding_the_recompile_limit_fails_loudly(compiler_or_skip, monkeypatch):
    """Within one run, a shape beyond Dynamo's recompile limit must raise, never quietly run eager."""
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 2)
    model = _tiny_compiled(0, 8)
    assert torch._dynamo.config.fail_on_recompile_limit_hit
    with pytest.raises(Exception, match="(?i)recompile"):
        model(torch.randint(0, 40, (2, 16)))  # a second static shape: two graphs more than the limit


def test_compiled_step_loss_matches_eager_loss(compiler_or_skip):
    """A compiled run also compiles its cross-entropy (one fused pass over bf16 logits, no float32
    copy): same loss and same logits gradient as the eager loss_fn, ignored targets included."""
    from suite.objectives import IGNORE_INDEX, loss_fn
    from suite.runs import RunConfig
    from suite.step import Step

    cfg = RunConfig(model="transformer_plus_plus", context=16, tokens_per_step=64, compile=True)
    model = impl.build_model("transformer_plus_plus", vocab_size=40, d_model=32, n_layers=1, max_len=64)
    step = Step(model, cfg, torch.device("cpu"))
    assert step.loss is not loss_fn
    torch.manual_seed(0)
    logits = (torch.randn(4, 16, 40) * 3).bfloat16()
    targets = torch.randint(0, 40, (4, 16))
    targets[:, ::3] = IGNORE_INDEX
    grads = []
    for fn in (step.loss, loss_fn):
        x = logits.clone().requires_grad_()
        value = fn(x, targets)
        value.backward()
        grads.append((value.detach(), x.grad))
    (v_c, g_c), (v_e, g_e) = grads
    assert v_c.dtype == v_e.dtype == torch.float32
    torch.testing.assert_close(v_c, v_e, rtol=1e-5, atol=1e-6)
    assert g_c.dtype == torch.bfloat16 and (g_c[:, ::3] == 0).all()
    torch.testing.assert_close(g_c.float(), g_e.float(), rtol=1e-2, atol=1e-4)


def test_a_compile_mode_reaches_every_torch_compile_call(monkeypatch):
    """RunConfig(compile=MODE): its own variant, and the mode passed to each layer's and the loss's
    torch.compile; an unknown mode is refused before anything runs."""
    from suite.runs import RunConfig
    from suite.step import Step

    cfg = RunConfig(model="flash", context=16, tokens_per_step=64, compile="max-autotune-no-cudagraphs")
    assert cfg.variant == "flash[mode=max-autotune-no-cudagraphs]+compile"
    assert cfg.compile_mode == "max-autotune-no-cudagraphs"
    assert RunConfig(model="flash", context=16, compile=True).compile_mode is None
    assert RunConfig(model="flash", context=16, compile=True).variant == "flash+compile"
    with pytest.raises(ValueError, match="compile mode"):
        RunConfig(model="flash", context=16, compile="fastest")

    modes = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: modes.append(kw.get("mode")) or fn)
    model = impl.build_model("flash", vocab_size=40, d_model=32, n_layers=1, max_len=64, s=16, chunk=16)
    Step(model, cfg, torch.device("cpu"))
    assert len(modes) == 3 and set(modes) == {"max-autotune-no-cudagraphs"}  # two GAU layers and the loss


@pytest.mark.parametrize("mode, marks", [("reduce-overhead", True), ("max-autotune", True), ("default", False)])
def test_cuda_graph_modes_mark_every_step(monkeypatch, mode, marks):
    """Under a mode that records CUDA graphs every training step and evaluation batch starts a new graph step
    (on the CPU the mark is only counted here: torch.compile is not run)."""
    from suite.runs import RunConfig
    from suite.step import Step
    calls = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: calls.append(1))
    cfg = RunConfig(model="transformer", context=16, tokens_per_step=32, vocab_size=64, size="tiny")
    model = impl.build_model("transformer", vocab_size=64, d_model=32, n_layers=1, max_len=16)
    step = Step(model, cfg, torch.device("cpu"))
    step.cfg = dataclasses.replace(cfg, compile=mode)  # the mode, without compiling on the CPU
    x = torch.randint(0, 64, (2, 16))
    step(x, x)
    step.evaluate([(x, x), (x, x)])
    assert len(calls) == (3 if marks else 0)
