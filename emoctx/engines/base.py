"""The engine interface, and the check of every engine against the network in PyTorch fp32.

An engine stands in for the network where the predictor calls it: :meth:`Engine.encode` runs one stream's
backbone (so a scene can be encoded once per image and shared by every person in it) and :meth:`Engine.head`
fuses the streams' features and applies the heads, with the shapes and meaning of
:meth:`emoctx.models.network.EmotionNet.encode` and :meth:`~emoctx.models.network.EmotionNet.head`.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from emoctx.errors import EmoctxError

if TYPE_CHECKING:
    from emoctx.data.preprocess import PreprocessCfg

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")

TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (1e-4, 1e-3),
    "bf16": (0.05, 0.25),
    "int8": (0.15, 0.75),
}
"""Largest accepted difference from the network in PyTorch fp32 on the check batch (:func:`check_inputs`), per
precision: (category probability, V/A/D on the 1-10 scale). A larger difference means the engine does not
compute this model faithfully (an exporter or runtime defect, graphs of another model, calibration images
unlike the model's inputs), and the engine is refused. Measured on the check batch (probability, V/A/D):

* fp32 engines compute the same function in another order of operations: below 1e-6 and 1e-5;
* bf16 keeps 8 significant bits of every activation: 0.006 and 0.021 (``configs/synth_tiny.yaml`` trained on
  EMOTIC-synth), 0.001 and 0.028 (a ResNet-18 pair trained on it);
* int8 (:mod:`emoctx.engines.graphs`): 0.024 to 0.037 and 0.06 to 0.10 (the tiny model, trained 2 and 6
  epochs), 0.033 and 0.15 (the ResNet-18 pair).

Single persons can move more than the check batch does: over the EMOTIC-synth test persons int8 moved a
probability by up to 0.095 (tiny model, 6 epochs) and 0.22 (2 epochs), V/A/D by up to 0.82, while the mAP
moved by -0.05 to +0.35 points and the V/A/D MAE by less than 0.002 (``scripts/bench.py``'s int8 table).
"""


@dataclass
class EngineCheck:
    """How closely an engine reproduces the network in PyTorch fp32 (see :func:`check_engine`).

    Attributes:
        max_prob_diff: largest absolute difference of a category probability (0-1).
        max_vad_diff: largest absolute difference of valence, arousal or dominance (1-10 scale).
        tolerance: the accepted (probability, V/A/D) differences.
        batch: persons in the check batch.
        inputs: what the check batch is.
    """

    max_prob_diff: float
    max_vad_diff: float
    tolerance: tuple[float, float]
    batch: int
    inputs: str = "synthetic images (check_inputs)"

    @property
    def passed(self) -> bool:
        """Whether both differences are within the tolerance (NaN fails)."""
        return self.max_prob_diff <= self.tolerance[0] and self.max_vad_diff <= self.tolerance[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for the run's log and the table's metadata)."""
        d = asdict(self)
        d["tolerance"] = list(self.tolerance)
        return d


class Engine(abc.ABC):
    """Runs a model's streams and heads (see the module docstring).

    Attributes:
        name: ``"torch"``, ``"onnxruntime"`` or ``"openvino"``.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (torch on a GPU without bf16) or ``"int8"``.
        streams: the model's stream names, in fusion order.
        device: where it computes.
        input_dtype: the dtype :meth:`encode` takes without a conversion (inputs in another float dtype are
            converted).
        channels_last: whether :meth:`encode` takes channels-last tensors without a copy.
        check: how closely it reproduces PyTorch fp32, measured when it was built.
        info: facts for the run's log and table metadata (:meth:`describe`).

    Not safe for concurrent calls from several threads: each run uses the engine from one thread.
    """

    name: str = ""
    precision: str = "fp32"
    streams: tuple[str, ...] = ()
    device: torch.device = torch.device("cpu")
    input_dtype: torch.dtype = torch.float32
    channels_last: bool = False

    def __init__(self) -> None:
        self.check: EngineCheck | None = None
        self.info: dict[str, Any] = {}

    @abc.abstractmethod
    def encode(self, stream: str, x: torch.Tensor) -> torch.Tensor:
        """One stream's backbone: normalised images ``[B, 3, H, W]`` to features ``[B, F]`` (float32)."""

    @abc.abstractmethod
    def head(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fuse ``{stream: [B, F]}`` and apply the heads.

        Returns:
            ``{"logits": [B, 26], "vad": [B, 3]}`` (float32; V/A/D on the model's internal 0-1 scale), as
            :meth:`emoctx.models.network.EmotionNet.head`.
        """

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every stream encoded, then the heads (one scene per person)."""
        return self.head({n: self.encode(n, inputs[n]) for n in self.streams})

    def describe(self) -> dict[str, Any]:
        """What ran and how faithfully: engine, precision, threads, graphs, the check (JSON-ready)."""
        out: dict[str, Any] = {"engine": self.name, "precision": self.precision, "device": str(self.device)}
        out.update(self.info)
        if self.check is not None:
            out["check"] = self.check.to_dict()
        return out

    def _stream(self, stream: str) -> None:
        if stream not in self.streams:
            raise EmoctxError(f"unknown stream '{stream}'; this model has streams {list(self.streams)}")


def as_numpy(x: torch.Tensor) -> np.ndarray:
    """A float32, C-contiguous NCHW/NC array of ``x`` (what ONNX Runtime and OpenVINO read without a copy)."""
    if x.dtype != torch.float32:
        x = x.float()
    return x.detach().cpu().contiguous().numpy()


# --------------------------------------------------------------------------------------------- the check
def check_inputs(preprocessing: PreprocessCfg, batch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A deterministic batch of image-like inputs per stream, as the model's preprocessing contract says.

    Each stream's inputs have its input size and are normalised with its mean and std
    (:class:`~emoctx.data.preprocess.PreprocessCfg`).

    Smooth random colour fields (8x8 random colours enlarged bilinearly) with fine noise, in 0-255: the value
    range and spatial statistics of photos, which plain Gaussian noise lacks (an int8 graph calibrated on
    photos would clip noise inputs and look worse than it is).

    Args:
        preprocessing: the model's preprocessing (``ModelInfo.preprocessing``).
        batch: persons.
        seed: the random seed.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, spec in preprocessing.streams.items():
        h, w = spec.input_size
        coarse = torch.rand(batch, 3, 8, 8, generator=g) * 255.0
        x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        x = (x + torch.randn(batch, 3, h, w, generator=g) * 12.0).clamp(0.0, 255.0)
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        out[name] = ((x / 255.0 - mean) / std).contiguous()
    return out


def outputs_on_scales(
    out: Mapping[str, torch.Tensor], score_activation: str
) -> tuple[np.ndarray, np.ndarray]:
    """Category probabilities (0-1) and V/A/D (1-10, clamped) of a head's outputs, as the predictor reports."""
    from emoctx.models.outputs import scores_from_logits, vad_ratings

    probs = scores_from_logits(out["logits"].float(), score_activation)
    vad = vad_ratings(out["vad"].float())
    return probs.detach().cpu().double().numpy(), vad.detach().cpu().double().numpy()


def check_engine(
    engine: Engine,
    reference: torch.nn.Module,
    preprocessing: PreprocessCfg,
    score_activation: str,
    tolerance: tuple[float, float] | None = None,
    inputs: Mapping[str, torch.Tensor] | None = None,
    what: str | Path = "model",
) -> EngineCheck:
    """Run ``engine`` and the network in PyTorch fp32 on the same batch and refuse the engine if they differ.

    Args:
        engine: the engine to check.
        reference: the network (:class:`~emoctx.models.network.EmotionNet`) in fp32, as loaded.
        preprocessing: the model's preprocessing (``ModelInfo.preprocessing``), for the check batch.
        score_activation: the model's score activation.
        tolerance: (probability, V/A/D) differences accepted (default: :data:`TOLERANCES` of the engine's
            precision).
        inputs: the batch (default: :func:`check_inputs`).
        what: the model, for the message.

    Returns:
        The measured differences.

    Raises:
        EmoctxError: a difference exceeds the tolerance (or is not a number), naming both and what to do.
    """
    tolerance = tuple(tolerance or TOLERANCES.get(engine.precision, TOLERANCES["bf16"]))  # type: ignore[assignment]
    x = dict(inputs) if inputs is not None else check_inputs(preprocessing)
    batch = int(next(iter(x.values())).shape[0])
    with torch.inference_mode():
        want = reference({n: t.float() for n, t in x.items()})
        got = engine.forward({n: t.to(engine.input_dtype) for n, t in x.items()})
    for key in ("logits", "vad"):
        if tuple(got[key].shape) != tuple(want[key].shape):
            raise EmoctxError(
                f"{what}: the {engine.name} engine returns '{key}' of shape {list(got[key].shape)}, PyTorch "
                f"{list(want[key].shape)}"
            )
    p_want, v_want = outputs_on_scales(want, score_activation)
    p_got, v_got = outputs_on_scales(got, score_activation)
    dp = float(np.max(np.abs(p_got - p_want)))
    dv = float(np.max(np.abs(v_got - v_want)))
    result = EngineCheck(
        max_prob_diff=dp if math.isfinite(dp) else math.nan,
        max_vad_diff=dv if math.isfinite(dv) else math.nan,
        tolerance=tolerance,  # type: ignore[arg-type]
        batch=batch,
        inputs="the given inputs" if inputs is not None else EngineCheck.inputs,
    )
    log.info(
        "%s %s vs PyTorch fp32: largest probability difference %.3g, largest V/A/D difference %.3g",
        engine.name,
        engine.precision,
        result.max_prob_diff,
        result.max_vad_diff,
    )
    if not result.passed:
        raise EmoctxError(
            f"{what}: the {engine.name} engine in {engine.precision} differs from PyTorch fp32 beyond the "
            f"tolerance (largest probability difference {result.max_prob_diff:.3g}, accepted "
            f"{tolerance[0]:g}; largest V/A/D difference {result.max_vad_diff:.3g}, accepted {tolerance[1]:g}); "
            "choose another engine or precision (--engine torch --precision fp32 always works)"
        )
    return result
