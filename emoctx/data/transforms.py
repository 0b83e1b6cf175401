"""From one decoded image and one person to the network's inputs: the transform a :class:`PreprocessCfg` builds.

:func:`build_transform` is the one place that decides how pixels reach the network. It takes the model's
preprocessing (:class:`~emoctx.data.preprocess.PreprocessCfg`: per stream its region, input size, resize rule,
mean/std and mask) and an augmentation preset (:mod:`emoctx.data.augment`; ``none`` for evaluation and
prediction), and returns a :class:`StreamTransform` that makes every stream of the model:

1. **geometry** (flip, scale/shift/rotate, crops that keep the person) is applied to the whole image together
   with the person's box (albumentations ``BboxParams``, ``pascal_voc``), so a flip moves the person and the
   scene alike;
2. **colour** changes are applied to the augmented image;
3. each stream's **region** is cut out (:func:`region_rect`: ``image``, the whole image; ``person``, the
   transformed box rounded outwards to whole pixels), **resized** to the stream's input size by its rule
   (:func:`resize_view`), normalised with its mean/std;
4. a stream with a **mask** (``"person"`` on the scene: subject masking) gets that region filled with its mean
   colour, zeros after normalisation, so it sees only the context.

If the geometry pushes the person (mostly) out of the picture, albumentations drops the box; the transform then
falls back to the un-augmented geometry for that sample instead of failing (:attr:`StreamTransform.fallbacks`
counts these).

The prediction pipeline (:mod:`emoctx.inference.predictor`) batches persons across images and shares a scene
among them, so it does not call the transform per person; it uses the same steps (:meth:`StreamTransform.view`,
:meth:`StreamTransform.mask_rect`) and the same mean/std, and the tests check both give the same inputs.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

# Albumentations otherwise asks PyPI for a newer version on import: no network calls from a library.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

from emoctx.data.augment import PRESETS, PresetError, check_preset, fill_colour, preset_parts  # noqa: E402
from emoctx.data.boxes import PixelBox, clip_box, pixel_box  # noqa: E402
from emoctx.data.preprocess import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESIZES,
    PreprocessCfg,
    PreprocessError,
    Size,
    as_hw,
)

log = logging.getLogger(__name__)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "RESIZES",
    "PairTransform",
    "PresetError",
    "StreamTransform",
    "as_hw",
    "build_transform",
    "check_preset",
    "region_rect",
    "resize_view",
]


def resize_view(pixels: np.ndarray, hw: tuple[int, int], rule: str = "area") -> np.ndarray:
    """Resize a view to ``(height, width)`` by a stream's rule.

    ``"area"`` (emoctx's models): INTER_AREA when either side shrinks, bilinear otherwise, which is
    albumentations' ``Resize(area_for_downscale="image")``. ``"bilinear"``: always bilinear, ``cv2.resize``'s
    default (the imported baseline's). The same size is returned unchanged.
    """
    h, w = pixels.shape[:2]
    if (h, w) == tuple(hw):
        return pixels
    shrink = rule != "bilinear" and (hw[0] < h or hw[1] < w)
    return cv2.resize(pixels, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def region_rect(region: str, boxes: Mapping[str, Sequence[float]], w: int, h: int) -> PixelBox | None:
    """The whole-pixel rectangle a stream of ``region`` is cut from, in a ``w`` x ``h`` image.

    Args:
        region: ``"image"`` (the whole image) or a box region (``"person"``: its box rounded outwards).
        boxes: the boxes of the person's regions, clipped to the image (``{"person": (x1, y1, x2, y2)}``).
        w: image width.
        h: image height.

    Returns:
        ``(x1, y1, x2, y2)``, or ``None`` when the person has no box for ``region``.
    """
    if region == "image":
        return 0, 0, w, h
    box = boxes.get(region)
    return None if box is None else pixel_box(box, w, h)


def _in_view(box: Sequence[float], rect: PixelBox, hw: tuple[int, int]) -> PixelBox:
    """``box`` (image pixels) in the pixels of a view cut from ``rect`` and resized to ``hw``."""
    rx1, ry1, rx2, ry2 = rect
    vh, vw = hw
    return pixel_box(
        (
            (box[0] - rx1) * vw / (rx2 - rx1),
            (box[1] - ry1) * vh / (ry2 - ry1),
            (box[2] - rx1) * vw / (rx2 - rx1),
            (box[3] - ry1) * vh / (ry2 - ry1),
        ),
        vw,
        vh,
    )


class StreamTransform:
    """Augment an image with a person's box, then make the normalised input of every stream.

    Build it with :func:`build_transform`.

    Args:
        cfg: the preprocessing (streams, sizes, normalisation, masks).
        augment: augmentation preset name (:data:`PRESETS`).
        seed: seed of the random augmentations (``None``: from the operating system). Data-loader workers
            call :meth:`reseed` with their own seed (see ``emoctx.data.dataset.worker_init_fn``).
        geometric: albumentations transforms replacing the preset's geometric part (they receive the box).
        photometric: albumentations transforms replacing the preset's colour part.
    """

    def __init__(
        self,
        cfg: PreprocessCfg,
        augment: str = "none",
        seed: int | None = None,
        geometric: Sequence[Any] | None = None,
        photometric: Sequence[Any] | None = None,
    ):
        if not isinstance(cfg, PreprocessCfg):
            raise PreprocessError(f"a transform is built from a PreprocessCfg, got {type(cfg).__name__}")
        if not cfg.streams:
            raise PreprocessError("the preprocessing names no stream")
        if cfg.unfed_streams:
            raise PreprocessError(
                f"streams {cfg.unfed_streams} are not supported yet: their inputs (a face crop, who shows a face "
                "and the landmarks) are not made by training, evaluation or prediction, only by the network's "
                "own interface (see the README's section on faces)"
            )
        self.cfg = cfg
        self.preset = check_preset(augment)
        self.fallbacks = 0
        # Borders exposed by the geometry take the colour of the first whole-image stream's mean.
        scenes = [s for s in cfg.streams.values() if s.region == "image"] or list(cfg.streams.values())
        geo, photo = preset_parts(self.preset, fill_colour(scenes[0].mean))
        geo = list(geo if geometric is None else geometric)
        photo = list(photo if photometric is None else photometric)
        bbox_params = A.BboxParams(
            format="pascal_voc",
            label_fields=["labels"],
            # A person less than half inside the picture after the geometry counts as lost: fall back.
            min_visibility=0.5,
            clip=True,
            filter_invalid_bboxes=True,
        )
        self._geometric = A.Compose(geo, bbox_params=bbox_params, seed=seed) if geo else None
        self._photometric = A.Compose(photo, seed=None if seed is None else seed + 1) if photo else None
        self._normalise = {
            name: A.Compose([A.Normalize(mean=s.mean, std=s.std), ToTensorV2()])
            for name, s in cfg.streams.items()
        }

    @property
    def streams(self) -> tuple[str, ...]:
        """The names of the streams this transform makes, in order."""
        return tuple(self.cfg.streams)

    @property
    def augments(self) -> bool:
        """Whether this transform changes anything beyond cutting, resizing and normalising."""
        return self._geometric is not None or self._photometric is not None

    def reseed(self, seed: int) -> None:
        """Re-seed the random augmentations (each data-loader worker needs its own stream)."""
        if self._geometric is not None:
            self._geometric.set_random_seed(seed % 2**32)
        if self._photometric is not None:
            self._photometric.set_random_seed((seed + 1) % 2**32)

    # -- the steps after augmentation (the prediction pipeline calls them too) ---------------------------
    def view(self, name: str, image: np.ndarray, boxes: Mapping[str, Sequence[float]]) -> np.ndarray:
        """Stream ``name``'s region of ``image``, resized by its rule: ``uint8`` ``(H, W, 3)``, not normalised.

        Raises:
            ValueError: the person has no box for the stream's region.
        """
        spec = self.cfg.streams[name]
        h, w = image.shape[:2]
        rect = region_rect(spec.region, boxes, w, h)
        if rect is None:
            raise ValueError(f"stream '{name}': no {spec.region} box for this person")
        x1, y1, x2, y2 = rect
        return resize_view(image[y1:y2, x1:x2], spec.input_size, spec.resize)

    def mask_rect(
        self, name: str, size: tuple[int, int], boxes: Mapping[str, Sequence[float]]
    ) -> PixelBox | None:
        """Where stream ``name``'s mask falls in its input (``x1 y1 x2 y2`` pixels), or ``None`` without a mask.

        Args:
            name: the stream.
            size: ``(width, height)`` of the image the boxes are in.
            boxes: the person's boxes, clipped to the image.
        """
        spec = self.cfg.streams[name]
        if spec.mask is None or boxes.get(spec.mask) is None:
            return None
        rect = region_rect(spec.region, boxes, *size)
        return None if rect is None else _in_view(boxes[spec.mask], rect, spec.input_size)

    def normalise(self, name: str, view: np.ndarray) -> torch.Tensor:
        """A view (``uint8`` ``(H, W, 3)``) as stream ``name``'s normalised float tensor ``[3, H, W]``."""
        return self._normalise[name](image=view)["image"]

    # -- one person --------------------------------------------------------------------------------------
    def __call__(self, image: np.ndarray, box: Sequence[float]) -> dict[str, torch.Tensor]:
        """Transform one image and one person box.

        Args:
            image: ``(H, W, 3)`` ``uint8`` RGB image.
            box: the person's ``x1 y1 x2 y2`` box in pixels of ``image`` (clipped to the image).

        Returns:
            One float tensor ``[3, *input_size]`` per stream, by name, and ``box``: float tensor ``[4]``, the
            person's box in the augmented image as fractions of its width and height (``x1 y1 x2 y2`` in 0-1).

        Raises:
            ValueError: the box does not overlap the image.
        """
        h, w = image.shape[:2]
        bx = clip_box(box, w, h)
        if self._geometric is not None:
            out = self._geometric(image=image, bboxes=np.asarray([bx], dtype=np.float32), labels=[0])
            if len(out["bboxes"]) == 1:
                image, bx = out["image"], tuple(float(v) for v in out["bboxes"][0])
                bx = clip_box(bx, image.shape[1], image.shape[0])
            else:
                self.fallbacks += 1
        if self._photometric is not None:
            image = self._photometric(image=image)["image"]

        h, w = image.shape[:2]
        boxes = {"person": bx}
        items: dict[str, torch.Tensor] = {}
        for name in self.cfg.streams:
            x = self.normalise(name, self.view(name, image, boxes))
            mask = self.mask_rect(name, (w, h), boxes)
            if mask is not None:
                mx1, my1, mx2, my2 = mask
                x[:, my1:my2, mx1:mx2] = 0.0  # the mean colour, after normalisation
            items[name] = x
        items["box"] = torch.tensor([bx[0] / w, bx[1] / h, bx[2] / w, bx[3] / h], dtype=torch.float32)
        return items

    def __repr__(self) -> str:
        streams = ", ".join(
            f"{n}: {s.region} {s.input_size[0]}x{s.input_size[1]}{' mask ' + s.mask if s.mask else ''}"
            for n, s in self.cfg.streams.items()
        )
        return f"{type(self).__name__}(augment={self.preset!r}, {streams})"


_LEGACY_ARGS = (
    "body_size",
    "scene_size",
    "body_mean",
    "body_std",
    "scene_mean",
    "scene_std",
    "mask_subject",
    "seed",
    "body_resize",
    "scene_resize",
)  # the positional order of the deprecated build_transform(preset, ...)


def build_transform(
    cfg: PreprocessCfg | str = "none",
    *args: Any,
    augment: str = "none",
    seed: int | None = None,
    geometric: Sequence[Any] | None = None,
    photometric: Sequence[Any] | None = None,
    **legacy: Any,
) -> StreamTransform:
    """The transform of a model's preprocessing, with augmentation preset ``augment`` (``"none"``: evaluation).

    ``build_transform(cfg)`` is what evaluation and prediction use, ``build_transform(cfg, augment="light",
    seed=...)`` what training uses.

    Args:
        cfg: the preprocessing (:class:`~emoctx.data.preprocess.PreprocessCfg`; a model's is
            ``ModelInfo.preprocessing``, training's ``EmotionDataModule.preprocess``).
        *args: the preset name, as ``build_transform(cfg, "light")``.
        augment: augmentation preset (:data:`PRESETS`).
        seed: seed of the random augmentations.
        geometric: albumentations transforms replacing the preset's geometric part.
        photometric: albumentations transforms replacing the preset's colour part.
        **legacy: deprecated: ``build_transform(preset, body_size, scene_size, ...)`` (the arguments of
            :class:`PairTransform`) still builds the body + scene transform, with a warning.

    Raises:
        PresetError: an unknown preset. PreprocessError: an invalid preprocessing.
    """
    if isinstance(cfg, str):
        warnings.warn(
            "build_transform(preset, body_size=..., ...) is deprecated: pass a PreprocessCfg "
            "(emoctx.data.preprocess; a model's is ModelInfo.preprocessing) and augment=preset",
            DeprecationWarning,
            stacklevel=2,
        )
        if len(args) > len(_LEGACY_ARGS):
            raise TypeError(f"build_transform() takes at most {len(_LEGACY_ARGS) + 1} positional arguments")
        legacy.update(zip(_LEGACY_ARGS, args))
        legacy.setdefault("seed", seed)
        preset = legacy.pop("preset", cfg)
        with warnings.catch_warnings():  # warned once, here
            warnings.simplefilter("ignore", DeprecationWarning)
            return PairTransform(preset, geometric=geometric, photometric=photometric, **legacy)
    if legacy or len(args) > 1 or (args and not isinstance(args[0], str)):
        raise TypeError(
            "build_transform(cfg, augment) takes a PreprocessCfg and a preset name; got further arguments "
            f"{list(args[1:] if args and isinstance(args[0], str) else args) + sorted(legacy)}"
        )
    if args:
        augment = args[0]
    return StreamTransform(cfg, augment=augment, seed=seed, geometric=geometric, photometric=photometric)


class PairTransform(StreamTransform):
    """Deprecated: the body + scene :class:`StreamTransform` built from separate keyword arguments.

    Use ``build_transform(PreprocessCfg.for_streams({"body": ..., "scene": ...}, mask_subject=...), augment)``.
    The arguments are those of earlier versions (``preset``, ``body_size``, ``scene_size``, ``body_mean``,
    ``body_std``, ``scene_mean``, ``scene_std``, ``mask_subject``, ``seed``, ``geometric``, ``photometric``,
    ``body_resize``, ``scene_resize``); the outputs are the same.
    """

    def __init__(
        self,
        preset: str = "none",
        body_size: Size = 128,
        scene_size: Size = 224,
        body_mean: Sequence[float] = IMAGENET_MEAN,
        body_std: Sequence[float] = IMAGENET_STD,
        scene_mean: Sequence[float] = IMAGENET_MEAN,
        scene_std: Sequence[float] = IMAGENET_STD,
        mask_subject: bool = False,
        seed: int | None = None,
        geometric: Sequence[Any] | None = None,
        photometric: Sequence[Any] | None = None,
        body_resize: str = "area",
        scene_resize: str = "area",
    ):
        if type(self) is PairTransform:
            warnings.warn(
                "PairTransform is deprecated: use build_transform(PreprocessCfg, augment) "
                "(emoctx.data.preprocess), which makes any set of named streams",
                DeprecationWarning,
                stacklevel=2,
            )
        try:
            cfg = PreprocessCfg.for_streams(
                {
                    "body": {
                        "input_size": body_size,
                        "mean": body_mean,
                        "std": body_std,
                        "resize": body_resize,
                    },
                    "scene": {
                        "input_size": scene_size,
                        "mean": scene_mean,
                        "std": scene_std,
                        "resize": scene_resize,
                    },
                },
                mask_subject=mask_subject,
            )
        except PreprocessError as e:
            raise PresetError(str(e)) from e
        super().__init__(cfg, augment=preset, seed=seed, geometric=geometric, photometric=photometric)

    @property
    def body_hw(self) -> tuple[int, int]:
        """The body's input size ``(height, width)``."""
        return self.cfg.streams["body"].input_size

    @property
    def scene_hw(self) -> tuple[int, int]:
        """The scene's input size ``(height, width)``."""
        return self.cfg.streams["scene"].input_size

    @property
    def mask_subject(self) -> bool:
        """Whether the person is masked out of the scene."""
        return self.cfg.mask_subject
