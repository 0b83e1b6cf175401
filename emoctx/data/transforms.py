"""Augmentation presets and the two-stream (body + scene) input transform.

A :class:`PairTransform` turns one decoded image and one person box into the two network inputs:

1. **geometry** (flip, scale/shift/rotate, crops that keep the person) is applied to the whole scene
   *together with the person box* (albumentations ``BboxParams``, ``pascal_voc`` format), so a flip or a
   crop moves the person and the scene alike;
2. **colour** changes (jitter, blur, noise, ...) are applied to the augmented scene;
3. the **body** is cropped from the augmented scene with the transformed box;
4. each stream is resized to its own size and normalised with its own mean/std;
5. optionally the person is **masked** out of the scene (filled with the scene mean, i.e. zeros after
   normalisation), so the scene stream sees only the context.

If the geometry pushes the person (mostly) out of the picture, albumentations drops the box; the transform
then falls back to the un-augmented geometry for that sample instead of failing (:attr:`PairTransform.fallbacks`
counts these).

Presets (:data:`PRESETS`): ``none`` (evaluation and prediction: resize and normalise only), ``light``
(flip, small affine, mild colour jitter), ``strong`` (adds a random crop that keeps the person, larger
affine, stronger colour, grayscale, blur, noise and JPEG artefacts) and ``baseline`` (the common PyTorch EMOTIC
baseline's: a horizontal flip and brightness/contrast/saturation jitter of 0.4 on every sample).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

# Albumentations otherwise asks PyPI for a newer version on import: no network calls from a library.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

from emoctx.errors import EmoctxError  # noqa: E402

# The ImageNet statistics (timm's IMAGENET_DEFAULT_MEAN/STD), the default for both streams. Defined here
# once so that importing the data pipeline does not pull in all of timm's model registry.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Size = int | tuple[int, int]

RESIZES: tuple[str, ...] = ("area", "bilinear")
"""How a stream's input is resized: INTER_AREA when shrinking (emoctx's), or always bilinear (``cv2.resize``'s
default, which the common PyTorch baseline used)."""
"""An image size: one int for a square, or ``(height, width)``."""


class PresetError(EmoctxError, ValueError):
    """An unknown augmentation preset name or an invalid transform setting."""


def as_hw(size: Size | Sequence[int]) -> tuple[int, int]:
    """Normalise a size given as an int (square) or ``(height, width)`` to ``(height, width)``."""
    if isinstance(size, (int, np.integer)):
        hw = (int(size), int(size))
    else:
        values = tuple(int(s) for s in size)
        if len(values) != 2:
            raise PresetError(f"an image size is an int or (height, width), got {size!r}")
        hw = values
    if min(hw) < 1:
        raise PresetError(f"image sizes must be positive, got {size!r}")
    return hw


def _fill(mean: Sequence[float]) -> tuple[int, int, int]:
    """The 8-bit colour that normalises to zero: used for borders and for the masked subject."""
    return tuple(int(round(m * 255)) for m in mean)  # type: ignore[return-value]


def _none(fill: tuple[int, int, int]) -> tuple[list, list]:
    return [], []


def _light(fill: tuple[int, int, int]) -> tuple[list, list]:
    geometric = [
        A.HorizontalFlip(p=0.5),
        A.Affine(
            scale=(0.9, 1.1),
            translate_percent=(-0.05, 0.05),
            rotate=(-10, 10),
            border_mode=cv2.BORDER_CONSTANT,
            fill=fill,
            p=0.5,
        ),
    ]
    photometric = [A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5)]
    return geometric, photometric


def _strong(fill: tuple[int, int, int]) -> tuple[list, list]:
    geometric = [
        A.HorizontalFlip(p=0.5),
        # A random crop of the scene that always contains the whole person; the resize to the scene size
        # comes later, so together this is a "random resized crop" that keeps the subject.
        A.BBoxSafeRandomCrop(erosion_rate=0.0, p=0.5),
        A.Affine(
            scale=(0.8, 1.2),
            translate_percent=(-0.1, 0.1),
            rotate=(-20, 20),
            shear=(-5, 5),
            border_mode=cv2.BORDER_CONSTANT,
            fill=fill,
            p=0.7,
        ),
    ]
    photometric = [
        A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.05, p=0.8),
        A.ToGray(p=0.1),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 7)), A.MotionBlur(blur_limit=(3, 7))], p=0.2),
        A.GaussNoise(std_range=(0.02, 0.08), p=0.2),
        A.ImageCompression(quality_range=(40, 95), p=0.2),
    ]
    return geometric, photometric


def _baseline(fill: tuple[int, int, int]) -> tuple[list, list]:
    # Tandon-A/emotic train.py: RandomHorizontalFlip() and ColorJitter(brightness=0.4, contrast=0.4,
    # saturation=0.4), applied there to the body and the context separately; here once, to the scene before the
    # body is cropped, so both streams see the same flip and colours.
    geometric = [A.HorizontalFlip(p=0.5)]
    photometric = [A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0, p=1.0)]
    return geometric, photometric


_PRESET_BUILDERS: dict[str, Callable[[tuple[int, int, int]], tuple[list, list]]] = {
    "none": _none,
    "light": _light,
    "strong": _strong,
    "baseline": _baseline,
}
PRESETS: tuple[str, ...] = tuple(_PRESET_BUILDERS)


def check_preset(name: str) -> str:
    """Return ``name`` if it is a preset; otherwise raise :class:`PresetError` suggesting close names."""
    if name in _PRESET_BUILDERS:
        return name
    close = difflib.get_close_matches(str(name), PRESETS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise PresetError(f"unknown augmentation preset {name!r}; choose one of {list(PRESETS)}.{hint}")


class PairTransform:
    """Augment a scene with its person box, then build the normalised body and scene tensors.

    Args:
        preset: augmentation preset name (:data:`PRESETS`).
        body_size: body crop size, int (square) or ``(height, width)``.
        scene_size: scene size, int (square) or ``(height, width)``.
        body_mean: per-channel mean (0-1 scale) for normalising the body stream.
        body_std: per-channel std (0-1 scale) for the body stream.
        scene_mean: per-channel mean for the scene stream; its 8-bit colour also fills borders exposed
            by the geometry and, with ``mask_subject``, the person's box.
        scene_std: per-channel std for the scene stream.
        mask_subject: fill the person's box in the scene with the scene mean (zeros after normalisation).
        body_resize: ``"area"`` (INTER_AREA when shrinking, bilinear when enlarging) or ``"bilinear"`` (always,
            ``cv2.resize``'s default, as the common PyTorch baseline resized).
        scene_resize: the same for the scene.
        seed: seed of the random augmentations (``None``: from the operating system). Data-loader workers
            should call :meth:`reseed` with their own seed (see ``emoctx.data.dataset.worker_init_fn``).
        geometric: albumentations transforms replacing the preset's geometric part (they receive the box).
        photometric: albumentations transforms replacing the preset's colour part.
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
        self.preset = check_preset(preset)
        for name, value in (("body_resize", body_resize), ("scene_resize", scene_resize)):
            if value not in RESIZES:
                raise PresetError(f"{name} must be one of {list(RESIZES)}, got {value!r}")
        self.body_hw = as_hw(body_size)
        self.scene_hw = as_hw(scene_size)
        for name, values in (
            ("body_mean", body_mean),
            ("body_std", body_std),
            ("scene_mean", scene_mean),
            ("scene_std", scene_std),
        ):
            if len(values) != 3:
                raise PresetError(f"{name} needs one value per RGB channel, got {list(values)}")
        if min(body_std) <= 0 or min(scene_std) <= 0:
            raise PresetError(
                f"std values must be positive, got body {list(body_std)}, scene {list(scene_std)}"
            )
        self.body_mean, self.body_std = tuple(map(float, body_mean)), tuple(map(float, body_std))
        self.scene_mean, self.scene_std = tuple(map(float, scene_mean)), tuple(map(float, scene_std))
        self.mask_subject = bool(mask_subject)
        self.fallbacks = 0

        geo, photo = _PRESET_BUILDERS[self.preset](_fill(self.scene_mean))
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
        self._body = self._finish(self.body_hw, self.body_mean, self.body_std, body_resize)
        self._scene = self._finish(self.scene_hw, self.scene_mean, self.scene_std, scene_resize)

    @staticmethod
    def _finish(
        hw: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...], resize: str = "area"
    ) -> A.Compose:
        area = "image" if resize == "area" else None
        return A.Compose(
            [
                A.Resize(hw[0], hw[1], interpolation=cv2.INTER_LINEAR, area_for_downscale=area),
                A.Normalize(mean=mean, std=std),
                ToTensorV2(),
            ]
        )

    @property
    def augments(self) -> bool:
        """Whether this transform changes anything beyond resizing and normalising."""
        return self._geometric is not None or self._photometric is not None

    def reseed(self, seed: int) -> None:
        """Re-seed the random augmentations (each data-loader worker needs its own stream)."""
        if self._geometric is not None:
            self._geometric.set_random_seed(seed % 2**32)
        if self._photometric is not None:
            self._photometric.set_random_seed((seed + 1) % 2**32)

    def __call__(self, image: np.ndarray, box: Sequence[float]) -> dict[str, torch.Tensor]:
        """Transform one image and one person box.

        Args:
            image: ``(H, W, 3)`` ``uint8`` RGB scene.
            box: the person's ``x1 y1 x2 y2`` box in pixels of ``image`` (clipped to the image).

        Returns:
            ``body``: float tensor ``[3, *body_size]``; ``scene``: float tensor ``[3, *scene_size]``;
            ``box``: float tensor ``[4]``, the person's box in the augmented scene as fractions of its
            width and height (``x1 y1 x2 y2`` in 0-1).

        Raises:
            ValueError: the box does not overlap the image.
        """
        h, w = image.shape[:2]
        bx = _clip_box(box, w, h)
        if self._geometric is not None:
            out = self._geometric(image=image, bboxes=np.asarray([bx], dtype=np.float32), labels=[0])
            if len(out["bboxes"]) == 1:
                image, bx = out["image"], tuple(float(v) for v in out["bboxes"][0])
                bx = _clip_box(bx, image.shape[1], image.shape[0])
            else:
                self.fallbacks += 1
        if self._photometric is not None:
            image = self._photometric(image=image)["image"]

        h, w = image.shape[:2]
        x1, y1, x2, y2 = _pixel_box(bx, w, h)
        body = self._body(image=image[y1:y2, x1:x2])["image"]
        scene = self._scene(image=image)["image"]
        if self.mask_subject:
            sh, sw = self.scene_hw
            mx1, my1, mx2, my2 = _pixel_box(
                (bx[0] * sw / w, bx[1] * sh / h, bx[2] * sw / w, bx[3] * sh / h), sw, sh
            )
            scene[:, my1:my2, mx1:mx2] = 0.0
        norm_box = torch.tensor([bx[0] / w, bx[1] / h, bx[2] / w, bx[3] / h], dtype=torch.float32)
        return {"body": body, "scene": scene, "box": norm_box}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(preset={self.preset!r}, body_size={self.body_hw}, "
            f"scene_size={self.scene_hw}, mask_subject={self.mask_subject})"
        )


