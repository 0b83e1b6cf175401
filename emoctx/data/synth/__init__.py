"""EMOTIC-synth: a small synthetic benchmark in EMOTIC's own record format (rules, drawing, generation).

Each image shows a *place* (beach, office, forest, street, party or hospital) as a backdrop across the top of the
frame, and one to four simple figures standing on a neutral floor below it. Every figure has *cues*: a pose, an
accessory, an age and a gender. The labels of a person are deterministic functions of the cues (:data:`RULES`,
:data:`VAD_TERMS`) plus simulated annotation noise, split into three groups:

* ``body`` categories depend only on cues on the person (readable from the body crop alone);
* ``scene`` categories depend only on the place (readable from the backdrop alone);
* ``both`` categories need a person cue *and* the place (arms up at a party is not arms up in a hospital).

The figures never overlap the backdrop and the floor looks the same in every place, so the body crop says
nothing about the place; most images hold several people with different cues, so the whole image does not say
which of them is the target. A body-only model therefore fails on the ``scene`` categories, a scene-only model on
the ``body`` categories, both half-fail on the ``both`` categories, and a model that sees the body and the scene
succeeds everywhere: a miniature of the EMOTIC finding, learnable by small CNNs on a CPU in minutes.

The package: :mod:`~emoctx.data.synth.rules` (cues, label rules, simulated annotators; written down for users in
``annotations/synth.md``), :mod:`~emoctx.data.synth.render` (drawing a scene) and
:mod:`~emoctx.data.synth.generation` (images and records on disk; one seed gives byte-identical output).
"""

from emoctx.data.synth.generation import (
    DEFAULT_COUNTS,
    DEFAULT_SIZE,
    GENERATOR_VERSION,
    JPEG_QUALITY,
    MANIFEST,
    SOURCE,
    category_counts,
    generate,
)
from emoctx.data.synth.render import render_image
from emoctx.data.synth.rules import (
    ACCESSORIES,
    AGE_PRIOR,
    ANNOTATOR_VAD_SD,
    CATEGORY_GROUP,
    CUE_VALUES,
    GENDER_PRIOR,
    GROUPS,
    N_ANNOTATORS,
    P_MISS,
    P_SPURIOUS,
    PEOPLE_PER_IMAGE,
    PERSON_CUES,
    PLACES,
    POSES,
    RULES,
    VAD_BASE,
    VAD_TERMS,
    Cues,
    RuleLabels,
    category_groups,
    combine_annotations,
    rule_categories,
    rule_labels,
    rule_vad,
    rules_markdown,
    sample_cues,
    simulate_annotator,
    used_categories,
)

__all__ = [
    "ACCESSORIES",
    "AGE_PRIOR",
    "ANNOTATOR_VAD_SD",
    "CATEGORY_GROUP",
    "CUE_VALUES",
    "DEFAULT_COUNTS",
    "DEFAULT_SIZE",
    "GENDER_PRIOR",
    "GENERATOR_VERSION",
    "GROUPS",
    "JPEG_QUALITY",
    "MANIFEST",
    "N_ANNOTATORS",
    "PEOPLE_PER_IMAGE",
    "PERSON_CUES",
    "PLACES",
    "POSES",
    "P_MISS",
    "P_SPURIOUS",
    "RULES",
    "SOURCE",
    "VAD_BASE",
    "VAD_TERMS",
    "Cues",
    "RuleLabels",
    "category_counts",
    "category_groups",
    "combine_annotations",
    "generate",
    "render_image",
    "rule_categories",
    "rule_labels",
    "rule_vad",
    "rules_markdown",
    "sample_cues",
    "simulate_annotator",
    "used_categories",
]
