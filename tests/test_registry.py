"""The registry is the one place a model is described: a baseline added in one file appears, labelled,
ordered and styled, in a sweep's tables and figures, with no other file touched."""
from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

import implementations as impl
from suite import cli
from suite.analysis import Variant, model_label

THROWAWAY = '''
from implementations.models.transformer import build_transformer, transformer_flops
from implementations.registry import FidelityNote, ModelSpec, register_model

register_model(ModelSpec(
    name="throwaway", description="a Transformer++ under another name, for a test",
    build=lambda cfg: build_transformer(cfg, rope=True, glu=True),
    flops=lambda cfg, T: transformer_flops(cfg, T, glu=True),
    options={"n_heads": None, "attention_kernel": "sdpa", "norm": "layernorm", "tie_embeddings": True},
    fidelity=(FidelityNote("everything", "not a paper model", "a copy of Transformer++"),),
    label="Throwaway Net", color="#123456", marker="v", order=4,
))
'''


@pytest.fixture
def throwaway(tmp_path):
    path = tmp_path / "throwaway_model.py"
    path.write_text(THROWAWAY)
    spec = importlib.util.spec_from_file_location("throwaway_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield "throwaway"
    impl.unregister_model("throwaway")
    sys.modules.pop("throwaway_model", None)


def test_a_baseline_from_one_file_appears_labelled_and_styled(throwaway, tmp_path):
    from conftest import write_corpus
    corpus = "text:" + str(write_corpus(tmp_path / "corpus.txt"))
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = cli.main(["--preset", "smoke", "--models", "transformer_plus_plus,throwaway,flash", "--contexts", "32",
                         "--steps", "3", "--tokens-per-step", "256", "--corpus", corpus, "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    quality = (out / "tables" / "quality.md").read_text()
    rows = [line.split("|")[1].strip() for line in quality.splitlines() if line.startswith("| ") and "model" not in line]
    assert rows == ["Transformer++", "Throwaway Net", "FLASH"]  # its label, at its order (between 2 and 6)
    svg = (out / "figures" / "quality_vs_time.svg").read_text()
    assert "Throwaway Net" in svg and "#123456" in svg
    spec = Variant("throwaway+compile", "throwaway").spec
    assert (spec.display_color, spec.display_marker) == ("#123456", "v")
    assert model_label("throwaway") == "Throwaway Net"


def test_every_paper_model_and_peer_has_its_own_identity():
    names = impl.list_models("paper") + impl.list_models("peer", peers=True)
    assert impl.list_models("paper") == ["transformer", "transformer_plus", "transformer_plus_plus", "performer",
                                         "combiner", "flash_quad", "flash"]
    specs = [impl.get_spec(n) for n in names]
    for s in specs:
        assert s.label and s.color and s.marker, f"{s.name} has no label, colour or marker of its own"
    paper = specs[:7]
    assert len({s.color for s in paper}) == 7 and len({s.label for s in specs}) == len(specs)
    assert [s.name for s in sorted(specs, key=lambda s: Variant(s.name, s.name).sort_key)] == names


def test_peers_are_registered_but_out_of_list_models_and_refused_clearly():
    assert not any(impl.is_peer(n) for n in impl.list_models())
    assert "peer:flash_pytorch" in impl.list_models(peers=True)
    assert impl.get_spec("peer:hf_llama").equivalent == "transformer_plus_plus"
    with pytest.raises(ValueError, match="valid peers: peer:flash_pytorch, peer:hf_llama"):
        impl.get_spec("peer:nope")
    with pytest.raises(ValueError, match="no bidirectional mode"):
        impl.make_config("peer:hf_llama", vocab_size=10, d_model=8, n_layers=1, max_len=8, causal=False)
    with pytest.raises(ValueError, match="unknown model option"):
        impl.make_config("peer:flash_pytorch", vocab_size=10, d_model=8, n_layers=1, max_len=8, chunk=64)
    with pytest.raises(ValueError, match="registered twice|peer"):
        impl.register_model(impl.ModelSpec(name="peerless", description="", build=None, flops=None, tags=("peer",)))


def test_a_missing_peer_package_is_a_clear_error():
    """The peers' packages are optional: a peer whose package is absent says which one to install."""
    absent = [(n, p) for n, p in (("peer:hf_llama", "transformers"), ("peer:flash_pytorch", "flash_pytorch"))
              if importlib.util.find_spec(p) is None]
    if not absent:
        pytest.skip("both peers' packages are installed here")
    for name, package in absent:
        with pytest.raises(ValueError, match=f"needs the package '{package}'"):
            impl.build_model(name, vocab_size=10, d_model=8, n_layers=1, max_len=8)
