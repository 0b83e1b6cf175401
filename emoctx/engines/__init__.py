"""Inference engines: the emotion network in PyTorch, ONNX Runtime or OpenVINO, in fp32, bf16 or int8.

An engine stands in for the network where the predictor calls it, with the same two calls::

    from emoctx.engines import build_engine

    engine = build_engine("model.safetensors", "onnxruntime", "fp32")  # exported once, then cached
    body = engine.encode("body", bodies)  # [persons, 3, H, W] normalised -> [persons, F]
    scene = engine.encode("scene", scenes)  # one scene per image, shared by its persons
    out = engine.head({"body": body, "scene": scene[image_of_person]})  # {"logits", "vad"}
    print(engine.describe())  # engine, precision, threads, graphs, the check against PyTorch fp32

* :mod:`~emoctx.engines.base`: the :class:`Engine` interface and the check against PyTorch fp32 that every
  engine passes when it is built (:data:`TOLERANCES`);
* :mod:`~emoctx.engines.torch_engine`: PyTorch, the network prepared as the predictor always has (BN folded,
  conv+ReLU fused, channels-last, bf16 weights on CPUs with native bf16, autocast on GPUs);
* :mod:`~emoctx.engines.graphs` and :mod:`~emoctx.engines.runtimes`: one ONNX graph per stream and one for the
  head, run by ONNX Runtime or OpenVINO (the ``openvino`` extra), and their int8 form;
* :mod:`~emoctx.engines.cache`: the graphs cached beside the model file, keyed by its digest;
* :mod:`~emoctx.engines.calibration`: the images int8 is calibrated on, and their identity;
* :mod:`~emoctx.engines.choice`: the default engine of a machine, and the CPU's features;
* :mod:`~emoctx.engines.detector`: the person detector exported to ONNX or OpenVINO.
"""

from emoctx.engines.base import ENGINES, PRECISIONS, TOLERANCES, Engine, EngineCheck, check_inputs
from emoctx.engines.build import ENGINE_PRECISIONS, build_engine
from emoctx.engines.calibration import CalibrationSet
from emoctx.engines.choice import cpu_flags, default_detector_engine, default_engine

__all__ = [
    "ENGINES",
    "ENGINE_PRECISIONS",
    "PRECISIONS",
    "TOLERANCES",
    "CalibrationSet",
    "Engine",
    "EngineCheck",
    "build_engine",
    "check_inputs",
    "cpu_flags",
    "default_detector_engine",
    "default_engine",
]
