"""Named augmentation presets (albumentations), split into a geometric and a colour part.

The geometric part (flip, scale/shift/rotate, crops that keep the person) is applied to the whole image
*together with the person box* (albumentations ``BboxParams``), so a flip or a crop moves the person and the
scene alike; the colour part (jitter, blur, noise, ...) is applied to the augmented image. The transform that
uses them is :class:`emoctx.data.transforms.StreamTransform`.

Presets (:data:`PRESETS`): ``none`` (evaluation and prediction: nothing), ``light`` (flip, small affine, mild
colour jitter), ``strong`` (adds a random crop that keeps the person, larger affine, stronger colour, grayscale,
blur, noise and JPEG artefacts) and ``baseline`` (the common PyTorch EMOTIC baseline's: a horizontal flip and
brightness/contrast/saturation jitter of 0.4 on every sample).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence

# Albumentations otherwise asks PyPI for a newer version on import: no network calls from a library.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from emoctx.errors import EmoctxError  # noqa: E402


class PresetError(EmoctxError, ValueError):
    """An unknown augmentation preset name or an invalid transform setting."""


def fill_colour(mean: Sequence[float]) -> tuple[int, int, int]:
    """The 8-bit colour that normalises to zero: used for borders exposed by the geometry and for masks."""
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


def preset_parts(name: str, fill: tuple[int, int, int]) -> tuple[list, list]:
    """The ``(geometric, photometric)`` albumentations transforms of preset ``name``.

    Args:
        name: a preset (:data:`PRESETS`).
        fill: the colour of borders exposed by the geometry (:func:`fill_colour` of the scene's mean).
    """
    return _PRESET_BUILDERS[check_preset(name)](fill)
