"""Deprecated: the prediction pipeline now lives in modules of one idea each.

=====================================  ===========================================================
before (``emoctx.inference.pipeline``)  now
=====================================  ===========================================================
``Predictor``, ``SCENE_MODES``,        :mod:`emoctx.inference.predictor`
``DEFAULT_MAX_SIDE``
``model_identity``                     :func:`emoctx.checkpoint.model_identity`
``cpu_supports_bf16``,                 :mod:`emoctx.hardware`
``resolve_device``,
``resolve_precision``,
``default_workers``, ``PRECISIONS``
``fold_batch_norms``,                  :mod:`emoctx.inference.optimize`
``fuse_conv_relu``
``resize_like_training``               :func:`emoctx.data.transforms.resize_view`
=====================================  ===========================================================

Importing a name from here still works and warns (``DeprecationWarning``) where it moved.
"""

from __future__ import annotations

from emoctx.deprecation import moved

_MOVED: dict[str, tuple[str, str]] = {
    "Predictor": ("emoctx.inference.predictor", "Predictor"),
    "SCENE_MODES": ("emoctx.inference.predictor", "SCENE_MODES"),
    "DEFAULT_MAX_SIDE": ("emoctx.inference.predictor", "DEFAULT_MAX_SIDE"),
    "model_identity": ("emoctx.checkpoint", "model_identity"),
    "PRECISIONS": ("emoctx.hardware", "PRECISIONS"),
    "cpu_supports_bf16": ("emoctx.hardware", "cpu_supports_bf16"),
    "resolve_device": ("emoctx.hardware", "resolve_device"),
    "resolve_precision": ("emoctx.hardware", "resolve_precision"),
    "default_workers": ("emoctx.hardware", "default_workers"),
    "fold_batch_norms": ("emoctx.inference.optimize", "fold_batch_norms"),
    "fuse_conv_relu": ("emoctx.inference.optimize", "fuse_conv_relu"),
    "resize_like_training": ("emoctx.data.transforms", "resize_view"),
}

__getattr__ = moved(__name__, _MOVED)


def __dir__() -> list[str]:
    return sorted(_MOVED)
