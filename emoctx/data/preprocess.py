"""How pixels reach the network: the preprocessing a model was trained with, stored in its model file.

One :class:`PreprocessCfg` describes a model's inputs completely (the idea of open_clip's ``PreprocessCfg``):

* per stream (:class:`StreamPreprocess`): the **region** of the image it sees (its crop rule: ``"person"``, the
  person's box rounded outwards to whole pixels; ``"image"``, the whole image; ``"face"``, a loose square around
  the person's face box, see below), the **input size**
  ``(height, width)``, the **resize rule** (``"area"``: INTER_AREA when shrinking, bilinear when enlarging;
  ``"bilinear"``: always bilinear, ``cv2.resize``'s default), the normalisation **mean** and **std** (0-1 pixel
  scale), and an optional **mask**: a region filled with the mean colour (zeros after normalisation) in the
  stream's input (``"person"`` on the scene stream is "subject masking");
* **max_side**: images were decoded with their longest side at most this many pixels (``None``: full size).

Training writes it into the model file (``preprocessing`` in the description, see :mod:`emoctx.checkpoint`);
:func:`emoctx.data.transforms.build_transform` is the one function that turns it into the transform, with an
augmentation preset for training and without for evaluation, calibration, prediction and the ONNX recipe.

A stream is named freely; its region says what it is cut from. Streams known by name get their region by
default (:data:`DEFAULT_REGIONS`: ``body`` -> ``person``, ``scene``/``context`` -> ``image``, ``face`` ->
``face``).

**The face region** (:func:`face_square`): the square of side ``max(width, height)`` of the person's face box
(:mod:`emoctx.faces`, from a pose model or the records), centred on it, rounded outwards to whole pixels; where
it reaches past the image the missing pixels are filled with the stream's mean colour (zeros after
normalisation), so the face is never squashed or shifted. A person may have no face (a back view, a tiny person):
the stream then gets no input and the network its learned no-face embedding. The face's landmarks go with the
crop, as fractions of that square (:func:`emoctx.faces.landmarks_in_box`, in the ``coco5`` convention).

This module imports nothing heavy: the model file and the command line read it without albumentations or timm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emoctx.errors import EmoctxError

# The ImageNet statistics (timm's IMAGENET_DEFAULT_MEAN/STD), the default normalisation of a stream. Defined here
# once so that the data pipeline does not import all of timm's model registry for two constants.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

REGIONS: tuple[str, ...] = ("person", "image", "face")
"""What a stream may be cut from: the person's box, the whole image, or the person's face box."""
UNFED_REGIONS: tuple[str, ...] = ()
"""Regions a model file may name but the transform does not make (none: every region is made)."""
FACE_REGION = "face"
"""The region of a face stream: a loose square around the person's face box (a person may have none)."""
BOX_REGIONS: tuple[str, ...] = ("person",)
"""Regions given as a box per person (a stream's mask names one of these)."""
RESIZES: tuple[str, ...] = ("area", "bilinear")
"""How a stream's input is resized: INTER_AREA when shrinking (emoctx's), or always bilinear (``cv2.resize``'s
default, which the common PyTorch baseline used)."""
DEFAULT_REGIONS: dict[str, str] = {"body": "person", "scene": "image", "context": "image", "face": "face"}
"""The region of a stream known by its name (a stream of another name states its region)."""

Size = int | tuple[int, int]
"""An image size: one int for a square, or ``(height, width)``."""


