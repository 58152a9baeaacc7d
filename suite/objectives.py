"""Token streams, batch sampling and the two training objectives (causal LM and BERT-style MLM).

    data = TokenData.from_documents(train_docs, tokenizer)
    window = sample_batch(data, batch_size, context, generator)     # [B, context + 1]
    inputs, targets = causal_lm_batch(window)                        # [B, context] each
    inputs, targets = masked_lm_batch(window, tok.mask_id, tok.vocab_size, generator)
    loss = loss_fn(model(inputs), targets)                           # mean over targets != -100

Both objectives take the same ``[B, context + 1]`` window and return ``T = context`` positions, so a
training loop can switch objective without touching its sampler. Everything here is on the CPU and
deterministic given a ``torch.Generator``; move batches to the accelerator afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from suite.data import DataError, progress

IGNORE_INDEX = -100
# ASCII "record separator" between documents: absent from natural text, so document boundaries are
# visible to the model; one byte, and one token for both the byte and the byte-level BPE tokenizer.
DOC_SEPARATOR = "\x1e"
OBJECTIVES = ("clm", "mlm")  # causal language modelling, masked language modelling
MASK_PROB = 0.15  # masked LM: the share of positions to predict (BERT's rate)


@dataclass
class TokenData:
    """One tokenised stream: documents concatenated with ``separator`` between them."""

    tokens: torch.Tensor  # 1-D int64
    n_docs: int
    n_bytes: int          # UTF-8 bytes the tokens stand for (documents + separators)
    tokenizer_name: str
    separator: str = DOC_SEPARATOR

    @classmethod
    def from_documents(cls, docs: Sequence[str], tokenizer, *, separator: str = DOC_SEPARATOR,
                       chunk_docs: int = 64) -> "TokenData":
        docs = list(docs)
        if not docs:
            raise DataError("TokenData needs at least one document")
        sep = np.asarray(tokenizer.encode(separator), dtype=np.int64) if separator else None
        parts: list[np.ndarray] = []
        chunks = range(0, len(docs), chunk_docs)
        for start in progress(chunks, total=len(chunks), desc=f"tokenising ({tokenizer.name})",
                              enable=len(docs) > chunk_docs):
            for j, ids in enumerate(tokenizer.encode_batch(docs[start:start + chunk_docs])):
                if sep is not None and start + j > 0:
                    parts.append(sep)
                parts.append(np.asarray(ids, dtype=np.int64))
        tokens = torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0, dtype=torch.long)
        n_bytes = sum(len(d.encode("utf-8")) for d in docs)
        n_bytes += (len(docs) - 1) * len(separator.encode("utf-8"))
        return cls(tokens, len(docs), n_bytes, tokenizer.name, separator)

    def __len__(self) -> int:
        return int(self.tokens.numel())

    @property
    def bytes_per_token(self) -> float:
        """Use for bits per byte: ``loss_nats_per_token / ln 2 / bytes_per_token``."""
        return self.n_bytes / max(len(self), 1)


def _tokens(data: TokenData | torch.Tensor) -> torch.Tensor:
    tokens = data.tokens if isinstance(data, TokenData) else data
    if tokens.dim() != 1:
        raise ValueError(f"expected a 1-D token stream, got shape {tuple(tokens.shape)}")
    return tokens


def check_length(data: TokenData | torch.Tensor, context: int, what: str) -> None:
    """Refuse a stream shorter than one window of context + 1 tokens (DataError, the message says what to do)."""
    tokens = _tokens(data)
    if context < 1:
        raise ValueError(f"context must be >= 1, got {context}")
    if tokens.numel() < context + 1:
        raise DataError(f"{what}: the data has {tokens.numel():,} tokens, fewer than one window of "
                        f"context + 1 = {context + 1:,}; use a shorter context, more documents "
                        "(max_docs) or a larger val_fraction")


def sample_batch(data: TokenData | torch.Tensor, batch_size: int, context: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``batch_size`` windows of ``context + 1`` consecutive tokens at uniformly random offsets
    (windows may cross document separators). Deterministic given ``generator`` (a CPU one)."""
    tokens = _tokens(data)
    check_length(tokens, context, "sample_batch")
    n_starts = tokens.numel() - context  # valid offsets 0 .. N - (context + 1)
    starts = torch.randint(0, n_starts, (batch_size,), generator=generator)
    return tokens[starts[:, None] + torch.arange(context + 1)]


