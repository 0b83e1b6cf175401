"""The person detector exported for ONNX Runtime or OpenVINO, cached beside its weights.

ultralytics exports its own models (``YOLO.export(format="onnx")``); the export is read back by ultralytics'
own backends, so :class:`emoctx.inference.detect.UltralyticsDetector` runs it unchanged::

    from emoctx.engines.detector import export_detector
    from emoctx.inference.detect import UltralyticsDetector

    detector = UltralyticsDetector(export_detector("yolo11n.pt", "onnxruntime"))

* ``onnxruntime``: ultralytics' ONNX export (dynamic batch and image size, not simplified: the simplifier is a
  package ultralytics would try to install);
* ``openvino``: that ONNX graph read by OpenVINO and saved as OpenVINO IR (``<name>_openvino_model.xml`` +
  ``.bin``) with the ``metadata.yaml`` ultralytics reads beside it. (ultralytics' own OpenVINO export goes through
  ``openvino.convert_model``, which reports usage over the network unless the user opted out; reading and
  saving the graph does not.) ultralytics runs it in OpenVINO's default precision: bf16 on CPUs with native
  bf16, else fp32.

The weights are loaded with emoctx's safe loading (:func:`emoctx.inference.yolo_weights.load_yolo`); the export is
checked against the PyTorch model (largest difference of the raw outputs, boxes in pixels and class scores,
relative to their largest value) and refused beyond :data:`DETECTOR_TOLERANCE`. A weights file keys the cache
(:mod:`emoctx.engines.cache`) by its digest; an architecture YAML (random weights: tests and benchmarks) has no
file to key on and is exported into the folder given.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoctx.engines.cache import EngineCache, short_hash
from emoctx.engines.runtimes import import_runtime, openvino_core, runtime_version
from emoctx.errors import EmoctxError

log = logging.getLogger(__name__)

DETECTOR_ENGINES: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
DETECTOR_TOLERANCE = 1e-3
"""Largest accepted difference of the exported detector's raw outputs from PyTorch's, relative to the largest
output (box coordinates in pixels dominate it: 1e-3 of 640 is 0.6 pixel)."""


@contextlib.contextmanager
def _quiet_ultralytics() -> Iterator[None]:
    """Warnings only from ultralytics while exporting (it logs every export step at INFO)."""
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_detector(
    weights: str | os.PathLike,
    engine: str,
    imgsz: int = 640,
    out: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> str:
    """The detector ``weights`` exported for ``engine``: a path to give to ``UltralyticsDetector(weights=...)``.

    Args:
        weights: YOLO weights file, a name ultralytics knows, or an architecture YAML.
        engine: ``"onnxruntime"``, ``"openvino"``, or ``"torch"`` (the weights as they are).
        imgsz: the input size the export is traced and checked at (the graph takes any size).
        out: the folder to export into when ``weights`` is not a file (an architecture YAML); a weights file is
            exported into its cache, exported once.
        cache_dir: keep a weights file's exports there instead of beside it.

    Raises:
        EmoctxError: an unknown engine, a missing runtime (naming its extra), no folder for a YAML, a failed
            export, or an export whose outputs differ from PyTorch's.
    """
    from emoctx.inference.yolo_weights import resolve_weights

    if engine not in DETECTOR_ENGINES:
        raise EmoctxError(f"unknown detector engine '{engine}'; choose one of {', '.join(DETECTOR_ENGINES)}")
    source = resolve_weights(weights)
    if engine == "torch":
        return source
    import_runtime(engine)
    if not Path(source).is_file() or Path(source).suffix.lower() in (".yaml", ".yml"):
        if out is None:
            raise EmoctxError(
                f"{source}: not a weights file, so there is nothing to cache the {engine} export by; give a folder "
                "to export into"
            )
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / _export(source, folder, engine, imgsz)["detector"])
    versions = {
        "ultralytics": runtime_version("ultralytics"),
        "torch": torch.__version__,
        "onnx": runtime_version("onnx"),
        "openvino": runtime_version("openvino") if engine == "openvino" else None,
    }
    entry = EngineCache(source, cache_dir).get_or_build(
        f"yolo-{engine}-{imgsz}-{short_hash(versions)}",
        {"kind": "detector", "engine": engine, "imgsz": imgsz, "versions": versions},
        lambda folder: _export(source, folder, engine, imgsz),
        lambda manifest: manifest.get("versions") == versions,
    )
    return str(entry.path / entry.manifest["detector"])


def _export(source: str, folder: Path, engine: str, imgsz: int) -> dict[str, Any]:
    """Export ``source`` into ``folder``; returns the manifest fields (the file to load, the check)."""
    from emoctx.inference.yolo_weights import load_yolo

    yolo = load_yolo(source)
    stem = Path(source).stem
    # ultralytics writes an export beside the model it was loaded from; pointing it here keeps it from
    # writing (or overwriting) anything beside the user's weights.
    yolo.model.pt_path = str(folder / f"{stem}.pt")
    with _quiet_ultralytics():
        try:
            onnx_path = Path(
                yolo.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=False, device="cpu")
            )
        except Exception as e:  # noqa: BLE001 - ultralytics raises many error types; one clear message
            raise EmoctxError(f"{source}: the detector's ONNX export failed ({type(e).__name__}: {e})") from e
    x = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    model = yolo.model.eval()
    with torch.inference_mode():
        want = model(x)
    want = (want[0] if isinstance(want, (list, tuple)) else want).numpy()
    if engine == "onnxruntime":
        ort = import_runtime("onnxruntime")
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        detector = onnx_path.name
    else:
        ov = import_runtime("openvino")
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        graph = openvino_core().read_model(str(onnx_path))
        # "_openvino_model" in the name tells ultralytics the format; it reads the .bin and metadata.yaml beside
        xml = folder / f"{stem}_openvino_model.xml"
        ov.save_model(graph, str(xml), compress_to_fp16=False)
        import yaml

        (folder / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
        compiled = openvino_core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        got = compiled(x.numpy())[0]
        onnx_path.unlink()
        detector = xml.name
    scale = float(np.abs(want).max()) or 1.0
    diff = float(np.abs(np.asarray(got) - want).max()) / scale
    log.info("detector %s export vs PyTorch: largest relative difference %.2g", engine, diff)
    if not diff <= DETECTOR_TOLERANCE:
        raise EmoctxError(
            f"{source}: the detector's {engine} export differs from PyTorch by {diff:.3g} of its largest output "
            f"(accepted {DETECTOR_TOLERANCE:g}); use the PyTorch detector"
        )
    return {"detector": detector, "check": {"max_relative_diff": diff, "tolerance": DETECTOR_TOLERANCE}}
