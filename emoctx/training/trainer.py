"""Lightning's Trainer with ``precision="auto"``: the arithmetic the hardware does fast, as ``predict`` picks it.

On a CPU, bfloat16 autocast pays off only where the CPU has native bf16 instructions (AVX512-BF16 or AMX); on
a CPU with AVX2 only, bf16 arithmetic is emulated and far slower than fp32. ``"auto"`` therefore resolves to

* ``bf16-mixed`` on a CPU with native bf16, ``32-true`` on any other CPU;
* ``bf16-mixed`` on a CUDA GPU that supports bf16, ``16-mixed`` on an older one;
* ``32-true`` on other accelerators.

Any value Lightning accepts (``32-true``, ``bf16-mixed``, ...) is used as given. The precision a run trained
with is stored in its model file (``training["precision"]``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Union

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)

AUTO = "auto"

try:  # Lightning's own list of precision values, for typed configs and --help
    from lightning_fabric.connector import _PRECISION_INPUT

    PrecisionInput = Union[Literal["auto"], _PRECISION_INPUT, None]  # noqa: UP007 (a runtime type for jsonargparse)
except ImportError:  # pragma: no cover (another Lightning layout: let Lightning check the value)
    PrecisionInput = Union[str, int, None]  # type: ignore[misc]  # noqa: UP007


def _accelerator_type(accelerator: Any) -> str:
    """``"cuda"``, ``"cpu"`` or ``"other"`` for a Trainer ``accelerator`` argument (``"auto"`` resolved)."""
    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    name = (name or AUTO).lower()
    if name in ("gpu", "cuda") or "cuda" in name:
        return "cuda"
    if name == AUTO:
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "other" if mps is not None and mps.is_available() else "cpu"
    return "cpu" if name == "cpu" or "cpu" in name else "other"


def auto_precision(accelerator: Any = AUTO) -> str:
    """The Lightning precision ``"auto"`` stands for on ``accelerator`` (see the module docstring)."""
    kind = _accelerator_type(accelerator)
    if kind == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if kind == "cpu":
        from emoctx.hardware import cpu_supports_bf16

        return "bf16-mixed" if cpu_supports_bf16() else "32-true"
    return "32-true"


class Trainer(pl.Trainer):
    """:class:`pytorch_lightning.Trainer` that also takes ``precision="auto"`` (resolved by the hardware).

    Every other argument is Lightning's. ``requested_precision`` keeps what was asked for; ``precision``
    (Lightning's property) is what runs.
    """

    def __init__(self, *args: Any, precision: PrecisionInput = None, **kwargs: Any) -> None:
        requested = precision
        if precision == AUTO:
            precision = auto_precision(kwargs.get("accelerator", AUTO))
            log.info("precision auto: %s", precision)
        super().__init__(*args, precision=precision, **kwargs)
        self.requested_precision = requested
