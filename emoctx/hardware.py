"""What the machine offers, and what to run on it: the device, native bf16 on the CPU, the arithmetic, decoders.

Training (``precision: auto``, :mod:`emoctx.training.trainer`), prediction (:mod:`emoctx.inference.predictor`)
and the benchmark choose by the same rules: bfloat16 only where the hardware computes it natively (on a CPU
with AVX2 only it is emulated and far slower than fp32).
"""

from __future__ import annotations

import os

import torch

from emoctx.errors import EmoctxError

PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
"""The precisions prediction takes (training takes Lightning's values and ``auto``)."""


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:  # not Linux: no reliable way to tell, stay in fp32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None``: plain fp32)."""
    if precision not in PRECISIONS:
        raise EmoctxError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if precision == "auto" else torch.bfloat16
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cpu" and cpu_supports_bf16() else None


def default_workers(device: torch.device) -> int:
    """Image-decoding processes when none are asked for: the cores the model leaves free, at most two.

    On a GPU the CPU cores are free: two. On a CPU the model's threads (torch starts one per core) use every
    core; decoding processes beside them only take turns with them, and each turn stalls the others at their
    next synchronisation, so decoding in the main process between forwards is faster there (``scripts/bench.py``
    measures both). Cores beyond torch's threads (e.g. hyper-threads) decode.
    """
    if device.type != "cpu":
        return 2
    return max(0, min(2, (os.cpu_count() or 1) - torch.get_num_threads()))
