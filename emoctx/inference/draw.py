"""Annotated images: each person's box and a label panel with the top categories and valence/arousal/dominance.

:func:`layout` decides what goes where, :func:`annotate` draws it. Per person, the panel holds the person's
index (``#0``; ``id 3`` for a track in a video), the ``top_k`` most probable categories with their
probabilities (``*`` marks those at or above the model's threshold, i.e. in the table's ``categories``; the
others are grey), and one bar per V/A/D dimension on the 1-10 scale with its value. A legend explains ``*`` and
the bars, and gives the drawn and the original size when they differ.

Panels are placed so as to hide no face. Each person's head region (:func:`head_region`: the top of the box,
two thirds of its width high, within a fifth to a half of its height) is kept clear: for each panel, positions
around its person are tried (above the box, inside it below the head, beside it, at its bottom, below it, then
the same sides in steps) and the one that covers the least of any head region and of the panels already placed
wins, then the one covering least of other persons' bodies, then the nearest (:func:`place_panels`); every
panel stays inside the image. Where the image has no room for every panel (crowds), the overlap is only made as
small as it can be. Hand-written: the usual drawing helpers (ultralytics' ``Annotator``, supervision's label
annotators) put a label at a fixed place on the box and do not avoid faces or each other.

Line widths and font sizes scale with the image, so a 640-pixel photo and a 6000-pixel one read alike; images
smaller than :data:`MIN_DRAW_SIDE` are drawn enlarged by a whole factor (a 320x240 image at 640x480), as the
smallest legible text would otherwise cover most of the people. Images decoded at reduced size (``max_side``)
are drawn at that size. Colours follow the track id in videos (the person index otherwise;
:mod:`emoctx.inference.colours`), the same as in the summary timelines, so a tracked person keeps its colour
from frame to frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from emoctx import labels
from emoctx.inference.colours import ERROR_COLOUR, track_colour
from emoctx.inference.results import ImageResult
from emoctx.io import atomic_path

Rect = tuple[float, float, float, float]
"""``(x1, y1, x2, y2)`` in pixels of the drawn image."""

HEAD_OF_WIDTH = 0.65
"""The head region's height as a share of the box width (a head is about two thirds as high as the shoulders are
wide)..."""
HEAD_OF_HEIGHT = (0.2, 0.5)
"""...kept within these shares of the box height (a standing person's head is in the top fifth; a box of an upper
body is about half head)."""

MIN_DRAW_SIDE = 640
"""Images whose longest side is smaller are drawn enlarged (by a whole factor) to at least this size, so that
the labels stay legible without covering the people."""

MARK = "*"
"""Marks a category at or above the model's threshold (listed in the table's ``categories``)."""

_VAD_LETTERS = tuple(n[0].upper() for n in labels.VAD_NAMES)
# Cost of covering one pixel of each kind (see the module docstring for the order of preference).
_COVER_HEAD = 100.0
_COVER_PANEL = 100.0
_COVER_BODY = 1.0
_DISTANCE = 0.01  # per pixel of distance from the person's box, per pixel of the panel's perimeter


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


@dataclass(frozen=True)
class Bar:
    """One V/A/D bar: ``letter`` (``V``, ``A``, ``D``), the value on 1-10 and the value as written."""

    letter: str
    value: float
    text: str


@dataclass
class Panel:
    """The label panel of one person.

    Attributes:
        index: the person's position in the result's ``persons``.
        rect: where the panel is drawn.
        title: ``#<person>``, or ``id <track>`` in a tracked video (``... error`` when the box was unusable).
        categories: ``(above threshold, "Name 0.81")`` for the top categories, most probable first.
        bars: the V/A/D bars (none on error).
        colour: the person's colour (RGB).
    """

    index: int
    rect: Rect
    title: str
    categories: list[tuple[bool, str]]
    bars: list[Bar]
    colour: tuple[int, int, int]

    @property
    def lines(self) -> list[str]:
        """The panel's text as drawn, one string per line (``*`` marks a category above its threshold)."""
        cats = [f"{MARK if above else ' '} {text}" for above, text in self.categories]
        return [self.title, *cats, *(f"{b.letter} {b.text}" for b in self.bars)]


