"""Drawing EMOTIC-synth scenes: a backdrop of the place, a neutral floor, one figure per person with its cues.

A figure is a list of primitives in pixels; it is drawn once in colour on the image and once in white on a mask
whose bounding box is the person's tight box (:func:`render_image`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from emoctx.data.synth.rules import Cues

log = logging.getLogger(__name__)


SKIN = ((241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172), (110, 70, 40))


CLOTHES = (
    (200, 40, 40),
    (40, 90, 200),
    (40, 160, 70),
    (230, 200, 40),
    (120, 60, 160),
    (240, 130, 30),
    (30, 30, 30),
    (235, 235, 235),
    (20, 150, 160),
    (200, 80, 150),
    (110, 80, 50),
    (90, 90, 100),
)


HAIR = ((30, 20, 10), (90, 55, 20), (200, 160, 80), (60, 60, 60), (150, 60, 20))


OUTLINE = (25, 25, 25)


# Proportions per age, in units of figure height (head top v=0, feet v=1): head radius, shoulder and hip height,
# half shoulder width, figure height as a fraction of the adult height.
_BUILD = {
    "Adult": {"head": 0.075, "shoulder": 0.20, "hip": 0.53, "half": 0.11, "scale": 1.00},
    "Teenager": {"head": 0.085, "shoulder": 0.21, "hip": 0.54, "half": 0.105, "scale": 0.80},
    "Kid": {"head": 0.11, "shoulder": 0.25, "hip": 0.58, "half": 0.10, "scale": 0.58},
}


# How far hands (arms up) and hats reach above the head top, in figure heights.
_ARMS_UP_REACH = 0.16


_HAT_REACH = 0.07


Prim = tuple[str, Any, dict[str, Any]]


def _figure(cues: Cues, cx: float, feet: float, h: float, rng: np.random.Generator) -> list[Prim]:
    """The drawing primitives of one figure of height ``h`` standing at (cx, feet)."""
    b = _BUILD[cues.age]
    side = 1.0 if rng.random() < 0.5 else -1.0  # which hand points / carries the bag / which way a body leans
    skin = SKIN[int(rng.integers(len(SKIN)))]
    shirt = CLOTHES[int(rng.integers(len(CLOTHES)))]
    legs_c = CLOTHES[int(rng.integers(len(CLOTHES)))]
    hair = HAIR[int(rng.integers(len(HAIR)))]
    limb = max(2.0, 0.065 * h)

    def p(u: float, v: float) -> tuple[float, float]:
        return (cx + u * h, feet - h + v * h)

    lean = 0.0
    head_dv = 0.0
    sh_v, hip_v, half = b["shoulder"], b["hip"], b["half"]
    if cues.pose == "slumped":
        lean = 0.07 * side
        head_dv = 0.07
        sh_v += 0.05
        half *= 0.85
    hr = b["head"]
    head_c = (lean * 1.2, hr + 0.005 + head_dv)
    prims: list[Prim] = []

    # legs (drawn first: the torso overlaps their tops)
    knee = 0.04 * side if cues.pose == "slumped" else 0.0
    hip_l, hip_r = (-0.05, hip_v - 0.01), (0.05, hip_v - 0.01)
    for sx, hip in ((-1, hip_l), (1, hip_r)):
        pts = [p(*hip), p(sx * 0.05 + knee, (hip_v + 1) / 2), p(sx * 0.07, 0.985)]
        colour = skin if cues.gender == "Female" else legs_c
        prims.append(("line", pts, {"fill": OUTLINE, "width": limb + 2, "joint": "curve"}))
        prims.append(("line", pts, {"fill": colour, "width": limb, "joint": "curve"}))
        prims.append(
            ("ellipse", _box(p(sx * 0.07 + 0.02 * sx, 0.985), 0.035 * h, 0.015 * h), {"fill": OUTLINE})
        )
    # long hair behind the head
    if cues.gender == "Female":
        hu, hv = head_c
        prims.append(
            (
                "polygon",
                [
                    p(hu - hr * 1.15, hv),
                    p(hu + hr * 1.15, hv),
                    p(hu + hr * 1.05, hv + hr * 2.1),
                    p(hu - hr * 1.05, hv + hr * 2.1),
                ],
                {"fill": hair, "outline": OUTLINE},
            )
        )
    # torso (shirt), leaning in the slumped pose
    torso = [p(-half + lean, sh_v), p(half + lean, sh_v), p(half * 0.85, hip_v), p(-half * 0.85, hip_v)]
    prims.append(("polygon", torso, {"fill": shirt, "outline": OUTLINE}))
    if cues.gender == "Female":  # a dress over the hips
        dress = [
            p(-half * 0.85, hip_v - 0.02),
            p(half * 0.85, hip_v - 0.02),
            p(half * 1.5, 0.8),
            p(-half * 1.5, 0.8),
        ]
        prims.append(("polygon", dress, {"fill": shirt, "outline": OUTLINE}))
    # head
    prims.append(("ellipse", _box(p(*head_c), hr * h, hr * h), {"fill": skin, "outline": OUTLINE}))
    # arms: (shoulder, elbow, hand) in unit coordinates for each side
    arms = _arms(cues.pose, sh_v, half, lean, head_c, hr, side)
    for pts in arms:
        px = [p(*q) for q in pts]
        prims.append(("line", px, {"fill": OUTLINE, "width": limb + 2, "joint": "curve"}))
        prims.append(("line", px, {"fill": skin, "width": limb, "joint": "curve"}))
    # accessories
    if cues.accessory == "hat":
        hu, hv = head_c
        top = hv - hr
        brim = [p(hu - hr * 1.45, top + hr * 0.35), p(hu + hr * 1.45, top + hr * 0.35)]
        prims.append(
            (
                "rectangle",
                [p(hu - hr * 0.85, top - _HAT_REACH * 0.75), p(hu + hr * 0.85, top + hr * 0.35)],
                {"fill": (35, 35, 45), "outline": OUTLINE},
            )
        )
        prims.append(("line", brim, {"fill": (35, 35, 45), "width": max(2.0, 0.025 * h)}))
    elif cues.accessory == "bag":
        su = -side * half * 0.9
        bag_u = side * (half + 0.05)
        prims.append(
            (
                "line",
                [p(su + lean, sh_v), p(bag_u, hip_v - 0.02)],
                {"fill": (60, 40, 20), "width": max(1.0, 0.02 * h)},
            )
        )
        bag = [p(bag_u - 0.06, hip_v - 0.04), p(bag_u + 0.06, hip_v + 0.08)]
        prims.append(("rectangle", bag, {"fill": (120, 70, 30), "outline": OUTLINE}))
    return prims


def _arms(
    pose: str, sh_v: float, half: float, lean: float, head_c: tuple[float, float], hr: float, side: float
) -> list[list[tuple[float, float]]]:
    """Polylines (shoulder, elbow, hand) of both arms for a pose, in unit coordinates."""
    arms = []
    for s in (-1.0, 1.0):
        sh = (s * half + lean, sh_v + 0.01)
        if pose == "arms_up":
            pts = [sh, (s * (half + 0.09), sh_v - 0.13), (s * (half + 0.14), -_ARMS_UP_REACH)]
        elif pose == "arms_crossed":
            pts = [sh, (s * (half + 0.04), sh_v + 0.17), (-s * half * 0.75, sh_v + 0.11)]
        elif pose == "hands_on_head":
            hu, hv = head_c
            pts = [sh, (s * (half + 0.12), sh_v - 0.08), (hu + s * hr * 1.05, hv)]
        elif pose == "pointing" and s == side:
            pts = [sh, (s * (half + 0.15), sh_v + 0.01), (s * (half + 0.33), sh_v - 0.01)]
        elif pose == "slumped":
            pts = [sh, (s * half * 0.9 + lean * 1.4, sh_v + 0.17), (s * half * 0.7 + lean * 1.8, sh_v + 0.33)]
        else:  # arms_down, and the other arm of pointing
            pts = [sh, (s * (half + 0.04), sh_v + 0.17), (s * (half + 0.05), sh_v + 0.33)]
        arms.append(pts)
    return arms


def _box(c: tuple[float, float], rx: float, ry: float) -> list[float]:
    return [c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry]


def _render(draw: ImageDraw.ImageDraw, prims: Iterable[Prim], mask: bool = False) -> None:
    for kind, xy, style in prims:
        if mask:
            style = {k: (255 if k in ("fill", "outline") else v) for k, v in style.items()}
        if "width" in style:
            style = {**style, "width": max(1, int(round(style["width"])))}
        getattr(draw, kind)(xy, **style)


def _jitter(rng: np.random.Generator, colour: Sequence[int], amount: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)  # type: ignore[return-value]


def _vertical_gradient(w: int, h: int, top: Sequence[int], bottom: Sequence[int]) -> np.ndarray:
    t = np.linspace(0.0, 1.0, max(h, 1), dtype=np.float32)[:, None, None]
    grad = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(grad, (h, w, 3)).copy()


def _backdrop(place: str, w: int, hz: int, rng: np.random.Generator) -> Image.Image:
    """The place: a ``w`` x ``hz`` band (the top of the frame) with the place's colours, texture and objects."""
    s = hz / 100.0  # object scale: the band is ``hz`` pixels tall
    if place == "beach":
        arr = _vertical_gradient(w, hz, _jitter(rng, (110, 180, 235)), _jitter(rng, (200, 230, 250)))
    elif place == "office":
        arr = _vertical_gradient(w, hz, _jitter(rng, (215, 205, 180)), _jitter(rng, (235, 225, 200)))
        arr[:, (np.arange(w) // max(2, int(6 * s))) % 2 == 0] *= 0.94  # striped wallpaper
    elif place == "forest":
        arr = _vertical_gradient(w, hz, _jitter(rng, (170, 215, 190)), _jitter(rng, (60, 110, 60)))
        arr += rng.normal(0, 14, size=(hz, w, 1)).astype(np.float32)  # leafy speckle
    elif place == "street":
        arr = _vertical_gradient(w, hz, _jitter(rng, (160, 175, 195)), _jitter(rng, (190, 195, 205)))
    elif place == "party":
        arr = _vertical_gradient(w, hz, _jitter(rng, (45, 15, 70)), _jitter(rng, (90, 30, 110)))
    elif place == "hospital":
        arr = _vertical_gradient(w, hz, _jitter(rng, (215, 238, 238)), _jitter(rng, (235, 248, 248)))
        tile = max(3, int(10 * s))
        arr[(np.arange(hz) % tile) == 0] *= 0.9  # wall tiles
        arr[:, (np.arange(w) % tile) == 0] *= 0.9
    else:  # pragma: no cover - guarded by Cues
        raise ValueError(place)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)

    def rx(lo: float = 0.0, hi: float = 1.0) -> float:
        return float(rng.uniform(lo * w, hi * w))

    if place == "beach":
        sea_top = hz * rng.uniform(0.55, 0.7)
        d.rectangle([0, sea_top, w, hz], fill=_jitter(rng, (30, 110, 190)))
        for _ in range(int(rng.integers(4, 9))):  # wave crests
            x, y = rx(), rng.uniform(sea_top + 3, hz - 2)
            d.arc([x - 10 * s, y - 3 * s, x + 10 * s, y + 3 * s], 200, 340, fill=(240, 250, 255), width=2)
        sx, sy, r = rx(0.05, 0.95), hz * rng.uniform(0.15, 0.35), 9 * s * rng.uniform(0.8, 1.3)
        d.ellipse(_box((sx, sy), r, r), fill=(255, 220, 60))
        for _ in range(int(rng.integers(0, 3))):  # palm trees
            x = rx()
            d.line([(x, hz), (x + 6 * s, hz * 0.35)], fill=(120, 80, 40), width=max(2, int(3 * s)))
            for a in (-2.6, -2.0, -1.1, -0.5):
                d.line(
                    [
                        (x + 6 * s, hz * 0.35),
                        (x + 6 * s + 18 * s * math.cos(a), hz * 0.35 - 10 * s * math.sin(a)),
                    ],
                    fill=(30, 140, 50),
                    width=max(2, int(3 * s)),
                )
    elif place == "office":
        for _ in range(int(rng.integers(2, 4))):  # windows
            x, y = rx(0, 0.85), hz * rng.uniform(0.1, 0.3)
            d.rectangle([x, y, x + 28 * s, y + 40 * s], fill=(170, 210, 240), outline=(90, 90, 90), width=2)
            d.line([(x + 14 * s, y), (x + 14 * s, y + 40 * s)], fill=(90, 90, 90), width=2)
        x, y = rx(0, 0.8), hz * rng.uniform(0.55, 0.7)  # a shelf of books
        d.rectangle([x, y, x + 45 * s, y + 4 * s], fill=(110, 75, 40))
        bx = x
        while bx < x + 42 * s:
            bw = 3 * s * rng.uniform(0.7, 1.4)
            d.rectangle(
                [bx, y - 12 * s * rng.uniform(0.7, 1.0), bx + bw, y],
                fill=CLOTHES[int(rng.integers(len(CLOTHES)))],
            )
            bx += bw + 1
        cx, cy, r = rx(0.05, 0.95), hz * 0.2, 7 * s  # clock
        d.ellipse(_box((cx, cy), r, r), fill=(250, 250, 250), outline=(40, 40, 40), width=2)
        d.line([(cx, cy), (cx, cy - r * 0.7), (cx, cy), (cx + r * 0.5, cy)], fill=(40, 40, 40), width=1)
        d.rectangle([0, hz - 8 * s, w, hz], fill=_jitter(rng, (150, 130, 100)))  # a row of desks
    elif place == "forest":
        for _ in range(int(rng.integers(7, 14))):
            x, top = rx(-0.05, 1.05), hz * rng.uniform(0.05, 0.45)
            half = 14 * s * rng.uniform(0.7, 1.3)
            d.rectangle([x - 2 * s, hz * 0.75, x + 2 * s, hz], fill=(90, 60, 30))
            green = _jitter(rng, (30, 100, 45), 25)
            d.polygon([(x, top), (x + half, hz * 0.85), (x - half, hz * 0.85)], fill=green)
    elif place == "street":
        x = -rx(0, 0.1)
        while x < w:
            bw, bh = 40 * s * rng.uniform(0.7, 1.4), hz * rng.uniform(0.4, 0.95)
            colour = _jitter(rng, ((150, 70, 50), (120, 120, 130), (180, 160, 130))[int(rng.integers(3))], 20)
            d.rectangle([x, hz - bh, x + bw, hz], fill=colour, outline=(60, 60, 60))
            for wy in np.arange(hz - bh + 5 * s, hz - 8 * s, 10 * s):
                for wx in np.arange(x + 5 * s, x + bw - 6 * s, 10 * s):
                    d.rectangle(
                        [wx, wy, wx + 5 * s, wy + 5 * s],
                        fill=(240, 220, 120) if rng.random() < 0.4 else (70, 80, 100),
                    )
            x += bw + rng.uniform(0, 6 * s)
        lx = rx(0.05, 0.95)  # a street lamp
        d.line([(lx, hz), (lx, hz * 0.2)], fill=(40, 40, 40), width=max(2, int(2 * s)))
        d.ellipse(_box((lx, hz * 0.2), 4 * s, 3 * s), fill=(255, 240, 150))
    elif place == "party":
        for _ in range(int(40 * w / 320)):  # confetti
            x, y, r = rx(), rng.uniform(0, hz), 1.5 * s
            d.ellipse(_box((x, y), r, r), fill=CLOTHES[int(rng.integers(len(CLOTHES)))])
        n = int(rng.integers(8, 16))  # bunting
        xs = np.linspace(0, w, n + 1)
        for a, b2 in zip(xs[:-1], xs[1:]):
            d.polygon(
                [(a, 3 * s), (b2, 3 * s), ((a + b2) / 2, 14 * s)],
                fill=CLOTHES[int(rng.integers(len(CLOTHES)))],
            )
        for _ in range(int(rng.integers(3, 8))):  # balloons
            x, y = rx(), hz * rng.uniform(0.25, 0.6)
            d.line([(x, y + 9 * s), (x + rng.uniform(-4, 4) * s, hz)], fill=(220, 220, 220), width=1)
            d.ellipse(
                _box((x, y), 6 * s, 8 * s),
                fill=_jitter(
                    rng,
                    ((230, 40, 60), (250, 200, 30), (60, 160, 240), (240, 120, 200))[int(rng.integers(4))],
                    15,
                ),
            )
    elif place == "hospital":
        x, y, r = rx(0.05, 0.9), hz * rng.uniform(0.15, 0.4), 10 * s  # red cross sign
        d.rectangle([x, y, x + 2 * r, y + 2 * r], fill=(255, 255, 255), outline=(160, 160, 160))
        d.rectangle([x + r * 0.75, y + r * 0.3, x + r * 1.25, y + r * 1.7], fill=(220, 30, 30))
        d.rectangle([x + r * 0.3, y + r * 0.75, x + r * 1.7, y + r * 1.25], fill=(220, 30, 30))
        for _ in range(int(rng.integers(1, 3))):  # beds
            bx = rx(0, 0.8)
            d.rectangle(
                [bx, hz - 14 * s, bx + 45 * s, hz - 6 * s],
                fill=(250, 250, 250),
                outline=(120, 130, 140),
                width=2,
            )
            d.rectangle([bx, hz - 22 * s, bx + 4 * s, hz], fill=(120, 130, 140))
            d.rectangle([bx + 41 * s, hz - 18 * s, bx + 45 * s, hz], fill=(120, 130, 140))
        ix = rx(0.05, 0.95)  # an IV pole
        d.line([(ix, hz), (ix, hz * 0.3)], fill=(150, 150, 160), width=2)
        d.rectangle(
            [ix - 3 * s, hz * 0.3, ix + 3 * s, hz * 0.3 + 9 * s],
            fill=(200, 230, 255),
            outline=(150, 150, 160),
        )
    return img


def _floor(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """The neutral floor: a grey whose level, texture and tiling are drawn the same way in every place."""
    level = rng.uniform(105, 175)
    arr = np.full((h, w, 3), level, dtype=np.float32)
    arr += np.linspace(-12, 12, h, dtype=np.float32)[:, None, None] * rng.uniform(-1, 1)
    arr += rng.normal(0, 5, size=(h, w, 1)).astype(np.float32)
    if rng.random() < 0.5:  # faint tile lines
        step = int(rng.integers(18, 40))
        arr[(np.arange(h) % step) == 0] -= 15
        arr[:, (np.arange(w) % step) == 0] -= 15
    return arr


def render_image(
    place: str, cues: Sequence[Cues], size: tuple[int, int], rng: np.random.Generator
) -> tuple[Image.Image, list[tuple[float, float, float, float]]]:
    """Draw one scene: the place's backdrop on top, the figures standing on a neutral floor below it.

    Args:
        place: the place of the scene.
        cues: the cues of each figure (their place is ``place``).
        size: ``(width, height)`` in pixels.
        rng: the random generator for layout, colours and clutter.

    Returns:
        The RGB image and each figure's tight box ``(x1, y1, x2, y2)`` in the order of ``cues``.
    """
    w, h = size
    # The backdrop draws from its own stream, so the floor and the figures come out the same in every place.
    backdrop_rng = np.random.default_rng(int(rng.integers(2**63)))
    hz = int(round(h * rng.uniform(0.33, 0.40)))  # the horizon: backdrop above, floor below
    margin = max(16, int(round(0.05 * h)))  # keeps every box (and JPEG colour blocks) clear of the backdrop
    floor = _floor(w, h - hz, rng)
    canvas = np.empty((h, w, 3), dtype=np.float32)
    canvas[hz:] = floor
    canvas[:hz] = np.asarray(_backdrop(place, w, hz, backdrop_rng), dtype=np.float32)
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, hz, w, hz + max(2, h // 80)], fill=(70, 70, 70))  # skirting line, the same everywhere

    n = len(cues)
    slot = w / n
    layout = []
    for i, c in enumerate(cues):
        full = 0.36 * h * rng.uniform(0.88, 1.0)  # adult height
        fh = full * _BUILD[c.age]["scale"]
        reach = (_ARMS_UP_REACH if c.pose == "arms_up" else 0.0) + (
            _HAT_REACH if c.accessory == "hat" else 0.0
        )
        top_room = fh * (1 + reach + 0.02)
        lo, hi = hz + margin + top_room, h - 0.03 * h
        if lo > hi:  # a very flat frame: shrink the figure to fit
            fh *= (h - 0.03 * h - hz - margin) / top_room
            lo = hi
        feet = rng.uniform(lo, hi)
        cx = (i + 0.5) * slot + rng.uniform(-0.18, 0.18) * slot
        cx = float(np.clip(cx, 0.5 * fh + 2, w - 0.5 * fh - 2))
        layout.append((feet, i, cx, fh))
    boxes: list[tuple[float, float, float, float]] = [(0.0, 0.0, 0.0, 0.0)] * n
    for feet, i, cx, fh in sorted(layout):  # farther (higher) figures first, nearer ones occlude them
        prims = _figure(cues[i], cx, feet, fh, rng)
        _render(draw, prims)
        mask = Image.new("L", (w, h), 0)
        _render(ImageDraw.Draw(mask), prims, mask=True)
        x1, y1, x2, y2 = mask.getbbox()  # exclusive right/bottom: a tight box in pixel-edge coordinates
        boxes[i] = (float(x1), float(y1), float(x2), float(y2))
    return img, boxes
