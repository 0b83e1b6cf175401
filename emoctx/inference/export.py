"""Export the emotion network to ONNX and check the exported graph against PyTorch.

The exported graph takes one input per stream of the model, named after the stream (``body``, ``scene``, ...),
each a float32 ``[batch, 3, height, width]`` image made as the model's preprocessing says, and returns two
outputs: ``scores`` ``[batch, NUM_CATEGORIES]`` in 0-1 (after the model's own score activation, in the order of
:data:`emoctx.labels.CATEGORIES`) and ``vad`` ``[batch, 3]`` (valence, arousal, dominance on the 1-10 scale).
The batch dimension is dynamic. The model's description travels in the ONNX ``metadata_props``:

* ``emoctx``: the full description stored in the model file (JSON, as :func:`emoctx.checkpoint.describe`);
* ``preprocessing``: how each input is made (JSON, :class:`emoctx.data.preprocess.PreprocessCfg`): per stream its
  ``region`` (``"person"``: the person's box; ``"image"``: the whole image), ``input_size`` ``[height, width]``,
  ``resize`` rule, ``mean`` and ``std`` (0-1 pixel scale) and ``mask`` (``"person"``: the person's box filled
  with the mean colour, zeros after normalisation, as the model was trained; or null), and ``max_side``;
* ``streams``: ``{input name: {"input_size", "mean", "std"}}`` (JSON; kept for readers of earlier exports);
* ``categories``: the category names (JSON list, the order of the ``scores`` columns);
* ``thresholds``: per-category decision thresholds in the same order (JSON list; 0.5 where none were
  calibrated; ``null`` for a category calibration found no positive example for: never predicted; a
  category is predicted when ``score >= threshold``);
* ``vad_names``, ``vad_min``, ``vad_max``, ``score_activation``, ``emoctx_version``.

Running with onnxruntime
------------------------
Cut each stream's region from the RGB image, resize it to the stream's ``input_size`` by its rule, scale to 0-1,
normalise with its mean and std, fill its mask (if any) with zeros, and feed NCHW float32 arrays (stack several
people for a batch)::

    import json
    import math

    import cv2
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    streams = json.loads(meta["preprocessing"])["streams"]  # {"body": {"region", "input_size", ...}, ...}
    categories = json.loads(meta["categories"])
    # null: never predicted (no positive validation example to calibrate on)
    thresholds = np.array([np.inf if t is None else t for t in json.loads(meta["thresholds"])], np.float32)

    image = cv2.cvtColor(cv2.imread("photo.jpg"), cv2.COLOR_BGR2RGB)  # H x W x 3, uint8, RGB
    x1, y1, x2, y2 = 120, 40, 260, 400  # the person's box in whole pixels, inside the image
    regions = {"person": (x1, y1, x2, y2), "image": (0, 0, image.shape[1], image.shape[0])}


    def prepare(spec):
        left, top, right, bottom = regions[spec["region"]]
        pixels = image[top:bottom, left:right]
        height, width = spec["input_size"]
        shrink = height < pixels.shape[0] or width < pixels.shape[1]
        area = spec["resize"] == "area" and shrink  # "bilinear": always bilinear
        x = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
        x = (x.astype(np.float32) / 255.0 - np.float32(spec["mean"])) / np.float32(spec["std"])
        if spec["mask"]:  # e.g. the person, out of the scene: its box in the view's pixels, rounded outwards
            mx1, my1, mx2, my2 = regions[spec["mask"]]
            across = [(v - left) * width / (right - left) for v in (mx1, mx2)]
            down = [(v - top) * height / (bottom - top) for v in (my1, my2)]
            x[math.floor(down[0]) : math.ceil(down[1]), math.floor(across[0]) : math.ceil(across[1])] = 0.0
        return x.transpose(2, 0, 1)[None]  # NCHW float32, a batch of one person


    feeds = {name: prepare(spec) for name, spec in streams.items()}
    scores, vad = session.run(["scores", "vad"], feeds)  # [1, categories] in 0-1, [1, 3] on 1-10
    print([c for c, s, t in zip(categories, scores[0], thresholds) if s >= t], vad[0])

This is emoctx's own evaluation preprocessing (:func:`emoctx.data.transforms.build_transform` without
augmentation, which training, evaluation and prediction use): OpenCV resizing with area interpolation when the
view shrinks along either side (rule ``"area"``), bilinear otherwise; the body is the box rounded outwards to
whole pixels.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emoctx import __version__, defaults, labels
from emoctx.checkpoint import ModelInfo, as_description, load_model
from emoctx.errors import EmoctxError
from emoctx.io import atomic_path, jsonable
from emoctx.models.face import FACE_STREAM
from emoctx.models.outputs import ScoringNet

log = logging.getLogger(__name__)

DEFAULT_OPSET = defaults.EXPORT_OPSET
"""The ONNX opset written by default (the dynamo exporter's own default; onnxruntime >= 1.14 runs it)."""

DEFAULT_TOLERANCE = defaults.EXPORT_TOLERANCE
"""Largest accepted absolute difference between onnxruntime and PyTorch, for each output."""

OUTPUT_NAMES = ("scores", "vad")


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime reproduced PyTorch.

    Attributes:
        path: the ONNX file.
        opset: the ONNX opset of the graph.
        inputs: the input names (the model's streams) with their ``[batch, 3, height, width]`` shapes.
        max_abs_diff: ``{batch size: {output name: max |onnxruntime - torch|}}``; empty when not checked.
        tolerance: the accepted difference.
    """

    path: Path
    opset: int
    inputs: dict[str, list[int | str]]
    max_abs_diff: dict[int, dict[str, float]] = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def worst(self) -> float:
        """The largest difference over all checked batch sizes and outputs (NaN when not checked)."""
        values = [d for per_batch in self.max_abs_diff.values() for d in per_batch.values()]
        return max(values) if values else math.nan


@contextlib.contextmanager
def quiet_exporter_logs() -> Iterator[None]:
    """Silence the exporter's optimisation passes, which log every rewrite at INFO level."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_graph(
    module: nn.Module,
    example: Sequence[torch.Tensor],
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int = DEFAULT_OPSET,
    what: str = "model",
) -> Any:
    """Export ``module`` (``forward(*inputs)``) with torch's dynamo exporter, batch dimension dynamic.

    Every input's first dimension is the one batch dimension.

    Args:
        module: the module, in eval mode.
        example: one example tensor per input, with a batch of at least 2 (a batch of 1 would let the exporter
            specialise the dimension to a constant).
        input_names: names of the graph's inputs.
        output_names: names of the graph's outputs.
        opset: the ONNX opset version.
        what: what is exported, for the error message.

    Returns:
        The ``onnx.ModelProto``.

    Raises:
        EmoctxError: the export failed.
    """
    batch = torch.export.Dim("batch", min=1)
    try:
        with warnings.catch_warnings(), quiet_exporter_logs():
            # Every input shares the one batch dimension; the exporter warns that it names it only once.
            warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
            program = torch.onnx.export(
                module,
                tuple(example),
                dynamo=True,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=(tuple({0: batch} for _ in input_names),),
                opset_version=opset,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many internal error types; report them as one
        raise EmoctxError(f"{what}: ONNX export failed ({type(e).__name__}: {e})") from e
    return program.model_proto


def onnx_metadata(info: ModelInfo) -> dict[str, str]:
    """The ``metadata_props`` written into the ONNX file (see the module docstring).

    Valid JSON throughout: a never-predicted category's threshold is ``null``, not ``Infinity``.
    """
    thresholds = jsonable(info.threshold_vector().tolist())  # +inf (never predicted) -> null
    streams = {
        name: {"input_size": spec["input_size"], "mean": list(spec["mean"]), "std": list(spec["std"])}
        for name, spec in info.streams.items()
    }
    assert info.preprocessing is not None
    return {
        "emoctx": json.dumps(as_description(info), allow_nan=False),
        "preprocessing": json.dumps(info.preprocessing.to_dict(), allow_nan=False),
        "streams": json.dumps(streams),
        "categories": json.dumps(list(labels.CATEGORIES)),
        "thresholds": json.dumps(thresholds, allow_nan=False),
        "score_activation": info.score_activation,
        "vad_names": json.dumps(list(labels.VAD_NAMES)),
        "vad_min": str(labels.VAD_MIN),
        "vad_max": str(labels.VAD_MAX),
        "emoctx_version": __version__,
    }


def _input_sizes(info: ModelInfo) -> dict[str, tuple[int, int]]:
    """``{stream: (height, width)}`` of the model's inputs, in stream order."""
    assert info.preprocessing is not None
    return {name: info.preprocessing.streams[name].input_size for name in info.streams}


def sample_inputs(info: ModelInfo, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random normalised images, one ``[batch, 3, height, width]`` tensor per stream (in stream order)."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, 3, h, w, generator=g) for h, w in _input_sizes(info).values())


def export_onnx(
    model: str | os.PathLike,
    out: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    check_batches: Sequence[int] = (1, 3),
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportReport:
    """Write a model file's network to ONNX (dynamic batch) and, by default, check it against PyTorch.

    Args:
        model: an emoctx model file (``.safetensors`` or a training ``.ckpt``).
        out: the ONNX file to write (atomically).
        opset: the ONNX opset version.
        check: run the exported graph with onnxruntime on random inputs at each of ``check_batches`` and
            compare with PyTorch.
        check_batches: batch sizes of the check (two sizes show that the batch dimension is dynamic).
        tolerance: largest accepted absolute difference per output.

    Returns:
        The report, with the measured differences when checked.

    Raises:
        EmoctxError: the model file is not usable, the export fails, or the check finds larger differences
            than ``tolerance`` (the file is written all the same, so it can be inspected).
    """
    net, info = load_model(model)
    if FACE_STREAM in net.stream_names:
        raise EmoctxError(
            f"{model}: a model with a face stream is not exported to ONNX yet: beside the face crops it takes "
            "which persons show a face and their landmarks, and its face path runs the backbone on the persons "
            "with a face only, a data-dependent selection the exporter cannot trace; use the model file with "
            "emoctx predict, or export a model without a face stream"
        )
    out = Path(out)
    wrapper = ScoringNet(net, info.score_activation).eval()
    # Batch 2 for tracing: a batch of 1 would let the exporter specialise the dimension to a constant.
    example = sample_inputs(info, batch=2)
    log.info("exporting %s (streams %s) to ONNX opset %d", model, ", ".join(net.stream_names), opset)
    proto = export_graph(wrapper, example, list(net.stream_names), list(OUTPUT_NAMES), opset, str(model))
    proto.doc_string = (
        f"emoctx emotion model from {Path(model).name}: inputs {list(net.stream_names)} "
        f"(NCHW float32, normalised), outputs scores [batch, {labels.NUM_CATEGORIES}] and vad [batch, 3] on "
        f"{labels.VAD_MIN:g}-{labels.VAD_MAX:g}"
    )
    del proto.metadata_props[:]
    for key, value in onnx_metadata(info).items():
        proto.metadata_props.add(key=key, value=value)

    import onnx

    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
    log.info("wrote %s", out)
    report = ExportReport(
        path=out,
        opset=opset,
        inputs={name: ["batch", 3, h, w] for name, (h, w) in _input_sizes(info).items()},
        tolerance=tolerance,
    )
    if check:
        report.max_abs_diff = check_onnx(out, wrapper, info, check_batches, tolerance)
    return report


def check_onnx(
    path: str | os.PathLike,
    reference: nn.Module,
    info: ModelInfo,
    batches: Sequence[int] = (1, 3),
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[int, dict[str, float]]:
    """Compare an exported graph with its PyTorch module on random inputs, with onnxruntime on CPU.

    Args:
        path: the ONNX file.
        reference: the module that was exported (:class:`~emoctx.models.outputs.ScoringNet`), returning
            ``(scores, vad)``.
        info: the model's description (stream sizes).
        batches: batch sizes to run.
        tolerance: largest accepted absolute difference per output.

    Returns:
        ``{batch size: {"scores": max abs diff, "vad": max abs diff}}``.

    Raises:
        EmoctxError: an output differs by more than ``tolerance``, or has the wrong shape.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if names != list(info.streams):
        raise EmoctxError(f"{path}: inputs {names} differ from the model's streams {list(info.streams)}")
    diffs: dict[int, dict[str, float]] = {}
    reference.eval()
    for n in batches:
        inputs = sample_inputs(info, batch=n, seed=n)
        with torch.inference_mode():
            expected = [t.numpy() for t in reference(*inputs)]
        got = session.run(list(OUTPUT_NAMES), {k: v.numpy() for k, v in zip(names, inputs)})
        diffs[n] = {}
        for name, e, g in zip(OUTPUT_NAMES, expected, got):
            if g.shape != e.shape:
                raise EmoctxError(
                    f"{path}: output '{name}' has shape {list(g.shape)} at batch {n}, PyTorch gives {list(e.shape)}"
                )
            diffs[n][name] = float(np.max(np.abs(g.astype(np.float64) - e.astype(np.float64))))
        log.info("onnxruntime vs PyTorch at batch %d: %s", n, diffs[n])
    bad = {(n, k): d for n, per in diffs.items() for k, d in per.items() if not d <= tolerance}
    if bad:
        detail = ", ".join(f"'{k}' at batch {n}: {d:.3g}" for (n, k), d in bad.items())
        raise EmoctxError(
            f"{path}: onnxruntime differs from PyTorch beyond the tolerance {tolerance:g} ({detail}); "
            "try another --opset, or raise --tolerance if the differences are acceptable"
        )
    return diffs


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The emoctx metadata of an exported file, JSON values decoded (``streams``, ``categories``, ...)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta: dict[str, Any] = {p.key: p.value for p in model.metadata_props}
    if "emoctx" not in meta:
        raise EmoctxError(f"{path}: not an emoctx ONNX export (no 'emoctx' metadata)")
    for key in ("emoctx", "preprocessing", "streams", "categories", "thresholds", "vad_names"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    return meta
