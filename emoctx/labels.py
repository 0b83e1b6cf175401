"""The EMOTIC label space: the one place that names the categories and the V/A/D scale.

Everything else in emoctx imports from here. Nothing else spells out the category list or its length.

* ``CATEGORIES``: the 26 discrete emotion categories in the canonical EMOTIC order (the order of the
  authors' code and of every common implementation; metric vectors and model outputs follow it).
* ``SLUGS``: a file-name- and metric-key-safe form of each name (``Doubt/Confusion`` -> ``doubt_confusion``).
* ``CATEGORY_DEFINITIONS``: a one-line meaning of each category (the hints annotators see).
* ``VAD_NAMES``: the continuous dimensions, rated as integers on a 1-10 scale by annotators.
* ``vad_to_model`` / ``vad_from_model``: the conversion between the 1-10 annotation scale and the model's
  internal 0-1 scale. The model predicts and the losses compare on the internal scale; everything a user
  reads (records, predictions, metrics) is on the 1-10 scale.
* ``EXPRESSIONS``: the eight discrete facial expressions of face data sets (AffectNet's classes 0-7, in its
  order), the auxiliary task of face models; ``vad_from_signed`` maps the -1..1 valence/arousal of such data
  sets onto the 1-10 scale.
"""

from __future__ import annotations

import re

import numpy as np

CATEGORIES: tuple[str, ...] = (
    "Affection",
    "Anger",
    "Annoyance",
    "Anticipation",
    "Aversion",
    "Confidence",
    "Disapproval",
    "Disconnection",
    "Disquietment",
    "Doubt/Confusion",
    "Embarrassment",
    "Engagement",
    "Esteem",
    "Excitement",
    "Fatigue",
    "Fear",
    "Happiness",
    "Pain",
    "Peace",
    "Pleasure",
    "Sadness",
    "Sensitivity",
    "Suffering",
    "Surprise",
    "Sympathy",
    "Yearning",
)
NUM_CATEGORIES: int = len(CATEGORIES)

# What each category means, in our own short words (summaries of the dataset authors' descriptions). Shown to
# annotators as hints (``emoctx annotate config``) and listed in ``annotations/categories.md``, which a test
# keeps identical to this table.
CATEGORY_DEFINITIONS: dict[str, str] = {
    "Affection": "Warmth and fondness toward someone; tender, loving closeness.",
    "Anger": "Strong hostility or rage, usually aimed at a person or a situation.",
    "Annoyance": "Mild irritation: being bothered, impatient or put out.",
    "Anticipation": "Attention turned to what comes next: expecting, hoping for or getting ready for it.",
    "Aversion": "Wanting to push something away: distaste, revulsion or hatred.",
    "Confidence": "Self-assurance; trusting that things will turn out well; feeling capable or proud.",
    "Disapproval": "Judging something as wrong or unacceptable; reproach or contempt.",
    "Disconnection": "Detached from what is going on around: uninterested, bored or absent-minded.",
    "Disquietment": "Inner unease and tension: worry, nervousness, anxiety.",
    "Doubt/Confusion": "Uncertainty: struggling to make sense of something or to choose between options.",
    "Embarrassment": "Self-conscious discomfort; shame or guilt about oneself or one's actions.",
    "Engagement": "Absorbed attention: actively interested in or focused on an activity or a person.",
    "Esteem": "High regard for someone: respect, admiration or gratitude.",
    "Excitement": "Energised eagerness; enthusiasm about what is happening.",
    "Fatigue": "Physical or mental tiredness: exhaustion, sleepiness.",
    "Fear": "Sensing danger or threat: being scared, alarmed or terrified.",
    "Happiness": "A glad, cheerful mood: joy, fun, amusement.",
    "Pain": "Bodily hurt: physical discomfort or injury.",
    "Peace": "Calm contentment: relaxed, untroubled, at ease.",
    "Pleasure": "Enjoyment through the senses: delight in a taste, a touch, a sound.",
    "Sadness": "A low, unhappy mood: sorrow, disappointment, discouragement.",
    "Sensitivity": "Feeling fragile or exposed; easily hurt, in body or in feelings.",
    "Suffering": "Deep emotional or psychological distress; anguish.",
    "Surprise": "Reaction to something sudden or unexpected.",
    "Sympathy": "Feeling with and for another person: compassion, care, support.",
    "Yearning": "Strong longing for something one lacks: desire, craving, envy.",
}

# What the two ends of each 1-10 rating mean (the same words as ``annotations/categories.md``).
VAD_DEFINITIONS: dict[str, str] = {
    "valence": "how unpleasant (1) or pleasant (10) the feeling is",
    "arousal": "how calm (1) or agitated (10) the person is",
    "dominance": "how controlled by the situation (1) or in control of it (10) the person feels",
}


def slugify(name: str) -> str:
    """Lower-case a label and replace every run of non-alphanumerics by one underscore."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


SLUGS: tuple[str, ...] = tuple(slugify(c) for c in CATEGORIES)
CATEGORY_INDEX: dict[str, int] = {c: i for i, c in enumerate(CATEGORIES)}
_LOOKUP: dict[str, str] = {**{slugify(c): c for c in CATEGORIES}, **{c.lower(): c for c in CATEGORIES}}

VAD_NAMES: tuple[str, ...] = ("valence", "arousal", "dominance")
NUM_VAD: int = len(VAD_NAMES)
VAD_MIN: float = 1.0
VAD_MAX: float = 10.0
VAD_MID: float = (VAD_MIN + VAD_MAX) / 2  # 5.5: the scale's midpoint (used by SAGR)
VAD_RANGE: float = VAD_MAX - VAD_MIN

EXPRESSIONS: tuple[str, ...] = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
"""Facial expression classes in AffectNet's order (its codes 0-7)."""
NUM_EXPRESSIONS: int = len(EXPRESSIONS)
EXPRESSION_INDEX: dict[str, int] = {e: i for i, e in enumerate(EXPRESSIONS)}

GENDERS: tuple[str, ...] = ("Male", "Female")
AGES: tuple[str, ...] = ("Kid", "Teenager", "Adult")
SPLITS: tuple[str, ...] = ("train", "val", "test")


def canonical_category(name: str) -> str | None:
    """Return the canonical spelling of a category name, or None when it is not an EMOTIC category.

    Accepts the canonical name, any capitalisation of it, or its slug (``doubt_confusion``).
    """
    key = name.strip()
    return _LOOKUP.get(key.lower()) or _LOOKUP.get(slugify(key))


def multi_hot(categories) -> np.ndarray:
    """Encode an iterable of canonical category names as a float32 multi-hot vector in canonical order."""
    out = np.zeros(NUM_CATEGORIES, dtype=np.float32)
    for c in categories:
        out[CATEGORY_INDEX[c]] = 1.0
    return out


def vad_to_model(x):
    """Map V/A/D from the 1-10 annotation scale to the model's internal 0-1 scale."""
    return (x - VAD_MIN) / VAD_RANGE


def vad_from_model(x):
    """Map V/A/D from the model's internal 0-1 scale back to the 1-10 annotation scale."""
    return x * VAD_RANGE + VAD_MIN


def vad_from_signed(x):
    """Map valence/arousal from the -1..1 scale of face data sets (AffectNet) onto 1-10: ``5.5 + 4.5 x``.

    -1 becomes 1, 0 the midpoint 5.5, 1 becomes 10.
    """
    return VAD_MID + (VAD_RANGE / 2) * x


def vad_points_to_model(points: float) -> float:
    """Convert a distance in scale points (e.g. a one-point dead zone) to the internal scale."""
    return points / VAD_RANGE
