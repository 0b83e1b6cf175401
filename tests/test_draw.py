"""Annotated images: panels that hide no face, stay inside the image and hold what they promise (values, marks),
the legend, small images, reduced-size images, and track colours."""

import numpy as np
import pytest
from PIL import Image

from emoctx import labels
from emoctx.inference.colours import track_colour
from emoctx.inference.draw import (
    MARK,
    MIN_DRAW_SIDE,
    annotate,
    draw_scale,
    head_region,
    layout,
    place_panels,
)
from emoctx.inference.results import ImageResult, PersonResult

# The persons of ultralytics' bus.jpg (810x1080) and zidane.jpg (1280x720), as scripts/demo_boxes.csv gives them.
BUS = [(56, 397, 250, 903), (224, 405, 346, 861), (667, 397, 810, 877), (0, 557, 76, 869)]
ZIDANE = [(120, 195, 1150, 720), (750, 40, 1130, 720)]


def _person(k, box, strong=("Happiness",), vad=(7.25, 3.5, 10.0), track_id=None):
    probs = np.linspace(0.05, 0.3, labels.NUM_CATEGORIES)
    for rank, name in enumerate(("Happiness", "Engagement", "Pleasure")):
        probs[labels.CATEGORY_INDEX[name]] = 0.9 - 0.1 * rank
    return PersonResult(
        person=k if track_id is None else track_id,
        box=tuple(float(v) for v in box),
        probabilities=probs,
        vad=np.array(vad, dtype=float),
        categories=list(strong),
        track_id=track_id,
    )


def _result(boxes, size, **kwargs):
    w, h = size
    return ImageResult(
        "x.jpg", width=w, height=h, persons=[_person(k, b, **kwargs) for k, b in enumerate(boxes)]
    )


