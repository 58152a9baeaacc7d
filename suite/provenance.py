"""Where a result came from: code version, software, hardware."""
from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import re
import socket
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the repository this code runs from; ("unknown", True) outside git.

    FLASH_REPRO_COMMIT overrides it, for copies of the tree without .git (the GPU machine).
    """
    if os.environ.get("FLASH_REPRO_COMMIT"):
        return os.environ["FLASH_REPRO_COMMIT"], os.environ.get("FLASH_REPRO_DIRTY", "0") == "1"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True, check=True, timeout=10).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("FLASH_REPRO_COMMIT", "unknown"), True


# x86 vector extensions by /proc/cpuinfo's flag, widest first. A virtual machine may report only "AMD EPYC": its
# host can be a Zen 3 (AVX2) one session and a Zen 4 (AVX-512) the next, and the same steps took 1.3x-1.9x longer
# on the first (results/NOTES.md, entry 31).
CPU_VECTOR_ISAS = (("avx512f", "AVX-512"), ("avx2", "AVX2"))


def cpu_vector_isa(flags: set[str]) -> str:
    """The widest vector extension of CPU_VECTOR_ISAS among these cpuinfo flags ('' for none)."""
    return next((name for flag, name in CPU_VECTOR_ISAS if flag in flags), "")


def cpu_description(cpuinfo: str, cores: int | None, fallback: str) -> str:
    """A CPU's platform name from the text of /proc/cpuinfo: its model name (or `fallback`), the cores, and
    its widest vector extension: 'AMD EPYC (2 cores, AVX2)'."""
    fields: dict[str, str] = {}  # the first processor's value of each field
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    isa = cpu_vector_isa(set(fields.get("flags", "").split()))
    return f"{fields.get('model name', fallback)} ({cores} cores{', ' + isa if isa else ''})"


def device_name(device: str) -> str:
    """The platform name results carry: the GPU's name, or the CPU's (`cpu_description`)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    return cpu_description(cpuinfo, os.cpu_count(), platform.processor() or platform.machine())


def platform_slug(device: str) -> str:
    """The results sub-folder for a device: 'nvidia-h200', 'cpu-2c', ..."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(torch.device(device)).lower()).strip("-")
    return f"cpu-{os.cpu_count()}c"


def software() -> dict[str, str]:
    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "torch_version": torch.__version__,
            "python_version": platform.python_version(), "host": socket.gethostname(),
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def cuda_details() -> dict[str, str]:
    if not torch.cuda.is_available():
        return {}
    out = {"cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version())}
    try:
        out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        out["driver"] = "unknown"
    return out


def python_executable() -> str:
    return sys.executable
