"""Build an engine for a model file: export (or find cached) graphs, load them, check them against PyTorch."""

from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from emoctx import __version__
from emoctx.engines import calibration as calib
from emoctx.engines.base import ENGINES, PRECISIONS, Engine, check_engine
from emoctx.engines.cache import EngineCache, short_hash
from emoctx.engines.choice import default_engine, has_vnni, resolve_precision
from emoctx.engines.graphs import QUANTIZATION, export_graphs, quantize_encoders
from emoctx.engines.runtimes import OnnxRuntimeEngine, OpenVinoEngine, import_runtime, runtime_version
from emoctx.engines.torch_engine import TorchEngine
from emoctx.errors import EmoctxError
from emoctx.models.network import FACE_STREAM

log = logging.getLogger(__name__)

ENGINE_PRECISIONS: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "bf16", "fp16"),
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
}
"""What each engine computes in (``"auto"`` resolves to one of these, see
:func:`emoctx.engines.choice.resolve_precision`)."""


def _versions(*extra: str) -> dict[str, str | None]:
    """The versions of what writes the graphs (part of the cache key)."""
    import onnx

    versions: dict[str, str | None] = {
        "emoctx": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": runtime_version("onnxscript"),
    }
    for name in extra:
        versions[name] = runtime_version(name)
    return versions


def _matches(versions: dict[str, Any], opset: int) -> Any:
    """Whether a cached entry's manifest was written by these library versions at this opset."""
    return lambda manifest: manifest.get("versions") == versions and manifest.get("opset") == opset


def refuse_face_model(model: str | os.PathLike, engine: str, precision: str) -> None:
    """Refuse what a model with a face stream cannot run: an exported engine, or int8.

    A face stream takes who shows a face and the landmarks, chosen per person from the data: the exported graphs
    do not carry that path (``emoctx export`` refuses it too), so face models run in PyTorch, which has no int8.
    """
    if engine != "torch":
        raise EmoctxError(
            f"{model}: a model with a face stream runs in the torch engine only (its face path, per person, "
            f"is not in the exported graphs); use --engine torch, not {engine}"
        )
    if precision == "int8":
        raise EmoctxError(
            f"{model}: a model with a face stream runs in the torch engine only, which has no int8; use "
            "--precision auto, bf16 or fp32"
        )


