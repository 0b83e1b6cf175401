"""The network as ONNX graphs for the exported engines: one encoder per stream and one head, and their int8 form.

* ``<stream>.onnx``: input ``images`` ``[batch, 3, H, W]`` (float32, normalised), output ``features`` ``[batch, F]``;
* ``head.onnx``: one input per stream, named after it (``[batch, F]``), outputs ``logits`` ``[batch, 26]`` and
  ``vad`` ``[batch, 3]`` (the model's internal 0-1 scale), as :meth:`emoctx.models.network.EmotionNet.head`.

Separate graphs keep the predictor's sharing: the scene encoder runs once per image, the body encoder once
per person, the head on the gathered features. Exported with torch's dynamo exporter
(:func:`emoctx.inference.export.export_graph`), batch dimension dynamic.

int8 (:func:`quantize_encoders`): post-training static quantisation with ONNX Runtime's ``quantize_static``:
QDQ format (the graph stays standard ONNX, with QuantizeLinear/DequantizeLinear pairs around each quantised
operation; ONNX Runtime and OpenVINO both run it as integer arithmetic), weights int8 per output channel,
activations uint8 with ranges calibrated on the caller's preprocessed images: the 99.99th percentile of each
activation's magnitude (:data:`QUANTIZATION`; on a ResNet-18 pair trained on EMOTIC-synth it lost 0.01 mAP
points where the minimum/maximum ranges lost 0.46, and entropy ranges the same 0.46). The histograms are built
one calibration batch at a time (ONNX Runtime otherwise holds every activation of every calibration image
in memory at once). Only the encoders are quantised: the head is a few small matrix products, where int8
would cost accuracy and save nothing.
Activations are uint8 because ONNX Runtime's x86 kernels for uint8 x int8 products are its fast ones (int8 x
int8 ran no faster than fp32 here); on CPUs without VNNI instructions those kernels can saturate, so weights
are quantised to 7 bits there (``reduce_range``), as ONNX Runtime advises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emoctx.data.preprocess import PreprocessCfg
from emoctx.models.network import EmotionNet

log = logging.getLogger(__name__)

ENCODER_INPUT = "images"
ENCODER_OUTPUT = "features"
HEAD_OUTPUTS = ("logits", "vad")
HEAD_FILE = "head.onnx"
CALIBRATION_BATCH = 16
"""Images per calibration run: the activations of one run are held in memory while their histograms are made."""
QUANTIZATION: dict[str, Any] = {
    "tool": "onnxruntime.quantization.quantize_static",
    "format": "QDQ",
    "weights": "int8, per channel",
    "activations": "uint8",
    "calibration_method": "Percentile",
    "percentile": 99.99,
    "quantized": "encoders",
    "kept_fp32": "head",
}
"""The quantisation settings (recorded in the cache manifest; part of its key)."""


def encoder_file(stream: str) -> str:
    """The file name of a stream's encoder graph."""
    return f"{stream}.onnx"


