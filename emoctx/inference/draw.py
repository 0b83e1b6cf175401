"""Annotated images: each person's box, top categories and valence/arousal/dominance bars.

Line widths and font sizes scale with the image (a 640-pixel photo and a 6000-pixel one read alike); the label
panel sits above the box when there is room, else inside it, and is kept within the image. Colours follow the
person index (the track id in videos), so a tracked person keeps its colour from frame to frame.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from emoctx import labels
from emoctx.inference.results import ImageResult
from emoctx.io import atomic_path

# A qualitative palette with good contrast against white text (Tableau 10).
_PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
_VAD_LETTERS = tuple(n[0].upper() for n in labels.VAD_NAMES)


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def annotate(image: np.ndarray | Image.Image, result: ImageResult, top_k: int = 3) -> Image.Image:
    """Draw ``result``'s persons on ``image``.

    Args:
        image: the RGB image the result belongs to (any size: boxes are scaled from the result's
            ``width`` x ``height`` to it).
        result: the prediction for this image.
        top_k: how many categories to print per person (most probable first; those above threshold marked).

    Returns:
        A new RGB PIL image.
    """
    img = image.copy() if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    img = img.convert("RGB")
    w, h = img.size
    sx = w / result.width if result.width else 1.0
    sy = h / result.height if result.height else 1.0
    side = max(w, h)
    line = max(1, round(side / 320))
    font_size = max(10, round(side / 55))
    font = _font(font_size)
    draw = ImageDraw.Draw(img, "RGBA")
    pad = max(2, font_size // 4)
    bar_h = max(3, font_size // 2)
    bar_w = font_size * 6

    placed: list[tuple[float, float, float, float]] = []  # panels drawn so far, kept from covering each other
    for p in result.persons:
        color = _PALETTE[int(p.person) % len(_PALETTE)] if p.error is None else (128, 128, 128)
        x1, y1, x2, y2 = p.box[0] * sx, p.box[1] * sy, p.box[2] * sx, p.box[3] * sy
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line)
        title = f"#{p.person}" if p.track_id is None else f"id {p.track_id}"
        lines = [title] if p.error is None else [f"{title} error"]
        chosen = set(p.categories)
        for name, prob in p.top(top_k):
            lines.append(f"{'*' if name in chosen else ' '}{name} {prob:.2f}")
        text_h = [draw.textbbox((0, 0), t, font=font)[3] for t in lines]
        text_w = max(draw.textbbox((0, 0), t, font=font)[2] for t in lines)
        bars = p.vad is not None
        panel_w = max(text_w, bar_w + font_size * 2 if bars else 0) + 2 * pad
        panel_h = sum(text_h) + pad * (len(lines) + 1) + (3 * (bar_h + pad) if bars else 0)
        px = min(max(0.0, x1), max(0.0, w - panel_w))
        py = _place_panel(px, (y1, y2), (panel_w, panel_h), h, placed)
        placed.append((px, py, px + panel_w, py + panel_h))
        draw.rectangle((px, py, px + panel_w, py + panel_h), fill=(0, 0, 0, 170), outline=color, width=line)
        ty = py + pad
        for t, th in zip(lines, text_h, strict=True):
            draw.text((px + pad, ty), t, font=font, fill=(255, 255, 255))
            ty += th + pad
        if bars:
            for letter, value in zip(_VAD_LETTERS, p.vad, strict=True):
                draw.text(
                    (px + pad, ty - pad // 2), letter, font=_font(max(8, bar_h + pad)), fill=(255, 255, 255)
                )
                bx = px + pad + font_size * 1.2
                frac = float(np.clip((value - labels.VAD_MIN) / labels.VAD_RANGE, 0.0, 1.0))
                draw.rectangle((bx, ty, bx + bar_w, ty + bar_h), fill=(90, 90, 90, 220))
                draw.rectangle((bx, ty, bx + bar_w * frac, ty + bar_h), fill=(*color, 255))
                ty += bar_h + pad
    return img


def _place_panel(
    px: float,
    box_y: tuple[float, float],
    size: tuple[float, float],
    height: float,
    placed: list[tuple[float, float, float, float]],
) -> float:
    """The top of a label panel, placed so that it covers earlier panels as little as possible.

    Tried in order: above the box, inside its top, below it, then lower down inside it; the first place that
    covers no earlier panel wins, else the one that covers least.
    """
    (y1, y2), (pw, ph) = box_y, size
    candidates = [y1 - ph, y1, y2]
    step = max(1.0, ph / 2)
    candidates += [y1 + k * step for k in range(1, int(max(0.0, y2 - y1) // step) + 1)]
    candidates = [min(max(0.0, y), max(0.0, height - ph)) for y in candidates]

    def covered(py: float) -> float:
        return sum(
            max(0.0, min(px + pw, r[2]) - max(px, r[0])) * max(0.0, min(py + ph, r[3]) - max(py, r[1]))
            for r in placed
        )

    return min(candidates, key=lambda y: (covered(y), candidates.index(y)))


def save_annotated(img: Image.Image, path: str | os.PathLike, quality: int = 90) -> Path:
    """Save an annotated image atomically (JPEG for ``.jpg``/``.jpeg``, else by suffix)."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "JPEG")
    with atomic_path(path) as tmp:
        if fmt == "JPEG":
            img.save(tmp, format=fmt, quality=quality)
        else:
            img.save(tmp, format=fmt)
    return path