def build_engine(
    model: str | os.PathLike,
    engine: str = "auto",
    precision: str = "auto",
    device: str | torch.device | None = "cpu",
    *,
    net: Any = None,
    info: Any = None,
    calibration: calib.CalibrationSet | None = None,
    cache_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    tolerance: tuple[float, float] | None = None,
    opset: int | None = None,
) -> Engine:
    """An engine for ``model``, checked against the network in PyTorch fp32.

    Exported graphs come from the model's engine cache (:mod:`emoctx.engines.cache`), exported (and for int8,
    calibrated) on the first build only. The engine's :attr:`~emoctx.engines.base.Engine.check` holds the largest
    probability and V/A/D differences from PyTorch fp32 on the check batch, and its
    :attr:`~emoctx.engines.base.Engine.info` how it was built (graphs folder, whether they came from the cache,
    seconds, threads, calibration set): both for the run's log and table metadata (:meth:`Engine.describe`).

    Args:
        model: the model file (``.safetensors`` or a training ``.ckpt``): its content keys the cache.
        engine: ``"torch"``, ``"onnxruntime"``, ``"openvino"`` or ``"auto"`` (:func:`default_engine`).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"`` (see :data:`ENGINE_PRECISIONS`).
        device: where to compute; exported engines run on the CPU only.
        net: the network loaded from ``model`` (saves loading it again); the torch engine prepares it in
            place, the exported engines leave it as it is.
        info: its description (with ``net``).
        calibration: the images int8 is calibrated on (required for int8; an entry calibrated on the same set
            is taken from the cache without reading them).
        cache_dir: keep the graphs there instead of beside the model.
        threads: compute threads of an exported engine (default: PyTorch's, one per physical core).
        tolerance: (probability, V/A/D) differences accepted by the check (default: by precision,
            :data:`emoctx.engines.base.TOLERANCES`).
        opset: ONNX opset of exported graphs (default: :data:`emoctx.inference.export.DEFAULT_OPSET`).

    Raises:
        EmoctxError: an unknown or unsupported engine/precision, a missing runtime (naming the extra that
            installs it), int8 without calibration images, a failed export, or an engine whose outputs differ
            from PyTorch beyond the tolerance.
    """
    from emoctx.checkpoint import load_model
    from emoctx.hardware import resolve_device
    from emoctx.inference.export import DEFAULT_OPSET

    start = time.perf_counter()
    model = Path(model)
    device = resolve_device(device)
    if net is None:
        net, info = load_model(model)
    elif info is None:
        raise EmoctxError("build_engine: pass the model's info with its net")
    has_face = FACE_STREAM in net.stream_names
    if engine == "auto":
        engine, precision = ("torch", precision) if has_face else default_engine(device, precision)
    if has_face:
        refuse_face_model(model, engine, precision)
    if engine not in ENGINES:
        raise EmoctxError(f"unknown engine '{engine}'; choose one of auto, {', '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise EmoctxError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    precision = resolve_precision(engine, precision, device)
    if precision != "auto" and precision not in ENGINE_PRECISIONS[engine]:
        others = [e for e, p in ENGINE_PRECISIONS.items() if precision in p]
        raise EmoctxError(
            f"the {engine} engine does not compute in {precision} (it computes in "
            f"{', '.join(ENGINE_PRECISIONS[engine])})"
            + (f"; {precision} runs with --engine {' or '.join(others)}" if others else "")
        )
    if engine != "torch":
        if device.type != "cpu":
            raise EmoctxError(f"the {engine} engine runs on the CPU; use --engine torch on {device}")
        import_runtime(engine)  # a missing package is reported before any export work
        if precision == "int8" and calibration is None:
            raise EmoctxError(
                "int8 needs calibration images (records to calibrate on); without them use --precision fp32"
            )
    net = net.eval()

    if engine == "torch":
        reference = copy.deepcopy(net).float().cpu()  # the torch engine prepares (changes) the network
        built: Engine = TorchEngine(net, precision, device)
    else:
        built = _build_exported(
            model, net, info, engine, precision, calibration, cache_dir, threads, opset or DEFAULT_OPSET
        )
        reference = net.cpu().float()
    built.check = check_engine(
        built, reference, info.preprocessing, info.score_activation, tolerance=tolerance, what=model
    )
    built.info["seconds"] = round(time.perf_counter() - start, 3)
    log.info(
        "engine %s %s ready in %.1f s (largest probability difference from PyTorch fp32 %.2g)",
        built.name,
        built.precision,
        built.info["seconds"],
        built.check.max_prob_diff,
    )
    return built


def _build_exported(
    model: Path,
    net: Any,
    info: Any,
    engine: str,
    precision: str,
    calibration: calib.CalibrationSet | None,
    cache_dir: str | os.PathLike | None,
    threads: int | None,
    opset: int,
) -> Engine:
    cache = EngineCache(model, cache_dir)
    versions = _versions()
    base = {"kind": "onnx", "opset": opset}
    fp32 = cache.get_or_build(
        f"onnx-fp32-op{opset}-{short_hash(versions)}",
        {**base, "versions": versions, "precision": "fp32"},
        lambda folder: export_graphs(net, info.preprocessing, folder, opset, str(model)),
        _matches(versions, opset),
    )
    entry = fp32
    extra: dict[str, Any] = {"export_seconds": round(fp32.seconds, 3) if fp32.built else None}
    if precision == "int8":
        assert calibration is not None
        reduce_range = not has_vnni()
        q_versions = _versions("onnxruntime")
        key = f"onnx-int8-op{opset}-{short_hash([q_versions, QUANTIZATION])}-cal{calibration.digest[:12]}"
        key += "-r7" if reduce_range else ""

        def quantize(folder: Path) -> dict[str, Any]:
            shapes = {s: spec["input"] for s, spec in fp32.manifest["streams"].items()}
            log.info(
                "calibrating int8 on %d images (%s)",
                calibration.count,
                calibration.name or calibration.digest[:12],
            )
            batches = calib.collect(calibration, shapes)
            fields = quantize_encoders(fp32.path, folder, list(shapes), batches, reduce_range)
            return {**fields, "streams": fp32.manifest["streams"], "head": fp32.manifest["head"]}

        matches = _matches(q_versions, opset)
        entry = cache.get_or_build(
            key,
            {**base, "versions": q_versions, "precision": "int8", "calibration": calibration.describe()},
            quantize,
            lambda m: matches(m) and m.get("calibration", {}).get("digest") == calibration.digest,
        )
        extra["quantize_seconds"] = round(entry.seconds, 3) if entry.built else None
        extra["calibration"] = calibration.describe()
        extra["quantization"] = entry.manifest.get("quantization")
    load_start = time.perf_counter()
    runtime = OnnxRuntimeEngine if engine == "onnxruntime" else OpenVinoEngine
    built = runtime(entry.path, entry.manifest, precision, threads)
    built.info.update(
        {
            "cached": not entry.built,
            "load_seconds": round(time.perf_counter() - load_start, 3),
            **extra,
        }
    )
    return built
