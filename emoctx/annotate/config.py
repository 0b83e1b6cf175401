"""The Label Studio labelling config for EMOTIC-style labels, generated from :mod:`emoctx.labels`.

One image, person boxes (``RectangleLabels``), and per box (``perRegion``, shown while a box is selected):

* ``categories``: any of the 26 categories (``Choices``, multiple), each with its definition as the hint;
* ``valence`` / ``arousal`` / ``dominance``: a whole number 1-10 (``Number``; or ``Rating`` stars);
* ``gender`` and ``age``: one of EMOTIC's values (``Choices``, single).

Every per-box answer that Label Studio stores carries the ``id`` of its box, which is how
:mod:`emoctx.annotate.export` puts a person back together. The control names below are the contract
between the config, the tasks and the export: change them in one place only, here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from emoctx.errors import EmoctxError
from emoctx.labels import (
    AGES,
    CATEGORIES,
    CATEGORY_DEFINITIONS,
    GENDERS,
    VAD_DEFINITIONS,
    VAD_MAX,
    VAD_MIN,
    VAD_NAMES,
)

IMAGE = "image"
"""Name of the image object; tasks give its URL in ``data.image``."""
PERSON = "person"
"""Name of the box control."""
PERSON_LABEL = "Person"
"""The one label of the box control."""
CATEGORIES_CONTROL = "categories"
GENDER = "gender"
AGE = "age"
VAD_CONTROLS: tuple[str, ...] = VAD_NAMES
"""One control per rating, named like the record columns."""
PER_REGION_CONTROLS: tuple[str, ...] = (CATEGORIES_CONTROL, *VAD_CONTROLS, GENDER, AGE)

VAD_STYLES: tuple[str, ...] = ("number", "rating")
"""How V/A/D are entered: a number field 1-10, or 10 rating stars."""

BOX_COLOUR = "#2a9d8f"


def labelling_config(vad_style: str = "number", hints: bool = True) -> str:
    """The labelling config as XML text (accepted by Label Studio 1.23).

    Args:
        vad_style: ``number`` (a 1-10 number field) or ``rating`` (ten stars).
        hints: give every category its definition (:data:`emoctx.labels.CATEGORY_DEFINITIONS`) as hint.

    Returns:
        The XML, indented, with a trailing newline.
    """
    if vad_style not in VAD_STYLES:
        raise EmoctxError(f"V/A/D style must be one of {', '.join(VAD_STYLES)}, got {vad_style!r}")
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=IMAGE, value=f"${IMAGE}", zoom="true")
    boxes = ET.SubElement(view, "RectangleLabels", name=PERSON, toName=IMAGE, canRotate="false")
    ET.SubElement(boxes, "Label", value=PERSON_LABEL, background=BOX_COLOUR)

    per = ET.SubElement(view, "View", visibleWhen="region-selected")
    ET.SubElement(per, "Header", value="Emotion categories (any that apply; hover a name for its meaning)")
    cats = ET.SubElement(
        per, "Choices", _per_region(CATEGORIES_CONTROL, choice="multiple", showInline="true")
    )
    for c in CATEGORIES:
        attrs = {"value": c}
        if hints:
            attrs["hint"] = CATEGORY_DEFINITIONS[c]
        ET.SubElement(cats, "Choice", attrs)
    lo, hi = int(VAD_MIN), int(VAD_MAX)
    for name in VAD_CONTROLS:
        ET.SubElement(per, "Header", value=f"{name.capitalize()} {lo}-{hi}: {VAD_DEFINITIONS[name]}")
        if vad_style == "number":
            ET.SubElement(per, "Number", _per_region(name, min=str(lo), max=str(hi), step="1"))
        else:  # Rating stores 1..maxRating
            ET.SubElement(per, "Rating", _per_region(name, maxRating=str(hi)))
    for name, values in ((GENDER, GENDERS), (AGE, AGES)):
        ET.SubElement(per, "Header", value=name.capitalize())
        group = ET.SubElement(per, "Choices", _per_region(name, choice="single-radio", showInline="true"))
        for v in values:
            ET.SubElement(group, "Choice", value=v)
    ET.indent(view, space="  ")
    return ET.tostring(view, encoding="unicode") + "\n"


def _per_region(name: str, **attrs: str) -> dict[str, str]:
    return {"name": name, "toName": IMAGE, "perRegion": "true", "required": "true", **attrs}