def num_eval_windows(data: TokenData | torch.Tensor, context: int) -> int:
    """Non-overlapping windows in the stream: window i holds tokens [i*context, (i+1)*context], so
    each token after the first is predicted exactly once (causal LM)."""
    return max((_tokens(data).numel() - 1) // context, 0)


def eval_batches(data: TokenData | torch.Tensor, batch_size: int, context: int,
                 max_batches: int | None = None) -> list[torch.Tensor]:
    """Deterministic validation windows ``[b, context + 1]`` (b = batch_size, the last batch may be
    smaller). Without a cap every window is used in order; with ``max_batches`` the
    ``max_batches * batch_size`` windows are spread evenly over the whole stream (still
    non-overlapping), so a capped evaluation still sees every part of the validation set."""
    tokens = _tokens(data)
    check_length(tokens, context, "eval_batches")
    n_windows = num_eval_windows(tokens, context)
    n = n_windows if max_batches is None else min(n_windows, int(max_batches) * batch_size)
    if n < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    index = (torch.arange(n, dtype=torch.long) * n_windows) // n  # distinct, evenly spaced
    offsets = torch.arange(context + 1)
    return [tokens[index[i:i + batch_size, None] * context + offsets] for i in range(0, n, batch_size)]


def causal_lm_batch(window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token prediction: inputs = window[:, :-1], targets = window[:, 1:]."""
    return window[:, :-1], window[:, 1:]


def masked_lm_batch(window: torch.Tensor, mask_id: int, vocab_size: int,
                    generator: torch.Generator | None = None, mask_prob: float = MASK_PROB, *,
                    mask_token_frac: float = 0.8, random_token_frac: float = 0.1,
                    drop_last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style masking (Devlin et al. 2019). Each position is chosen independently with
    probability ``mask_prob`` (a row with none chosen gets one random position, so the loss is never
    empty); a chosen position becomes MASK with probability 0.8, a uniformly random non-MASK token
    with 0.1, and stays unchanged otherwise. targets = the original token at chosen positions,
    -100 elsewhere. With ``drop_last`` (default) the last token of the ``context + 1`` window is
    dropped so both objectives see T = context positions."""
    x = window[:, :-1] if drop_last else window
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
    if vocab_size < 2:
        raise ValueError("vocab_size must be >= 2")
    gdev = generator.device if generator is not None else torch.device("cpu")
    shape = x.shape
    chosen = torch.rand(shape, generator=generator, device=gdev) < mask_prob
    fallback = torch.randint(0, shape[-1], shape[:-1], generator=generator, device=gdev)
    empty = ~chosen.any(dim=-1)
    if empty.any():
        chosen[empty, fallback[empty]] = True
    r = torch.rand(shape, generator=generator, device=gdev)
    to_mask = chosen & (r < mask_token_frac)
    to_random = chosen & (r >= mask_token_frac) & (r < mask_token_frac + random_token_frac)
    random_tok = torch.randint(0, vocab_size - 1, shape, generator=generator, device=gdev)
    random_tok = random_tok + (random_tok >= mask_id).long()  # skip the MASK id itself
    dev = x.device
    inputs = torch.where(to_mask.to(dev), torch.full_like(x, mask_id), x)
    inputs = torch.where(to_random.to(dev), random_tok.to(dev, x.dtype), inputs)
    targets = torch.where(chosen.to(dev), x, torch.full_like(x, IGNORE_INDEX))
    return inputs, targets


def make_objective(name: str, *, mask_id: int | None = None, vocab_size: int | None = None,
                   mask_prob: float = MASK_PROB) -> Callable[[torch.Tensor, torch.Generator | None],
                                                        tuple[torch.Tensor, torch.Tensor]]:
    """``"clm"`` (causal LM) or ``"mlm"`` (masked LM, needs mask_id and vocab_size) as one callable
    ``(window, generator) -> (inputs, targets)``. A model for "mlm" should be built non-causal."""
    if name == "clm":
        return lambda window, generator=None: causal_lm_batch(window)
    if name == "mlm":
        if mask_id is None or vocab_size is None:
            raise ValueError("the mlm objective needs mask_id and vocab_size (from the tokenizer)")
        return lambda window, generator=None: masked_lm_batch(window, mask_id, vocab_size, generator,
                                                              mask_prob)
    raise ValueError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}")


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats per predicted token) over positions whose target is not -100;
    half-precision logits are upcast to float32 first."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)


__all__ = ["TokenData", "DOC_SEPARATOR", "IGNORE_INDEX", "OBJECTIVES", "MASK_PROB", "sample_batch",
           "eval_batches", "num_eval_windows", "check_length", "causal_lm_batch", "masked_lm_batch",
           "make_objective", "loss_fn"]
