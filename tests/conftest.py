import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

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
