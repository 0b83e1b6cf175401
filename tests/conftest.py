"""Test-wide set-up: no network, no writes to the home folder, deterministic seeds."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# The home folder of the tests (and of every process they start) is a temporary folder, removed at the end:
# libraries write caches and settings there (onnxruntime a device id under ~/.cache/Microsoft, matplotlib its
# font cache, wandb its settings), and a test run must leave the user's home as it was.
_HOME = tempfile.mkdtemp(prefix="emoctx-tests-home-")
os.environ["HOME"] = _HOME
for _var, _sub in (
    ("XDG_CACHE_HOME", ".cache"),
    ("XDG_CONFIG_HOME", ".config"),
    ("XDG_DATA_HOME", ".local/share"),
):
    os.environ[_var] = os.path.join(_HOME, _sub)
# Set before any test imports ultralytics or wandb: ultralytics otherwise probes the network and writes its
# settings to the home folder; wandb in online mode with no network hangs.
_CONFIG_DIR = tempfile.mkdtemp(prefix="emoctx-tests-yolo-")
for _dir in (_HOME, _CONFIG_DIR):
    atexit.register(shutil.rmtree, _dir, ignore_errors=True)
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", _CONFIG_DIR)
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations otherwise checks PyPI on import

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _torch_unless_named():
    """Tests that name no engine run the emotion model and the detector in PyTorch (module fixtures too).

    The default rule (:func:`emoctx.engines.default_engine`) picks an exported engine on many CPUs, whose first
    build exports the model's graphs (seconds per model file, and most tests write their own model files). The
    rule itself is tested by monkeypatching the hardware, and each engine through the predictor and the
    commands (``tests/test_engines.py``, ``tests/test_predict_engines.py``); tests marked ``default_engines``
    run the real rule (:func:`_real_rule_where_marked`). A patcher of its own: a test's
    ``monkeypatch.undo()`` leaves it in place.
    """
    from emoctx import engines
    from emoctx.engines import build

    patch = pytest.MonkeyPatch()
    torch_rule = lambda device="cpu", precision="auto": ("torch", precision)  # noqa: E731
    patch.setattr(build, "default_engine", torch_rule)
    patch.setattr(engines, "default_engine", torch_rule)  # predict-records reads it from the package
    patch.setattr(engines, "default_detector_engine", lambda device="cpu": "torch")
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _real_rule_where_marked(request, _torch_unless_named):
    """The real default engines in tests marked ``default_engines``."""
    if request.node.get_closest_marker("default_engines") is None:
        yield
        return
    from emoctx import engines
    from emoctx.engines import build, choice

    patch = pytest.MonkeyPatch()
    patch.setattr(build, "default_engine", choice.default_engine)
    patch.setattr(engines, "default_engine", choice.default_engine)
    patch.setattr(engines, "default_detector_engine", choice.default_detector_engine)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _log_levels():
    """Each test starts with the logger levels of the one before it undone: code run in-process that quiets
    logging for its own run (scripts/bench.py, predict --quiet) would hide the INFO lines later tests read."""
    import logging

    names = ("emoctx", "pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(autouse=True)
def _seed():
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    """A saved two-stream model (timm test_resnet body @64 + scene @96, random weights): fast to run."""
    import torch

    from emoctx.checkpoint import describe, save_model
    from emoctx.models.backbones import StreamConfig
    from emoctx.models.network import EmotionNet

    torch.manual_seed(0)
    net = EmotionNet(
        {
            "body": StreamConfig("test_resnet", input_size=64),
            "scene": StreamConfig("test_resnet", input_size=96),
        },
        hidden=32,
    )
    return save_model(tmp_path_factory.mktemp("m") / "model.safetensors", net, describe(net))


@pytest.fixture(scope="module")
def tiny_face_model_path(tmp_path_factory):
    """A saved three-stream model (test_resnet body @64, scene @96, face @48 with landmark attention, gated fusion,
    expressions and the face-derived V/A head; random weights)."""
    import torch

    from emoctx.checkpoint import describe, save_model
    from emoctx.labels import EXPRESSIONS
    from emoctx.models.backbones import StreamConfig
    from emoctx.models.network import EmotionNet

    torch.manual_seed(0)
    net = EmotionNet(
        {
            "body": StreamConfig("test_resnet", input_size=64),
            "scene": StreamConfig("test_resnet", input_size=96),
            "face": StreamConfig("test_resnet", input_size=48),
        },
        fusion="gated",
        hidden=32,
        expressions=EXPRESSIONS,
        face_va=True,
    )
    return save_model(tmp_path_factory.mktemp("m") / "faces.safetensors", net, describe(net))


@pytest.fixture(scope="module")
def yolo_weights(tmp_path_factory):
    """A detector weights file (.pt) of yolo11n.yaml with random weights, as ultralytics saves one."""
    from emoctx.inference.yolo_weights import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("yolo") / "det.pt"
    YOLO("yolo11n.yaml").save(path)
    return path


@pytest.fixture
def fresh_log_handlers(monkeypatch):
    """Logging handlers are set up once per process, on the stderr of the moment (the command line's, and
    ultralytics' own): a test using this logs to its own captured stderr, not to a closed one from an earlier
    test (which prints logging errors)."""
    import logging
    import sys

    class CurrentStderr:
        """Writes to whatever ``sys.stderr`` is when a message comes."""

        def write(self, text):
            return sys.stderr.write(text)

        def flush(self):
            sys.stderr.flush()

    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    for handler in logging.getLogger("ultralytics").handlers:
        if type(handler) is logging.StreamHandler:
            monkeypatch.setattr(handler, "stream", CurrentStderr())
