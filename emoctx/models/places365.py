"""Import of the CSAIL Places365 scene-classification checkpoints as plain safetensors state dicts.

The released files (``resnet18_places365.pth.tar``, ``resnet50_places365.pth.tar``, ...) are torch-saved dicts
``{"epoch", "arch", "state_dict", "best_prec1"}`` whose ``state_dict`` keys carry a ``module.`` prefix (they were
saved from ``DataParallel``) and end in a 365-way ``fc``; some were pickled under Python 2. Their keys follow
torchvision, and timm's ResNets use the same names (``conv1``, ``bn1``, ``layer1..4``, ``fc``), so the import
strips the prefix, fixes the old DenseNet key spelling (``norm.1`` -> ``norm1``), and checks every key and shape
against the timm architecture before writing. The result loads with ``StreamConfig(pretrained=<file>)``.

Reading is safe by default (``torch.load(weights_only=True)``, then the same with ``encoding="latin1"`` for
Python 2 pickles). Full unpickling, which can run code from the file, happens only with ``trust_pickle=True``.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file

from emoctx.errors import EmoctxError
from emoctx.io import atomic_path
from emoctx.models.backbones import head_prefixes, match_state_dict

logger = logging.getLogger(__name__)

PLACES365_CLASSES = 365
"""Number of scene classes of the Places365 classifier head."""

_READ_ERRORS = (
    pickle.UnpicklingError,
    UnicodeDecodeError,
    RuntimeError,
    ValueError,
    AttributeError,
    EOFError,
)
# torchvision's fix for DenseNet checkpoints written before PyTorch 0.4 ("norm.1" for "norm1" etc.).
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _torch_load(path: Path, *, weights_only: bool, encoding: str | None) -> Any:
    kwargs = {"encoding": encoding} if encoding else {}
    with warnings.catch_warnings():
        # torch warns that pickle_load_args are ignored with weights_only=True, yet its safe unpickler does use
        # the encoding for legacy (pre-zip) files, which is what the Python 2 checkpoints are.
        warnings.filterwarnings("ignore", message="pickle_load_args only works")
        return torch.load(path, map_location="cpu", weights_only=weights_only, **kwargs)


def read_checkpoint(path: str | os.PathLike, *, trust_pickle: bool = False) -> tuple[Any, str]:
    """Unpickle a Places365 checkpoint file, safely unless ``trust_pickle``.

    Tries ``torch.load(weights_only=True)``, then the same with ``encoding="latin1"``; with ``trust_pickle`` it
    finally tries ``weights_only=False`` (which can execute code from the file) and logs a warning.

    Returns:
        ``(checkpoint, how)`` with ``how`` one of ``"weights_only"``, ``"weights_only+latin1"``, ``"full_unpickle"``.

    Raises:
        EmoctxError: The file cannot be read (safely); the message says whether ``--trust-pickle`` may help.
    """
    path = Path(path)
    if not path.is_file():
        raise EmoctxError(f"{path}: checkpoint file not found")
    errors: list[str] = []
    for encoding in (None, "latin1"):
        try:
            return _torch_load(path, weights_only=True, encoding=encoding), (
                "weights_only+latin1" if encoding else "weights_only"
            )
        except _READ_ERRORS as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            errors.append(
                f"weights_only=True{', encoding=latin1' if encoding else ''}: {type(e).__name__}: {first}"
            )
    if not trust_pickle:
        raise EmoctxError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({'; '.join(errors)}). If you trust the "
            "file's source (e.g. the official CSAIL download), pass --trust-pickle (trust_pickle=True) to "
            "unpickle it fully; that can run code stored in the file."
        )
    logger.warning("%s: safe loading failed; unpickling fully because trust_pickle was given", path)
    try:
        return _torch_load(path, weights_only=False, encoding="latin1"), "full_unpickle"
    except (*_READ_ERRORS, ImportError) as e:
        raise EmoctxError(f"{path}: cannot be unpickled even fully ({type(e).__name__}: {e})") from e


def extract_state_dict(checkpoint: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint (its ``state_dict`` entry, or the dict itself), ``module.`` prefix removed.

    Raises:
        EmoctxError: No state dict of tensors found.
    """
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        found = list(checkpoint)[:10] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise EmoctxError(f"{source}: expected a dict with a 'state_dict' of tensors, found {found}")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise EmoctxError(f"{source}: state_dict entry '{key}' is a {type(value).__name__}, not a tensor")
        key = key.removeprefix("module.")
        key = _DENSENET_OLD_KEY.sub(r"\1\2", key)
        out[key] = value
    return out


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    arch: str = "resnet18",
    *,
    keep_fc: bool = False,
    num_classes: int = PLACES365_CLASSES,
    source: str = "checkpoint",
    checkpoint_arch: str | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Check a (prefix-free) Places365 state dict against timm's ``arch`` and return the tensors to save.

    Args:
        state_dict: Tensors with torchvision-style names.
        arch: The timm architecture (``resnet18``, ``resnet50``, ``densenet161``, ...).
        keep_fc: Keep the ``num_classes``-way classifier; by default it is dropped (the scene stream is a
            feature extractor).
        num_classes: Classes of the classifier in the file (checked when ``keep_fc``).
        source: Name of the file, for messages.
        checkpoint_arch: The ``arch`` entry of the checkpoint, if any, named in the error message.

    Returns:
        ``(tensors, report)``; ``report`` has ``arch``, ``tensors``, ``dropped`` (head keys) and ``filled`` (keys
        the old file lacked, taken from the freshly built model: BatchNorm step counters).

    Raises:
        EmoctxError: The tensors do not fit ``arch``; the first missing, unexpected and mis-shaped keys are
            listed.
    """
    if not timm.is_model(arch):
        raise EmoctxError(f"unknown architecture '{arch}': not a timm model name (see timm.list_models())")
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes if keep_fc else 0)
    match = match_state_dict(state_dict, model.state_dict(), () if keep_fc else head_prefixes(model))
    if not match.ok:
        said = f" (the checkpoint says arch '{checkpoint_arch}')" if checkpoint_arch else ""
        raise EmoctxError(
            f"{source}: the weights do not fit timm architecture '{arch}'{said}: {match.describe()}. "
            "Pass the --arch the checkpoint was trained with."
        )
    # Contiguous copies: safetensors refuses tensors that share storage or are strided views.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in match.state_dict.items()}
    report = {"arch": arch, "tensors": len(tensors), "dropped": match.dropped_head, "filled": match.filled}
    return tensors, report


def convert_places365(
    src: str | os.PathLike,
    out: str | os.PathLike,
    arch: str = "resnet18",
    *,
    keep_fc: bool = False,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """Convert a CSAIL Places365 checkpoint into a safetensors state dict for timm's ``arch``.

    Args:
        src: The ``*_places365.pth.tar`` file.
        out: The ``.safetensors`` file to write (atomically).
        arch: The timm architecture the checkpoint was trained with.
        keep_fc: Keep the 365-way classifier.
        trust_pickle: Allow full unpickling when safe loading fails.

    Returns:
        A summary: ``src``, ``out``, ``arch``, ``tensors``, ``dropped``, ``filled`` and ``loaded_with`` (how the
        file was read, see :func:`read_checkpoint`).
    """
    src, out = Path(src), Path(out)
    checkpoint, loaded_with = read_checkpoint(src, trust_pickle=trust_pickle)
    checkpoint_arch = checkpoint.get("arch") if isinstance(checkpoint, Mapping) else None
    state = extract_state_dict(checkpoint, source=str(src))
    tensors, report = convert_state_dict(
        state,
        arch,
        keep_fc=keep_fc,
        source=str(src),
        checkpoint_arch=checkpoint_arch if isinstance(checkpoint_arch, str) else None,
    )
    metadata = {
        "format": "pt",
        "source": src.name,
        "arch": arch,
        "classifier": "kept" if keep_fc else "dropped",
    }
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    if report["dropped"]:
        logger.info("%s: dropped the classifier (%s)", src, ", ".join(report["dropped"]))
    logger.info("wrote %d tensors for %s to %s", len(tensors), arch, out)
    return {"src": str(src), "out": str(out), **report, "loaded_with": loaded_with}
