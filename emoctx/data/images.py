"""Decode image files into RGB ``uint8`` arrays, whatever the file's mode, orientation or condition.

Every image that enters emoctx (training, evaluation, prediction) is read here, so all of them get the same
treatment:

* the EXIF orientation tag is applied (a phone photo stored sideways comes back upright);
* every pixel mode becomes 8-bit RGB: grayscale, palette, alpha (composited on a background colour),
  CMYK, and 16-bit or 32-bit integer images (rescaled to 8 bits, not clipped);
* a file that cannot be decoded (missing, empty, not an image, corrupt, truncated) raises
  :class:`ImageError` with the path and the reason, so a caller can skip it and say why.

Large images can be decoded at reduced size (``max_side``). JPEGs are reduced inside the decoder
(:meth:`PIL.Image.Image.draft` scales by 1/2, 1/4 or 1/8 almost for free). Other formats are decoded at their
stored size and depth (one byte per pixel for a palette or grey PNG), then reduced *before* any conversion that
would widen the pixels: a palette, grey, alpha or 16-bit image is converted to RGB one band of rows at a time,
each band shrunk by a whole factor at once, so memory beyond the decoded file stays bounded by ``max_side``
(a 13300x13300 palette PNG with transparency needs its 177 MB of palette indices, not 4.5 GB of RGBA copies).
:func:`read_image` then reports the scale between the decoded pixels and the full-resolution image so that
boxes can be moved between the two (:meth:`DecodedImage.to_original`, :meth:`DecodedImage.from_original`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from emoctx.errors import EmoctxError

logger = logging.getLogger(__name__)

# EXIF orientations 5-8 swap width and height (rotations by 90 or 270 degrees, with or without a mirror).
_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})

# Pillow raises these for undecodable data: OSError (truncated, broken stream, missing file), ValueError and
# SyntaxError (malformed headers in some plugins), EOFError, and DecompressionBombError for absurd sizes.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)

_BAND_PIXELS = (
    1 << 21
)  # pixels converted at a time when a large image is reduced before its conversion to RGB
# Pillow's orientation transposes (as ImageOps.exif_transpose applies them), for images whose EXIF is gone.
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageError(EmoctxError):
    """An image file could not be decoded. The message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot read image: {reason}")


@dataclass(frozen=True)
class DecodedImage:
    """Decoded pixels plus the geometry needed to relate them to the full-resolution image.

    Attributes:
        pixels: ``(H, W, 3)`` ``uint8`` RGB array.
        original_size: ``(width, height)`` of the full-resolution image, in the frame of :attr:`pixels`
            (EXIF orientation applied unless decoding was asked not to).
        orientation: the file's EXIF orientation tag (1 = upright or no tag; 5-8 swap width and height).
        oriented: whether :attr:`pixels` are upright per the tag (True when the tag asks for nothing).
    """

    pixels: np.ndarray
    original_size: tuple[int, int]
    orientation: int = 1
    oriented: bool = True

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of :attr:`pixels`."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)``: decoded size divided by full size, per axis (1.0 when decoded at full size)."""
        (w, h), (ow, oh) = self.size, self.original_size
        return w / ow, h / oh

    def from_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``x1 y1 x2 y2`` boxes (shape ``(..., 4)``) from full-resolution pixels to decoded pixels."""
        sx, sy = self.scale
        return np.asarray(boxes, dtype=np.float64) * np.array([sx, sy, sx, sy])

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``x1 y1 x2 y2`` boxes (shape ``(..., 4)``) from decoded pixels to full-resolution pixels."""
        sx, sy = self.scale
        return np.asarray(boxes, dtype=np.float64) / np.array([sx, sy, sx, sy])