def _clip_box(box: Sequence[float], w: int, h: int) -> tuple[float, float, float, float]:
    """Clip a box to the image and give it at least one pixel of width and height."""
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


def _pixel_box(box: Sequence[float], w: int, h: int) -> tuple[int, int, int, int]:
    """Integer pixel bounds covering a float box, inside the image and at least one pixel wide and high."""
    x1 = min(max(int(math.floor(box[0])), 0), w - 1)
    y1 = min(max(int(math.floor(box[1])), 0), h - 1)
    x2 = max(min(int(math.ceil(box[2])), w), x1 + 1)
    y2 = max(min(int(math.ceil(box[3])), h), y1 + 1)
    return x1, y1, x2, y2


def build_transform(
    preset: str = "none",
    body_size: Size = 128,
    scene_size: Size = 224,
    body_mean: Sequence[float] = IMAGENET_MEAN,
    body_std: Sequence[float] = IMAGENET_STD,
    scene_mean: Sequence[float] = IMAGENET_MEAN,
    scene_std: Sequence[float] = IMAGENET_STD,
    mask_subject: bool = False,
    seed: int | None = None,
    body_resize: str = "area",
    scene_resize: str = "area",
) -> PairTransform:
    """Build the :class:`PairTransform` of a named preset (``"none"`` for evaluation and prediction)."""
    return PairTransform(
        preset=preset,
        body_size=body_size,
        scene_size=scene_size,
        body_mean=body_mean,
        body_std=body_std,
        scene_mean=scene_mean,
        scene_std=scene_std,
        mask_subject=mask_subject,
        seed=seed,
        body_resize=body_resize,
        scene_resize=scene_resize,
    )
