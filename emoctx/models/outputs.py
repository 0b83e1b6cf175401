"""What the network's outputs mean to a user: 0-1 category scores and V/A/D ratings on the 1-10 scale.

The network (:class:`~emoctx.models.network.EmotionNet`) returns raw category outputs (``logits``) and V/A/D on
its internal 0-1 scale. Every path that shows them (training's predictions, evaluation, ``predict``,
``predict-records``, the ONNX export) turns them into the same two things here:

* :func:`scores_from_logits`: 0-1 scores by the model's score activation (``sigmoid`` for a model trained with
  BCE; ``clamp`` for linearly regressed outputs, the authors' loss); decision thresholds apply to these;
* :func:`vad_ratings`: V/A/D on the 1-10 scale, clamped to it.

:class:`ScoringNet` is the network with both applied: images per stream in, ``(scores, vad)`` out.
"""

from __future__ import annotations

import torch
from torch import nn

from emoctx import labels
from emoctx.errors import EmoctxError
from emoctx.models.network import FACE_STREAM, EmotionNet

SCORE_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "clamp")
"""How category outputs become 0-1 scores (a model file's ``score_activation``)."""


def scores_from_logits(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Turn category outputs into 0-1 scores: ``"sigmoid"`` or ``"clamp"`` (for linearly regressed outputs)."""
    if activation == "sigmoid":
        return torch.sigmoid(logits)
    if activation == "clamp":
        return logits.clamp(0.0, 1.0)
    raise EmoctxError(f"unknown score activation '{activation}'; choose 'sigmoid' or 'clamp'")


def vad_ratings(vad: torch.Tensor) -> torch.Tensor:
    """V/A/D from the network's internal 0-1 scale to ratings on the 1-10 scale, clamped to it."""
    return labels.vad_from_model(vad).clamp(labels.VAD_MIN, labels.VAD_MAX)


def face_outputs(out: dict[str, torch.Tensor], stream_names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """A network's face outputs on the scales the tables use (keys absent where the model has no such output).

    * ``face_va`` ``[B, 2]``: valence and arousal from the face on 1-10: the face-derived head, or a face-only
      model's own V/A;
    * ``expression`` ``[B, E]``: the expression probabilities (softmax).

    Args:
        out: what :meth:`EmotionNet.forward` (or :meth:`EmotionNet.head`) returned.
        stream_names: the network's streams.
    """
    found: dict[str, torch.Tensor] = {}
    va = out.get("face_va")
    if va is None and tuple(stream_names) == (FACE_STREAM,):
        va = out["vad"][:, :2]
    if va is not None:
        found["face_va"] = vad_ratings(va.float())
    if "expression" in out:
        found["expression"] = torch.softmax(out["expression"].float(), dim=1)
    return found


class ScoringNet(nn.Module):
    """The network as it is exported and run at scale: images per stream in, 0-1 scores and 1-10 V/A/D out.

    Args:
        net: the emotion network.
        score_activation: how the category outputs become 0-1 scores (``"sigmoid"`` or ``"clamp"``).
    """

    def __init__(self, net: EmotionNet, score_activation: str = "sigmoid") -> None:
        super().__init__()
        self.net = net
        self.stream_names = tuple(net.stream_names)
        self.score_activation = score_activation

    def forward(self, *images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[B, 3, H, W]``, one per stream in :attr:`stream_names` order, to ``(scores, vad)``."""
        out = self.net(dict(zip(self.stream_names, images)))
        return scores_from_logits(out["logits"], self.score_activation), vad_ratings(out["vad"])