@dataclass
class Legend:
    """What the marks mean, and the drawn size when it is not the original's."""

    rect: Rect
    lines: list[str]


@dataclass
class Layout:
    """Everything :func:`annotate` draws, in pixels of the drawn image.

    Attributes:
        size: the drawn image's ``(width, height)``.
        boxes: each person's box.
        heads: each person's head region (kept clear of panels where there is room).
        panels: one per person, in the result's order.
        legend: the legend (``None`` when there is no person).
        font_size: the text size of the panels.
        line: the width of box outlines.
    """

    size: tuple[int, int]
    boxes: list[Rect]
    heads: list[Rect]
    panels: list[Panel]
    legend: Legend | None
    font_size: int
    line: int


def head_region(box: Rect) -> Rect:
    """The part of a person box where the head is.

    The top of the box, :data:`HEAD_OF_WIDTH` times its width high (within :data:`HEAD_OF_HEIGHT` of its height),
    across the whole width.
    """
    x1, y1, x2, y2 = box
    low, high = HEAD_OF_HEIGHT
    h = float(np.clip(HEAD_OF_WIDTH * (x2 - x1), low * (y2 - y1), high * (y2 - y1)))
    return (x1, y1, x2, y1 + h)


def draw_scale(size: tuple[int, int]) -> int:
    """The whole factor an image of ``size`` is enlarged by for drawing (1 from :data:`MIN_DRAW_SIDE` up)."""
    side = max(size)
    return 1 if side >= MIN_DRAW_SIDE or side < 1 else -(-MIN_DRAW_SIDE // side)


@dataclass(frozen=True)
class _Metrics:
    font_size: int
    small_size: int
    pad: int
    gap: int
    line_h: int
    small_h: int
    bar_w: int
    letter_w: float
    value_w: float
    line: int


def _metrics(size: tuple[int, int]) -> _Metrics:
    side = max(size)
    font_size = max(10, round(side / 55))
    small_size = max(10, round(font_size * 0.85))
    font, small = _font(font_size), _font(small_size)
    return _Metrics(
        font_size=font_size,
        small_size=small_size,
        pad=max(2, font_size // 4),
        gap=max(1, font_size // 6),
        line_h=int(np.ceil(font.getbbox("Ay|*")[3])),
        small_h=int(np.ceil(small.getbbox("VAD0.1")[3])),
        bar_w=round(font_size * 4.5),
        letter_w=max(small.getlength(c) for c in _VAD_LETTERS),
        value_w=small.getlength("10.0"),
        line=max(1, round(side / 320)),
    )


def _panel_content(result: ImageResult, index: int, top_k: int) -> tuple[str, list, list[Bar], tuple]:
    p = result.persons[index]
    title = f"#{p.person}" if p.track_id is None else f"id {p.track_id}"
    if p.error is not None:
        return f"{title} error", [], [], ERROR_COLOUR
    chosen = set(p.categories)
    cats = [(name in chosen, f"{name} {prob:.2f}") for name, prob in p.top(top_k)]
    bars = []
    if p.vad is not None:
        bars = [
            Bar(letter, float(v), f"{float(v):.1f}") for letter, v in zip(_VAD_LETTERS, p.vad, strict=True)
        ]
    colour = track_colour(p.track_id if p.track_id is not None else p.person)
    return title, cats, bars, colour


def _panel_size(m: _Metrics, title: str, cats: list[tuple[bool, str]], bars: list[Bar]) -> tuple[int, int]:
    font = _font(m.font_size)
    mark_w = _mark_width(m.font_size)
    widths = [font.getlength(title)] + [mark_w + font.getlength(t) for _, t in cats]
    if bars:
        widths.append(m.letter_w + m.gap * 2 + m.bar_w + m.gap * 2 + m.value_w)
    width = max(widths) + 2 * m.pad
    text_lines = 1 + len(cats)
    height = 2 * m.pad + text_lines * m.line_h + (text_lines - 1) * m.gap
    if bars:
        height += len(bars) * (m.small_h + m.gap)
    return int(np.ceil(width)), int(np.ceil(height))


def _overlap(cands: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Overlap areas ``[C, N]`` of candidate rectangles ``[C, 4]`` with rectangles ``[N, 4]``."""
    if len(rects) == 0:
        return np.zeros((len(cands), 0))
    w = np.minimum(cands[:, None, 2], rects[None, :, 2]) - np.maximum(cands[:, None, 0], rects[None, :, 0])
    h = np.minimum(cands[:, None, 3], rects[None, :, 3]) - np.maximum(cands[:, None, 1], rects[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _candidates(box: Rect, head: Rect, pw: float, ph: float, size: tuple[int, int]) -> np.ndarray:
    """Top-left corners of the positions tried for a panel, in order of preference, kept inside the image.

    First the usual places (above the box, inside it below the head, beside it at the top, inside at the
    bottom, below it), then the same sides swept in steps of half a panel: down inside and beside the box,
    and along above and below it.
    """
    x1, y1, x2, y2 = box
    hb = head[3]
    inside = (x1, x2 - pw)  # left-aligned with the box, right-aligned
    beside = (x2, x1 - pw)
    corners = [(x, y1 - ph) for x in inside]
    corners += [(x, hb) for x in inside]
    corners += [(x, y) for x in beside for y in (y1, hb)]
    corners += [(x, y2 - ph) for x in inside]
    corners += [(x, y2) for x in inside]
    ystep, xstep = max(1.0, ph / 2), max(1.0, pw / 2)
    down = np.arange(hb, max(hb, y2 - ph) + ystep, ystep)
    along = np.arange(y1 - ph, y2 + ystep, ystep)
    across = np.arange(x1 - pw, x2 + xstep, xstep)
    corners += [(x, y) for x in inside for y in down]
    corners += [(x, y) for x in beside for y in along]
    corners += [(x, y) for y in (y1 - ph, y2) for x in across]
    w, h = size
    xy = np.array(corners, dtype=np.float64)
    xy[:, 0] = np.clip(xy[:, 0], 0.0, max(0.0, w - pw))
    xy[:, 1] = np.clip(xy[:, 1], 0.0, max(0.0, h - ph))
    return xy


def place_panels(
    boxes: list[Rect], sizes: list[tuple[float, float]], image_size: tuple[int, int]
) -> list[Rect]:
    """Where each person's panel goes (see the module docstring): no head covered where there is room.

    Args:
        boxes: the persons' boxes in pixels of the drawn image.
        sizes: each panel's ``(width, height)``.
        image_size: the drawn image's ``(width, height)``.

    Returns:
        One rectangle per panel, inside the image (a panel larger than the image starts at its top left).
    """
    heads = np.array([head_region(b) for b in boxes], dtype=np.float64).reshape(-1, 4)
    bodies = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    placed: list[Rect] = []
    # Persons with the least room first: their few good places are not taken by others' panels.
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
    out: dict[int, Rect] = {}
    for i in order:
        pw, ph = sizes[i]
        xy = _candidates(boxes[i], tuple(heads[i]), pw, ph, image_size)
        cands = np.concatenate([xy, xy + [pw, ph]], axis=1)
        cost = _COVER_HEAD * _overlap(cands, heads).sum(axis=1)
        cost += _COVER_PANEL * _overlap(cands, np.array(placed).reshape(-1, 4)).sum(axis=1)
        others = np.delete(bodies, i, axis=0)
        cost += _COVER_BODY * _overlap(cands, others).sum(axis=1)
        x1, y1, x2, y2 = boxes[i]
        dx = np.maximum(0.0, np.maximum(x1 - cands[:, 2], cands[:, 0] - x2))
        dy = np.maximum(0.0, np.maximum(y1 - cands[:, 3], cands[:, 1] - y2))
        cost += _DISTANCE * np.hypot(dx, dy) * 2 * (pw + ph)
        cost += np.arange(len(cands)) * 1e-6  # ties: the earlier (preferred) position
        best = cands[int(np.argmin(cost))]
        out[i] = (float(best[0]), float(best[1]), float(best[2]), float(best[3]))
        placed.append(out[i])
    return [out[i] for i in range(len(boxes))]


def _place_legend(
    size: tuple[float, float],
    image_size: tuple[int, int],
    avoid: list[Rect],
    bodies: list[Rect],
    margin: float,
) -> Rect:
    """A corner (or the middle of the top or bottom edge) for the legend, covering as little as possible."""
    w, h = image_size
    lw, lh = size
    spots = [
        (margin, h - lh - margin),
        (w - lw - margin, h - lh - margin),
        (margin, margin),
        (w - lw - margin, margin),
        ((w - lw) / 2, h - lh - margin),
        ((w - lw) / 2, margin),
    ]
    xy = np.array(spots, dtype=np.float64)
    xy[:, 0] = np.clip(xy[:, 0], 0.0, max(0.0, w - lw))
    xy[:, 1] = np.clip(xy[:, 1], 0.0, max(0.0, h - lh))
    cands = np.concatenate([xy, xy + [lw, lh]], axis=1)
    cost = _COVER_HEAD * _overlap(cands, np.array(avoid).reshape(-1, 4)).sum(axis=1)
    cost += _COVER_BODY * _overlap(cands, np.array(bodies).reshape(-1, 4)).sum(axis=1)
    cost += np.arange(len(cands)) * 1e-6
    best = cands[int(np.argmin(cost))]
    return (float(best[0]), float(best[1]), float(best[2]), float(best[3]))


def legend_lines(result: ImageResult, size: tuple[int, int]) -> list[str]:
    """The legend's text; with the drawn and original sizes when the image is drawn smaller than the original."""
    lines = [
        f"{MARK} at or above the model's threshold",
        f"{' '.join(_VAD_LETTERS)}: valence, arousal, dominance ({labels.VAD_MIN:g}-{labels.VAD_MAX:g})",
    ]
    if result.width and result.height and tuple(size) != (result.width, result.height):
        lines.append(f"drawn at {size[0]}x{size[1]}, original {result.width}x{result.height}")
    return lines


def layout(result: ImageResult, size: tuple[int, int], top_k: int = 3) -> Layout:
    """Where each box, panel and the legend go on an image of ``size`` (see the module docstring).

    Args:
        result: the prediction for this image.
        size: the ``(width, height)`` of the image drawn on (boxes are scaled from the result's
            ``width`` x ``height`` to it).
        top_k: categories per panel (most probable first).
    """
    w, h = int(size[0]), int(size[1])
    m = _metrics((w, h))
    sx = w / result.width if result.width else 1.0
    sy = h / result.height if result.height else 1.0
    boxes: list[Rect] = [(p.box[0] * sx, p.box[1] * sy, p.box[2] * sx, p.box[3] * sy) for p in result.persons]
    contents = [_panel_content(result, i, top_k) for i in range(len(result.persons))]
    sizes = [_panel_size(m, t, c, b) for t, c, b, _ in contents]
    rects = place_panels(boxes, sizes, (w, h))
    panels = [
        Panel(i, rect, title, cats, bars, colour)
        for i, (rect, (title, cats, bars, colour)) in enumerate(zip(rects, contents, strict=True))
    ]
    legend = None
    if panels:
        lines = legend_lines(result, (w, h))
        small = _font(m.small_size)
        lw = max(small.getlength(t) for t in lines) + _mark_width(m.small_size) + 2 * m.pad
        lh = len(lines) * m.small_h + (len(lines) - 1) * m.gap + 2 * m.pad
        heads = [head_region(b) for b in boxes]
        rect = _place_legend((lw, lh), (w, h), heads + rects, boxes, margin=m.pad)
        legend = Legend(rect, lines)
    return Layout((w, h), boxes, [head_region(b) for b in boxes], panels, legend, m.font_size, m.line)


def _mark_width(size: int) -> float:
    """The room before a category name: the mark as :func:`_draw_mark` draws it, and a space."""
    return _font(round(size * 1.5)).getlength(MARK) + _font(size).getlength(" ") * 1.5


def _draw_mark(draw: ImageDraw.ImageDraw, x: float, y: float, line_h: float, size: int) -> None:
    """The ``*`` mark, larger than the text's own (which sits small and high) and centred on the line."""
    font = _font(round(size * 1.5))
    left, top, _, bottom = font.getbbox(MARK)
    draw.text((x - left, y + line_h * 0.55 - (top + bottom) / 2), MARK, font=font, fill=(255, 255, 255))


def annotate(image: np.ndarray | Image.Image, result: ImageResult, top_k: int = 3) -> Image.Image:
    """Draw ``result``'s persons on ``image`` (see the module docstring).

    Args:
        image: the RGB image the result belongs to (any size: boxes are scaled from the result's
            ``width`` x ``height`` to it).
        result: the prediction for this image.
        top_k: how many categories to print per person (most probable first; those above threshold marked).

    Returns:
        A new RGB PIL image: ``image``'s size, or a whole multiple of it when its longest side is below
        :data:`MIN_DRAW_SIDE` (:func:`draw_scale`).
    """
    img = image.copy() if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    img = img.convert("RGB")
    k = draw_scale(img.size)
    if k > 1:
        img = img.resize((img.width * k, img.height * k), Image.Resampling.BICUBIC)
    lay = layout(result, img.size, top_k)
    m = _metrics(img.size)
    font, small = _font(m.font_size), _font(m.small_size)
    draw = ImageDraw.Draw(img, "RGBA")
    for panel, box in zip(lay.panels, lay.boxes, strict=True):
        draw.rectangle(box, outline=panel.colour, width=m.line)
    mark_w = _mark_width(m.font_size)
    for panel in lay.panels:
        x1, y1, x2, y2 = panel.rect
        draw.rectangle(panel.rect, fill=(0, 0, 0, 175), outline=panel.colour, width=max(1, m.line // 2))
        x, y = x1 + m.pad, y1 + m.pad
        draw.text((x, y), panel.title, font=font, fill=(255, 255, 255))
        for above, text in panel.categories:
            y += m.line_h + m.gap
            if above:
                _draw_mark(draw, x, y, m.line_h, m.font_size)
            draw.text((x + mark_w, y), text, font=font, fill=(255, 255, 255) if above else (200, 200, 200))
        y += m.line_h + m.gap
        bx = x + m.letter_w + 2 * m.gap
        thick = max(2, round(m.small_h * 0.6))
        for bar in panel.bars:
            draw.text((x, y), bar.letter, font=small, fill=(255, 255, 255))
            top = y + (m.small_h - thick) / 2
            frac = float(np.clip((bar.value - labels.VAD_MIN) / labels.VAD_RANGE, 0.0, 1.0))
            draw.rectangle((bx, top, bx + m.bar_w, top + thick), fill=(90, 90, 90, 230))
            if frac > 0:
                draw.rectangle((bx, top, bx + m.bar_w * frac, top + thick), fill=(*panel.colour, 255))
            draw.text((bx + m.bar_w + 2 * m.gap, y), bar.text, font=small, fill=(255, 255, 255))
            y += m.small_h + m.gap
    if lay.legend is not None:
        lx, ly, _, _ = lay.legend.rect
        draw.rectangle(lay.legend.rect, fill=(0, 0, 0, 150))
        for k, text in enumerate(lay.legend.lines):
            tx, ty = lx + m.pad, ly + m.pad + k * (m.small_h + m.gap)
            if text.startswith(MARK + " "):  # the mark as the panels draw it
                _draw_mark(draw, tx, ty, m.small_h, m.small_size)
                tx, text = tx + _mark_width(m.small_size), text[len(MARK) + 1 :]
            draw.text((tx, ty), text, font=small, fill=(235, 235, 235))
    return img


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
