"""ultralytics YOLO weights: where they come from, loading them without running their code, a quiet import.

Weights for YOLO (:func:`resolve_weights`): an existing file path or export folder (OpenVINO, NCNN, ... as
ultralytics exports them); else a name ultralytics knows (such as ``yolo11n.pt``), looked up in the working
folder and ultralytics' weights folder, then downloaded by ultralytics where the network allows. Offline with no such file is an :class:`~emoctx.errors.EmoctxError`
saying what to pass. A ``.yaml`` model name builds the architecture with random weights (tests only).

Loading weights runs no code from the file (:func:`load_yolo`). A ``.pt`` file is a pickle, which can call any
Python function when it is read: it is read with ultralytics' restricted loading (``torch.load(weights_only=True)``
with an allow-list of ultralytics' and torch's model classes, the mode ``ULTRALYTICS_SAFE_LOAD=1`` turns on),
and so is a model YAML (its ``activation`` is parsed, not ``eval``-ed). Anything else in the file is refused
with a clear error. Exported formats (ONNX, TorchScript, OpenVINO, TensorRT, ...) are read by their own
runtimes, which run computation graphs, not Python; TensorFlow (SavedModel, GraphDef) and PaddlePaddle
graphs are refused, as they can hold operations that read and write files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from emoctx import defaults
from emoctx.errors import EmoctxError
from emoctx.io import tree_sha256

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = defaults.DETECTOR_WEIGHTS
"""The YOLO weights used when none are named (downloaded by ultralytics on first use where possible)."""


def restore_pil_open() -> None:
    """Undo ultralytics' replacement of ``PIL.Image.open`` if ultralytics has been imported (else do nothing).

    On import, ultralytics wraps ``PIL.Image.open`` so that a file Pillow cannot identify makes it install a
    package (``pi-heif``) with pip and retry. emoctx decodes user files with Pillow: a text file named ``.jpg``
    must give an error row, not a package installation.
    """
    patches = sys.modules.get("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


def ultralytics_config_dir() -> Path:
    """The folder ultralytics keeps its settings in when emoctx imports it.

    ``YOLO_CONFIG_DIR`` when the user set it, else emoctx's own configuration folder (``~/.config/emoctx`` on
    Linux; ultralytics adds ``Ultralytics/settings.json``), never ultralytics' own ``~/.config/Ultralytics``.
    """
    given = os.environ.get("YOLO_CONFIG_DIR")
    if given:
        return Path(given).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("emoctx"))


class _DropInfo(logging.Filter):
    """Lets warnings and errors through, drops the rest (ultralytics' banner when it creates its settings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def import_ultralytics() -> Any:
    """Import ultralytics quietly, its settings in emoctx's folder, and undo its ``PIL.Image.open`` replacement.

    On first import ultralytics writes a settings file (under ``YOLO_CONFIG_DIR``, else the user's
    ``~/.config/Ultralytics``) and prints three lines about it. emoctx points ``YOLO_CONFIG_DIR`` at
    :func:`ultralytics_config_dir` when the user has not set it, and drops ultralytics' information messages
    while it is being imported (its warnings still show; later messages, such as a download, are untouched).
    See :func:`restore_pil_open` for the rest.
    """
    if "ultralytics" not in sys.modules:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(ultralytics_config_dir()))
        quiet = _DropInfo()
        logger = logging.getLogger("ultralytics")  # ultralytics' LOGGER, configured (not replaced) on import
        logger.addFilter(quiet)
        try:
            import ultralytics
        finally:
            logger.removeFilter(quiet)
    import ultralytics

    restore_pil_open()
    return ultralytics


WEIGHTS_SOURCE = "https://github.com/ultralytics/assets/releases"
"""Where ultralytics' YOLO weights are published (ultralytics downloads them from there by itself)."""


def _how_to_give_persons(cli: bool) -> str:
    """What to pass instead: a weights file or a box file, named as the command line or the Python API names them."""
    if cli:
        return (
            "pass its path with --detector-weights PATH, or give the person boxes yourself with --boxes FILE, "
            "for photos and videos alike (CSV/JSONL/Parquet: source, x1, y1, x2, y2, and frame for videos)"
        )
    return (
        "pass its path as Predictor(..., detector_weights=PATH) or UltralyticsDetector(weights=PATH), or give "
        "the person boxes yourself, for photos and videos alike: Predictor(..., detector=BoxFileDetector(FILE)) "
        "(CSV/JSONL/Parquet: source, x1, y1, x2, y2, and frame for videos) or "
        "predictor.predict_images(images, boxes=...)"
    )


def detector_error(message: Callable[[str], str]) -> EmoctxError:
    """An error whose advice names the Python arguments, and the command's options on the command line.

    Args:
        message: builds the message around the advice (:func:`_how_to_give_persons`).
    """
    return EmoctxError(message(_how_to_give_persons(False)), cli_message=message(_how_to_give_persons(True)))


