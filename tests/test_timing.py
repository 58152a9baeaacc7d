"""suite.timing: what counts as out of memory."""
import pytest
import torch

from suite.timing import is_oom


def test_a_cpu_out_of_memory_is_recognised_as_oom():
    with pytest.raises(RuntimeError) as info:
        torch.empty(2 ** 50, dtype=torch.uint8)  # a pebibyte: refused by the allocator, not by the OS killer
    assert is_oom(info.value), str(info.value)[:200]


@pytest.mark.parametrize("exc, expected", [
    (MemoryError(), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
    (ValueError("out of memory"), False),   # only runtime errors of the allocators
])
def test_only_allocation_failures_are_oom(exc, expected):
    assert is_oom(exc) is expected


def test_host_threads_are_capped_for_accelerator_runs_and_restored():
    from suite.timing import HOST_THREADS, host_threads
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(HOST_THREADS + 2)
        with host_threads("cuda:1"):
            assert torch.get_num_threads() == HOST_THREADS
        assert torch.get_num_threads() == HOST_THREADS + 2
        with host_threads("cpu"):
            assert torch.get_num_threads() == HOST_THREADS + 2
    finally:
        torch.set_num_threads(before)