class _Encoder(nn.Module):
    """One stream's backbone with the calling convention of :func:`~emoctx.inference.export.export_graph`."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images[0])


class _Head(nn.Module):
    """The fusion and the category and V/A/D heads of a network, features in stream order.

    Holds only the head's layers (not the backbones), so its graph holds only their weights; it has every
    attribute :meth:`EmotionNet.head` reads, and returns the two outputs prediction uses.
    """

    def __init__(self, net: EmotionNet):
        super().__init__()
        self.streams = tuple(net.stream_names)
        self.stream_names = self.streams
        self.fusion = net.fusion
        self.category_head = net.category_head
        self.vad_head = net.vad_head
        self.expression_head = net.expression_head
        self.face_va_head = net.face_va_head
        self.missing = net.missing
        self._vad_output = net._vad_output

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = EmotionNet.head(self, dict(zip(self.streams, features)))  # type: ignore[arg-type]
        return out["logits"], out["vad"]


def export_graphs(
    net: EmotionNet, preprocessing: PreprocessCfg, folder: Path, opset: int, what: str = "model"
) -> dict[str, Any]:
    """Write a network's encoder and head graphs into ``folder`` (see the module docstring).

    Args:
        net: the network, as loaded (fp32).
        preprocessing: its preprocessing contract: each encoder is traced at its stream's input size.
        folder: where to write.
        opset: the ONNX opset.
        what: the model, for error messages.

    Returns:
        Manifest fields: ``streams`` (``{stream: {"file", "input", "features"}}``) and ``head``.
    """
    import onnx

    from emoctx.inference.export import export_graph

    net = net.eval()
    streams: dict[str, Any] = {}
    features = []
    for stream in net.stream_names:
        h, w = preprocessing.streams[stream].input_size
        # Batch 2 for tracing (a batch of 1 would let the exporter make the batch dimension a constant).
        example = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            width = int(net.encode(stream, example).shape[1])
        proto = export_graph(
            _Encoder(net.backbones[stream]).eval(),
            [example],
            [ENCODER_INPUT],
            [ENCODER_OUTPUT],
            opset,
            f"{what} ({stream} encoder)",
        )
        onnx.save_model(proto, str(folder / encoder_file(stream)))
        streams[stream] = {"file": encoder_file(stream), "input": [3, h, w], "features": width}
        features.append(torch.randn(2, width, generator=torch.Generator().manual_seed(1)))
    proto = export_graph(
        _Head(net).eval(), features, list(net.stream_names), list(HEAD_OUTPUTS), opset, f"{what} (head)"
    )
    onnx.save_model(proto, str(folder / HEAD_FILE))
    return {"streams": streams, "head": {"file": HEAD_FILE, "outputs": list(HEAD_OUTPUTS)}}


def quantize_encoders(
    fp32: Path,
    folder: Path,
    streams: Sequence[str],
    batches: dict[str, list[np.ndarray]],
    reduce_range: bool,
) -> dict[str, Any]:
    """Write int8 (QDQ) encoders calibrated on ``batches``, and a copy of the fp32 head, into ``folder``.

    Args:
        fp32: the folder of the fp32 graphs (:func:`export_graphs`).
        folder: where to write.
        streams: the model's streams.
        batches: ``{stream: [float32 arrays [B, 3, H, W], ...]}``, the calibration images.
        reduce_range: quantise weights to 7 bits (CPUs without VNNI; see the module docstring).

    Returns:
        Manifest fields: ``quantization`` (the settings).
    """
    import shutil

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """The calibration batches, served a range at a time (``set_range``: one histogram update each)."""

        def __init__(self, arrays: list[np.ndarray]):
            self._chunks = [
                np.ascontiguousarray(a[i : i + CALIBRATION_BATCH], dtype=np.float32)
                for a in arrays
                for i in range(0, len(a), CALIBRATION_BATCH)
            ]
            self._it = iter(self._chunks)

        def __len__(self) -> int:
            return len(self._chunks)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(self._chunks[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {ENCODER_INPUT: x}

    settings = {
        **QUANTIZATION,
        "weights": QUANTIZATION["weights"] + (", 7-bit range" if reduce_range else ""),
    }
    for stream in streams:
        prepared = folder / f".{stream}.prepared.onnx"
        quant_pre_process(str(fp32 / encoder_file(stream)), str(prepared))
        quantize_static(
            str(prepared),
            str(folder / encoder_file(stream)),
            Reader(batches[stream]),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            # one histogram update per calibration batch (the option's name says MinMax; it applies to every
            # calibration method)
            extra_options={"CalibPercentile": QUANTIZATION["percentile"], "CalibStridedMinMax": 1},
        )
        prepared.unlink()
        log.info("%s encoder quantised to int8", stream)
    shutil.copyfile(fp32 / HEAD_FILE, folder / HEAD_FILE)
    return {"quantization": settings}
