"""Peak rates per device, for MFU. Measured ceilings where we have them, datasheet values otherwise."""
from __future__ import annotations

import math

# substring of the device name (lower case) -> (dense bf16 TFLOP/s used as the MFU denominator, source)
PEAK_BF16_TFLOPS: dict[str, tuple[float, str]] = {
    "h200": (747.0, "bf16 matmul ceiling measured on one H200, 2026-11-28 (results/NOTES.md, the two numbers)"),
    "h100": (989.0, "NVIDIA datasheet, dense bf16 (SXM)"),
    "a100": (312.0, "NVIDIA datasheet, dense bf16"),
}


def peak_tflops(device_name: str) -> tuple[float, str]:
    name = device_name.lower()
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return math.nan, "no peak known for this device (MFU left empty)"