def face_square(box: Sequence[float]) -> tuple[float, float, float, float]:
    """The square of side ``max(width, height)`` centred on a face box ``x1 y1 x2 y2`` (it may leave the image)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0


class PreprocessError(EmoctxError, ValueError):
    """An invalid preprocessing description (the message names the field)."""


def as_hw(size: Size | Sequence[int]) -> tuple[int, int]:
    """Normalise a size given as an int (square) or ``(height, width)`` to ``(height, width)``."""
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    elif hasattr(size, "__index__") and not isinstance(size, bool):  # numpy integers
        hw = (int(size), int(size))  # type: ignore[arg-type]
    else:
        try:
            values = tuple(int(s) for s in size)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise PreprocessError(f"an image size is an int or (height, width), got {size!r}") from None
        if len(values) != 2:
            raise PreprocessError(f"an image size is an int or (height, width), got {size!r}")
        hw = values  # type: ignore[assignment]
    if min(hw) < 1:
        raise PreprocessError(f"image sizes must be positive, got {size!r}")
    return hw


def _channels(value: Sequence[float], what: str, positive: bool) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3:
        raise PreprocessError(f"{what} needs one value per RGB channel, got {value!r}")
    if positive and min(out) <= 0:
        raise PreprocessError(f"{what} values must be positive, got {list(out)}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class StreamPreprocess:
    """How one stream's input is made (see the module docstring).

    Attributes:
        region: what the stream is cut from (:data:`REGIONS`).
        input_size: ``(height, width)`` of the input in pixels.
        mean: per-channel normalisation mean, 0-1 pixel scale.
        std: per-channel normalisation std.
        resize: :data:`RESIZES`.
        mask: a region (:data:`BOX_REGIONS`) filled with the mean colour in this stream's input, or ``None``.
    """

    region: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "area"
    mask: str | None = None

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise PreprocessError(
                f"unknown region {self.region!r}; a stream is cut from one of {list(REGIONS)}"
            )
        object.__setattr__(self, "input_size", as_hw(self.input_size))
        object.__setattr__(self, "mean", _channels(self.mean, "mean", positive=False))
        object.__setattr__(self, "std", _channels(self.std, "std", positive=True))
        if self.resize not in RESIZES:
            raise PreprocessError(f"resize must be one of {list(RESIZES)}, got {self.resize!r}")
        if self.mask is not None and (self.mask not in BOX_REGIONS or self.mask == self.region):
            raise PreprocessError(
                f"a stream cut from {self.region!r} can mask one of "
                f"{[r for r in BOX_REGIONS if r != self.region]}, not {self.mask!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the model file."""
        return {
            "region": self.region,
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "mask": self.mask,
        }


