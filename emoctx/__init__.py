"""emoctx: context-aware emotion recognition from the person and the scene around them.

``from emoctx import Predictor`` gives :class:`emoctx.inference.Predictor`; it is imported on first use, so
``import emoctx`` stays light (no torch, ultralytics or Lightning).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("emoctx")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["Predictor", "__version__"]

_LAZY = {"Predictor": "emoctx.inference"}


def __getattr__(name: str) -> Any:
    """Import the names of :data:`_LAZY` on first use (PEP 562)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emoctx' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
