"""EMOTIC-synth's label rules: the cues of a person and a place, and the categories and V/A/D they give.

The cues are sampled per person (the place once per image, :func:`sample_cues`); the labels are deterministic
functions of them (:data:`RULES`, :data:`VAD_TERMS`) plus simulated annotation noise (:func:`simulate_annotator`,
combined by :func:`combine_annotations`). ``annotations/synth.md`` writes the rules down for users
(:func:`rules_markdown`); this module is the only place in code that holds them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from emoctx import labels
from emoctx.labels import CATEGORIES, VAD_MAX, VAD_MIN, VAD_NAMES

log = logging.getLogger(__name__)


PLACES: dict[str, float] = {
    "street": 0.20,
    "office": 0.20,
    "party": 0.18,
    "beach": 0.15,
    "forest": 0.14,
    "hospital": 0.13,
}


POSES: dict[str, float] = {
    "arms_down": 0.30,
    "arms_up": 0.20,
    "arms_crossed": 0.14,
    "slumped": 0.14,
    "hands_on_head": 0.12,
    "pointing": 0.10,
}


ACCESSORIES: dict[str, float] = {"none": 0.50, "hat": 0.25, "bag": 0.25}


AGE_PRIOR: dict[str, float] = {"Adult": 0.60, "Teenager": 0.20, "Kid": 0.20}


GENDER_PRIOR: dict[str, float] = {"Male": 0.50, "Female": 0.50}


PEOPLE_PER_IMAGE: dict[int, float] = {1: 0.15, 2: 0.30, 3: 0.30, 4: 0.25}


CUE_VALUES: dict[str, tuple[str, ...]] = {
    "place": tuple(PLACES),
    "pose": tuple(POSES),
    "accessory": tuple(ACCESSORIES),
    "age": tuple(AGE_PRIOR),
    "gender": tuple(GENDER_PRIOR),
}


PERSON_CUES: tuple[str, ...] = ("pose", "accessory", "age", "gender")


RULES: dict[str, tuple[dict[str, tuple[str, ...]], ...]] = {
    # scene: the place alone
    "engagement": ({"place": ("office", "party", "street")},),
    "pleasure": ({"place": ("beach", "party")},),
    "peace": ({"place": ("beach", "forest")},),
    "disconnection": ({"place": ("street",)},),
    "disquietment": ({"place": ("hospital",)},),
    # body: cues on the person alone
    "anticipation": ({"accessory": ("bag",)},),
    "confidence": ({"pose": ("arms_crossed", "pointing")},),
    "esteem": ({"accessory": ("hat",), "age": ("Adult",)},),
    "disapproval": ({"pose": ("arms_crossed",)},),
    "fatigue": ({"pose": ("slumped",)},),
    "doubt_confusion": ({"pose": ("hands_on_head",)},),
    "yearning": ({"pose": ("pointing",), "age": ("Kid", "Teenager")},),
    "sensitivity": ({"pose": ("slumped",), "age": ("Kid",)},),
    # both: a person cue AND the place
    "happiness": (
        {"pose": ("arms_up",), "place": ("party", "beach", "forest")},
        {"pose": ("arms_down",), "place": ("party", "beach")},
    ),
    "excitement": (
        {"pose": ("arms_up",), "place": ("party", "street")},
        {"pose": ("pointing",), "place": ("party",)},
    ),
    "sadness": ({"pose": ("slumped",), "place": ("street", "forest", "beach")},),
    "surprise": ({"pose": ("hands_on_head",), "place": ("party", "beach", "street")},),
    "annoyance": ({"pose": ("arms_crossed",), "place": ("office", "street")},),
    "fear": (
        {"pose": ("arms_up",), "place": ("hospital",)},
        {"pose": ("hands_on_head",), "place": ("forest", "hospital")},
    ),
    "affection": ({"pose": ("arms_down",), "place": ("party",)},),
    "embarrassment": (
        {"pose": ("hands_on_head",), "place": ("office",)},
        {"pose": ("slumped",), "place": ("party",)},
    ),
    "suffering": ({"pose": ("slumped",), "place": ("hospital", "street")},),
    "anger": ({"pose": ("pointing",), "place": ("street", "office")},),
    "sympathy": ({"pose": ("arms_down",), "place": ("hospital",)},),
    "pain": ({"pose": ("slumped", "arms_crossed"), "place": ("hospital",)},),
    "aversion": ({"pose": ("arms_crossed",), "place": ("party",)},),
}


# V/A/D on 1-10: VAD_BASE + the terms of the person's cues, clipped to the scale (noise-free value), then each
# annotator adds N(0, ANNOTATOR_VAD_SD) and rounds to an integer.
VAD_BASE: float = 5.5


VAD_TERMS: dict[str, dict[str, dict[str, float]]] = {
    "valence": {
        "place": {"party": 2.0, "beach": 1.5, "forest": 1.0, "office": 0.0, "street": -0.5, "hospital": -2.0},
        "pose": {
            "arms_up": 1.5,
            "arms_down": 0.5,
            "pointing": 0.0,
            "arms_crossed": -1.0,
            "hands_on_head": -1.5,
            "slumped": -2.5,
        },
    },
    "arousal": {
        "place": {"party": 1.5, "street": 0.5, "hospital": 0.5, "beach": 0.0, "office": 0.0, "forest": -1.0},
        "pose": {
            "arms_up": 2.5,
            "pointing": 1.5,
            "hands_on_head": 1.0,
            "arms_crossed": 0.0,
            "arms_down": -1.0,
            "slumped": -2.5,
        },
    },
    "dominance": {
        "age": {"Adult": 1.0, "Teenager": 0.0, "Kid": -1.5},
        "pose": {
            "arms_crossed": 1.5,
            "pointing": 1.5,
            "arms_up": 0.5,
            "arms_down": 0.0,
            "hands_on_head": -1.5,
            "slumped": -2.0,
        },
        "accessory": {"hat": 0.5, "bag": 0.0, "none": 0.0},
    },
}


# Annotation noise: each annotator independently misses each rule category with P_MISS and adds each other
# category with P_SPURIOUS. Val/test have N_ANNOTATORS annotators combined by majority vote (categories) and the
# rounded mean (V/A/D); train has one annotator.
P_MISS: float = 0.12


P_SPURIOUS: float = 0.005


ANNOTATOR_VAD_SD: float = 0.75


N_ANNOTATORS: int = 3


GROUPS: tuple[str, ...] = ("body", "scene", "both")


def _resolve_rules() -> dict[str, tuple[dict[str, tuple[str, ...]], ...]]:
    """RULES keyed by canonical category name, checked against the cue vocabulary."""
    out = {}
    for slug, conditions in RULES.items():
        name = labels.canonical_category(slug)
        if name is None:  # a programming error in the table above
            raise ValueError(f"synth rule names unknown category {slug!r}")
        for cond in conditions:
            for cue, values in cond.items():
                unknown = set(values) - set(CUE_VALUES[cue])
                if unknown:
                    raise ValueError(f"synth rule for {name}: unknown {cue} value(s) {sorted(unknown)}")
        out[name] = conditions
    return out


_RULES = _resolve_rules()


def _group_of(conditions: Sequence[Mapping[str, Any]]) -> str:
    cues = {cue for cond in conditions for cue in cond}
    if cues == {"place"}:
        return "scene"
    if "place" not in cues:
        return "body"
    return "both"


CATEGORY_GROUP: dict[str, str] = {name: _group_of(conds) for name, conds in _RULES.items()}


def category_groups() -> dict[str, tuple[str, ...]]:
    """The categories of each group (``body``, ``scene``, ``both``), each in canonical category order."""
    return {g: tuple(c for c in CATEGORIES if CATEGORY_GROUP.get(c) == g) for g in GROUPS}


def used_categories() -> tuple[str, ...]:
    """The categories EMOTIC-synth labels, in canonical order."""
    return tuple(c for c in CATEGORIES if c in _RULES)


@dataclass(frozen=True)
class Cues:
    """Everything the labels of one person depend on.

    Attributes:
        place: the scene's place (a key of :data:`PLACES`).
        pose: the figure's pose (a key of :data:`POSES`).
        accessory: ``none``, ``hat`` or ``bag``.
        age: ``Kid``, ``Teenager`` or ``Adult`` (drawn as figure size and head-to-body ratio).
        gender: ``Male`` (trousers) or ``Female`` (dress, long hair).
    """

    place: str
    pose: str
    accessory: str = "none"
    age: str = "Adult"
    gender: str = "Male"

    def __post_init__(self) -> None:
        for cue, allowed in CUE_VALUES.items():
            if getattr(self, cue) not in allowed:
                raise ValueError(f"Cues.{cue} must be one of {allowed}, got {getattr(self, cue)!r}")


@dataclass(frozen=True)
class RuleLabels:
    """The noise-free labels of a person: rule categories (canonical order) and real-valued V/A/D on 1-10."""

    categories: tuple[str, ...]
    vad: tuple[float, float, float]


def rule_categories(cues: Cues) -> tuple[str, ...]:
    """The categories the rules give a person with these cues (noise-free), in canonical order."""
    values = asdict(cues)
    hit = {
        name
        for name, conditions in _RULES.items()
        if any(all(values[cue] in allowed for cue, allowed in cond.items()) for cond in conditions)
    }
    return tuple(c for c in CATEGORIES if c in hit)


def rule_vad(cues: Cues) -> tuple[float, float, float]:
    """Noise-free valence, arousal, dominance on 1-10: ``VAD_BASE`` plus the cue terms, clipped to the scale."""
    values = asdict(cues)
    out = []
    for dim in VAD_NAMES:
        v = VAD_BASE + sum(table[values[cue]] for cue, table in VAD_TERMS[dim].items())
        out.append(float(min(VAD_MAX, max(VAD_MIN, v))))
    return tuple(out)  # type: ignore[return-value]


def rule_labels(cues: Cues) -> RuleLabels:
    """The noise-free labels of a person with these cues (see :func:`rule_categories`, :func:`rule_vad`)."""
    return RuleLabels(rule_categories(cues), rule_vad(cues))


def simulate_annotator(truth: RuleLabels, rng: np.random.Generator) -> tuple[list[str], list[float]]:
    """One annotator's labels: the rule labels with independent misses, spurious categories and V/A/D jitter.

    Args:
        truth: the noise-free labels.
        rng: the random generator (consumed in a fixed order, so the result is reproducible).

    Returns:
        The annotator's categories (canonical order) and integer V/A/D on 1-10 (as floats).
    """
    used = used_categories()
    draws = rng.random(len(used))
    cats = [
        c
        for c, u in zip(used, draws)
        if (c in truth.categories and u >= P_MISS) or (c not in truth.categories and u < P_SPURIOUS)
    ]
    jitter = rng.normal(0.0, ANNOTATOR_VAD_SD, size=len(VAD_NAMES))
    vad = [float(np.clip(np.rint(v + j), VAD_MIN, VAD_MAX)) for v, j in zip(truth.vad, jitter)]
    return cats, vad


def combine_annotations(
    annotations: Sequence[tuple[Sequence[str], Sequence[float]]],
) -> tuple[list[str], list[float]]:
    """Combine annotators: categories chosen by a strict majority, V/A/D as the rounded mean.

    The rule of EMOTIC-synth and of ``emoctx annotate export``: a category is kept when more than half of
    the annotators chose it (with two annotators, both); each of V/A/D is the mean of the annotators who
    gave a value, rounded half up to a whole point (NaN when nobody did).

    Args:
        annotations: ``(categories, [valence, arousal, dominance])`` per annotator; NaN marks a missing value.

    Returns:
        The combined categories (canonical order) and V/A/D.
    """
    n = len(annotations)
    votes = {c: sum(c in cats for cats, _ in annotations) for c in CATEGORIES}
    cats = [c for c in CATEGORIES if votes[c] * 2 > n]
    values = np.asarray([vad for _, vad in annotations], dtype=np.float64).reshape(n, len(VAD_NAMES))
    given = np.isfinite(values)
    mean = np.where(given.any(0), np.where(given, values, 0.0).sum(0) / np.maximum(given.sum(0), 1), np.nan)
    # Round half up (np.rint rounds half to even, which would bias 5.5 to 6 but 6.5 to 6).
    vad = [
        float(np.clip(math.floor(m + 0.5), VAD_MIN, VAD_MAX)) if math.isfinite(m) else math.nan for m in mean
    ]
    return cats, vad


def sample_cues(rng: np.random.Generator, place: str) -> Cues:
    """Draw one person's cues from the priors (independent of the place and of each other)."""
    return Cues(
        place=place,
        pose=choice(rng, POSES),
        accessory=choice(rng, ACCESSORIES),
        age=choice(rng, AGE_PRIOR),
        gender=choice(rng, GENDER_PRIOR),
    )


def choice(rng: np.random.Generator, prior: Mapping[Any, float]) -> Any:
    """One key of ``prior`` drawn with the (unnormalised) probabilities it maps to."""
    keys = list(prior)
    p = np.asarray([prior[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def rules_markdown() -> str:
    """The label rules as a Markdown table (``annotations/synth.md`` carries this text)."""
    lines = ["| Category | Group | Rule (any line holds) |", "|---|---|---|"]
    for group in GROUPS:
        for name in category_groups()[group]:
            conds = [
                " AND ".join(f"{cue} in {{{', '.join(vals)}}}" for cue, vals in cond.items())
                for cond in _RULES[name]
            ]
            lines.append(f"| {name} | {group} | {' <br> OR '.join(conds)} |")
    return "\n".join(lines)
