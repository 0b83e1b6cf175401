"""Self-describing model checkpoints: weights plus everything needed to rebuild and use the model.

A model file is a single ``.safetensors`` file: the network's tensors, and in the safetensors metadata a JSON
description (format version, the emoctx, torch and timm versions that wrote it, the categories, the V/A/D scale,
each stream's backbone, input size and normalisation, the preprocessing (:mod:`emoctx.data.preprocess`: each
stream's region, resize rule and mask, the decoding size limit), the network config, the training config, the
score activation and, after calibration, per-category thresholds). Loading it cannot run code. Lightning's ``.ckpt`` files written by ``emoctx train``
carry the same description and are read with ``torch.load(weights_only=True)``.

A model is rebuilt from the file alone (``load_model``), never from command-line flags that must match. Every
field of the description is checked before it is used (:mod:`emoctx.description`: types, ranges, known keys;
fields added by newer versions are kept and warned about).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from emoctx import __version__, labels
from emoctx.data.preprocess import PreprocessCfg, PreprocessError
from emoctx.description import FORMAT, FORMAT_VERSION, DescriptionError, validate_description
from emoctx.errors import EmoctxError
from emoctx.io import atomic_path, file_sha256, jsonable
from emoctx.models.network import EmotionNet

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelInfo",
    "as_description",
    "describe",
    "init_face_stream",
    "load_model",
    "model_identity",
    "safe_torch_load",
    "save_model",
]


@dataclass
class ModelInfo:
    """The description stored with the weights (see the module docstring).

    ``preprocessing`` is the typed :class:`~emoctx.data.preprocess.PreprocessCfg` (its JSON form is accepted and
    converted); when it is not given (files of format v1), it is derived from ``streams`` and ``training``
    (:meth:`PreprocessCfg.from_v1`). ``format_version`` is the version the file was written in; a model is always
    saved in the current one.
    """

    network: dict[str, Any]
    streams: dict[str, dict[str, Any]]
    score_activation: str = "sigmoid"
    thresholds: dict[str, float | None] | None = None  # None for a category: never predicted
    training: dict[str, Any] = field(default_factory=dict)
    preprocessing: PreprocessCfg | None = None
    categories: list[str] = field(default_factory=lambda: list(labels.CATEGORIES))
    vad: dict[str, Any] = field(
        default_factory=lambda: {
            "names": list(labels.VAD_NAMES),
            "min": labels.VAD_MIN,
            "max": labels.VAD_MAX,
        }
    )
    emoctx_version: str = __version__
    torch_version: str | None = None  # None: not recorded (files written before versions were recorded)
    timm_version: str | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    """Description fields this emoctx does not know (added by a newer one); written back unchanged."""

    def __post_init__(self) -> None:
        if self.preprocessing is None:
            self.preprocessing = PreprocessCfg.from_v1(self.streams, self.training)
        elif not isinstance(self.preprocessing, PreprocessCfg):
            self.preprocessing = PreprocessCfg.from_dict(self.preprocessing)

    @property
    def trained_with_mask(self) -> bool:
        """Whether the subject was masked out of the scene in training (``preprocessing.mask_subject``)."""
        assert self.preprocessing is not None
        return self.preprocessing.mask_subject

    def threshold_vector(self, default: float = 0.5) -> torch.Tensor:
        """Per-category thresholds in canonical order (``default`` where none was calibrated).

        A category stored as ``None`` (``null`` in the file: calibrated, but without positive validation
        examples) is never predicted: its threshold is ``+inf``.
        """
        th = self.thresholds or {}
        return torch.tensor(
            [math.inf if s in th and th[s] is None else float(th.get(s, default)) for s in labels.SLUGS]
        )


def describe(
    net: EmotionNet,
    training: dict[str, Any] | None = None,
    score_activation: str = "sigmoid",
    thresholds: dict[str, float] | None = None,
    preprocessing: PreprocessCfg | None = None,
) -> dict[str, Any]:
    """The JSON-serialisable description of ``net`` stored in every checkpoint.

    Args:
        net: the network.
        training: the training settings to record.
        score_activation: how the category outputs become 0-1 scores.
        thresholds: per-category decision thresholds.
        preprocessing: how the inputs are made (training's :attr:`EmotionDataModule.preprocess`); default the
            network's streams with their default regions, no masking, full-size decoding.
    """
    import timm

    specs = net.stream_specs()
    if preprocessing is None:
        preprocessing = PreprocessCfg.for_streams(specs)
    info = ModelInfo(
        network=net.config(),
        streams=specs,
        score_activation=score_activation,
        thresholds=thresholds,
        training=training or {},
        preprocessing=preprocessing,
        torch_version=torch.__version__,
        timm_version=timm.__version__,
    )
    return as_description(info)


def _major(version: str) -> str:
    return str(version).split(".", 1)[0].strip()


def warn_on_version_mismatch(info: ModelInfo, source: str | os.PathLike) -> list[str]:
    """Log a warning when the file was written with another major version of torch or timm than this one's.

    A new major version may change a layer's numerics or a timm architecture's definition, so the model may
    not compute what it computed when it was trained. Returns the warnings (empty when the versions agree or
    the file does not record them).
    """
    import timm

    said = []
    for name, written, here in (
        ("torch", info.torch_version, torch.__version__),
        ("timm", info.timm_version, timm.__version__),
    ):
        if written and _major(written) != _major(here):
            said.append(
                f"{source}: written with {name} {written}, running {name} {here} (another major version)"
            )
    for message in said:
        log.warning("%s; its outputs may differ from those it was evaluated with", message)
    return said


def as_description(info: ModelInfo) -> dict[str, Any]:
    """The JSON description of ``info`` in the current format: its fields, the unknown ones at the top level."""
    fields = {k: v for k, v in info.__dict__.items() if k != "extra"}
    assert info.preprocessing is not None
    fields["preprocessing"] = info.preprocessing.to_dict()
    fields["format"], fields["format_version"] = FORMAT, FORMAT_VERSION
    # v1 kept the resize rule in streams; it is in preprocessing now
    fields["streams"] = {n: {k: v for k, v in s.items() if k != "resize"} for n, s in info.streams.items()}
    return jsonable({**info.extra, **fields})


def _check(meta: Any, source: str | os.PathLike) -> ModelInfo:
    """Validate the description (:func:`emoctx.description.validate_description`) and wrap it."""
    fields = set(ModelInfo.__dataclass_fields__) - {"extra"}
    known, extra = validate_description(meta, str(source), fields)
    try:
        info = ModelInfo(**{k: v for k, v in known.items() if k in fields}, extra=dict(extra))
    except (
        PreprocessError
    ) as e:  # a v1 file whose preprocessing cannot be derived (a stream of unknown region)
        raise DescriptionError(f"{source}: model description: {e}") from e
    warn_on_version_mismatch(info, source)
    return info


def save_model(path: str | os.PathLike, net: EmotionNet, info: ModelInfo | dict[str, Any]) -> Path:
    """Write ``net``'s weights and ``info`` to one ``.safetensors`` file, atomically."""
    path = Path(path)
    meta = info if isinstance(info, dict) else as_description(info)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"emoctx": json.dumps(meta)})
    return path