def load_rgb(path: str | os.PathLike, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Decode an image file at full resolution into an ``(H, W, 3)`` ``uint8`` RGB array.

    Args:
        path: image file (any format Pillow reads).
        background: colour that transparent pixels are composited on.

    Returns:
        The pixels, EXIF orientation applied.

    Raises:
        ImageError: the file is missing, empty, not an image, corrupt or truncated.
    """
    return read_image(path, background=background).pixels


def read_image(
    path: str | os.PathLike,
    max_side: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    apply_orientation: bool = True,
) -> DecodedImage:
    """Decode an image file into RGB ``uint8``, optionally at reduced size, with its full-resolution size.

    Args:
        path: image file (any format Pillow reads).
        max_side: when given, the longest side of the result is at most this many pixels. JPEGs are first
            reduced inside the decoder (by 1/2, 1/4 or 1/8, see :meth:`PIL.Image.Image.draft`), then
            resized to fit; other formats are decoded at their stored size and depth, shrunk by whole
            factors before their conversion to RGB (see the module docstring) and resized to fit. Images
            already small enough are returned at full size.
        background: colour that transparent pixels are composited on.
        apply_orientation: apply the EXIF orientation tag (turn off only for annotations that were drawn
            on the stored, unrotated pixels).

    Returns:
        The decoded image; use :meth:`DecodedImage.from_original` to bring full-resolution boxes onto it.

    Raises:
        ImageError: the file is missing, empty, not an image, corrupt or truncated.
        ValueError: ``max_side`` is not a positive integer.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as img:
            orientation = _orientation(img)
            stored_size = img.size
            if max_side is not None and max(img.size) > max_side and img.format == "JPEG":
                factor = max_side / max(img.size)
                # draft picks the largest reduction that keeps the image at least this size.
                img.draft("RGB", (max(1, round(img.size[0] * factor)), max(1, round(img.size[1] * factor))))
            img.load()
            oriented = False
            if max_side is not None and max(img.size) > 2 * max_side:
                # Shrink by whole factors first (band by band for modes that widen when converted), then
                # orient the small image.
                img = _reduce(img, max_side, background)
                if apply_orientation and orientation in _TRANSPOSES:
                    img, oriented = img.transpose(_TRANSPOSES[orientation]), True
            elif apply_orientation and orientation != 1:
                img, oriented = _apply_orientation(img, path)
            img = _to_rgb(img, background)
            if max_side is not None and max(img.size) > max_side:
                factor = max_side / max(img.size)
                target = (max(1, round(img.size[0] * factor)), max(1, round(img.size[1] * factor)))
                img = img.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
            pixels = np.asarray(img, dtype=np.uint8)
    except _DECODE_ERRORS as e:
        raise ImageError(path, _reason(e)) from e
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError(path, f"decoded to an unusable array of shape {pixels.shape}")
    swapped = oriented and orientation in _SWAPPING_ORIENTATIONS
    full_size = (stored_size[1], stored_size[0]) if swapped else stored_size
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels),
        original_size=full_size,
        orientation=orientation,
        oriented=oriented or orientation == 1,
    )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image with its EXIF orientation applied, read from the header only.

    Raises:
        ImageError: the file is missing, empty or not an image.
    """
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as img:
            return _oriented_size(img)
    except _DECODE_ERRORS as e:
        raise ImageError(path, _reason(e)) from e


def _check_file(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise ImageError(path, "no such file") from e
    except OSError as e:
        raise ImageError(path, _reason(e)) from e
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")
    if size == 0:
        raise ImageError(path, "the file is empty (0 bytes)")


def _reason(e: BaseException) -> str:
    if isinstance(e, Image.UnidentifiedImageError):
        return "not a recognised image format (corrupt, or not an image)"
    if isinstance(e, Image.DecompressionBombError):
        return f"image too large to decode safely ({e})"
    text = str(e)
    if "truncated" in text.lower():
        return f"truncated image data ({text})"
    return f"corrupt or unreadable image data ({type(e).__name__}: {text})"


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not make the pixels unreadable
        return 1


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    return (h, w) if _orientation(img) in _SWAPPING_ORIENTATIONS else (w, h)


def _apply_orientation(img: Image.Image, path: Path) -> tuple[Image.Image, bool]:
    """Apply the EXIF orientation; returns the image and whether it was applied."""
    try:
        return ImageOps.exif_transpose(img), True
    except Exception as e:  # noqa: BLE001 - keep the pixels, say that the orientation could not be applied
        logger.warning("%s: EXIF orientation not applied (%s: %s)", path, type(e).__name__, e)
        return img, False


def _reduce(img: Image.Image, max_side: int, background: tuple[int, int, int]) -> Image.Image:
    """``img`` in RGB, shrunk by whole factors to between one and two times ``max_side`` (box averages).

    The factors are those ``Image.resize(..., reducing_gap=2.0)`` would use. An RGB image is reduced at once;
    any other mode is converted one band of rows at a time (bands a multiple of the vertical factor high), so
    the widened pixels never exist at full size. Converting each pixel and then averaging boxes is what
    converting the whole image first gives.
    """
    w, h = img.size
    scale = max_side / max(w, h)
    target_w, target_h = max(1, round(w * scale)), max(1, round(h * scale))
    fx, fy = max(1, int(w / target_w / 2.0)), max(1, int(h / target_h / 2.0))
    if img.mode == "RGB":
        return img.reduce((fx, fy)) if (fx, fy) != (1, 1) else img
    extrema = img.getextrema() if img.mode in ("I", "F") else None  # one value range for every band
    rows = max(fy, _BAND_PIXELS // max(1, w) // fy * fy)
    out = Image.new("RGB", (-(-w // fx), -(-h // fy)))
    for top in range(0, h, rows):
        band = _to_rgb(img.crop((0, top, w, min(h, top + rows))), background, extrema)
        out.paste(band.reduce((fx, fy)) if (fx, fy) != (1, 1) else band, (0, top // fy))
    return out


def _to_rgb(
    img: Image.Image, background: tuple[int, int, int], extrema: tuple[float, float] | None = None
) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (``extrema``: the value range of a 32-bit image, if known)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        # Pillow's own conversion clips these to 0-255; rescale the value range instead.
        return Image.fromarray(_wide_to_uint8(np.asarray(img), mode, extrema)).convert("RGB")
    # "1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX": Pillow converts these correctly.
    return img.convert("RGB")


def _wide_to_uint8(values: np.ndarray, mode: str, extrema: tuple[float, float] | None = None) -> np.ndarray:
    """Rescale a single-channel 16-bit, 32-bit integer or float image to 8 bits.

    16-bit data is mapped 0-65535 -> 0-255. Mode ``I`` (32-bit) holds 16-bit PNGs in some Pillow versions
    and 8-bit data from some TIFFs: values within 0-255 are kept, within 0-65535 treated as 16-bit, and any
    other range is stretched. Float images in 0-1 are multiplied by 255.
    """
    v = values.astype(np.float64)
    if v.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    lo, hi = (float(np.nanmin(v)), float(np.nanmax(v))) if extrema is None else map(float, extrema)
    if mode.startswith("I;16"):
        scaled = v / 257.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = v * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = v
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scaled = v / 257.0
    else:
        scaled = (v - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(v)
    return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)
