"""Validation of the description stored in every model file (see :mod:`emoctx.checkpoint`).

The description is JSON that emoctx writes, but a model file can come from anywhere. Before anything is built
from it, :func:`validate_description` checks every field the code reads, so that a damaged or hostile file is
refused with a message naming the field, instead of (for example) asking for a 70000-pixel input, which is
14.7 GB per image.

Rules:

* The description is a JSON object with ``format: "emoctx-model"`` and a positive integer ``format_version``
  no newer than this emoctx reads (:data:`FORMAT_VERSION`).
* Known fields have strict types and ranges: ``network`` (required; what :meth:`EmotionNet.from_config` reads),
  ``streams`` (required; the input size, mean and std of each stream of ``network``, and the same values),
  ``preprocessing`` (required from format v2; see below), ``categories`` and ``vad`` (the canonical ones),
  ``score_activation`` (``sigmoid`` or ``clamp``), ``thresholds`` (null, or known category slugs mapped to a
  number in 0-1 or null), ``training`` (an object; its ``mask_subject`` and ``data.mask_subject`` entries are
  booleans: format v1 says there whether the subject was masked), ``emoctx_version`` (a string),
  ``torch_version`` and ``timm_version`` (strings, or null where not recorded); ``network.vad_output`` is one of
  :data:`VAD_OUTPUTS`.
* ``preprocessing`` (:class:`emoctx.data.preprocess.PreprocessCfg`): ``streams`` names the network's streams in
  its order, each with ``region`` (:data:`REGIONS`), ``input_size`` ``[height, width]`` and ``mean``/``std``
  equal to the stream's in ``streams``, ``resize`` (:data:`RESIZES`) and ``mask`` (null, or a box region other
  than the stream's own); ``max_side`` is null or a whole number of pixels up to :data:`MAX_DECODE_SIDE`.
* Format v1 (no ``preprocessing``; still read, its preprocessing derived by
  :meth:`PreprocessCfg.from_v1`) kept each stream's resize rule in ``streams.<name>.resize``; from v2 it is in
  ``preprocessing`` only.
* The face stream's fields: ``network.face`` (only with a stream named ``face``) is an object with
  ``attention`` (one of :data:`FACE_ATTENTIONS`), ``landmarks`` (one of :data:`FACE_LANDMARKS`) and ``sigma``
  (a number in (0, 1]); ``network.modality_dropout`` maps streams of the network to probabilities in [0, 1);
  ``network.expressions`` is a list of 1 to :data:`MAX_EXPRESSIONS` distinct names of at most 64 characters.
* Input sizes are at most :data:`MAX_INPUT_SIZE` pixels, fused widths at most :data:`MAX_HIDDEN`, and a model
  has at most :data:`MAX_STREAMS` streams, each with three channel means and standard deviations (RGB).
* ``network.streams.<name>.kwargs`` go to ``timm.create_model``: their values must be JSON scalars or flat
  lists of them, and keys that name a file, folder, URL, hub or weight source (``checkpoint_path``,
  ``pretrained_cfg_overlay``, ``cache_dir``, ...) are refused: a model file never makes emoctx open another
  file. ``pretrained`` in a stream is only a record of where the weights first came from and is never read.
* Fields of :class:`emoctx.checkpoint.ModelInfo` without a rule here are checked to hold plain JSON only; a
  new field should get its rule in :class:`_Checker` when it is added.
* Unknown top-level keys are tolerated: fields may be added to the description without a new format version
  (additive changes). Each unknown key is logged as a warning, kept in :attr:`ModelInfo.extra`, and written back
  when the model is saved again (``emoctx calibrate``); its value must be JSON (objects, lists, strings,
  finite numbers, booleans, null, nested at most :data:`MAX_DEPTH` deep). Unknown keys inside known fields are
  errors.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from emoctx import __version__, labels
from emoctx.data.preprocess import BOX_REGIONS, REGIONS, RESIZES
from emoctx.errors import EmoctxError

log = logging.getLogger(__name__)

FORMAT = "emoctx-model"
FORMAT_VERSION = 2
"""v2: the ``preprocessing`` field (v1 files are read, their preprocessing derived from ``streams`` and
``training``)."""

MAX_INPUT_SIZE = 2048
"""Largest accepted input side of a stream, in pixels (the common backbones take 224-518)."""
MAX_HIDDEN = 65536
"""Largest accepted width of the fused feature vector."""
MAX_STREAMS = 8
"""Most streams a model may have."""
MAX_DEPTH = 64
"""Deepest nesting accepted in free-form values (recorded training settings, unknown fields)."""
MAX_DECODE_SIDE = 65536
"""Largest accepted ``preprocessing.max_side``."""

KNOWN_FIELDS: tuple[str, ...] = (
    "format",
    "format_version",
    "emoctx_version",
    "network",
    "streams",
    "categories",
    "vad",
    "score_activation",
    "thresholds",
    "training",
    "preprocessing",
    "torch_version",
    "timm_version",
)
"""Top-level fields this emoctx reads; others are kept as additive fields (see the module docstring)."""

SCORE_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "clamp")
_NETWORK_KEYS = (
    "streams",
    "fusion",
    "hidden",
    "dropout",
    "fusion_kwargs",
    "vad_output",
    "face",
    "modality_dropout",
    "expressions",
)
FACE_STREAM = "face"  # emoctx.models.face.FACE_STREAM
FACE_ATTENTIONS: tuple[str, ...] = ("landmarks", "none")  # emoctx.models.face.ATTENTIONS
FACE_LANDMARKS: tuple[str, ...] = ("coco5",)  # emoctx.models.face.LANDMARKS
_FACE_KEYS = ("attention", "landmarks", "sigma")
MAX_EXPRESSIONS = 64  # emoctx.models.network.MAX_EXPRESSIONS
VAD_OUTPUTS: tuple[str, ...] = ("internal", "tenths")  # emoctx.models.network.VAD_OUTPUTS
_STREAM_CONFIG_KEYS = ("backbone", "pretrained", "input_size", "mean", "std", "drop_path", "kwargs")
_STREAM_SPEC_KEYS = ("input_size", "mean", "std", "backbone")
_STREAM_SPEC_KEYS_V1 = (*_STREAM_SPEC_KEYS, "resize")
_PREPROCESS_KEYS = ("streams", "max_side")
_STREAM_PREPROCESS_KEYS = ("region", "input_size", "mean", "std", "resize", "mask")
_STREAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# timm.create_model keyword arguments that read files, folders or the network, or replace the weight source.
_FILE_WORDS = ("path", "file", "dir", "url", "hub", "cfg", "checkpoint", "pretrained", "cache", "download")


class DescriptionError(EmoctxError):
    """The model description is malformed: the message names the file and the field."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