def model_identity(path: str | os.PathLike) -> str:
    """``<file name>@<first 12 hex digits of its SHA-256>``: how outputs name the model that made them."""
    return f"{Path(path).name}@{file_sha256(path)[:12]}"


GETTING_A_MODEL = (
    "An emoctx model is a .safetensors file: train one on EMOTIC ('emoctx convert Annotations.mat', then "
    "'emoctx train --config configs/emotic_kosti_resnet18.yaml --data.root EMOTIC_IMAGES' writes "
    "runs/emotic_kosti_resnet18/model.safetensors), import the common PyTorch baseline's trained model (its .pth "
    "files, linked from github.com/Tandon-A/emotic: 'emoctx import-baseline FOLDER --out model.safetensors'), "
    "or, to try emoctx out, run 'make demo', which writes runs/demo/train/model.safetensors (trained on "
    "synthetic scenes: it says little about real photos)"
)
"""How to get a model file: the end of the messages about a missing or wrong model file."""


def _unpickling_reason(error: Exception) -> str:
    """What a refused ``torch.load(weights_only=True)`` found, without PyTorch's advice.

    PyTorch's message suggests re-running with ``weights_only=False``, which is the unsafe load emoctx never
    does; the useful part is what the file holds (``Unsupported global: GLOBAL torch.nn.Linear``) or that it
    is no pickle at all (``Unsupported operand``).
    """
    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds a pickled Python object ({found.group(1)}), which could run code when loaded"
    found = re.search(r"Unsupported operand \S+|Unsupported class \S+", text)
    if found:
        return f"its content is not a PyTorch tensor file ({found.group(0)})"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if "weights_only" in first or "Weights only load failed" in first:
        return "it holds Python objects other than tensors and plain data, which could run code when loaded"
    return f"{type(error).__name__}: {first[:300]}"


