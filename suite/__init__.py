"""flash-repro benchmark suite: corpora, tokenizers, training objectives."""
