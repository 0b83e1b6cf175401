"""The face stream's parts: a backbone's feature map, landmark attention after EmoNet, and its options.

EmoNet (Toisoul et al., Nature Machine Intelligence 2021) predicts valence, arousal and eight expressions from a
face; a face-alignment network gives 68 landmark heatmaps, their sum is an attention mask that multiplies the
features, and the attended features are used beside the un-attended ones. emoctx keeps the idea with any timm
backbone and the landmarks it is given (from a pose model or from the data set), without a landmark network:

* :class:`FeatureMap` runs a timm backbone without its pooling: ``forward_features``, the unpooled features
  timm models all have (``num_features`` channels), as an NCHW map whatever layout the model uses (NCHW for
  convolutional networks, NHWC for Swin-like ones, tokens for ViTs, reshaped to their square grid).
* :func:`landmark_heatmaps` draws one Gaussian per landmark at the feature map's resolution: landmarks come in
  the face crop's frame (0-1, :func:`emoctx.faces.landmarks_in_box`), each Gaussian has a standard deviation
  of ``sigma`` times the crop side and a height equal to the landmark's confidence (an unseen point draws
  nothing).
* :class:`LandmarkAttention` turns the heatmaps into an attention map ``a = relu(w . H + b)``, one learned
  weight per landmark, started at ``w = 1, b = 0``, so that it starts as EmoNet's sum of heatmaps, and
  modulates the features as ``feat * (1 + a)``: the un-attended features are kept (``feat``) and the attended
  ones added (``feat * a``), EmoNet's concatenation of both, without doubling the width. Without landmarks
  ``a = 0``: the plain features.

The landmarks are those of :data:`emoctx.faces.NETWORK_LANDMARKS` (the five facial COCO keypoints: nose, eyes,
ears); :func:`emoctx.faces.to_network_landmarks` converts the 68 points of face data sets to them, so a model
trained on AffectNet reads the faces a pose model finds.

:class:`FaceConfig` holds the options (``network.face`` in a model file). This module imports neither
Lightning nor ultralytics.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from emoctx.errors import EmoctxError
from emoctx.faces import LANDMARK_CONVENTIONS, NETWORK_LANDMARKS

FACE_STREAM = "face"
"""The name of the face stream; a stream of this name is a face stream."""

ATTENTIONS: tuple[str, ...] = ("landmarks", "none")
"""Attention of the face stream: from landmark heatmaps, or none (plain average pooling)."""

LANDMARKS: tuple[str, ...] = (NETWORK_LANDMARKS,)
"""Landmark conventions the attention reads."""


@dataclass
class FaceConfig:
    """Options of the face stream (``network.face`` in a model file).

    Attributes:
        attention: ``"landmarks"`` (heatmap attention) or ``"none"``.
        landmarks: the landmark convention the attention reads (``"coco5"``).
        sigma: standard deviation of each landmark's Gaussian, as a share of the face crop's side (0-1].
    """

    attention: str = "landmarks"
    landmarks: str = NETWORK_LANDMARKS
    sigma: float = 0.1

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise EmoctxError(
                f"face config: 'attention' must be one of {list(ATTENTIONS)}, got {self.attention!r}"
            )
        if self.landmarks not in LANDMARKS:
            raise EmoctxError(
                f"face config: 'landmarks' must be one of {list(LANDMARKS)}, got {self.landmarks!r}"
            )
        ok = isinstance(self.sigma, (int, float)) and not isinstance(self.sigma, bool)
        if not (ok and math.isfinite(self.sigma) and 0.0 < self.sigma <= 1.0):
            raise EmoctxError(f"face config: 'sigma' must be a number in (0, 1], got {self.sigma!r}")
        self.sigma = float(self.sigma)

    @property
    def num_landmarks(self) -> int:
        """Points per face in the convention."""
        return LANDMARK_CONVENTIONS[self.landmarks]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_dict` turns back into this config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | FaceConfig | None) -> FaceConfig:
        """Build from a mapping (None: the defaults); unknown keys are an error naming them."""
        if data is None:
            return cls()
        if isinstance(data, FaceConfig):
            return data
        if not isinstance(data, Mapping):
            raise EmoctxError(f"face config: expected a mapping, got {data!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise EmoctxError(f"face config: unknown key(s) {unknown}; the known keys are {known}")
        return cls(**dict(data))


class FeatureMap(nn.Module):
    """A timm backbone's unpooled features as an NCHW map ``[B, num_features, h, w]``.

    Args:
        model: a timm model (built with ``num_classes=0``, as :func:`emoctx.models.backbones.build_backbone`
            builds it; its head is not run).

    Raises:
        EmoctxError: the model's features cannot be read as a 2-D map (tokens that do not form a square grid).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_features = int(model.num_features)
        self._nhwc = str(getattr(model, "output_fmt", "NCHW")).upper() == "NHWC"
        self._prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` to features ``[B, C, h, w]``."""
        return to_nchw(self.model.forward_features(x), self._nhwc, self._prefix_tokens)

    def no_weight_decay(self) -> set[str]:
        """The backbone's own no-weight-decay names (timm's), under this wrapper's prefix."""
        inner = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else ()
        return {f"model.{name}" for name in inner}


def to_nchw(f: torch.Tensor, nhwc: bool, prefix_tokens: int) -> torch.Tensor:
    """A backbone's unpooled features (NCHW, NHWC, or tokens ``[B, N, C]``) as an NCHW map.

    Tokens lose their ``prefix_tokens`` (class and register tokens) and the rest is reshaped to its square
    grid. Registered with ``torch.fx.wrap``: a traced :class:`FeatureMap` (batch-norm folding) keeps this step
    as one call instead of tracing its shape-dependent branches.

    Raises:
        EmoctxError: tokens that do not form a square grid, or features of another rank.
    """
    if f.ndim == 3:
        f = f[:, prefix_tokens:]
        side = math.isqrt(f.shape[1])
        if side * side != f.shape[1]:
            raise EmoctxError(
                f"face stream: the backbone gives {f.shape[1]} tokens, not a square grid; landmark "
                "attention needs a feature map"
            )
        return f.transpose(1, 2).reshape(f.shape[0], f.shape[2], side, side)
    if f.ndim != 4:
        raise EmoctxError(
            f"face stream: expected a feature map from the backbone, got shape {tuple(f.shape)}"
        )
    return f.permute(0, 3, 1, 2) if nhwc else f


torch.fx.wrap("to_nchw")


def landmark_heatmaps(landmarks: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """One Gaussian per landmark on an ``height x width`` grid over the face crop.

    Args:
        landmarks: ``[B, K, 3]``: ``x, y`` in the crop's frame (0-1; outside is allowed) and a confidence in
            0-1. A point with a NaN coordinate or confidence 0 draws nothing.
        height: rows of the grid (the feature map's height); cell centres are at ``(i + 0.5) / height``.
        width: columns of the grid; cell centres are at ``(j + 0.5) / width``.
        sigma: the Gaussians' standard deviation as a share of the crop side.

    Returns:
        ``[B, K, height, width]`` heatmaps with peaks equal to the points' confidences (float32).
    """
    pts = landmarks.float()
    xy, conf = pts[..., :2], pts[..., 2]
    seen = torch.isfinite(xy).all(dim=-1) & torch.isfinite(conf)
    xy = torch.where(seen[..., None], xy, torch.zeros_like(xy))
    conf = torch.where(seen, conf.clamp(0.0, 1.0), torch.zeros_like(conf))
    xs = (torch.arange(width, device=pts.device, dtype=torch.float32) + 0.5) / width
    ys = (torch.arange(height, device=pts.device, dtype=torch.float32) + 0.5) / height
    dx = (xs[None, None, None, :] - xy[..., 0, None, None]) ** 2
    dy = (ys[None, None, :, None] - xy[..., 1, None, None]) ** 2
    return conf[..., None, None] * torch.exp(-(dx + dy) / (2.0 * sigma**2))


class LandmarkAttention(nn.Module):
    """``feat * (1 + a)`` with ``a = relu(w . heatmaps + b)`` (see the module docstring).

    Args:
        num_landmarks: points per face.
        sigma: the heatmaps' standard deviation as a share of the crop side.
    """

    def __init__(self, num_landmarks: int, sigma: float) -> None:
        super().__init__()
        self.sigma = float(sigma)
        self.mix = nn.Conv2d(num_landmarks, 1, kernel_size=1)
        nn.init.ones_(self.mix.weight)  # starts as the sum of the heatmaps (EmoNet's mask)
        nn.init.zeros_(self.mix.bias)

    def attention(self, landmarks: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The attention map ``a`` ``[B, 1, height, width]`` (>= 0) for landmarks ``[B, K, 3]``."""
        heat = landmark_heatmaps(landmarks, height, width, self.sigma)
        return F.relu(self.mix(heat.to(self.mix.weight.dtype)))

    def forward(self, feat: torch.Tensor, landmarks: torch.Tensor | None) -> torch.Tensor:
        """Modulated features ``[B, C, h, w]``; ``landmarks`` None leaves them as they are."""
        if landmarks is None:
            return feat
        a = self.attention(landmarks, feat.shape[-2], feat.shape[-1])
        return feat * (1.0 + a.to(feat.dtype))

    def extra_repr(self) -> str:
        """The Gaussians' width, shown when the module is printed."""
        return f"sigma={self.sigma}"
