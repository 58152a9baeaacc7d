"""A run's tokens: random (speed runs), or corpus -> document split -> tokenizer -> train / validation
streams (training runs)."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from .data import corpus_hash, load_corpus, split_documents
from .objectives import IGNORE_INDEX as IGNORE
from .objectives import MASK_PROB, TokenData, eval_batches, make_objective, sample_batch
from .runs import RunConfig
from .tokenizer import make_tokenizer

VAL_FRACTION = 0.1
SPLIT_SEED = 0
EVAL_MASK_SEED = 1234  # masked LM: the same masks for every model and every evaluation


@dataclass
class Batches:
    """What a run draws its tokens from. `sample(generator) -> (inputs, targets)` on the CPU."""

    sample: Any
    evaluate: Any = None          # () -> list of (inputs, targets) for held-out evaluation
    vocab_size: int = 0
    bytes_per_token: float = 1.0
    corpus: str = "random"
    tokenizer: str = "none"
    data_hash: str = ""
    train_tokens: int = 0         # tokens in the training stream (a run's epochs: tokens trained / this)


def random_batches(cfg: RunConfig) -> Batches:
    """Random tokens: speed runs (time does not depend on the data); MLM predicts MASK_PROB of positions."""
    V, B, T = cfg.vocab_size, cfg.batch_size, cfg.context

    def sample(gen: torch.Generator):
        x = torch.randint(0, V, (B, T + 1), generator=gen)
        if cfg.objective == "clm":
            return x[:, :-1], x[:, 1:]
        targets = torch.where(torch.rand(B, T, generator=gen) < MASK_PROB, x[:, :-1], IGNORE)
        return x[:, :-1], targets

    return Batches(sample=sample, vocab_size=V)


@functools.lru_cache(maxsize=4)
def tokenized(corpus: str, tokenizer: str, bpe_vocab: int, eltec_path: str | None = None):
    """(train stream, validation stream, tokenizer, data hash), cached per corpus and tokenizer."""
    c = load_corpus(corpus, eltec_path=eltec_path)
    train_docs, val_docs = split_documents(c, val_fraction=VAL_FRACTION, seed=SPLIT_SEED)
    tok = make_tokenizer(tokenizer, train_docs, vocab_size=bpe_vocab if tokenizer == "bpe" else None)
    train = TokenData.from_documents(train_docs, tok)
    val = TokenData.from_documents(val_docs, tok)
    return train, val, tok, corpus_hash(c, val_fraction=VAL_FRACTION, seed=SPLIT_SEED, tokenizer=tok)


def corpus_batches(cfg: RunConfig, eltec_path: str | None = None) -> Batches:
    train, val, tok, data_hash = tokenized(cfg.corpus, cfg.tokenizer, cfg.bpe_vocab, eltec_path)
    objective = make_objective(cfg.objective, mask_id=tok.mask_id, vocab_size=tok.vocab_size)
    B, T = cfg.batch_size, cfg.context

    def sample(gen: torch.Generator):
        return objective(sample_batch(train, B, T, gen), gen)

    def evaluate():
        windows = eval_batches(val, B, T, max_batches=max(1, math.ceil(cfg.eval_tokens / (B * T))))
        gen = torch.Generator().manual_seed(EVAL_MASK_SEED)
        return [objective(w, gen) for w in windows]

    return Batches(sample=sample, evaluate=evaluate, vocab_size=tok.vocab_size, bytes_per_token=val.bytes_per_token,
                   corpus=cfg.corpus, tokenizer=tok.name, data_hash=data_hash,
                   train_tokens=len(train))
