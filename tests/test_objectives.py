"""Tokenizers, token streams, batch sampling and the causal / masked LM objectives (CPU)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite.data import DataError
from suite.objectives import (DOC_SEPARATOR, IGNORE_INDEX, TokenData, causal_lm_batch,
                              eval_batches, loss_fn, make_objective, masked_lm_batch,
                              num_eval_windows, sample_batch)
from suite.tokenizer import (BPETokenizer, ByteTokenizer, bits_per_byte, bytes_per_token,
                             make_tokenizer)

TEXT = ("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"
        "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date.\n")
DOCS = [TEXT * 3, "To be, or not to be, that is the question.\n" * 5, "Ünïcödé — ☃ 🚀 text.\n" * 4]


# ----------------------------------------------------------------------------- tokenizers

def test_byte_tokenizer_roundtrip():
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.mask_id, tok.name) == (257, 256, "bytes")
    for s in DOCS + ["", "a", "\x00\x1e\n"]:
        ids = tok.encode(s)
        assert isinstance(ids, np.ndarray) and ids.dtype in (np.int32, np.int64)
        assert len(ids) == len(s.encode("utf-8")) and (ids < 256).all() and (ids >= 0).all()
        assert tok.decode(ids) == s
    assert tok.decode(np.array([104, 256, 105])) == "hi"  # MASK has no bytes
    assert tok.decode(torch.tensor([104, 105])) == "hi"
    assert tok.identity() == ByteTokenizer().identity()


@pytest.fixture(scope="module")
def bpe():
    return make_tokenizer("bpe", DOCS, vocab_size=300)


def test_bpe_trains_and_roundtrips(bpe):
    assert isinstance(bpe, BPETokenizer) and bpe.name == "bpe"
    assert 257 < bpe.vocab_size <= 300 and bpe.mask_id == 0
    for s in DOCS + ["unseen wörds ∑ and \t tabs  ", "a [MASK] literal"]:
        ids = bpe.encode(s)
        assert ids.dtype in (np.int32, np.int64) and (ids < bpe.vocab_size).all()
        assert bpe.decode(ids) == s
    assert bpe.mask_id not in bpe.encode("a [MASK] literal")  # text is never the mask token
    assert len(bpe.encode(TEXT)) < len(TEXT.encode("utf-8"))  # merges learned


def test_bpe_identity(bpe, tmp_path):
    assert bpe.identity().startswith("bpe:")
    assert make_tokenizer("bpe", DOCS, vocab_size=300).identity() == bpe.identity()  # deterministic
    assert make_tokenizer("bpe", DOCS[:1], vocab_size=300).identity() != bpe.identity()
    bpe.save(tmp_path / "tok.json")
    loaded = BPETokenizer.from_file(tmp_path / "tok.json")
    assert loaded.identity() == bpe.identity() and loaded.encode(TEXT).tolist() == bpe.encode(TEXT).tolist()


def test_make_tokenizer_errors():
    assert isinstance(make_tokenizer("bytes", []), ByteTokenizer)
    with pytest.raises(ValueError, match="bytes, bpe"):
        make_tokenizer("wordpiece", DOCS)
    with pytest.raises(ValueError):
        make_tokenizer("bytes", DOCS, vocab_size=1000)
    with pytest.raises(ValueError):
        make_tokenizer("bpe", DOCS, vocab_size=100)


def test_bytes_per_token_and_bpb(bpe):
    assert bytes_per_token(ByteTokenizer(), DOCS) == 1.0
    bpt = bytes_per_token(bpe, DOCS)
    assert bpt > 1.0
    n_bytes = sum(len(d.encode()) for d in DOCS)
    assert bpt == pytest.approx(n_bytes / sum(len(bpe.encode(d)) for d in DOCS))
    assert bits_per_byte(math.log(2), 1.0) == pytest.approx(1.0)
    assert bits_per_byte(2.0, bpt) == pytest.approx(2.0 / math.log(2) / bpt)


# ----------------------------------------------------------------------------- token stream

def test_token_data_concatenates_with_separator():
    tok = ByteTokenizer()
    data = TokenData.from_documents(["ab", "c", "dé"], tok)
    sep = ord(DOC_SEPARATOR)
    assert data.tokens.dtype == torch.long and data.tokens.dim() == 1
    assert data.tokens.tolist() == [97, 98, sep, 99, sep, 100, 0xC3, 0xA9]
    assert data.n_docs == 3 and data.n_bytes == 8 == len(data) and data.bytes_per_token == 1.0
    assert tok.decode(data.tokens).split(DOC_SEPARATOR) == ["ab", "c", "dé"]


def test_token_data_bpe(bpe):
    data = TokenData.from_documents(DOCS, bpe)
    assert bpe.decode(data.tokens).split(DOC_SEPARATOR) == DOCS
    assert data.bytes_per_token > 1.0


def _stream(n=1000):
    return TokenData(torch.arange(n, dtype=torch.long), 1, n, "test")


def test_sample_batch_deterministic_windows():
    data = _stream()
    a = sample_batch(data, 8, 16, torch.Generator().manual_seed(0))
    b = sample_batch(data, 8, 16, torch.Generator().manual_seed(0))
    c = sample_batch(data, 8, 16, torch.Generator().manual_seed(1))
    assert a.shape == (8, 17) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a[:, 1:] - a[:, :-1] == 1).all()  # consecutive tokens of the stream
    assert a.min() >= 0 and a.max() <= 999
    # every valid offset, including the last, is reachable
    tiny = _stream(5)
    starts = sample_batch(tiny, 400, 3, torch.Generator().manual_seed(0))[:, 0]
    assert set(starts.tolist()) == {0, 1}


def test_too_few_tokens_is_a_data_error():
    with pytest.raises(DataError, match="fewer than one window"):
        sample_batch(_stream(16), 2, 16, torch.Generator())
    with pytest.raises(DataError):
        eval_batches(_stream(10), 2, 16)
    assert sample_batch(_stream(17), 2, 16, torch.Generator()).shape == (2, 17)


def test_eval_batches_non_overlapping_and_capped():
    data = _stream(1001)  # 1000 predicted tokens = 100 windows of 10
    assert num_eval_windows(data, 10) == 100
    batches = eval_batches(data, 8, 10)
    assert [b.shape[0] for b in batches] == [8] * 12 + [4]
    windows = torch.cat(batches)
    assert windows.shape == (100, 11)
    assert torch.equal(windows[:, 0], torch.arange(0, 1000, 10))  # in order, stride = context
    targets = windows[:, 1:].reshape(-1)
    assert torch.equal(targets, torch.arange(1, 1001))  # each token predicted exactly once
    capped = eval_batches(data, 8, 10, max_batches=3)
    assert len(capped) == 3 and all(b.shape == (8, 11) for b in capped)
    starts = torch.cat(capped)[:, 0]
    assert len(set(starts.tolist())) == 24 and (starts % 10 == 0).all()
    assert starts.max() >= 900  # spread over the whole stream, not just its head
    assert all(torch.equal(x, y) for x, y in zip(capped, eval_batches(data, 8, 10, max_batches=3)))


# ----------------------------------------------------------------------------- objectives

def test_causal_shift():
    window = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    x, y = causal_lm_batch(window)
    assert torch.equal(x, torch.tensor([[1, 2, 3], [5, 6, 7]]))
    assert torch.equal(y, torch.tensor([[2, 3, 4], [6, 7, 8]]))
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_mlm_proportions():
    g = torch.Generator().manual_seed(0)
    window = torch.randint(0, 256, (64, 4097), generator=g)
    original = window[:, :-1]
    x, y = masked_lm_batch(window, 256, 257, torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (64, 4096)
    chosen = y != IGNORE_INDEX
    n = chosen.sum().item()
    assert abs(n / chosen.numel() - 0.15) < 0.005
    masked = (x == 256) & chosen
    changed = (x != original) & (x != 256) & chosen
    same = (x == original) & chosen
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    assert abs(changed.sum().item() / n - 0.1 * 255 / 256) < 0.01  # a random token may equal the old
    assert abs(same.sum().item() / n - (0.1 + 0.1 / 256)) < 0.01
    # targets: original token where chosen, -100 elsewhere; unchosen inputs untouched
    assert torch.equal(y[chosen], original[chosen])
    assert (y[~chosen] == IGNORE_INDEX).all()
    assert torch.equal(x[~chosen], original[~chosen])
    assert (x[~chosen] != 256).all()
    # random replacements are real tokens, never MASK, spread over the vocabulary
    assert x.min() >= 0 and x.max() <= 256
    assert len(set(x[changed].tolist())) > 200


def test_mlm_deterministic_and_mask_id_zero():
    window = torch.randint(1, 50, (4, 65), generator=torch.Generator().manual_seed(0))
    a = masked_lm_batch(window, 0, 50, torch.Generator().manual_seed(5))
    b = masked_lm_batch(window, 0, 50, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    big = torch.randint(1, 50, (32, 1025), generator=torch.Generator().manual_seed(1))
    x, y = masked_lm_batch(big, 0, 50, torch.Generator().manual_seed(2))
    replaced = (x != big[:, :-1]) & (x != 0)
    assert replaced.any() and x[replaced].min() >= 1 and x.max() < 50
    assert masked_lm_batch(window, 0, 50, torch.Generator(), drop_last=False)[0].shape == (4, 65)


def test_mlm_every_row_has_a_target():
    window = torch.randint(0, 256, (256, 4))
    _, y = masked_lm_batch(window, 256, 257, torch.Generator().manual_seed(0))
    assert ((y != IGNORE_INDEX).sum(dim=1) >= 1).all()


def test_make_objective():
    window = torch.randint(0, 256, (2, 9))
    x, y = make_objective("clm")(window, None)
    assert torch.equal(y, window[:, 1:])
    x, y = make_objective("mlm", mask_id=256, vocab_size=257)(window, torch.Generator().manual_seed(0))
    assert x.shape == (2, 8)
    with pytest.raises(ValueError):
        make_objective("mlm")
    with pytest.raises(ValueError, match="clm, mlm"):
        make_objective("span")


def test_loss_ignores_unchosen_positions():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    targets = torch.tensor([[1, -100, 3, -100, 4], [-100, -100, 2, 7, -100]])
    keep = targets != -100
    manual = -F.log_softmax(logits, -1)[keep].gather(-1, targets[keep][:, None]).mean()
    assert loss_fn(logits, targets).item() == pytest.approx(manual.item(), rel=1e-6)
    other = logits.clone()
    other[~keep] = torch.randn_like(other[~keep]) * 10
    assert loss_fn(other, targets).item() == pytest.approx(manual.item(), rel=1e-6)
    full = torch.randint(0, 11, (2, 5))
    assert loss_fn(logits, full).item() == pytest.approx(
        F.cross_entropy(logits.reshape(-1, 11), full.reshape(-1)).item(), rel=1e-6)
    assert loss_fn(logits.bfloat16(), full).dtype == torch.float32
