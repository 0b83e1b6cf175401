"""Box geometry shared by training, prediction and annotation: clipping, whole-pixel bounds, overlap.

Boxes are ``x1 y1 x2 y2`` in pixels (``pascal_voc``), ``x2``/``y2`` exclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]
PixelBox = tuple[int, int, int, int]


def clip_box(box: Sequence[float], w: int, h: int) -> Box:
    """Clip a box to a ``w`` x ``h`` image and give it at least one pixel of width and height.

    Raises:
        ValueError: the box has non-finite coordinates, is inverted, or lies outside the image.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"box {list(box)} has non-finite coordinates")
    if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h or x2 < x1 or y2 < y1:
        raise ValueError(f"box {list(box)} lies outside the {w}x{h} image or is inverted")
    x1, x2 = max(x1, 0.0), min(x2, float(w))
    y1, y2 = max(y1, 0.0), min(y2, float(h))
    if x2 - x1 < 1.0:
        x1 = min(x1, w - 1.0)
        x2 = x1 + 1.0
    if y2 - y1 < 1.0:
        y1 = min(y1, h - 1.0)
        y2 = y1 + 1.0
    return x1, y1, x2, y2


def pixel_box(box: Sequence[float], w: int, h: int) -> PixelBox:
    """Integer pixel bounds covering a float box (rounded outwards), inside the image, at least one pixel."""
    x1 = min(max(int(math.floor(box[0])), 0), w - 1)
    y1 = min(max(int(math.floor(box[1])), 0), h - 1)
    x2 = max(min(int(math.ceil(box[2])), w), x1 + 1)
    y2 = max(min(int(math.ceil(box[3])), h), y1 + 1)
    return x1, y1, x2, y2


def box_iou(
    a: np.ndarray | Sequence[Sequence[float]], b: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """Pairwise IoU of boxes: ``[N, 4]`` x ``[M, 4]`` -> ``[N, M]`` float64 (torchvision's ``box_iou``).

    A pair whose union is empty (two boxes without area) has IoU 0, not torchvision's NaN.
    """
    import torch
    from torchvision.ops import box_iou as tv_box_iou

    ta = torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(-1, 4))
    tb = torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(-1, 4))
    return np.nan_to_num(tv_box_iou(ta, tb).numpy(), nan=0.0)