def _area(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def _inside(rect, size):
    return rect[0] >= 0 and rect[1] >= 0 and rect[2] <= size[0] + 1e-6 and rect[3] <= size[1] + 1e-6


@pytest.mark.parametrize(
    "boxes, size, drawn",
    [
        (BUS, (810, 1080), (810, 1080)),
        (BUS, (810, 1080), (480, 640)),  # decoded at --max-side 640
        (ZIDANE, (1280, 720), (1280, 720)),
    ],
)
def test_panels_hide_no_head_and_stay_inside_the_image(boxes, size, drawn):
    lay = layout(_result(boxes, size), drawn)
    assert len(lay.panels) == len(boxes)
    for p in lay.panels:
        assert _inside(p.rect, drawn), p.rect
        for head in lay.heads:
            assert _area(p.rect, head) == 0, (p.title, p.rect, head)
        for q in lay.panels:
            assert q is p or _area(p.rect, q.rect) == 0
    assert _inside(lay.legend.rect, drawn)
    assert all(_area(lay.legend.rect, r) == 0 for r in [*lay.heads, *(p.rect for p in lay.panels)])


def test_placement_keeps_heads_clear_in_random_scenes_with_room():
    rng = np.random.default_rng(0)
    for _ in range(20):
        # a few standing persons spread over a wide image: there is room for every panel
        n = int(rng.integers(1, 5))
        xs = rng.permutation(np.arange(0, 1800, 300))[:n] + rng.integers(0, 60, n)
        boxes = [
            (float(x), float(y), float(x + 120), float(y + 360))
            for x, y in zip(xs, rng.integers(150, 600, n))
        ]
        rects = place_panels(boxes, [(220.0, 160.0)] * n, (1920, 1080))
        for r in rects:
            assert _inside(r, (1920, 1080))
            assert all(_area(r, head_region(b)) == 0 for b in boxes)


def test_crowded_scene_still_places_every_panel_inside_the_image():
    boxes = [(float(20 * k), 10.0, float(20 * k + 60), 200.0) for k in range(12)]  # overlapping crowd
    rects = place_panels(boxes, [(90.0, 70.0)] * len(boxes), (300, 220))
    assert len(rects) == 12 and all(_inside(r, (300, 220)) for r in rects)


def test_head_region_is_the_top_of_the_box():
    standing = head_region((0, 0, 100, 500))
    assert standing == (0, 0, 100, pytest.approx(100.0))  # a fifth of a tall box
    upper_body = head_region((0, 0, 380, 680))
    assert upper_body[3] == pytest.approx(0.65 * 380)  # two thirds of the shoulders' width
    wide = head_region((0, 0, 1000, 500))
    assert wide[3] == pytest.approx(250.0)  # at most half the box


def test_panel_text_values_marks_and_legend():
    result = _result([(100, 100, 300, 700)], (800, 800), strong=("Happiness", "Pleasure"))
    panel = layout(result, (800, 800)).panels[0]
    assert panel.lines[0] == "#0"
    # top 3 categories with their probabilities; the mark on those at or above the threshold only
    assert panel.lines[1:4] == [f"{MARK} Happiness 0.90", "  Engagement 0.80", f"{MARK} Pleasure 0.70"]
    # one bar per dimension, with its value on the 1-10 scale
    assert panel.lines[4:] == ["V 7.2", "A 3.5", "D 10.0"]  # 7.25 written to one decimal (round half even)
    assert [b.value for b in panel.bars] == [7.25, 3.5, 10.0]
    legend = layout(result, (800, 800)).legend
    assert legend.lines[0].startswith(MARK) and "threshold" in legend.lines[0]
    assert "valence, arousal, dominance" in legend.lines[1] and "1-10" in legend.lines[1]
    assert len(legend.lines) == 2  # drawn at the original size: nothing more to say


def test_reduced_and_enlarged_drawings_say_so():
    result = _result(BUS, (810, 1080))
    assert layout(result, (480, 640)).legend.lines[-1] == "drawn at 480x640, original 810x1080"
    assert draw_scale((810, 1080)) == 1 and draw_scale((320, 240)) == 2 and draw_scale((200, 120)) == 4
    small = annotate(np.zeros((240, 320, 3), np.uint8), _result([(20, 40, 80, 236)], (320, 240)))
    assert small.size == (640, 480) and max(small.size) >= MIN_DRAW_SIDE


@pytest.mark.parametrize(
    "size, box", [((320, 240), (250, 150, 300, 240)), ((1000, 700), (880, 560, 990, 700))]
)
def test_nothing_is_cut_off_or_drawn_outside_the_panels(size, box):
    """On a black image, every pixel drawn lies on a box outline, in a panel or in the legend: no letter or bar
    runs out of its panel (the clipped "D"), and a person at the bottom edge keeps its whole panel."""
    w, h = size
    result = _result([box], size)
    img = annotate(np.zeros((h, w, 3), np.uint8), result)
    k = draw_scale(size)
    lay = layout(result, img.size)
    drawn = np.asarray(img).max(axis=2) > 40
    allowed = np.zeros_like(drawn)
    for r in [*(p.rect for p in lay.panels), lay.legend.rect]:
        assert _inside(r, img.size)
        x1, y1, x2, y2 = (round(v) for v in r)
        allowed[max(0, y1 - 1) : y2 + 2, max(0, x1 - 1) : x2 + 2] = True
    bx1, by1, bx2, by2 = (round(v * k) for v in box)
    pad = lay.line + 1
    allowed[by1 - pad : by2 + pad, bx1 - pad : bx2 + pad] = True  # the box and its outline
    allowed[by1 + pad : by2 - pad, bx1 + pad : bx2 - pad] = False  # ... but not its inside
    for r in [p.rect for p in lay.panels]:  # a panel may lie over the box
        x1, y1, x2, y2 = (round(v) for v in r)
        allowed[max(0, y1 - 1) : y2 + 2, max(0, x1 - 1) : x2 + 2] = True
    assert drawn.any() and not (drawn & ~allowed).any()
    # The "D" bar and its value are drawn: the person's colour fills the bar in proportion to the value (10).
    panel = lay.panels[0]
    colour = np.array(track_colour(0))
    x1, y1, x2, y2 = (round(v) for v in panel.rect)
    bottom_rows = np.asarray(img)[y1 + (y2 - y1) * 3 // 4 : y2, x1:x2].reshape(-1, 3)
    assert (np.abs(bottom_rows.astype(int) - colour).sum(axis=1) < 30).sum() > 10


def test_colours_follow_the_track_id():
    result = _result([(10, 10, 110, 300), (300, 10, 400, 300)], (800, 600))
    result.persons[0].track_id = result.persons[0].person = 7
    result.persons[1].track_id = result.persons[1].person = 12
    lay = layout(result, (800, 600))
    assert [p.colour for p in lay.panels] == [track_colour(7), track_colour(12)]
    assert [p.title for p in lay.panels] == ["id 7", "id 12"]


def test_error_person_has_a_grey_panel_without_bars():
    result = _result([(10, 10, 110, 300)], (400, 400))
    result.persons[0] = PersonResult(person=0, box=(10, 10, 110, 300), error="box outside the image")
    lay = layout(result, (400, 400))
    assert lay.panels[0].lines == ["#0 error"] and lay.panels[0].bars == []
    assert isinstance(annotate(Image.new("RGB", (400, 400)), result), Image.Image)