class _Checker:
    """Checks one description; every error names the source file and the field's path."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> DescriptionError:
        return DescriptionError(f"{self.source}: model description: '{where}' {problem}")

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be an object, got {_kind(value)}")
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise self.fail(where, f"has keys that are not strings: {bad[:5]}")
        return value

    def keys(self, value: Mapping[str, Any], where: str, known: Sequence[str], required: Sequence[str] = ()):
        unknown = [k for k in value if k not in known]
        if unknown:
            raise self.fail(where, f"has unknown key(s) {unknown[:10]}; the known keys are {list(known)}")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(where, f"lacks {', '.join(repr(k) for k in missing)}")

    def string(self, value: Any, where: str, max_len: int = 256) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise self.fail(
                where, f"must be a non-empty string of at most {max_len} characters, got {_kind(value)}"
            )
        return value

    def integer(self, value: Any, where: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(where, f"must be a whole number from {lo} to {hi}, got {_kind(value)}")
        return value

    def number(self, value: Any, where: str, lo: float, hi: float, lo_open: bool = False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (lo < value if lo_open else lo <= value) and value <= hi
        if not ok:
            interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
            raise self.fail(where, f"must be a number in {interval}, got {_kind(value)}")
        return float(value)

    def channels(self, value: Any, where: str, positive: bool) -> list[float]:
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise self.fail(where, f"must be a list of 3 numbers (R, G, B), got {_kind(value)}")
        lo = 0.0 if positive else -1e3
        return [self.number(v, f"{where}[{i}]", lo, 1e3, lo_open=positive) for i, v in enumerate(value)]

    def input_size(self, value: Any, where: str) -> int | list[int]:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise self.fail(where, f"must be a number of pixels or [height, width], got {_kind(value)}")
            return [self.integer(v, f"{where}[{i}]", 1, MAX_INPUT_SIZE) for i, v in enumerate(value)]
        return self.integer(value, where, 1, MAX_INPUT_SIZE)

    def json_value(self, value: Any, where: str, depth: int = 0) -> None:
        """Plain JSON data (what the description may hold in free-form fields)."""
        if depth > MAX_DEPTH:
            raise self.fail(where, f"is nested more than {MAX_DEPTH} levels deep")
        if value is None or isinstance(value, (bool, str, int)):
            return
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail(where, f"holds a number that is not finite ({value})")
            return
        if isinstance(value, Mapping):
            for k, v in self.mapping(value, where).items():
                self.json_value(v, f"{where}.{k}", depth + 1)
            return
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                self.json_value(v, f"{where}[{i}]", depth + 1)
            return
        raise self.fail(where, f"must hold JSON data only, got {_kind(value)}")

    # -- the fields --------------------------------------------------------------------------------------
    def timm_kwargs(self, value: Any, where: str) -> None:
        kwargs = self.mapping(value, where)
        for key, v in kwargs.items():
            if any(word in key.lower() for word in _FILE_WORDS):
                raise self.fail(
                    f"{where}.{key}",
                    "names a file, folder, URL or weight source for timm; a model file may not make emoctx "
                    "open anything else (the weights are in the model file)",
                )
            items = v if isinstance(v, (list, tuple)) else [v]
            for i, item in enumerate(items):
                if not (item is None or isinstance(item, (bool, str, int, float))):
                    raise self.fail(
                        f"{where}.{key}",
                        f"must be a number, string, boolean, null or a flat list of them; item {i} is {_kind(item)}",
                    )
                if isinstance(item, float) and not math.isfinite(item):
                    raise self.fail(f"{where}.{key}", f"holds a number that is not finite ({item})")

    def network(self, value: Any) -> Mapping[str, Any]:
        net = self.mapping(value, "network")
        self.keys(net, "network", _NETWORK_KEYS, required=("streams",))
        streams = self.mapping(net["streams"], "network.streams")
        if not 1 <= len(streams) <= MAX_STREAMS:
            raise self.fail("network.streams", f"must name 1 to {MAX_STREAMS} streams, got {len(streams)}")
        for name, stream in streams.items():
            where = f"network.streams.{name}"
            if not _STREAM_NAME.match(name):
                raise self.fail(where, "is not a valid stream name (letters, digits and '_')")
            cfg = self.mapping(stream, where)
            self.keys(cfg, where, _STREAM_CONFIG_KEYS, required=("backbone",))
            self.string(cfg["backbone"], f"{where}.backbone", 200)
            if cfg.get("pretrained") is not None:
                self.string(cfg["pretrained"], f"{where}.pretrained", 4096)  # a record only, never read
            if cfg.get("input_size") is not None:
                self.integer(cfg["input_size"], f"{where}.input_size", 1, MAX_INPUT_SIZE)
            for key in ("mean", "std"):
                if cfg.get(key) is not None:
                    self.channels(cfg[key], f"{where}.{key}", positive=key == "std")
            if cfg.get("drop_path") is not None:
                self.number(cfg["drop_path"], f"{where}.drop_path", 0.0, 1.0)
            if cfg.get("kwargs") is not None:
                self.timm_kwargs(cfg["kwargs"], f"{where}.kwargs")
        if "fusion" in net:
            self.string(net["fusion"], "network.fusion", 64)
        if "hidden" in net:
            self.integer(net["hidden"], "network.hidden", 1, MAX_HIDDEN)
        if "dropout" in net:
            self.number(net["dropout"], "network.dropout", 0.0, 1.0)
        if net.get("fusion_kwargs") is not None:
            self.timm_kwargs(net["fusion_kwargs"], "network.fusion_kwargs")
        if "vad_output" in net and net["vad_output"] not in VAD_OUTPUTS:
            raise self.fail(
                "network.vad_output", f"must be one of {list(VAD_OUTPUTS)}, got {_kind(net['vad_output'])}"
            )
        if net.get("face") is not None:
            self.face(net["face"], streams)
        if net.get("modality_dropout") is not None:
            drop = self.mapping(net["modality_dropout"], "network.modality_dropout")
            for name, p in drop.items():
                if name not in streams:
                    raise self.fail(
                        f"network.modality_dropout.{name}",
                        f"names no stream of the network ({list(streams)})",
                    )
                self.number(p, f"network.modality_dropout.{name}", 0.0, 1.0)
                if p >= 1.0:
                    raise self.fail(
                        f"network.modality_dropout.{name}", "must be below 1 (a stream always dropped)"
                    )
        if net.get("expressions") is not None:
            names = net["expressions"]
            if not isinstance(names, (list, tuple)) or not 1 <= len(names) <= MAX_EXPRESSIONS:
                raise self.fail(
                    "network.expressions",
                    f"must be a list of 1 to {MAX_EXPRESSIONS} names, got {_kind(names)}",
                )
            for i, name in enumerate(names):
                self.string(name, f"network.expressions[{i}]", 64)
            if len(set(names)) != len(names):
                raise self.fail("network.expressions", "names a class twice")
        return net

    def face(self, value: Any, streams: Mapping[str, Any]) -> None:
        face = self.mapping(value, "network.face")
        if FACE_STREAM not in streams:
            raise self.fail("network.face", f"is given, but the network has no '{FACE_STREAM}' stream")
        self.keys(face, "network.face", _FACE_KEYS)
        for key, allowed in (("attention", FACE_ATTENTIONS), ("landmarks", FACE_LANDMARKS)):
            if key in face and face[key] not in allowed:
                raise self.fail(
                    f"network.face.{key}", f"must be one of {list(allowed)}, got {_kind(face[key])}"
                )
        if "sigma" in face:
            self.number(face["sigma"], "network.face.sigma", 0.0, 1.0, lo_open=True)

    def streams(self, value: Any, network: Mapping[str, Any], version: int) -> Mapping[str, Any]:
        specs = self.mapping(value, "streams")
        built = network["streams"]
        if list(specs) != list(built):
            raise self.fail("streams", f"names {list(specs)}, but the network has streams {list(built)}")
        for name, spec in specs.items():
            where = f"streams.{name}"
            spec = self.mapping(spec, where)
            if version >= 2 and "resize" in spec:
                raise self.fail(
                    f"{where}.resize", "is not read from format v2: the resize rule is in preprocessing"
                )
            known = _STREAM_SPEC_KEYS_V1 if version < 2 else _STREAM_SPEC_KEYS
            self.keys(spec, where, known, required=("input_size", "mean", "std"))
            size = self.input_size(spec["input_size"], f"{where}.input_size")
            mean = self.channels(spec["mean"], f"{where}.mean", positive=False)
            std = self.channels(spec["std"], f"{where}.std", positive=True)
            if "backbone" in spec:
                self.string(spec["backbone"], f"{where}.backbone", 200)
            if "resize" in spec and spec["resize"] not in RESIZES:
                raise self.fail(
                    f"{where}.resize", f"must be one of {list(RESIZES)}, got {_kind(spec['resize'])}"
                )
            cfg = built[name]
            for key, got in (("input_size", size), ("mean", mean), ("std", std)):
                want = cfg.get(key)
                if want is not None and _as_list(want) != _as_list(got):
                    raise self.fail(
                        f"{where}.{key}",
                        f"is {got}, but network.streams.{name}.{key} is {want}: the file is inconsistent",
                    )
        return specs

    def preprocessing(self, value: Any, specs: Mapping[str, Any]) -> None:
        prep = self.mapping(value, "preprocessing")
        self.keys(prep, "preprocessing", _PREPROCESS_KEYS, required=("streams",))
        streams = self.mapping(prep["streams"], "preprocessing.streams")
        if list(streams) != list(specs):
            raise self.fail(
                "preprocessing.streams", f"names {list(streams)}, but the network has streams {list(specs)}"
            )
        for name, stream in streams.items():
            where = f"preprocessing.streams.{name}"
            stream = self.mapping(stream, where)
            self.keys(
                stream, where, _STREAM_PREPROCESS_KEYS, required=("region", "input_size", "mean", "std")
            )
            region = stream["region"]
            if region not in REGIONS:
                raise self.fail(f"{where}.region", f"must be one of {list(REGIONS)}, got {_kind(region)}")
            size = stream["input_size"]
            if not isinstance(size, (list, tuple)) or len(size) != 2:
                raise self.fail(f"{where}.input_size", f"must be [height, width], got {_kind(size)}")
            hw = [self.integer(v, f"{where}.input_size[{i}]", 1, MAX_INPUT_SIZE) for i, v in enumerate(size)]
            mean = self.channels(stream["mean"], f"{where}.mean", positive=False)
            std = self.channels(stream["std"], f"{where}.std", positive=True)
            resize = stream.get("resize", "area")
            if resize not in RESIZES:
                raise self.fail(f"{where}.resize", f"must be one of {list(RESIZES)}, got {_kind(resize)}")
            mask = stream.get("mask")
            if mask is not None and (mask not in BOX_REGIONS or mask == region):
                allowed = [r for r in BOX_REGIONS if r != region]
                raise self.fail(f"{where}.mask", f"must be null or one of {allowed}, got {_kind(mask)}")
            spec = specs[name]
            for key, got in (("input_size", hw), ("mean", mean), ("std", std)):
                if _as_list(spec[key]) != _as_list(got):
                    raise self.fail(
                        f"{where}.{key}",
                        f"is {got}, but streams.{name}.{key} is {spec[key]}: the file is inconsistent",
                    )
        max_side = prep.get("max_side")
        if max_side is not None:
            self.integer(max_side, "preprocessing.max_side", 1, MAX_DECODE_SIDE)

    def categories(self, value: Any) -> None:
        if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
            raise self.fail("categories", f"must be a list of category names, got {_kind(value)}")
        cats = list(value)
        if cats != list(labels.CATEGORIES):
            missing = [c for c in labels.CATEGORIES if c not in cats]
            extra = [c for c in cats if c not in labels.CATEGORIES]
            detail = (
                f"missing {missing}, unknown {extra}" if (missing or extra) else "same names in another order"
            )
            raise DescriptionError(
                f"{self.source}: the model predicts other categories than this emoctx ({detail})"
            )

    def vad(self, value: Any) -> None:
        vad = self.mapping(value, "vad")
        self.keys(vad, "vad", ("names", "min", "max"), required=("min", "max"))
        names = vad.get("names", list(labels.VAD_NAMES))
        if not isinstance(names, (list, tuple)) or list(names) != list(labels.VAD_NAMES):
            raise self.fail("vad.names", f"must be {list(labels.VAD_NAMES)}, got {names!r}")
        lo, hi = vad["min"], vad["max"]
        if (lo, hi) != (labels.VAD_MIN, labels.VAD_MAX) or isinstance(lo, bool) or isinstance(hi, bool):
            raise DescriptionError(
                f"{self.source}: V/A/D scale {lo}-{hi} differs from {labels.VAD_MIN:g}-{labels.VAD_MAX:g}"
            )

    def thresholds(self, value: Any) -> None:
        if value is None:
            return
        th = self.mapping(value, "thresholds")
        unknown = [k for k in th if k not in labels.SLUGS]
        if unknown:
            raise self.fail(
                "thresholds", f"has unknown categor(y/ies) {unknown[:10]}; keys are category slugs"
            )
        for slug, t in th.items():
            if t is not None:
                self.number(t, f"thresholds.{slug}", 0.0, 1.0)

    def training(self, value: Any) -> None:
        training = self.mapping(value, "training")
        self.json_value(training, "training")
        for section in ("", "data"):
            part = training.get(section) if section else training
            if isinstance(part, Mapping) and "mask_subject" in part:
                flag = part["mask_subject"]
                if not isinstance(flag, bool):
                    where = f"training.{section}.mask_subject" if section else "training.mask_subject"
                    raise self.fail(where, f"must be true or false, got {_kind(flag)}")


def _as_list(value: Any) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return [float(value), float(value)] if isinstance(value, int) else [float(value)]


def validate_description(
    meta: Any, source: str = "model file", fields: Iterable[str] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a model description (see the module docstring).

    Args:
        meta: the parsed description.
        source: the file it came from, for messages.
        fields: further known fields (those of ``ModelInfo``); without a rule of their own they are checked to
            hold plain JSON.

    Returns:
        ``(known, extra)``: the known fields, and the unknown top-level ones (kept, and warned about).

    Raises:
        DescriptionError: a field is missing, of the wrong type or out of range; the format is another one or
            newer; the categories or the V/A/D scale differ from this emoctx's.
    """
    check = _Checker(str(source))
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
        kind = "an object" if isinstance(meta, Mapping) else _kind(meta)
        raise DescriptionError(
            f"{source}: not an emoctx model file (no '{FORMAT}' description found; the description is {kind})"
        )
    check.mapping(meta, "(description)")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise check.fail("format_version", f"must be a positive whole number, got {_kind(version)}")
    if version > FORMAT_VERSION:
        raise DescriptionError(
            f"{source}: written by emoctx {meta.get('emoctx_version')} in model format v{version}; "
            f"this emoctx {__version__} reads format v{FORMAT_VERSION} or older: upgrade emoctx"
        )
    for key in ("network", "streams"):
        if key not in meta:
            raise check.fail(
                key, "is missing: the file does not say how to build the network and prepare its inputs"
            )
    for key in ("emoctx_version", "torch_version", "timm_version"):
        if meta.get(key) is not None or (key == "emoctx_version" and key in meta):
            check.string(meta[key], key, 64)
    for key in ("categories", "vad"):
        if key not in meta:
            raise check.fail(key, "is missing")
    check.categories(meta["categories"])
    check.vad(meta["vad"])
    network = check.network(meta["network"])
    specs = check.streams(meta["streams"], network, version)
    if "preprocessing" in meta:
        check.preprocessing(meta["preprocessing"], specs)
    elif version >= 2:
        raise check.fail("preprocessing", "is missing: the file does not say how to prepare the inputs")
    activation = meta.get("score_activation", "sigmoid")
    if activation not in SCORE_ACTIVATIONS:
        raise check.fail(
            "score_activation", f"must be one of {list(SCORE_ACTIVATIONS)}, got {_kind(activation)}"
        )
    check.thresholds(meta.get("thresholds"))
    check.training(meta.get("training", {}))
    names = set(KNOWN_FIELDS) | set(fields)
    known = {k: v for k, v in meta.items() if k in names}
    extra = {k: v for k, v in meta.items() if k not in names}
    for key, value in meta.items():
        if key not in KNOWN_FIELDS:
            check.json_value(value, key)
    if extra:
        log.warning(
            "%s: the model description has field(s) this emoctx does not know: %s (kept, not used; "
            "written by emoctx %s)",
            source,
            ", ".join(sorted(extra)),
            meta.get("emoctx_version", "?"),
        )
    return known, extra
