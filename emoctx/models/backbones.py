"""Backbones by timm name; building an architecture is separate from loading its weights.

A stream (body, scene, ...) is described by a :class:`StreamConfig`: the timm model name, where its weights come
from, and the input geometry and normalisation it expects. :func:`build_backbone` returns the feature extractor
(timm's model with ``num_classes=0``: one pooled feature vector per image) together with the resolved input size,
mean, std and feature width, so the data pipeline and the checkpoint never guess them.

Weight sources (``StreamConfig.pretrained``):

* ``None``: random initialisation (tests, and every rebuild from a checkpoint, whose weights come later).
* ``"timm"``: timm's own pretrained weights for that name, fetched by timm where the machine can reach them.
* a path to a local file: ``.safetensors`` or a torch state dict (read with ``weights_only=True``; a dict holding
  ``state_dict`` / ``model`` and a ``module.`` prefix are accepted). A classifier head in the file is dropped (and
  logged); any other missing, unexpected or mis-shaped key is an :class:`~emoctx.errors.EmoctxError` listing them.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import timm.data
import torch
from safetensors import SafetensorError
from torch import nn

from emoctx.errors import EmoctxError

logger = logging.getLogger(__name__)

TIMM_WEIGHTS = "timm"
"""The ``pretrained`` value that asks timm for its own pretrained weights."""

_LIST_LIMIT = 10  # keys shown per kind in a mismatch message


@dataclass
class StreamConfig:
    """How to build one input stream's backbone.

    Attributes:
        backbone: Any timm model name (``timm.list_models()``), e.g. ``"resnet18"``, or a name with a
            source prefix as ``timm.create_model`` takes it: ``hf-hub:timm/resnet18.a1_in1k`` (a Hugging
            Face Hub repository, its configuration fetched from the Hub or its cache) or
            ``local-dir:/path/to/folder`` (a folder with timm's ``config.json``).
        pretrained: ``None`` (random init), ``"timm"`` (timm's pretrained weights) or a path to a local
            ``.safetensors`` / torch state-dict file.
        input_size: Side of the square input in pixels; ``None`` takes timm's default for the model.
        mean: Per-channel normalisation mean (0-1 pixel scale); ``None`` takes timm's default for the model.
        std: Per-channel normalisation std; ``None`` takes timm's default for the model.
        drop_path: Stochastic-depth rate passed to timm as ``drop_path_rate``; ``None`` keeps timm's default.
        kwargs: Further keyword arguments for ``timm.create_model`` (must be JSON-serialisable).
    """

    backbone: str
    pretrained: str | None = None
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    drop_path: float | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            raise EmoctxError(f"stream config: 'backbone' must be a timm model name, got {self.backbone!r}")
        if self.pretrained is not None:
            if isinstance(self.pretrained, os.PathLike):
                self.pretrained = os.fspath(self.pretrained)
            if not isinstance(self.pretrained, str) or not self.pretrained:
                raise EmoctxError(
                    f"stream config for '{self.backbone}': 'pretrained' must be null, \"timm\" or a file path, "
                    f"got {self.pretrained!r}"
                )
        if self.input_size is not None and (
            isinstance(self.input_size, bool) or not isinstance(self.input_size, int) or self.input_size < 1
        ):
            raise EmoctxError(
                f"stream config for '{self.backbone}': 'input_size' must be a positive integer (the side of "
                f"the square input) or null, got {self.input_size!r}"
            )
        self.mean = self._channels("mean", self.mean)
        self.std = self._channels("std", self.std)
        if self.std is not None and any(s <= 0 for s in self.std):
            raise EmoctxError(
                f"stream config for '{self.backbone}': every 'std' value must be > 0, got {self.std}"
            )
        if self.drop_path is not None and not 0.0 <= float(self.drop_path) < 1.0:
            raise EmoctxError(
                f"stream config for '{self.backbone}': 'drop_path' must be in [0, 1), got {self.drop_path!r}"
            )
        self.kwargs = dict(self.kwargs or {})

    def _channels(self, name: str, value: Any) -> tuple[float, ...] | None:
        if value is None:
            return None
        try:
            out = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            out = ()
        if not out or not all(math.isfinite(v) for v in out):
            raise EmoctxError(
                f"stream config for '{self.backbone}': '{name}' must be a list of finite numbers, one per "
                f"channel, or null; got {value!r}"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists instead of tuples) that :meth:`from_dict` turns back into this config."""
        d = dataclasses.asdict(self)
        for key in ("mean", "std"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamConfig:
        """Build from a mapping (e.g. a parsed YAML/JSON config); unknown keys are an error naming them."""
        if isinstance(data, StreamConfig):
            return data
        if not isinstance(data, Mapping):
            raise EmoctxError(f"stream config: expected a mapping with at least 'backbone', got {data!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in known]
        if unknown:
            hints = [
                f"'{k}' (did you mean '{m[0]}'?)"
                if (m := difflib.get_close_matches(k, known, n=1))
                else f"'{k}'"
                for k in unknown
            ]
            raise EmoctxError(
                f"stream config: unknown key(s) {', '.join(hints)}; the known keys are {', '.join(known)}"
            )
        if "backbone" not in data:
            raise EmoctxError("stream config: 'backbone' (a timm model name) is required")
        return cls(**dict(data))


def create_backbone(cfg: StreamConfig) -> nn.Module:
    """Create the timm feature extractor (``num_classes=0``) for ``cfg``, without loading a local weight file.

    With ``cfg.pretrained == "timm"`` the weights come through timm's own factory, which applies each
    architecture's checkpoint filters; local files are loaded by :func:`load_backbone_weights`.

    Raises:
        EmoctxError: Unknown model name, bad keyword arguments, or timm's weights could not be fetched.
    """
    source = _model_source(cfg.backbone)
    if source is None and not timm.is_model(cfg.backbone):
        close = difflib.get_close_matches(cfg.backbone, timm.list_models(), n=3, cutoff=0.7)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise EmoctxError(
            f"unknown backbone '{cfg.backbone}': not a timm model name (see timm.list_models()), nor a "
            f"'hf-hub:' or 'local-dir:' name.{hint}"
        )
    kwargs = dict(cfg.kwargs)
    if cfg.drop_path is not None:
        kwargs["drop_path_rate"] = float(cfg.drop_path)
    use_timm_weights = cfg.pretrained == TIMM_WEIGHTS
    try:
        return timm.create_model(cfg.backbone, pretrained=use_timm_weights, num_classes=0, **kwargs)
    except TypeError as e:
        raise EmoctxError(
            f"backbone '{cfg.backbone}': timm rejected the keyword arguments {kwargs}: {e}"
        ) from e
    except Exception as e:
        if source is not None:  # the configuration (and weights) come from the Hub or a folder
            raise EmoctxError(
                f"backbone '{cfg.backbone}': timm could not build it from its {source} source "
                f"({type(e).__name__}: {e}). A Hub model needs network access or the Hugging Face cache; a "
                "local folder needs timm's config.json (and the weights file for pretrained: timm)."
            ) from e
        if not use_timm_weights:
            raise
        # Fetching goes through timm / huggingface_hub, whose network and cache errors have no common base class.
        raise EmoctxError(
            f"backbone '{cfg.backbone}': could not get timm's pretrained weights ({type(e).__name__}: {e}). "
            "Without network access, download them elsewhere and pass the file path as 'pretrained', or use "
            "pretrained: null for random initialisation."
        ) from e


_PREFIXED_SOURCES = ("hf-hub", "local-dir")


def _model_source(name: str) -> str | None:
    """``"hf-hub"`` or ``"local-dir"`` for a prefixed timm name (timm's own parser), None for a plain name.

    ``timm.is_model`` knows only the registry's names, though ``timm.create_model`` also takes these.
    """
    try:
        source, _ = timm.models.parse_model_name(name)
    except (ValueError, AssertionError) as e:  # an unknown prefix, or a path without one
        raise EmoctxError(f"backbone '{name}': {e}") from e
    return source if source in _PREFIXED_SOURCES else None


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """The state-dict prefixes of the model's classifier head(s), from timm's ``pretrained_cfg``."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = cfg.get("classifier")
    if not classifier:
        return ()
    if isinstance(classifier, str):
        return (classifier,)
    return tuple(classifier)


def _has_prefix(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _benign_missing(key: str) -> bool:
    # BatchNorm step counters: absent from checkpoints written by old PyTorch versions, unused in eval and
    # with a fixed momentum, so the model's own value is kept.
    return key.endswith("num_batches_tracked")


@dataclass
class StateDictMatch:
    """The outcome of fitting a state dict to a reference model's keys and shapes.

    Attributes:
        state_dict: The tensors to load: head keys dropped, benign missing keys filled from the reference.
        dropped_head: Classifier-head keys present in the file and absent from the model (dropped).
        filled: Missing keys filled from the reference model (BatchNorm step counters).
        missing: Keys the model needs that the file lacks.
        unexpected: Keys in the file the model does not have (head keys excluded).
        mismatched: ``(key, file shape, model shape)`` for keys present in both with different shapes.
    """

    state_dict: dict[str, torch.Tensor]
    dropped_head: list[str]
    filled: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    @property
    def ok(self) -> bool:
        """True when nothing is missing, unexpected or mis-shaped."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = _LIST_LIMIT) -> str:
        """One line per problem kind, each listing the first ``limit`` keys."""

        def shown(items: list[str]) -> str:
            more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {shown(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {shown(self.unexpected)}")
        if self.mismatched:
            items = [f"{k} (file {list(a)} vs model {list(b)})" for k, a, b in self.mismatched]
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {shown(items)}")
        return "; ".join(parts)


def match_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    reference: Mapping[str, torch.Tensor],
    drop_prefixes: Iterable[str] = (),
) -> StateDictMatch:
    """Compare ``state_dict`` with a model's ``reference`` state dict by key and shape.

    Args:
        state_dict: Tensors read from a file.
        reference: The target model's ``state_dict()``.
        drop_prefixes: Prefixes (e.g. the classifier head) whose keys are dropped when the model lacks them.

    Returns:
        The match; check :attr:`StateDictMatch.ok` before loading.
    """
    drop_prefixes = tuple(drop_prefixes)
    out: dict[str, torch.Tensor] = {}
    dropped, unexpected, mismatched = [], [], []
    for key, value in state_dict.items():
        if key not in reference:
            (dropped if _has_prefix(key, drop_prefixes) else unexpected).append(key)
            continue
        ref = reference[key]
        if tuple(value.shape) != tuple(ref.shape):
            mismatched.append((key, tuple(value.shape), tuple(ref.shape)))
            continue
        out[key] = value
    filled, missing = [], []
    for key, ref in reference.items():
        if key in state_dict:
            continue
        if _benign_missing(key):
            out[key] = ref.detach().clone()
            filled.append(key)
        else:
            missing.append(key)
    return StateDictMatch(out, dropped, filled, missing, unexpected, mismatched)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a weight file safely: ``.safetensors`` or a torch file loaded with ``weights_only=True``.

    A checkpoint dict holding ``state_dict`` / ``model`` (or an EMA copy) is unwrapped and a ``module.`` prefix
    is stripped (timm's ``load_state_dict`` does both).

    Raises:
        EmoctxError: The file is absent, unreadable, needs full unpickling, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise EmoctxError(f"{path}: weight file not found (check the 'pretrained' path of the stream config)")
    try:
        state = timm.models.load_state_dict(str(path), use_ema=True, device="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError, SafetensorError) as e:
        raise EmoctxError(
            f"{path}: cannot read weights safely ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Expected a .safetensors file or a torch state dict saved with torch.save; for an original "
            "Places365 checkpoint run 'emoctx places365' first."
        ) from e
    if not isinstance(state, Mapping) or not state:
        raise EmoctxError(f"{path}: expected a state dict (names -> tensors), found {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise EmoctxError(
            f"{path}: expected a state dict of tensors, but {len(bad)} entr(y/ies) are not tensors "
            f"(e.g. {', '.join(map(str, bad[:_LIST_LIMIT]))})"
        )
    return dict(state)


def load_backbone_weights(
    model: nn.Module, path: str | os.PathLike, *, name: str | None = None
) -> StateDictMatch:
    """Load a local weight file into a backbone built by :func:`create_backbone`.

    Classifier-head keys the feature extractor lacks are dropped (logged); missing BatchNorm step counters are
    kept from the model. Anything else that does not fit is an error.

    Args:
        model: The timm feature extractor.
        path: ``.safetensors`` or torch state-dict file.
        name: The backbone's name for messages (defaults to the model's class name).

    Returns:
        The match that was loaded (what was dropped or filled).

    Raises:
        EmoctxError: Missing, unexpected or mis-shaped keys, listed in the message.
    """
    name = name or type(model).__name__
    state = read_state_dict(path)
    match = match_state_dict(state, model.state_dict(), head_prefixes(model))
    if not match.ok:
        raise EmoctxError(
            f"{path}: the weights do not fit backbone '{name}': {match.describe()}. Check that the file was "
            f"made for '{name}' (for Places365 files: 'emoctx places365 --arch {name}')."
        )
    if match.dropped_head:
        logger.info(
            "%s: dropped %d classifier-head key(s): %s", path, len(match.dropped_head), match.dropped_head
        )
    if match.filled:
        logger.debug("%s: kept the model's own value for %d missing key(s)", path, len(match.filled))
    model.load_state_dict(match.state_dict, strict=True)
    logger.info(
        "loaded %d tensors into backbone '%s' from %s", len(state) - len(match.dropped_head), name, path
    )
    return match


def resolve_stream(model: nn.Module, cfg: StreamConfig) -> dict[str, Any]:
    """The input size, normalisation and feature width a built backbone uses (config values win over timm's).

    Returns:
        ``{"input_size": int, "mean": tuple, "std": tuple, "num_features": int}``.
    """
    data_cfg = timm.data.resolve_model_data_config(model)
    _, height, width = data_cfg["input_size"]
    if cfg.input_size is not None:
        input_size = cfg.input_size
    else:
        input_size = int(max(height, width))
        if height != width:
            logger.info(
                "%s: timm's input size is %dx%d; using a %d px square",
                cfg.backbone,
                height,
                width,
                input_size,
            )
    mean = cfg.mean if cfg.mean is not None else tuple(float(v) for v in data_cfg["mean"])
    std = cfg.std if cfg.std is not None else tuple(float(v) for v in data_cfg["std"])
    # head_hidden_size is the width of the pooled output with num_classes=0 (it differs from num_features for
    # models with a pre-logits layer, e.g. MobileNetV3).
    num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return {
        "input_size": int(input_size),
        "mean": tuple(mean),
        "std": tuple(std),
        "num_features": num_features,
    }


def build_backbone(cfg: StreamConfig) -> tuple[nn.Module, dict[str, Any]]:
    """Build a stream's feature extractor and load its weights from ``cfg.pretrained``.

    Args:
        cfg: The stream's config.

    Returns:
        ``(model, resolved)``: the timm model with ``num_classes=0`` (``model(x)`` gives ``[B, num_features]``)
        and ``{"input_size", "mean", "std", "num_features"}``.
    """
    model = create_backbone(cfg)
    if cfg.pretrained is not None and cfg.pretrained != TIMM_WEIGHTS:
        load_backbone_weights(model, cfg.pretrained, name=cfg.backbone)
    return model, resolve_stream(model, cfg)
