"""The profiler's breakdown of a training step into kinds of work (suite/profile.py)."""
from __future__ import annotations

import pytest

from suite.profile import breakdown, kernel_table, kind_of, main


@pytest.mark.parametrize("name, kind", [
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "matmul"),
    ("aten::bmm", "matmul"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26", "attention (fused SDPA)"),
    ("triton_red_fused__to_copy_add_cat_mul_silu_silu_backward_squeeze_sum_view_13",
     "compiled reductions (triton red/per)"),
    ("triton_poi_fused_silu_view_3", "compiled element-wise (triton poi)"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxBackward<4, float, float, float>", "softmax / cross-entropy"),
    ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>", "copies / casts"),
    ("void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor>", "optimizer"),
    ("Memcpy HtoD (Pageable -> Device)", "copies / casts"),
    ("some_unknown_kernel", "other"),
])
def test_kernel_names_fall_into_kinds(name, kind):
    assert kind_of(name) == kind


def test_breakdown_is_per_step_and_adds_up():
    events = [("nvjet_a", 4000.0, 4), ("aten::mm", 2000.0, 2), ("triton_poi_x", 1000.0, 2), ("mystery", 1000.0, 2)]
    rows = breakdown(events, steps=2)
    assert [r[0] for r in rows] == ["matmul", "compiled element-wise (triton poi)", "other"]
    assert rows[0][1] == pytest.approx(3.0) and rows[0][2] == 3  # (4000 + 2000) us over 2 steps; 6 calls / 2
    assert sum(r[3] for r in rows) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        breakdown(events, steps=0)


def test_kernel_table_is_per_step_largest_first_and_capped():
    events = [("triton_poi_x", 1000.0, 2), ("nvjet_a", 4000.0, 4), ("mystery", 500.0, 2)]
    lines = kernel_table(events, steps=2, rows=2).splitlines()
    assert lines[0] == "## Per training step, the 2 most expensive of 3"
    assert lines[4] == "| 2.00 | 2 | matmul | `nvjet_a` |"
    assert lines[5] == "| 0.50 | 1 | compiled element-wise (triton poi) | `triton_poi_x` |"
    assert len(lines) == 6


def test_cpu_profile_of_a_tiny_model_writes_the_breakdown(tmp_path):
    out = tmp_path / "p.txt"
    assert main(["--model", "flash", "--context", "64", "--size", "tiny", "--tokens-per-step", "256",
                 "--vocab-size", "257", "--device", "cpu", "--steps", "1", "--set", "chunk=16", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# speed:flash[chunk=16]:clm:T=64")
    assert "vocab=257" in text.splitlines()[0]
    assert "## Per training step, by kind of work (CPU ops, self time)" in text
    assert "| matmul |" in text and "| total |" in text
    assert "most expensive of" in text


@pytest.mark.parametrize("args, message", [
    (["--model", "nope"], "valid models"),
    (["--model", "flash", "--set", "chunkk=3"], "valid options"),
    (["--model", "flash", "--tokens-per-step", "32"], "at most tokens_per_step"),
])
def test_bad_requests_are_usage_errors_before_any_work(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args + ["--context", "64", "--size", "tiny", "--device", "cpu"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("device, message", [("mps", "valid devices: cpu, cuda, cuda:N"), ("gpu", "valid devices"),
                                             ("cuda:99", "--device cuda:99")])
def test_a_device_this_machine_lacks_is_a_usage_error(device, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--model", "flash", "--context", "64", "--size", "tiny", "--tokens-per-step", "256", "--device", device])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
