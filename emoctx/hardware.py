"""What the machine offers, and what to run on it: the device, native bf16 on the CPU, the arithmetic, decoders.

Training (``precision: auto``, :mod:`emoctx.training.trainer`), prediction (:mod:`emoctx.inference.predictor`)
and the benchmark choose by the same rules: bfloat16 only where the hardware computes it natively (on a CPU
with AVX2 only it is emulated and far slower than fp32).
"""

from __future__ import annotations

import os

import torch

from emoctx.defaults import DEVICE_HELP
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


def parse_device(device: str | torch.device | None, option: str = "--device") -> torch.device | None:
    """``device`` as a :class:`torch.device` (``gpu`` is ``cuda``), ``None`` for ``auto``; not yet checked.

    Raises:
        EmoctxError: a name that is not a CPU, a CUDA GPU or Apple's MPS (torch knows more, e.g. ``meta`` or
            ``xpu``, which emoctx does not run on), naming ``option`` and the values it takes.
    """
    if device is None or isinstance(device, torch.device):
        return device
    text = str(device).strip().lower()
    if text in ("", "auto"):
        return None
    if text == "gpu" or text.startswith("gpu:"):
        text = "cuda" + text[3:]
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise EmoctxError(f"{option} {device}: not a device emoctx runs on; use {DEVICE_HELP}")
    return parsed


def resolve_device(device: str | torch.device | None, option: str = "--device") -> torch.device:
    """The device to run on: ``"auto"``/``None`` -> CUDA when available, else CPU; any other one checked.

    Raises:
        EmoctxError: an unknown name, or a device this machine does not have (a GPU on a machine without
            one, a GPU index beyond the last one), in one line naming ``option`` and what to use instead.
    """
    parsed = parse_device(device, option)
    if parsed is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise EmoctxError(
                f"{option} {device}: this machine has no CUDA GPU that torch {torch.__version__} can use; "
                f"use {option} cpu (or {option} auto, which takes a GPU when there is one)"
            )
        if parsed.index is not None and parsed.index >= count:
            raise EmoctxError(
                f"{option} {device}: this machine has {count} CUDA GPU(s), numbered from 0 to {count - 1}"
            )
    elif parsed.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise EmoctxError(f"{option} {device}: Apple's MPS is not available here; use {option} cpu")
    return parsed


def lightning_device(
    device: str | torch.device | None, option: str = "--device"
) -> tuple[str, list[int] | None]:
    """Lightning's ``accelerator`` (and device indices, for ``cuda:1``) for a ``--device`` value.

    ``auto`` -> ``("auto", None)``, ``cpu`` -> ``("cpu", None)``, ``cuda``/``gpu`` -> ``("gpu", None)``,
    ``cuda:1`` -> ``("gpu", [1])``, ``mps`` -> ``("mps", None)``; the device is checked as
    :func:`resolve_device` checks it (``auto`` is not: Lightning picks what there is).
    """
    parsed = parse_device(device, option)
    if parsed is None:
        return "auto", None
    resolve_device(device, option)
    if parsed.type == "cuda":
        return "gpu", None if parsed.index is None else [parsed.index]
    return parsed.type, None


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
