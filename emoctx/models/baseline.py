"""Import of the common PyTorch EMOTIC baseline's released model into a self-describing emoctx model file.

The most widely used trained EMOTIC model is the PyTorch baseline of Tandon-A/emotic (two ResNet-18 streams, the
EMOTIC paper's fusion head). Its released files are

* ``model_context1.pth`` and ``model_body1.pth``: whole pickled modules, each a torchvision ResNet without its
  classifier (``nn.Sequential(*list(resnet.children())[:-1])``), the context one Places365-initialised;
* ``model_emotic1.pth``: the whole pickled fusion module, an instance of the baseline's own class ``Emotic``
  (module ``emotic``): ``fc1`` on the concatenated (context, body) features, ``bn1``, ReLU, dropout ``d1``, then
  ``fc_cat`` (26 linear category scores) and ``fc_cont`` (V/A/D divided by 10);
* ``val_thresholds.npy``: 26 per-category thresholds on the raw category scores (precision = recall on val).

Reading runs no code from the files. The pickles are read with ``torch.load(weights_only=True)`` and an
allow-list of the torch and torchvision layer classes they hold; the one class of the baseline itself,
``emotic.Emotic``, is mapped to :class:`_FusionState`, which only keeps the state it is given (no method of the
baseline's class is ever looked up or run). Any other global in a file (a function, another class) is refused
with an error naming it. The thresholds are read with ``numpy.load(allow_pickle=False)``.

The result is an :class:`~emoctx.models.network.EmotionNet` that computes what the baseline computes: timm
ResNets (same layers and names as torchvision's), ``concat`` fusion in the baseline's order (scene first, then
body), the same head with ``vad_output="tenths"``, category scores left linear (``clamp`` to 0-1 for display).
The model file's preprocessing (:mod:`emoctx.data.preprocess`) is the baseline's: its own input sizes and
normalisation per stream (not ImageNet's, :data:`BASELINE_STREAMS`), bilinear resizing (``cv2.resize``'s
default), no subject masking, full-size images; so ``emoctx predict``, ``evaluate`` and ``predict-records`` feed
it as the baseline did. ``training["baseline_inputs"]`` describes those inputs in words.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.models.resnet as tv_resnet
from torch import nn

from emoctx import labels
from emoctx.data.preprocess import PreprocessCfg
from emoctx.errors import EmoctxError
from emoctx.io import file_sha256
from emoctx.models.backbones import StreamConfig, match_state_dict
from emoctx.models.network import EmotionNet

log = logging.getLogger(__name__)

BASELINE_REPO = "Tandon-A/emotic"
"""Where the baseline lives."""

BASELINE_FILES: dict[str, str] = {
    "context": "model_context1.pth",
    "body": "model_body1.pth",
    "fusion": "model_emotic1.pth",
    "thresholds": "val_thresholds.npy",
}
"""The released file of each part (names written by the baseline's train.py and test.py)."""

BASELINE_STREAMS: dict[str, dict[str, Any]] = {
    # main.py: context_mean / context_std; mat2py.py and inference.py: cv2.resize(image_context, (224, 224)).
    "scene": {
        "input_size": 224,
        "mean": (0.4690646, 0.4407227, 0.40508908),
        "std": (0.2514227, 0.24312855, 0.24266963),
    },
    # main.py: body_mean / body_std; mat2py.py and inference.py: cv2.resize(image_body, (128, 128)).
    "body": {
        "input_size": 128,
        "mean": (0.43832874, 0.3964344, 0.3706214),
        "std": (0.24784276, 0.23621225, 0.2323653),
    },
}
"""The baseline's inputs per emoctx stream, in its concatenation order (context, then body)."""

BASELINE_PREPROCESSING: dict[str, Any] = {
    "scene": "the whole image, RGB, resized to 224x224 with cv2.resize (bilinear), /255, normalised",
    "body": "the box cropped at integer pixels, resized to 128x128 with cv2.resize (bilinear), /255, normalised",
    "resize": "bilinear",
    "mask_subject": False,
}
"""How the baseline prepared its inputs (mat2py.py, inference.py), in words; the model file's preprocessing says
the same in its typed form (:func:`baseline_preprocess`)."""


def baseline_preprocess(net: EmotionNet) -> PreprocessCfg:
    """The baseline's preprocessing of ``net``'s streams: their sizes and normalisation, bilinear, unmasked."""
    streams = {
        name: dict(spec, resize=BASELINE_PREPROCESSING["resize"]) for name, spec in net.stream_specs().items()
    }
    return PreprocessCfg.for_streams(streams, mask_subject=BASELINE_PREPROCESSING["mask_subject"])


# torchvision ResNet layouts -> the timm model with the same layers and parameter names.
_RESNETS: dict[tuple[str, tuple[int, ...]], str] = {
    ("BasicBlock", (2, 2, 2, 2)): "resnet18",
    ("BasicBlock", (3, 4, 6, 3)): "resnet34",
    ("Bottleneck", (3, 4, 6, 3)): "resnet50",
    ("Bottleneck", (3, 4, 23, 3)): "resnet101",
    ("Bottleneck", (3, 8, 36, 3)): "resnet152",
}
# The children of a torchvision ResNet without its fc, by position, as the baseline keeps them.
_RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")


class _FusionState:
    """Stand-in for the baseline's ``emotic.Emotic`` while unpickling: keeps the pickled state, runs nothing.

    The unpickler creates it without calling ``__init__`` and hands it the instance's ``__dict__`` (its
    ``_modules`` hold the allow-listed torch layers).
    """

    def __setstate__(self, state: Any) -> None:
        self.state = dict(state) if isinstance(state, Mapping) else {}


_SAFE_GLOBALS: list[Any] = [
    nn.Sequential,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.BatchNorm1d,
    nn.ReLU,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Linear,
    nn.Dropout,
    tv_resnet.ResNet,
    tv_resnet.BasicBlock,
    tv_resnet.Bottleneck,
    (_FusionState, "emotic.Emotic"),
]


def read_module(path: str | os.PathLike) -> Any:
    """Unpickle one of the baseline's whole-module files without running code from it.

    Returns:
        The torch module (context, body), or a :class:`_FusionState` (fusion).

    Raises:
        EmoctxError: The file is missing, unreadable, or holds anything outside the allow-list (the message
            names what was refused).
    """
    path = Path(path)
    if not path.is_file():
        raise EmoctxError(f"{path}: file not found")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message opens with general advice; the line that names what was refused is the useful one.
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        what = next(
            (line for line in lines if "GLOBAL" in line or "global" in line.split()),
            lines[-1] if lines else "",
        )
        raise EmoctxError(
            f"{path}: refused: the file holds something other than the baseline's torch/torchvision layers and "
            f"its Emotic module, so it is not unpickled ({what})"
        ) from e
    except (RuntimeError, OSError, ValueError, EOFError, AttributeError, TypeError) as e:
        raise EmoctxError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from e


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's parameters and buffers by name.

    Read without ``state_dict()``, which would call the module's state-dict hooks, and those come from the file.
    """
    out = {name: p.detach() for name, p in module.named_parameters()}
    out.update({name: b for name, b in module.named_buffers() if b is not None})
    return out


def _resnet_name(module: nn.Module, source: str) -> str:
    """The timm name of a torchvision ResNet's layout (block type and blocks per stage)."""
    layers = [getattr(module, f"layer{i}", None) for i in range(1, 5)]
    if not all(isinstance(layer, nn.Sequential) and len(layer) for layer in layers):
        raise EmoctxError(f"{source}: expected a torchvision ResNet (layer1..layer4)")
    block = type(layers[0][0]).__name__  # type: ignore[index]
    key = (block, tuple(len(layer) for layer in layers))  # type: ignore[arg-type]
    if key not in _RESNETS:
        raise EmoctxError(f"{source}: a ResNet of {key[0]} blocks {list(key[1])} is not a known layout")
    return _RESNETS[key]


def backbone_state(module: Any, source: str) -> tuple[str, dict[str, torch.Tensor]]:
    """The timm architecture and state dict of one of the baseline's stream modules.

    Accepts what the baseline saves (the children of a torchvision ResNet without ``fc``, in an
    ``nn.Sequential``) and, for completeness, a whole torchvision ResNet (its ``fc`` is dropped).

    Returns:
        ``(timm name, tensors under timm's names)``.
    """
    if isinstance(module, tv_resnet.ResNet):
        state = {k: v for k, v in _tensors(module).items() if not k.startswith("fc.")}
        return _resnet_name(module, source), state
    if not isinstance(module, nn.Sequential) or len(module) != len(_RESNET_CHILDREN):
        raise EmoctxError(
            f"{source}: expected the baseline's stream module (a torchvision ResNet's children without fc in an "
            f"nn.Sequential), found {type(module).__name__}"
        )
    named = dict(zip(_RESNET_CHILDREN, module.children()))
    kinds = {
        "conv1": nn.Conv2d,
        "bn1": nn.BatchNorm2d,
        "maxpool": nn.MaxPool2d,
        "avgpool": nn.AdaptiveAvgPool2d,
    }
    wrong = [n for n, kind in kinds.items() if not isinstance(named[n], kind)]
    if wrong:
        raise EmoctxError(f"{source}: unexpected layer(s) {wrong} for a torchvision ResNet without fc")
    position = {str(i): name for i, name in enumerate(_RESNET_CHILDREN)}
    state = {}
    for key, value in _tensors(module).items():
        head, _, rest = key.partition(".")
        state[f"{position[head]}.{rest}"] = value
    return _resnet_name(nn.ModuleDict(named), source), state  # type: ignore[arg-type]


def fusion_state(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The baseline fusion module's tensors under emoctx's names, and its shape.

    Returns:
        ``(tensors, {"hidden", "dropout", "context_features", "body_features"})``.
    """
    if not isinstance(obj, _FusionState):
        raise EmoctxError(
            f"{source}: expected the baseline's pickled Emotic module, found {type(obj).__name__}"
        )
    mods = obj.state.get("_modules") or {}
    expected = {
        "fc1": nn.Linear,
        "bn1": nn.BatchNorm1d,
        "d1": nn.Dropout,
        "fc_cat": nn.Linear,
        "fc_cont": nn.Linear,
    }
    wrong = [n for n, kind in expected.items() if not isinstance(mods.get(n), kind)]
    if wrong:
        raise EmoctxError(f"{source}: the Emotic module lacks or has unexpected layer(s) {wrong}")
    fc1, fc_cat, fc_cont = mods["fc1"], mods["fc_cat"], mods["fc_cont"]
    if fc_cat.out_features != labels.NUM_CATEGORIES or fc_cont.out_features != labels.NUM_VAD:
        raise EmoctxError(
            f"{source}: the Emotic module predicts {fc_cat.out_features} categories and {fc_cont.out_features} "
            f"dimensions; expected {labels.NUM_CATEGORIES} and {labels.NUM_VAD}"
        )
    tensors: dict[str, torch.Tensor] = {}
    for src, dst in (
        ("fc1", "fusion.net.0"),
        ("bn1", "fusion.net.1"),
        ("fc_cat", "category_head"),
        ("fc_cont", "vad_head"),
    ):
        for key, value in _tensors(mods[src]).items():
            tensors[f"{dst}.{key}"] = value
    shape = {
        "hidden": int(fc1.out_features),
        "dropout": float(mods["d1"].p),
        "context_features": obj.state.get("num_context_features"),
        "body_features": obj.state.get("num_body_features"),
        "in_features": int(fc1.in_features),
    }
    return tensors, shape


def read_thresholds(path: str | os.PathLike) -> np.ndarray:
    """The baseline's 26 thresholds from its ``.npy`` file (no pickled objects accepted)."""
    path = Path(path)
    if not path.is_file():
        raise EmoctxError(f"{path}: file not found")
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise EmoctxError(f"{path}: not a readable .npy array of numbers ({e})") from e
    values = np.asarray(values)
    if values.dtype.kind not in "fiu" or values.reshape(-1).shape != (labels.NUM_CATEGORIES,):
        raise EmoctxError(
            f"{path}: expected {labels.NUM_CATEGORIES} numbers (one threshold per category), found "
            f"{values.dtype} of shape {values.shape}"
        )
    values = values.reshape(-1).astype(np.float32)
    if not np.isfinite(values).all():
        raise EmoctxError(f"{path}: thresholds must be finite numbers")
    return values


def thresholds_for_scores(raw: np.ndarray) -> dict[str, float]:
    """Turn the baseline's thresholds on raw scores into emoctx thresholds on 0-1 (clamped) scores.

    The baseline marks a category when ``raw > t``; emoctx when ``score >= t'`` with ``score = clamp(raw, 0, 1)``.
    ``t'`` is the next float32 above ``t``, so that for ``0 <= t < 1`` both rules agree on every float32 score
    (also ``t = 0``, which the baseline's calibration writes when precision never equals recall). A threshold
    outside ``[0, 1)`` cannot be expressed on clamped scores: it is kept as the nearest rule (every person below
    0, nobody at or above 1) with a warning.
    """
    out = {}
    for slug, t in zip(labels.SLUGS, raw.astype(np.float32)):
        if t < 0 or t >= 1:
            log.warning(
                "threshold of %s is %g: outside [0, 1), so on 0-1 scores it marks %s",
                slug,
                t,
                "every person" if t < 0 else "nobody",
            )
        if t == 0:
            log.warning(
                "threshold of %s is 0, the value the baseline's calibration writes when precision never equals "
                "recall: kept as 'score above 0'",
                slug,
            )
        out[slug] = 0.0 if t < 0 else float(np.nextafter(t, np.float32(math.inf), dtype=np.float32))
    return out


def baseline_network(
    context: Any, body: Any, fusion: Any, sources: Mapping[str, str] | None = None
) -> EmotionNet:
    """Build the emoctx network holding the baseline's weights (from the unpickled parts).

    Args:
        context: The unpickled context module (:func:`read_module`).
        body: The unpickled body module.
        fusion: The unpickled fusion module (a :class:`_FusionState`).
        sources: File names per part, for messages.

    Raises:
        EmoctxError: A part does not have the baseline's structure, or the parts do not fit together.
    """
    sources = dict(sources or {})
    scene_arch, scene_state = backbone_state(context, sources.get("context", "context module"))
    body_arch, body_state = backbone_state(body, sources.get("body", "body module"))
    head_state, shape = fusion_state(fusion, sources.get("fusion", "fusion module"))
    streams = {
        name: StreamConfig(backbone=arch, **BASELINE_STREAMS[name])
        for name, arch in (("scene", scene_arch), ("body", body_arch))
    }
    net = EmotionNet(
        streams, fusion="concat", hidden=shape["hidden"], dropout=shape["dropout"], vad_output="tenths"
    )
    widths = {n: net.fusion.in_features[n] for n in net.stream_names}
    declared = (shape["context_features"], shape["body_features"])
    if shape["in_features"] != sum(widths.values()) or (
        None not in declared and declared != (widths["scene"], widths["body"])
    ):
        raise EmoctxError(
            f"{sources.get('fusion', 'fusion module')}: the fusion takes {shape['in_features']} features "
            f"(context {declared[0]}, body {declared[1]}), but the streams give {widths['scene']} ({scene_arch}) "
            f"and {widths['body']} ({body_arch})"
        )
    state = {
        **{f"backbones.scene.{k}": v for k, v in scene_state.items()},
        **{f"backbones.body.{k}": v for k, v in body_state.items()},
        **head_state,
    }
    match = match_state_dict(state, net.state_dict())
    if not match.ok:
        raise EmoctxError(f"the baseline's weights do not fit the emoctx network: {match.describe()}")
    net.load_state_dict(match.state_dict, strict=True)
    return net.eval()


def find_files(
    folder: str | os.PathLike | None, overrides: Mapping[str, str | os.PathLike | None] | None = None
) -> dict[str, Path | None]:
    """The path of each part: ``overrides`` first, else the released name inside ``folder``.

    The thresholds are ``None`` when neither is given and the folder has no ``val_thresholds.npy``.

    Raises:
        EmoctxError: A model part cannot be found.
    """
    overrides = overrides or {}
    out: dict[str, Path | None] = {}
    for part, name in BASELINE_FILES.items():
        given = overrides.get(part)
        path = Path(given) if given is not None else (Path(folder) / name if folder is not None else None)
        if (
            part == "thresholds"
        ):  # optional: a path given is read (and must exist), a missing default is skipped
            out[part] = path if given is not None or (path is not None and path.is_file()) else None
        elif path is None or not path.is_file():
            where = f"in {folder}" if given is None and folder is not None else f"at {path}" if path else ""
            raise EmoctxError(
                f"the baseline's {part} file ({name}) was not found {where}; pass --{part} FILE"
            )
        else:
            out[part] = path
    return out


def import_baseline(
    files: Mapping[str, str | os.PathLike | None], out: str | os.PathLike, *, overwrite: bool = False
) -> dict[str, Any]:
    """Convert the baseline's released files into one emoctx ``model.safetensors``.

    Args:
        files: ``{"context", "body", "fusion", "thresholds"}`` paths (see :func:`find_files`); ``thresholds``
            may be ``None`` (the model then has no calibrated thresholds; ``emoctx calibrate`` fits them).
        out: The model file to write (atomically).
        overwrite: Replace ``out`` if it exists (by default an existing file is never replaced).

    Returns:
        A summary: ``out``, ``streams`` (backbone per stream), ``thresholds`` (stored or None), ``files``.

    Raises:
        EmoctxError: A file is unsafe, unreadable or not the baseline's; ``out`` exists or is a source file.
    """
    from emoctx.checkpoint import ModelInfo, save_model

    out = Path(out)
    paths = {k: Path(v) for k, v in files.items() if v is not None}
    if any(out.resolve() == p.resolve() for p in paths.values()):
        raise EmoctxError(
            f"{out}: the output would overwrite one of the baseline's files; pass another --out"
        )
    if out.exists() and not overwrite:
        raise EmoctxError(f"{out}: exists; pass --overwrite to replace it, or another --out")
    parts = {part: read_module(paths[part]) for part in ("context", "body", "fusion")}
    net = baseline_network(**parts, sources={k: str(v) for k, v in paths.items()})
    thresholds = (
        thresholds_for_scores(read_thresholds(paths["thresholds"])) if "thresholds" in paths else None
    )
    streams = net.stream_specs()
    training = {
        "imported_from": BASELINE_REPO,
        "files": {part: {"name": p.name, "sha256": file_sha256(p)} for part, p in paths.items()},
        "baseline_inputs": dict(BASELINE_PREPROCESSING),
        "thresholds_rule": (
            "the baseline's: precision = recall on its validation split (test.py get_thresholds), converted from "
            "'raw > t' to 'score >= t' on 0-1 scores"
            if thresholds is not None
            else None
        ),
    }
    info = ModelInfo(
        network=net.config(),
        streams=streams,
        score_activation="clamp",
        thresholds=thresholds,
        training=training,
        preprocessing=baseline_preprocess(
            net
        ),  # predict, evaluate and predict-records feed it as the baseline did
    )
    save_model(out, net, info)
    log.info("wrote the baseline model to %s", out)
    return {
        "out": str(out),
        "streams": {name: spec["backbone"] for name, spec in streams.items()},
        "thresholds": thresholds,
        "files": {part: str(p) for part, p in paths.items()},
    }
