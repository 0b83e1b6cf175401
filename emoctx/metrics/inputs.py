"""The arrays the metrics take, checked and shaped, and JSON-ready floats (``None`` where undefined)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from emoctx.io import jsonable
from emoctx.labels import CATEGORIES, SLUGS, slugify

log = logging.getLogger(__name__)


def as_array(x: Any, name: str, dtype: type = np.float64) -> np.ndarray:
    """Any array-like (numpy, torch, nested lists) as a numpy array of ``dtype``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64 if dtype is np.float64 else x.dtype).numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: cannot be read as a numeric array ({e})") from e


def names_and_slugs(names: Sequence[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The category names given (default: EMOTIC's 26) and their slugs."""
    if names is None:
        return CATEGORIES, SLUGS
    names = tuple(names)
    return names, tuple(slugify(n) for n in names)


def category_inputs(
    scores: Any, targets: Any, names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Validate an (N, C) score matrix and its 0/1 target matrix."""
    names, slugs = names_and_slugs(names)
    s = as_array(scores, "scores")
    t = as_array(targets, "targets")
    if s.ndim != 2 or s.shape[1] != len(names):
        raise ValueError(f"scores: expected shape (N, {len(names)}), got {s.shape}")
    if t.shape != s.shape:
        raise ValueError(f"targets: expected the shape of scores {s.shape}, got {t.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores: {int((~np.isfinite(s)).sum())} value(s) are NaN or infinite")
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("targets: must contain only 0 and 1")
    return s, t, names, slugs


def json_float(x: Any) -> float | None:
    """A float for a JSON document: ``None`` when undefined (NaN) or infinite (:func:`emoctx.io.jsonable`)."""
    return None if x is None else jsonable(float(x))


def mean_defined(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values; ``None`` when none is defined."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None