def safe_torch_load(path: str | os.PathLike, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, nothing executed.

    A file that needs anything else (a pickled class or function, which could run code) is refused with a
    clear error.

    Args:
        path: the file.
        mmap: map the tensors instead of reading them (a cheap check of a large checkpoint).

    Raises:
        EmoctxError: the file cannot be loaded this way (names the file and the reason).
    """
    try:
        # mmap needs torch's zip format; the old format is read in full.
        mmap = mmap and zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # an unpicklable or foreign object is refused here, never executed
        raise EmoctxError(
            f"{path}: cannot be loaded safely as a checkpoint: {_unpickling_reason(e)}; it is not read. "
            "Use a file written by emoctx"
        ) from e


def _not_a_model(path: Path) -> EmoctxError | None:
    """The error for a ``--model`` that is plainly no emoctx model file (a folder, an ONNX export), else ``None``."""
    if path.is_dir():
        inside = path / "model.safetensors"
        if inside.is_file():
            return EmoctxError(f"{path} is a folder; its model file is {inside}: pass that")
        return EmoctxError(f"{path} is a folder, not an emoctx model file. {GETTING_A_MODEL}")
    if path.suffix.lower() == ".onnx":
        return EmoctxError(
            f"{path}: an ONNX file, not an emoctx model file. ONNX files are what 'emoctx export' writes to run "
            "a model in onnxruntime or another ONNX runtime (see the README's ONNX section); emoctx commands take "
            "the model.safetensors it was exported from"
        )
    return None


def _not_emoctx_pickle(path: Path, error: Exception) -> EmoctxError:
    """The error for a ``.pt``/``.pth``/... file that cannot be read as an emoctx checkpoint."""
    reason = _unpickling_reason(error.__cause__ or error)
    return EmoctxError(
        f"{path}: not an emoctx model file: {reason}, so it is not read. emoctx reads the .safetensors model "
        "files it writes (and training's .ckpt files); the common baseline's .pth files become one with "
        "'emoctx import-baseline'"
    )


def _read(path: Path) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file. {GETTING_A_MODEL}")
    refused = _not_a_model(path)
    if refused is not None:
        raise refused
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                text = (f.metadata() or {}).get("emoctx", "{}")
                try:
                    meta = json.loads(text)
                except (ValueError, RecursionError) as e:  # RecursionError: absurdly nested JSON
                    raise EmoctxError(
                        f"{path}: the model description is not valid JSON ({type(e).__name__}: {e})"
                    ) from e
                # Validated before the tensors are read: a bad description costs no memory.
                info = _check(meta, path)
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        except EmoctxError:
            raise
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise EmoctxError(f"{path}: not a readable safetensors file ({e})") from e
        return state, info
    try:
        ckpt = safe_torch_load(path)
    except EmoctxError as e:
        if path.suffix.lower() == ".ckpt":  # a training checkpoint that holds more than it should
            raise
        raise _not_emoctx_pickle(path, e) from e
    if not isinstance(ckpt, dict) or "emoctx" not in ckpt:
        raise EmoctxError(
            f"{path}: not an emoctx model file (no 'emoctx' description inside: a state dict or another "
            f"program's checkpoint?). {GETTING_A_MODEL}"
        )
    prefix = "net."
    info = _check(ckpt["emoctx"], path)
    weights = ckpt.get("state_dict", {})
    if not isinstance(weights, dict):
        raise EmoctxError(f"{path}: 'state_dict' is not a mapping of tensors")
    state = {
        k[len(prefix) :]: v
        for k, v in weights.items()
        if isinstance(k, str) and k.startswith(prefix) and isinstance(v, torch.Tensor)
    }
    return state, info


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[EmotionNet, ModelInfo]:
    """Rebuild the network from a model file alone and load its weights (safely; no code runs).

    Raises:
        EmoctxError: the file is not an emoctx model, comes from a newer format, predicts other
            categories, or its weights do not fit the described network.
    """
    path = Path(path)
    state, info = _read(path)
    net = _build_for(state, info, path)
    net.to(map_location).eval()
    return net, info


def _build_for(state: dict[str, torch.Tensor], info: ModelInfo, path: Path) -> EmotionNet:
    """The described network holding ``state``'s tensors.

    The network is built on the ``meta`` device (no memory, no random initialisation: that took a quarter
    of a second for two ResNet-18s) and takes the loaded tensors as its own. A network with tensors that no
    checkpoint holds (non-persistent buffers) is built normally instead.
    """
    with torch.device("meta"):
        net = EmotionNet.from_config(info.network)
    held = net.state_dict()
    every = {name for name, _ in net.named_parameters()} | {name for name, _ in net.named_buffers()}
    assign = every <= set(held)
    if assign:  # taken as they are, so first in the dtypes the network was built with (as a copy would be)
        state = {
            k: v.to(held[k].dtype) if k in held and v.is_floating_point() else v for k, v in state.items()
        }
    else:
        net = EmotionNet.from_config(info.network)
    try:
        result = net.load_state_dict(state, strict=False, assign=assign)
    except RuntimeError as e:  # shapes that differ from the described network
        raise EmoctxError(f"{path}: weights do not fit the described network: {e}") from e
    if result.missing_keys or result.unexpected_keys:
        raise EmoctxError(
            f"{path}: weights do not fit the described network: missing {result.missing_keys[:10]}, "
            f"unexpected {result.unexpected_keys[:10]}"
        )
    return net


FACE_PARTS: tuple[str, ...] = ("backbones.face.", "face_attention.")
"""State-dict prefixes of a face stream's own weights: its backbone and its landmark attention."""


def init_face_stream(net: EmotionNet, path: str | os.PathLike) -> list[str]:
    """Start ``net``'s face stream from a trained model file's face stream (e.g. a face-only model).

    The file is read as :func:`load_model` reads it (safely; its description checked). Its face backbone and
    landmark attention are copied into ``net``; nothing else changes (the fusion, the heads and the no-face
    embedding are the context model's own: a face-only model never saw a person without a face). The two
    face streams must agree on what the weights mean: the same backbone (name and options), the same
    normalisation and the same attention and landmark convention; a different input size or heatmap width is
    allowed, with a warning.

    Args:
        net: a network with a face stream.
        path: a model file (``.safetensors`` or a training ``.ckpt``) with a face stream.

    Returns:
        The names of the tensors copied.

    Raises:
        EmoctxError: ``net`` or the file has no face stream, they disagree, or the weights do not fit (the
            message lists the keys).
    """
    from emoctx.models.backbones import match_state_dict
    from emoctx.models.face import FACE_STREAM, FaceConfig

    path = Path(path)
    if net.face_config is None:
        raise EmoctxError(f"the network has no '{FACE_STREAM}' stream to start from {path}")
    state, info = _read(path)
    streams = info.network.get("streams", {})
    if FACE_STREAM not in streams:
        raise EmoctxError(f"{path}: the model has no '{FACE_STREAM}' stream (its streams: {list(streams)})")
    theirs, ours = streams[FACE_STREAM], net.config()["streams"][FACE_STREAM]
    for key in ("backbone", "kwargs", "mean", "std"):
        a, b = theirs.get(key), ours.get(key)
        if key == "kwargs":
            a, b = a or {}, b or {}
        if key in ("mean", "std") and a is not None and b is not None:
            a, b = [float(v) for v in a], [float(v) for v in b]
        if a != b:
            raise EmoctxError(
                f"{path}: its face stream has {key} {a!r}, this network's has {b!r}; the weights only fit a "
                f"face stream with the same {key} (set the face stream's '{key}' to the file's)"
            )
    their_face, our_face = FaceConfig.from_dict(info.network.get("face")), net.face_config
    for key in ("attention", "landmarks"):
        if getattr(their_face, key) != getattr(our_face, key):
            raise EmoctxError(
                f"{path}: its face stream has {key} {getattr(their_face, key)!r}, this network's has "
                f"{getattr(our_face, key)!r}"
            )
    if theirs.get("input_size") != ours.get("input_size") or their_face.sigma != our_face.sigma:
        log.warning(
            "%s: its face stream was trained at %s px with heatmap sigma %s; this network's face stream uses "
            "%s px and sigma %s",
            path,
            theirs.get("input_size"),
            their_face.sigma,
            ours.get("input_size"),
            our_face.sigma,
        )
    wanted = {k: v for k, v in net.state_dict().items() if k.startswith(FACE_PARTS)}
    given = {k: v for k, v in state.items() if k.startswith(FACE_PARTS)}
    match = match_state_dict(given, wanted)
    if not match.ok:
        raise EmoctxError(f"{path}: its face stream's weights do not fit this network's: {match.describe()}")
    result = net.load_state_dict(match.state_dict, strict=False)
    if result.unexpected_keys:  # cannot happen: every key was matched against the network's own
        raise EmoctxError(f"{path}: unexpected face stream keys {result.unexpected_keys[:10]}")
    log.info("face stream started from %s (%d tensors)", path, len(match.state_dict))
    return sorted(match.state_dict)
