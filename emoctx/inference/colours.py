"""One colour per person or track, the same in annotated images and videos and in the summary timelines.

The colour is picked by the track id in tracked videos (the person index elsewhere) from Tableau's 10-colour
palette, which is also matplotlib's default colour cycle (``C0`` ... ``C9``); ids ten apart share a colour.
"""

from __future__ import annotations

PALETTE: tuple[tuple[int, int, int], ...] = (
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
"""Tableau 10 (matplotlib's ``tab10``), as 0-255 RGB; white text reads on each."""

ERROR_COLOUR: tuple[int, int, int] = (128, 128, 128)
"""A person whose box could not be used."""


def track_colour(key: int) -> tuple[int, int, int]:
    """The RGB colour (0-255) of a track id, or of a person index where there is no track."""
    return PALETTE[int(key) % len(PALETTE)]


def track_colour_float(key: int) -> tuple[float, float, float]:
    """:func:`track_colour` as matplotlib takes it (0-1)."""
    r, g, b = track_colour(key)
    return (r / 255, g / 255, b / 255)
