"""The emotion network: one backbone per input stream, a fusion, and two heads. A plain ``nn.Module``.

Streams are named (``"body"``, ``"scene"``, later perhaps ``"face"``); the set comes from the config, so a
body-only or scene-only ablation is a config with one stream. Each stream can be run on its own
(:meth:`EmotionNet.encode`) and the heads on the collected features (:meth:`EmotionNet.head`): the inference
pipeline encodes one scene per image and shares it among the persons in it. Those two methods are the whole
interface the prediction pipeline uses (in :meth:`emoctx.inference.predictor.Predictor._forward`), so another
engine that implements ``encode(stream, images)`` and ``head(features)`` can stand in for the network there.
How each stream's input is made is not the network's business: it is the model file's preprocessing
(:mod:`emoctx.data.preprocess`).

Outputs: ``"logits"`` ``[B, NUM_CATEGORIES]`` (raw category scores, in :data:`emoctx.labels.CATEGORIES` order) and
``"vad"`` ``[B, NUM_VAD]`` on the model's internal 0-1 scale (:func:`emoctx.labels.vad_from_model` gives 1-10;
not clamped, callers may clamp).

The V/A/D head is a linear layer whose output is, by default, the internal scale itself (``vad_output="internal"``,
its bias started at the middle of the scale). ``vad_output="tenths"`` is the head of the common PyTorch EMOTIC
baseline: its linear output is V/A/D divided by 10 (the baseline reads ``10 * output`` as the 1-10 rating), mapped
onto the internal scale after the layer. The two heads give the same outputs when their weights are converted,
but train differently (gradients and default initialisation follow the layer's own output), so a recipe that
reproduces the baseline uses ``"tenths"``, and importing the baseline's weights needs no conversion.

This module imports neither Lightning nor any tracker: training wraps it, inference uses it directly.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from emoctx.errors import EmoctxError
from emoctx.labels import NUM_CATEGORIES, NUM_VAD, VAD_MID, vad_to_model
from emoctx.models.backbones import StreamConfig, build_backbone
from emoctx.models.fusion import build_fusion

_STREAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONFIG_KEYS = ("streams", "fusion", "hidden", "dropout", "fusion_kwargs", "vad_output")

VAD_OUTPUTS: tuple[str, ...] = ("internal", "tenths")
"""What the V/A/D head's linear layer outputs: the internal 0-1 scale, or V/A/D / 10 (the common baseline's)."""

_TENTHS = 10.0  # the baseline's V/A/D divisor: its head's output times this is the rating on the 1-10 scale


class EmotionNet(nn.Module):
    """Multi-stream emotion network: per-stream timm backbones, a fusion, a category head and a V/A/D head.

    Args:
        streams: ``{stream name: StreamConfig or its dict}``; the order is the fusion order.
        fusion: A fusion name (:data:`emoctx.models.fusion.FUSIONS`).
        hidden: Width of the fused vector.
        dropout: Dropout probability in the fusion.
        fusion_kwargs: Extra options for the fusion (e.g. ``{"heads": 4}`` for ``attention``).
        vad_output: ``"internal"`` (default) or ``"tenths"`` (the common PyTorch baseline's V/A/D head, see the
            module docstring).
    """

    def __init__(
        self,
        streams: Mapping[str, StreamConfig | Mapping[str, Any]],
        fusion: str = "concat",
        hidden: int = 256,
        dropout: float = 0.5,
        fusion_kwargs: Mapping[str, Any] | None = None,
        vad_output: str = "internal",
    ) -> None:
        super().__init__()
        if vad_output not in VAD_OUTPUTS:
            raise EmoctxError(
                f"model config: unknown vad_output {vad_output!r}; choose one of {', '.join(VAD_OUTPUTS)}"
            )
        if not isinstance(streams, Mapping) or not streams:
            raise EmoctxError(
                "model config: 'streams' must map at least one stream name to a backbone config"
            )
        for name in streams:
            if not isinstance(name, str) or not _STREAM_NAME.match(name):
                raise EmoctxError(
                    f"model config: stream name {name!r} must be a Python identifier (letters, digits, '_')"
                )
        self.stream_names: tuple[str, ...] = tuple(streams)
        self._stream_cfgs: dict[str, StreamConfig] = {
            n: StreamConfig.from_dict(c) for n, c in streams.items()
        }
        self._fusion_name = str(fusion)
        self._hidden = int(hidden)
        self._dropout = float(dropout)
        self._fusion_kwargs = dict(fusion_kwargs or {})
        self._vad_output = str(vad_output)

        self.backbones = nn.ModuleDict()
        self._resolved: dict[str, dict[str, Any]] = {}
        for name, cfg in self._stream_cfgs.items():
            self.backbones[name], self._resolved[name] = build_backbone(cfg)
        widths = {n: self._resolved[n]["num_features"] for n in self.stream_names}
        self.fusion = build_fusion(
            self._fusion_name, widths, self._hidden, self._dropout, **self._fusion_kwargs
        )
        self.category_head = nn.Linear(self._hidden, NUM_CATEGORIES)
        self.vad_head = nn.Linear(self._hidden, NUM_VAD)
        if self._vad_output == "internal":
            # Start V/A/D predictions at the middle of the scale rather than at its bottom.
            nn.init.constant_(self.vad_head.bias, float(vad_to_model(VAD_MID)))
        # "tenths" keeps PyTorch's default initialisation, as the baseline's head does.

    # -- running ---------------------------------------------------------------------------------------------

    def encode(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Run one stream's backbone: images ``[B, 3, H, W]`` (normalised) to features ``[B, F]``."""
        if name not in self.backbones:
            raise EmoctxError(f"unknown stream '{name}'; this model has streams {list(self.stream_names)}")
        return self.backbones[name](x)

    def head(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fuse per-stream features and apply the heads.

        Args:
            features: ``{stream name: [B, F]}`` for every stream of the model (extra keys are ignored).

        Returns:
            ``{"logits": [B, NUM_CATEGORIES], "vad": [B, NUM_VAD]}`` (V/A/D on the internal 0-1 scale).
        """
        fused = self.fusion(features)
        vad = self.vad_head(fused)
        if self._vad_output == "tenths":
            vad = vad_to_model(vad * _TENTHS)
        return {"logits": self.category_head(fused), "vad": vad}

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encode every stream and apply the heads.

        Args:
            inputs: ``{stream name: [B, 3, H, W]}`` for every stream (extra keys are ignored).

        Returns:
            ``{"logits": [B, NUM_CATEGORIES], "vad": [B, NUM_VAD]}``.
        """
        missing = [n for n in self.stream_names if n not in inputs]
        if missing:
            raise EmoctxError(
                f"model input lacks stream(s) {missing}; the model expects {list(self.stream_names)}"
            )
        return self.head({n: self.encode(n, inputs[n]) for n in self.stream_names})

    # -- description -----------------------------------------------------------------------------------------

    def stream_specs(self) -> dict[str, dict[str, Any]]:
        """What each stream expects: ``{name: {"input_size", "mean", "std", "backbone"}}`` (resolved values)."""
        return {
            name: {
                "input_size": self._resolved[name]["input_size"],
                "mean": list(self._resolved[name]["mean"]),
                "std": list(self._resolved[name]["std"]),
                "backbone": self._stream_cfgs[name].backbone,
            }
            for name in self.stream_names
        }

    def init_args(self) -> dict[str, Any]:
        """The arguments this network was built with (``streams`` as :class:`StreamConfig`), as configured."""
        return {
            "streams": dict(self._stream_cfgs),
            "fusion": self._fusion_name,
            "hidden": self._hidden,
            "dropout": self._dropout,
            "fusion_kwargs": copy.deepcopy(self._fusion_kwargs),
            "vad_output": self._vad_output,
        }

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this network (JSON-ready).

        Stream configs carry the resolved input size and normalisation, so a rebuild does not depend on timm's
        defaults of the day. ``pretrained`` records where the weights first came from; :meth:`from_config`
        ignores it.
        """
        streams = {}
        for name in self.stream_names:
            d = self._stream_cfgs[name].to_dict()
            d["input_size"] = self._resolved[name]["input_size"]
            d["mean"] = list(self._resolved[name]["mean"])
            d["std"] = list(self._resolved[name]["std"])
            streams[name] = d
        cfg: dict[str, Any] = {
            "streams": streams,
            "fusion": self._fusion_name,
            "hidden": self._hidden,
            "dropout": self._dropout,
            "fusion_kwargs": copy.deepcopy(self._fusion_kwargs),
        }
        # Only when not the default: without the key, a model file stays readable by older emoctx versions.
        if self._vad_output != "internal":
            cfg["vad_output"] = self._vad_output
        return cfg

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> EmotionNet:
        """Rebuild from :meth:`config` with random weights.

        ``pretrained`` is forced to ``None``: nothing is read or downloaded; load the checkpoint's state dict
        afterwards.

        Raises:
            EmoctxError: Unknown keys or a missing ``streams`` entry.
        """
        if not isinstance(cfg, Mapping) or "streams" not in cfg:
            raise EmoctxError("model config: expected a mapping with 'streams'")
        unknown = [k for k in cfg if k not in _CONFIG_KEYS]
        if unknown:
            raise EmoctxError(
                f"model config: unknown key(s) {unknown}; the known keys are {list(_CONFIG_KEYS)}"
            )
        if not isinstance(cfg["streams"], Mapping):
            raise EmoctxError("model config: 'streams' must map stream names to backbone configs")
        streams = {}
        for name, stream in cfg["streams"].items():
            d = StreamConfig.from_dict(stream).to_dict()
            d["pretrained"] = None
            streams[name] = StreamConfig.from_dict(d)
        kwargs = {k: cfg[k] for k in _CONFIG_KEYS[1:] if k in cfg}
        return cls(streams, **kwargs)

    # -- parameter groups ------------------------------------------------------------------------------------

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of all stream backbones (for a lower learning rate or a frozen warm-up)."""
        return self.backbones.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the fusion and both heads (everything that is not a backbone)."""
        return itertools.chain(
            self.fusion.parameters(), self.category_head.parameters(), self.vad_head.parameters()
        )

    def freeze_backbones(self, frozen: bool = True) -> None:
        """Stop (or resume) gradient updates of every backbone parameter."""
        for p in self.backbone_parameters():
            p.requires_grad_(not frozen)
