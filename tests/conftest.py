import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import random
from pathlib import Path

import pytest
import torch


def _default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def float64_default():
    """Float64 by default for tight tolerances, restored afterwards (use with pytestmark)."""
    yield from _default_dtype(torch.float64)


@pytest.fixture
def float32_default():
    """Float32 by default whatever an earlier test set, restored afterwards."""
    yield from _default_dtype(torch.float32)


# ---- a tiny text corpus and one thread, for tests that train (test_runner, test_cli_hostile, ...)
WORDS = ("the a of and to in that is was he she it with as his her for on be at by had not but what all "
         "were when we there can an your which their said if do will each about how up out them then "
         "many some so these would other into has more two like him see time could no make than first "
         "been its who now people my made over did down only way find use may water long little very "
         "after words called just where most know get through back much before go good new write our "
         "used me man too any day same right look think also around another came come work three word "
         "must because does part even place well such here take why things help put years different").split()


def write_corpus(path: Path, paragraphs: int = 40, seed: int = 0) -> Path:
    """~8 KB of pseudo-English in blank-line separated paragraphs (one document, split at a paragraph)."""
    rng = random.Random(seed)
    paras = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(3, 6)):
            s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14)))
            sentences.append(s[0].upper() + s[1:] + rng.choice(".!?"))
        paras.append(" ".join(sentences))
    path.write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and lose a lot when other work shares the 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """A corpus spec, text:<file>, shared by the module (its tokenisation is cached per spec)."""
    return "text:" + str(write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt"))