def resolve_weights(weights: str | os.PathLike | None) -> str:
    """Where YOLO weights come from: a path, a known name, or a clear error (see the module docstring).

    Returns:
        A path or a name to pass to ``ultralytics.YOLO``.

    Raises:
        EmoctxError: a named path does not exist, or the weights are not on this machine and it is offline.
    """
    name = os.fspath(weights) if weights is not None else DEFAULT_WEIGHTS
    path = Path(name).expanduser()
    if path.is_file() or path.is_dir():  # a folder: an export (OpenVINO, NCNN, ...), as ultralytics reads it
        return str(path)
    if path.suffix in (".yaml", ".yml"):
        return name  # an architecture: built with random weights (no download)
    if path.parent != Path("."):
        raise detector_error(
            lambda what: (
                f"{path}: no such detector weights file or export folder. YOLO weights (e.g. yolo11n.pt, or "
                f"yolo11n-pose.pt for faces too) are published at {WEIGHTS_SOURCE}: download one, put it "
                f"anywhere and {what}"
            )
        )
    import_ultralytics()
    from ultralytics.utils import SETTINGS, is_online

    local = Path(SETTINGS.get("weights_dir", "weights")) / name
    if local.is_file():
        return str(local)
    if not is_online():
        raise detector_error(
            lambda what: (
                f"no detector weights: '{name}' is not on this machine (looked in the working folder and "
                f"{local.parent}) and there is no network to download it. YOLO detection weights (yolo11n.pt; the "
                f"larger yolo11s/m/l/x.pt detect more) are published at {WEIGHTS_SOURCE}, from where ultralytics "
                "downloads them by itself where the network allows. Download one on a machine that can, copy it here "
                f"(anywhere; a bare name such as {name} is looked up in the working folder and {local.parent}), and "
                f"{what}"
            )
        )
    return name


# Formats whose graphs can hold operations that read or write files (ultralytics' format names).
_REFUSED_FORMATS = {
    "saved_model": "TensorFlow SavedModel",
    "pb": "TensorFlow GraphDef",
    "paddle": "PaddlePaddle",
}
# Messages of ultralytics' restricted loading when it refuses something in a file.
_REFUSALS = ("outside the supported", "restricted", "not a permitted", "blocked")


@contextlib.contextmanager
def restricted_loading() -> Iterator[None]:
    """Turn on ultralytics' restricted loading (``ULTRALYTICS_SAFE_LOAD``) for what is loaded inside.

    ultralytics reads its switch once, at import; this sets it for the duration of the block (model
    construction, and each prediction, which may load an exported file lazily) and restores it after.

    Raises:
        EmoctxError: the installed ultralytics or torch cannot load restrictedly (too old).
    """
    import_ultralytics()
    from ultralytics.nn import tasks

    safe = getattr(tasks, "_SafeLoad", None)
    if safe is None or not getattr(safe, "SUPPORTED", False) or not hasattr(tasks, "SAFE_LOAD"):
        raise EmoctxError(
            "this ultralytics/torch cannot load detector weights without running code from them "
            "(restricted loading needs a recent ultralytics with torch >= 2.6): upgrade them, or give the "
            "person boxes in a box file (BoxFileDetector)",
            cli_message="this ultralytics/torch cannot load detector weights without running code from them "
            "(restricted loading needs a recent ultralytics with torch >= 2.6): upgrade them, or give the "
            "person boxes with --boxes FILE",
        )
    previous = tasks.SAFE_LOAD
    tasks.SAFE_LOAD = True
    try:
        yield
    finally:
        tasks.SAFE_LOAD = previous


def _weights_format(weights: str) -> str | None:
    """The ultralytics name for the format of ``weights`` (``pt``, ``onnx``, ``saved_model``, ...), as it decides."""
    if Path(weights).suffix.lower() in (".yaml", ".yml"):
        return "yaml"
    from ultralytics.nn.autobackend import AutoBackend

    try:
        return AutoBackend._model_type(weights)
    except Exception:  # noqa: BLE001 - an unknown format: ultralytics reports it when loading
        return None


def _clean(message: str) -> str:
    """The ultralytics message without its decoration, on one line."""
    text = message.replace("ERROR ❌️", "").replace("ERROR ❌", "").strip()
    return " ".join(text.split())


def load_yolo(weights: str) -> Any:
    """An ``ultralytics.YOLO`` from weights, a model name or an architecture YAML, running no code from the file.

    See the module docstring for what is read and what is refused.

    Raises:
        EmoctxError: the file is refused (it holds more than a model), is of a refused format, cannot be read,
            or could not be downloaded.
    """
    import_ultralytics()
    from ultralytics import YOLO

    fmt = _weights_format(weights)
    if fmt in _REFUSED_FORMATS:
        raise EmoctxError(
            f"{weights}: {_REFUSED_FORMATS[fmt]} detectors are refused: their graphs can hold operations that "
            "read and write files. Use the .pt weights or an ONNX / TorchScript / OpenVINO export"
        )
    with restricted_loading():
        try:
            return YOLO(weights)
        except (ConnectionError, TimeoutError) as e:  # ultralytics reports download failures as these
            raise _download_failed(weights, e) from e
        except Exception as e:  # noqa: BLE001 - whatever a damaged or hostile file raises: one clear message
            text = _clean(str(e))
            if any(word in text for word in _REFUSALS):
                raise EmoctxError(
                    f"{weights}: refused: the file holds something other than an ultralytics model (loading it "
                    f"could run code), so it is not read ({text})"
                ) from e
            if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
                raise _download_failed(weights, e) from e
            raise EmoctxError(
                f"{weights}: cannot load as YOLO detector weights ({type(e).__name__}: {text[:500]})"
            ) from e


def _download_failed(weights: str, error: Exception) -> EmoctxError:
    return detector_error(
        lambda what: (
            f"could not obtain detector weights '{weights}' ({error}). Download them from "
            f"{WEIGHTS_SOURCE} where the network allows, copy them here and {what}"
        )
    )


def describe_weights(weights: str | os.PathLike) -> str:
    """``yolo:<name>``, with ``@<first 12 hex digits of a SHA-256>`` of a file or export folder (resume settings).

    A folder's digest covers the relative path and the content of every file in it, in sorted order.
    """
    path = Path(os.fspath(weights))
    if not (path.is_file() or path.is_dir()):
        return f"yolo:{path.name}"
    return f"yolo:{path.name}@{tree_sha256(path)[:12]}"
