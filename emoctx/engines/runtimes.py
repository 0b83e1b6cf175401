"""The exported engines: ONNX Runtime and OpenVINO running the graphs of :mod:`emoctx.engines.graphs`.

Both run on the CPU, with as many compute threads as PyTorch uses (``torch.get_num_threads()``: one per
physical core unless set otherwise), so that an engine is compared with PyTorch on the same cores:

* ONNX Runtime: ``intra_op_num_threads`` = that number, ``inter_op_num_threads`` = 1, sequential execution, all
  graph optimisations, and threads that sleep rather than spin between runs (each of the three sessions has
  its own threads, which otherwise keep the cores busy while the next session runs);
* OpenVINO: ``INFERENCE_NUM_THREADS`` = that number, ``PERFORMANCE_HINT`` = ``LATENCY`` (one stream: the
  predictor calls one batch at a time), and ``INFERENCE_PRECISION_HINT`` set to the precision asked for:
  OpenVINO otherwise computes in bf16 on its own on CPUs that have it (an "fp32" engine must not).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from emoctx.engines.base import Engine, as_numpy
from emoctx.engines.graphs import ENCODER_INPUT, ENCODER_OUTPUT, HEAD_OUTPUTS
from emoctx.errors import EmoctxError

log = logging.getLogger(__name__)

INSTALL = {
    "openvino": "pip install 'emoctx[openvino]'",  # an optional extra
    "onnxruntime": "pip install onnxruntime",  # a dependency of emoctx: missing only from a broken install
}
"""How to install each exported engine's runtime."""


def import_runtime(engine: str) -> Any:
    """Import the runtime of ``engine``, or explain how to install it (naming the extra, where it is one).

    Raises:
        EmoctxError: the package is not installed.
    """
    try:
        if engine == "openvino":
            import openvino

            return openvino
        import onnxruntime

        return onnxruntime
    except ImportError as e:
        raise EmoctxError(
            f"the {engine} engine needs the '{engine}' package, which is not installed ({e}); install it with "
            f"{INSTALL[engine]} (or choose another --engine)"
        ) from None


def runtime_version(engine: str) -> str | None:
    """The installed version of an engine's runtime (``None`` when not installed)."""
    from importlib import metadata

    try:
        return metadata.version(engine)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def openvino_core() -> Any:
    """The one ``openvino.Core`` of this process, kept for its lifetime.

    Each ``Core`` loads its own CPU plugin, and each plugin installs an alternate signal stack on the thread
    that made it, restoring the previous one when it is destroyed. Cores destroyed in another order than
    they were made leave the thread with a stack that was freed, and the next signal the process receives (a
    data-loading worker process ending) kills it. One core for the whole process never leaves a freed stack.
    """
    return import_runtime("openvino").Core()


class _Exported(Engine):
    """An engine running one graph per stream and one for the head (:mod:`emoctx.engines.graphs`)."""

    def __init__(self, folder: Path, manifest: Mapping[str, Any], precision: str, threads: int | None):
        super().__init__()
        self.folder = Path(folder)
        self.precision = precision
        self.streams = tuple(manifest["streams"])
        self.threads = int(threads or torch.get_num_threads())
        self.input_dtype = torch.float32
        self.channels_last = False
        self.info = {"threads": self.threads, "graphs": str(self.folder)}

    def _run_encoder(self, stream: str, x: Any) -> Any:
        raise NotImplementedError

    def _run_head(self, feeds: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def encode(self, stream: str, x: torch.Tensor) -> torch.Tensor:
        """See :meth:`Engine.encode`."""
        self._stream(stream)
        return torch.from_numpy(self._run_encoder(stream, as_numpy(x)))

    def head(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """See :meth:`Engine.head`."""
        out = self._run_head({n: as_numpy(features[n]) for n in self.streams})
        return {k: torch.from_numpy(v) for k, v in zip(HEAD_OUTPUTS, out)}


class OnnxRuntimeEngine(_Exported):
    """The graphs in ONNX Runtime's CPU execution provider (see the module docstring for its settings)."""

    name = "onnxruntime"

    def __init__(self, folder: Path, manifest: Mapping[str, Any], precision: str, threads: int | None = None):
        super().__init__(folder, manifest, precision, threads)
        ort = import_runtime("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        # Each session has its own threads; spinning after a run, they took the cores from the next session's
        # (ResNet-18 pair at batch 1: 38 ms per person with spinning, 13 ms without; batch 32: 403 and 314 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(file: str) -> Any:
            return ort.InferenceSession(str(self.folder / file), options, providers=["CPUExecutionProvider"])

        self._encoders = {s: session(manifest["streams"][s]["file"]) for s in self.streams}
        self._head = session(manifest["head"]["file"])
        self.info["runtime"] = f"onnxruntime {ort.__version__}"

    def _run_encoder(self, stream: str, x: Any) -> Any:
        return self._encoders[stream].run([ENCODER_OUTPUT], {ENCODER_INPUT: x})[0]

    def _run_head(self, feeds: dict[str, Any]) -> list[Any]:
        return self._head.run(list(HEAD_OUTPUTS), feeds)


class OpenVinoEngine(_Exported):
    """The graphs compiled by OpenVINO for the CPU (see the module docstring for its settings)."""

    name = "openvino"

    def __init__(self, folder: Path, manifest: Mapping[str, Any], precision: str, threads: int | None = None):
        super().__init__(folder, manifest, precision, threads)
        ov = import_runtime("openvino")
        core = openvino_core()
        config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",
            # int8 graphs carry their own quantisation; what they compute outside it stays in f32.
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }

        def request(file: str) -> Any:
            return core.compile_model(str(self.folder / file), "CPU", config).create_infer_request()

        self._encoders = {s: request(manifest["streams"][s]["file"]) for s in self.streams}
        self._head = request(manifest["head"]["file"])
        self.info["runtime"] = f"openvino {ov.__version__}"

    def _run_encoder(self, stream: str, x: Any) -> Any:
        return self._encoders[stream].infer({0: x}, share_inputs=True)[0]

    def _run_head(self, feeds: dict[str, Any]) -> list[Any]:
        out = self._head.infer(feeds, share_inputs=True)
        return [out[name] for name in HEAD_OUTPUTS]
