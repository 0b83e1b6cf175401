"""The PyTorch engine: the network as the predictor has always prepared it.

:func:`emoctx.inference.optimize.optimize_for_inference`: batch norms folded into the convolutions, on CPU each
convolution with its ReLU (and residual sum) as one oneDNN call, channels-last tensors; in bf16 on a CPU the
backbones hold bfloat16 weights (fusion and heads stay in float32), on a GPU bf16/fp16 run under autocast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch

from emoctx.engines.base import Engine
from emoctx.errors import EmoctxError
from emoctx.models.network import FACE_STREAM, EmotionNet

_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class TorchEngine(Engine):
    """The network in PyTorch (see the module docstring).

    Args:
        net: the network as loaded (eval mode); it is prepared in place (its backbones replaced).
        precision: ``"auto"`` (bf16 where the hardware computes it natively, see
            :func:`emoctx.hardware.resolve_precision`), ``"bf16"`` or ``"fp32"``.
        device: where it runs.
    """

    name = "torch"

    def __init__(self, net: EmotionNet, precision: str = "auto", device: str | torch.device = "cpu"):
        super().__init__()
        from emoctx.hardware import resolve_precision
        from emoctx.inference.optimize import optimize_for_inference

        if precision == "int8":
            raise EmoctxError(
                "the torch engine has no int8; use --engine onnxruntime or --engine openvino with --precision int8"
            )
        self.device = torch.device(device)
        self.amp_dtype = resolve_precision(precision, self.device)
        self.precision = _NAMES[self.amp_dtype]
        self.net = optimize_for_inference(net.to(self.device), self.device, self.amp_dtype)
        # On CPU the backbones hold low-precision weights (faster than autocast, which re-casts them on every
        # call); on GPUs, autocast.
        self._low_precision_backbones = self.amp_dtype is not None and self.device.type == "cpu"
        self.streams = tuple(net.stream_names)
        self.input_dtype = self.amp_dtype if self._low_precision_backbones else torch.float32  # type: ignore[assignment]
        self.channels_last = True
        self.info = {"threads": torch.get_num_threads() if self.device.type == "cpu" else None}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None or self._low_precision_backbones:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def encode(self, stream: str, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """See :meth:`Engine.encode`; for a face stream also the faces' ``landmarks`` (:meth:`EmotionNet.encode`)."""
        self._stream(stream)
        x = x.to(self.device, self.input_dtype, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            return self.net.encode(stream, x, landmarks).float()

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """See :meth:`Engine.forward`; a face stream also reads ``face_present`` and ``face_landmarks``.

        As :meth:`EmotionNet.forward` computes it: only the faces present go through the face backbone (with
        their landmarks), the others take the network's no-face path in :meth:`head`.
        """
        if FACE_STREAM not in self.streams:
            return super().forward(inputs)
        features = {n: self.encode(n, inputs[n]) for n in self.streams if n != FACE_STREAM}
        faces = inputs[FACE_STREAM]
        present = inputs.get("face_present")
        if present is None:
            present = torch.ones(faces.shape[0], dtype=torch.bool)
        present = present.to(self.device, torch.bool)
        landmarks = inputs.get("face_landmarks")
        width = int(self.net.missing[FACE_STREAM].shape[0])
        encoded = torch.zeros((faces.shape[0], width), dtype=torch.float32, device=self.device)
        rows = present.nonzero().flatten()
        if rows.numel():
            points = None if landmarks is None else landmarks.to(self.device)[rows].float()
            encoded[rows] = self.encode(FACE_STREAM, faces.to(self.device)[rows], points)
        features[FACE_STREAM] = encoded
        return self.head(features, {FACE_STREAM: present})

    def head(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """See :meth:`Engine.head`; ``present`` says who shows a face (:meth:`EmotionNet.head`)."""
        with torch.inference_mode(), self._autocast():
            out = self.net.head({n: features[n].to(self.device) for n in self.streams}, present or None)
        return {k: v.float() for k, v in out.items()}
