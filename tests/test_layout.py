"""The house: the README's layout names every module, and a long module is one idea."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "emoctx"
# Packages the layout describes in one line (their modules are listed in the package's own docstring).
SUMMARISED = ("annotate", "commands", "data/readers")
# Modules kept only so that old imports work (their names moved; each one's docstring says where).
DEPRECATED = ("inference/pipeline.py", "evaluation/inference.py")
LINES = 400
# Longer modules, each one idea.
ONE_IDEA = {
    "inference/predictor.py": "the Predictor class: the prediction pipeline and its frames",
    "annotate/export.py": "Label Studio's export read and checked, answer by answer, into records",
    "commands/annotate.py": "the command line of the annotation workflow",
    "description.py": "the model description's validation rules",
    "models/baseline.py": "the import of the common baseline's pickled model",
    "data/readers/cleaning.py": "the cleaning rules of converted annotations",
    "inference/distributed.py": "predict-records: DDP prediction into shards and their merge",
    "models/backbones.py": "backbones by timm name and their weight loading",
    "annotate/server.py": "running Label Studio and setting up its project",
    "data/synth/render.py": "drawing an EMOTIC-synth scene",
    "checkpoint.py": "model files: written, read safely (naming what a foreign file is) and checked, whole or in part",
    "data/records.py": "the record schema: its columns (faces included), validation, reading and writing",
    "data/transforms.py": "the one transform a PreprocessCfg builds, and the deprecated builder's arguments",
    "inference/draw.py": "an annotated image: boxes, panels placed off the heads, values, legend",
    "losses.py": "the training losses (categories, V/A/D, expressions) and how the tasks are combined",
    "models/network.py": "EmotionNet: its streams (a face a person may lack), fusion and heads",
    "data/synth/rules.py": "EMOTIC-synth's written label rules (with and without faces) and simulated annotators",
    "evaluation/evaluate.py": "emoctx evaluate: a model or a predictions file scored, its face figures included",
    "inference/video.py": "video prediction: frames, tracks, per-track smoothing (the face's V/A too), output",
    "training/module.py": "the LightningModule: steps, the tasks' losses and metrics, parameter groups, face_init",
    "evaluation/report.py": "report.md: one section per part of the metrics document (faces included), and the printed summary",
    "inference/writers.py": "the prediction table on disk: formats, metadata, reading back, and the sidecar it is built from",
    "evaluation/predictions.py": "the predictions table: written, read from any system, paired with the records",
    "annotate/tasks.py": "Label Studio tasks: the photos found, pre-annotated by the model, written as tasks",
}


def _layout() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("```\nemoctx/\n")
    return readme[start : readme.index("```\n", start + 4)]


def _modules() -> list[str]:
    return sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts
    )


def test_readme_layout_names_every_module():
    layout = _layout()
    missing = []
    for module in _modules():
        if module.startswith(SUMMARISED) or module in DEPRECATED:
            continue
        parent, _, name = module.rpartition("/")
        stem = name[: -len(".py")]
        if not re.search(rf"\b{re.escape(stem)}\b", layout):
            missing.append(module)
        if parent and f"{parent.split('/')[-1]}/" not in layout:
            missing.append(f"{parent}/")
    assert not missing, f"the README's layout does not name {missing}"
    for module in DEPRECATED:
        assert module in (REPO / "README.md").read_text(), module


def test_long_modules_are_one_idea():
    long = {
        m: n
        for m in _modules()
        if (n := len((PACKAGE / m).read_text().splitlines())) > LINES and m not in ONE_IDEA
    }
    assert not long, (
        f"modules over {LINES} lines that hold several ideas (split them, or say why in ONE_IDEA): {long}"
    )
