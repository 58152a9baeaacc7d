"""torch.distributed for `torchrun`: process group, ranks, barriers, and the per-rank device.

Everything is read from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK), so one node
(`--standalone`) and several nodes (`--nnodes N --rdzv-endpoint HOST:PORT`) need no code change.
Without torchrun (WORLD_SIZE unset or 1) every function is a cheap no-op: rank 0 of 1.

Two process groups:
  * the default group: NCCL when the runs are on CUDA, else gloo; it carries the collectives of
    data-parallel training (`--ddp`), under the ordinary timeout (FLASH_REPRO_DIST_TIMEOUT_S,
    default 1800 s), so a rank stuck in a collective fails instead of hanging for ever;
  * a gloo "host" group for barriers and small Python objects. Its timeout is long
    (FLASH_REPRO_BARRIER_TIMEOUT_S, default 7 days): a rank whose share of a sweep is done may wait
    at the final barrier for as long as the slowest rank still trains. A rank that crashes does
    not leave the others waiting: torchrun stops every worker when one fails.

NVLink multicast (NVLS) stays off: NCCL_NVLS_ENABLE defaults to 0 here (an explicit setting wins).
"""
from __future__ import annotations

import datetime
import os
import re
from typing import Any

import torch
import torch.distributed as dist

_host_group = None   # gloo group for barriers and objects (see the module docstring)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def rank() -> int:
    """Global rank of this process (0 without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def world_size() -> int:
    """Number of processes of the launch (1 without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return max(1, _env_int("WORLD_SIZE", 1))


def local_rank() -> int:
    """Rank of this process on its node: the index of its GPU (0 without torchrun)."""
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    return rank() == 0


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def resolve_device(device: str) -> str:
    """The device this process uses for a run configured on `device`: a bare "cuda" becomes
    "cuda:LOCAL_RANK" under torchrun (one GPU per process); everything else is kept as it is.
    The run's configuration (and so its run_id) keeps "cuda"."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{local_rank()}"
    return device


_DEVICE = re.compile(r"cpu|cuda(?::(\d+))?")


def check_device(device: str, *, present: bool = True) -> None:
    """Raise ValueError (a one-line message) unless `device` is cpu, cuda or cuda:N; with `present`,
    also unless this machine has that device (CUDA available, N below the number of visible GPUs)."""
    m = _DEVICE.fullmatch(device) if isinstance(device, str) else None
    if m is None:
        raise ValueError(f"unknown device {device!r}; valid devices: cpu, cuda, cuda:N (N = 0, 1, ...)")
    if not present or device == "cpu":
        return
    if not torch.cuda.is_available():
        raise ValueError("PyTorch sees no CUDA device on this machine; valid here: cpu")
    n = torch.cuda.device_count()
    if m.group(1) is not None and int(m.group(1)) >= n:
        valid = ", ".join(["cpu", "cuda"] + [f"cuda:{i}" for i in range(n)])
        raise ValueError(f"this machine has {n} visible GPU(s); valid here: {valid}")


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group of a torchrun launch; returns whether this is a multi-process run.

    Backend NCCL when `device` is CUDA and CUDA is available (this process's GPU is set to
    cuda:LOCAL_RANK first), gloo otherwise. A no-op without torchrun or when already initialised.
    """
    global _host_group
    if world_size() <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1, but this PyTorch build has no torch.distributed")
    if dist.is_initialized():
        if _host_group is None:
            _host_group = _new_host_group()
        return True
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # never NVLink multicast
    use_cuda = device.startswith("cuda") and torch.cuda.is_available()
    if use_cuda:
        n = torch.cuda.device_count()
        if local_rank() >= n:
            raise RuntimeError(f"LOCAL_RANK {local_rank()} but this node has {n} visible GPU(s); "
                               f"start at most {n} processes per node (torchrun --nproc_per_node {n})")
        torch.cuda.set_device(local_rank())
    timeout = datetime.timedelta(seconds=_env_int("FLASH_REPRO_DIST_TIMEOUT_S", 1800))
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    _host_group = _new_host_group()
    return True


def _new_host_group():
    timeout = datetime.timedelta(seconds=_env_int("FLASH_REPRO_BARRIER_TIMEOUT_S", 7 * 24 * 3600))
    return dist.new_group(backend="gloo", timeout=timeout)


def barrier() -> None:
    """Wait until every process gets here (host-side, gloo; no GPU work). No-op without a group."""
    if is_initialized():
        dist.barrier(group=_host_group)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (pickled, over the host group)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=_host_group)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (pickled, over the host group)."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_host_group)
    return out


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's `obj`, in rank order, on rank 0; None on the other ranks."""
    if not is_initialized():
        return [obj]
    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0, group=_host_group)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over the ranks, in place, over the default group (NCCL: a CUDA tensor)."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def destroy() -> None:
    """Leave the process group (every rank, at the end). No-op without one."""
    global _host_group
    if is_initialized():
        dist.destroy_process_group()
    _host_group = None
