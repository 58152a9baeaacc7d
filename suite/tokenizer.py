"""Tokenizers: raw UTF-8 bytes (the default) or a byte-level BPE trained on the training documents.

Both expose ``encode(str) -> np.ndarray[int32]``, ``encode_batch(list[str])``, ``decode(ids)``,
``vocab_size``, ``mask_id``, ``name`` and ``identity()`` (a string that changes whenever the mapping
from text to ids could change; it goes into the data provenance hash).

Quality is reported per byte so that runs with different tokenizers are comparable:
``bits_per_byte = loss_nats_per_token / ln(2) / bytes_per_token``.
"""
from __future__ import annotations

import hashlib
import math
import os
from typing import Iterable, Sequence

import numpy as np

from suite.data import progress

MASK_TOKEN = "[MASK]"
DEFAULT_BPE_VOCAB = 8192
TOKENIZER_KINDS = ("bytes", "bpe")


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, plus MASK = 256; vocab_size 257. Needs no training."""

    name = "bytes"
    vocab_size = 257
    mask_id = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        arr = np.asarray(list(ids) if not hasattr(ids, "__len__") else ids).reshape(-1)
        arr = arr[(arr >= 0) & (arr < 256)]  # MASK (and anything out of range) has no bytes
        return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def identity(self) -> str:
        return "bytes:utf-8:257:mask=256"

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=257, mask_id=256)"


class BPETokenizer:
    """Byte-level BPE (Hugging Face ``tokenizers``): GPT-2 style byte alphabet, so every string is
    encodable and decode(encode(s)) == s; ``[MASK]`` is special token id 0. Train with
    :meth:`train` on the training documents only."""

    name = "bpe"

    def __init__(self, hf_tokenizer) -> None:
        self._tok = hf_tokenizer
        # a literal "[MASK]" inside a document is text, not the mask token
        if hasattr(hf_tokenizer, "encode_special_tokens"):
            hf_tokenizer.encode_special_tokens = True
        mask = hf_tokenizer.token_to_id(MASK_TOKEN)
        if mask is None:
            raise ValueError(f"BPE tokenizer has no {MASK_TOKEN} token")
        self.mask_id = int(mask)
        self.vocab_size = int(hf_tokenizer.get_vocab_size(with_added_tokens=True))
        self._identity = None

    @classmethod
    def train(cls, docs: Sequence[str], vocab_size: int = DEFAULT_BPE_VOCAB,
              *, min_frequency: int = 2) -> "BPETokenizer":
        try:
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        except ImportError as exc:  # pragma: no cover
            raise ImportError("the BPE tokenizer needs `pip install tokenizers`") from exc
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if vocab_size < len(alphabet) + 1:
            raise ValueError(f"BPE vocab_size must be at least {len(alphabet) + 1} "
                             f"(256 byte symbols + {MASK_TOKEN}), got {vocab_size}")
        if not docs:
            raise ValueError("cannot train a BPE tokenizer on zero documents")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=[MASK_TOKEN], initial_alphabet=alphabet,
                                      show_progress=False)
        tok.train_from_iterator(progress(docs, total=len(docs), desc="training BPE",
                                         enable=len(docs) > 50), trainer=trainer, length=len(docs))
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "BPETokenizer":
        from tokenizers import Tokenizer
        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | os.PathLike) -> None:
        self._tok.save(str(path))

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text).ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int32) for e in self._tok.encode_batch(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._tok.decode(ids, skip_special_tokens=True)

    def identity(self) -> str:
        if self._identity is None:
            digest = hashlib.sha256(self._tok.to_str().encode("utf-8")).hexdigest()[:16]
            self._identity = f"bpe:{self.vocab_size}:{digest}"
        return self._identity

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, mask_id={self.mask_id}, {self.identity()})"


Tokenizer = ByteTokenizer | BPETokenizer


def make_tokenizer(kind: str, train_docs: Sequence[str] = (), vocab_size: int | None = None):
    """``"bytes"`` (vocab 257, ignores the documents) or ``"bpe"`` (trained on ``train_docs`` with
    ``vocab_size`` entries, default ``DEFAULT_BPE_VOCAB``). Pass only training documents."""
    kind = str(kind).lower()
    if kind in ("bytes", "byte"):
        if vocab_size not in (None, ByteTokenizer.vocab_size):
            raise ValueError(f"the byte tokenizer has vocab_size 257, got vocab_size={vocab_size}")
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.train(list(train_docs), vocab_size or DEFAULT_BPE_VOCAB)
    raise ValueError(f"unknown tokenizer {kind!r}; valid: {', '.join(TOKENIZER_KINDS)}")


def bytes_per_token(tokenizer, docs: Sequence[str]) -> float:
    """UTF-8 bytes per token over ``docs`` (1.0 for the byte tokenizer)."""
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    n_tokens = sum(len(ids) for ids in tokenizer.encode_batch(list(docs)))
    if n_tokens == 0:
        raise ValueError("bytes_per_token: the documents encode to zero tokens")
    return n_bytes / n_tokens


def bits_per_byte(loss_nats_per_token: float, bytes_per_token: float) -> float:
    """Cross-entropy in nats per token -> bits per UTF-8 byte."""
    return float(loss_nats_per_token) / math.log(2) / float(bytes_per_token)


__all__ = ["ByteTokenizer", "BPETokenizer", "Tokenizer", "make_tokenizer", "bytes_per_token",
           "bits_per_byte", "MASK_TOKEN", "DEFAULT_BPE_VOCAB", "TOKENIZER_KINDS"]