@dataclass(frozen=True)
class PreprocessCfg:
    """A model's complete input preparation (see the module docstring).

    Attributes:
        streams: ``{stream name: StreamPreprocess}`` in the network's stream order.
        max_side: images decoded with their longest side at most this many pixels (``None``: full size).
    """

    streams: Mapping[str, StreamPreprocess] = field(default_factory=dict)
    max_side: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", dict(self.streams))
        for name, spec in self.streams.items():
            if not isinstance(spec, StreamPreprocess):
                raise PreprocessError(
                    f"stream {name!r}: expected a StreamPreprocess, got {type(spec).__name__}"
                )
        if self.max_side is not None and (
            isinstance(self.max_side, bool) or not isinstance(self.max_side, int) or self.max_side < 1
        ):
            raise PreprocessError(
                f"max_side must be a positive number of pixels or null, got {self.max_side!r}"
            )

    # -- what it says ------------------------------------------------------------------------------------
    @property
    def mask_subject(self) -> bool:
        """Whether the person is masked out of some stream's input (subject masking)."""
        return any(s.mask == "person" for s in self.streams.values())

    @property
    def unfed_streams(self) -> list[str]:
        """The streams whose region the transform does not make yet (:data:`UNFED_REGIONS`)."""
        return [name for name, s in self.streams.items() if s.region in UNFED_REGIONS]

    def with_mask(self, mask_subject: bool) -> PreprocessCfg:
        """The same preprocessing with the person masked out of every whole-image stream (or out of none)."""
        streams = {
            name: dataclasses.replace(s, mask="person" if mask_subject and s.region == "image" else None)
            for name, s in self.streams.items()
        }
        return dataclasses.replace(self, streams=streams)

    def only(self, names: Sequence[str]) -> PreprocessCfg:
        """The preprocessing of some streams (in the order given)."""
        missing = [n for n in names if n not in self.streams]
        if missing:
            raise PreprocessError(f"no preprocessing for stream(s) {missing}; it has {list(self.streams)}")
        return dataclasses.replace(self, streams={n: self.streams[n] for n in names})

    # -- building it -------------------------------------------------------------------------------------
    @classmethod
    def for_streams(
        cls,
        streams: Mapping[str, Mapping[str, Any]],
        mask_subject: bool = False,
        max_side: int | None = None,
    ) -> PreprocessCfg:
        """The preprocessing of streams described by their input size and normalisation.

        Args:
            streams: ``{name: {"input_size", "mean", "std"}}`` (what :meth:`EmotionNet.stream_specs` gives), each
                optionally with ``"region"`` (default by name, :data:`DEFAULT_REGIONS`) and ``"resize"``
                (default ``"area"``); ``mean``/``std`` default to ImageNet's.
            mask_subject: mask the person out of the whole-image streams.
            max_side: the decoding size limit.

        Raises:
            PreprocessError: a stream without a known region, or an invalid value (naming the stream).
        """
        out = {}
        for name, spec in streams.items():
            region = spec.get("region") or DEFAULT_REGIONS.get(name)
            if region is None:
                raise PreprocessError(
                    f"stream {name!r}: no region given and none known for this name; give it a region "
                    f"(one of {list(REGIONS)}); known stream names: {DEFAULT_REGIONS}"
                )
            try:
                out[name] = StreamPreprocess(
                    region=region,
                    input_size=spec["input_size"],
                    mean=spec.get("mean") or IMAGENET_MEAN,
                    std=spec.get("std") or IMAGENET_STD,
                    resize=spec.get("resize") or "area",
                    mask="person" if mask_subject and region == "image" else None,
                )
            except (PreprocessError, KeyError) as e:
                raise PreprocessError(f"stream {name!r}: {e}") from e
        return cls(streams=out, max_side=max_side)

    @classmethod
    def from_v1(
        cls, streams: Mapping[str, Mapping[str, Any]], training: Mapping[str, Any] | None
    ) -> PreprocessCfg:
        """The preprocessing of a model file of format v1, which had no ``preprocessing`` field.

        v1 files hold each stream's input size, mean, std and resize rule in ``streams``; whether the subject
        was masked in ``training["mask_subject"]`` or ``training["data"]["mask_subject"]`` (what training wrote),
        and the decoding limit in ``training["data"]["max_side"]``. Regions follow the stream names.
        """
        training = training if isinstance(training, Mapping) else {}
        data = training.get("data") if isinstance(training.get("data"), Mapping) else {}
        masked = bool(training.get("mask_subject")) or bool(data.get("mask_subject"))
        max_side = data.get("max_side")
        return cls.for_streams(
            streams,
            mask_subject=masked,
            max_side=max_side if isinstance(max_side, int) and not isinstance(max_side, bool) else None,
        )

    # -- the JSON form -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the model file (``preprocessing``) and in the ONNX metadata."""
        return {"streams": {n: s.to_dict() for n, s in self.streams.items()}, "max_side": self.max_side}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessCfg:
        """Read :meth:`to_dict`'s form (checked; :mod:`emoctx.description` validates model files first)."""
        if isinstance(data, PreprocessCfg):
            return data
        if not isinstance(data, Mapping) or not isinstance(data.get("streams"), Mapping):
            raise PreprocessError(f"preprocessing: expected an object with 'streams', got {data!r:.80}")
        streams = {}
        for name, spec in data["streams"].items():
            try:
                streams[name] = StreamPreprocess(
                    region=spec["region"],
                    input_size=spec["input_size"],
                    mean=spec["mean"],
                    std=spec["std"],
                    resize=spec.get("resize", "area"),
                    mask=spec.get("mask"),
                )
            except (PreprocessError, KeyError, TypeError) as e:
                raise PreprocessError(f"preprocessing.streams.{name}: {e}") from e
        return cls(streams=streams, max_side=data.get("max_side"))
