"""The emotion network: one backbone per input stream, a fusion, and its heads. A plain ``nn.Module``.

Streams are named (``"body"``, ``"scene"``, ``"face"``); the set comes from the config, so any subset (a body-only
or scene-only ablation, a face-only model) is a config choice. Each stream can be run on its own
(:meth:`EmotionNet.encode`) and the heads on the collected features (:meth:`EmotionNet.head`): the inference
pipeline encodes one scene per image and shares it among the persons in it. Those two methods are the whole
interface the prediction pipeline uses (in :meth:`emoctx.inference.predictor.Predictor._forward`), so another
engine that implements ``encode(stream, images)`` and ``head(features)`` can stand in for the network there.
How each stream's input is made is not the network's business: it is the model file's preprocessing
(:mod:`emoctx.data.preprocess`).

**The face stream** (a stream named ``"face"``, options in ``face``, :class:`emoctx.models.face.FaceConfig`): any
timm backbone on a loose square face crop (about 112 px), whose feature map is modulated by landmark attention
(:mod:`emoctx.models.face`) before average pooling. Not every person shows a face. ``inputs["face_present"]``
(``[B]`` booleans) says who does; the backbone runs on those faces only (never on a placeholder image, which
would also move its batch-norm statistics), and the others get a learned no-face embedding in the fusion,
which gates over the streams present (:mod:`emoctx.models.fusion`). ``inputs["face"]`` holds a crop per person
(``[B, 3, S, S]``; rows of absent faces are never read) or per present face only (``[P, 3, S, S]``);
``inputs["face_landmarks"]`` (optional, the same rows, ``[., K, 3]``) the landmarks in the crop's frame
(:func:`emoctx.faces.landmarks_in_box`).

**Modality dropout** (``modality_dropout``: ``{stream: probability}``): in training, each person's stream is
dropped with that probability, replaced by the stream's learned missing embedding and masked in the fusion,
so that the model copes without it (a dropped face does not go through the backbone); a person never loses
every stream. Evaluation and prediction drop nothing.

Outputs: ``"logits"`` ``[B, NUM_CATEGORIES]`` (raw category scores, in :data:`emoctx.labels.CATEGORIES` order),
``"vad"`` ``[B, NUM_VAD]`` on the model's internal 0-1 scale (:func:`emoctx.labels.vad_from_model` gives 1-10;
not clamped, callers may clamp); with ``expressions`` configured, ``"expression"`` ``[B, len(expressions)]``
(logits of the discrete expressions, an auxiliary task after EmoNet); with a face stream, ``"face_present"``
``[B]`` (booleans: whose face the outputs saw).

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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from emoctx.errors import EmoctxError
from emoctx.labels import NUM_CATEGORIES, NUM_VAD, VAD_MID, vad_to_model
from emoctx.models.backbones import StreamConfig, build_backbone
from emoctx.models.face import FACE_STREAM, FaceConfig, FeatureMap, LandmarkAttention
from emoctx.models.fusion import build_fusion

_STREAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONFIG_KEYS = (
    "streams",
    "fusion",
    "hidden",
    "dropout",
    "fusion_kwargs",
    "vad_output",
    "face",
    "modality_dropout",
    "expressions",
)
MAX_EXPRESSIONS = 64
"""Most expression classes a model may have."""

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
        face: Options of the face stream (:class:`~emoctx.models.face.FaceConfig` or its dict); only with a
            stream named ``"face"`` (None: the defaults).
        modality_dropout: ``{stream name: probability in [0, 1)}`` of dropping that stream per person in
            training.
        expressions: Names of discrete expression classes (e.g. :data:`emoctx.labels.EXPRESSIONS`): adds the
            ``"expression"`` head; None or empty: no such head.
    """

    def __init__(
        self,
        streams: Mapping[str, StreamConfig | Mapping[str, Any]],
        fusion: str = "concat",
        hidden: int = 256,
        dropout: float = 0.5,
        fusion_kwargs: Mapping[str, Any] | None = None,
        vad_output: str = "internal",
        face: FaceConfig | Mapping[str, Any] | None = None,
        modality_dropout: Mapping[str, float] | None = None,
        expressions: Sequence[str] | None = None,
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
        if face is not None and FACE_STREAM not in self.stream_names:
            raise EmoctxError(
                f"model config: 'face' options are given, but there is no '{FACE_STREAM}' stream "
                f"(streams {list(self.stream_names)})"
            )
        self._face_cfg = FaceConfig.from_dict(face) if FACE_STREAM in self.stream_names else None
        self._modality_dropout = self._check_dropout(modality_dropout)
        self._expressions = self._check_expressions(expressions)

        self.backbones = nn.ModuleDict()
        self._resolved: dict[str, dict[str, Any]] = {}
        for name, cfg in self._stream_cfgs.items():
            model, self._resolved[name] = build_backbone(cfg)
            if name == FACE_STREAM:  # the feature map, pooled after the landmark attention
                model = FeatureMap(model)
                self._resolved[name]["num_features"] = model.num_features
            self.backbones[name] = model
        widths = {n: self._resolved[n]["num_features"] for n in self.stream_names}
        self.face_attention = (
            LandmarkAttention(self._face_cfg.num_landmarks, self._face_cfg.sigma)
            if self._face_cfg is not None and self._face_cfg.attention == "landmarks"
            else None
        )
        # A learned stand-in for a stream that a person may lack: the face (not seen), and any stream dropped.
        self.missing = nn.ParameterDict(
            {
                name: nn.Parameter(torch.zeros(widths[name]))
                for name in self.stream_names
                if name == FACE_STREAM or self._modality_dropout.get(name, 0.0) > 0
            }
        )
        self.fusion = build_fusion(
            self._fusion_name, widths, self._hidden, self._dropout, **self._fusion_kwargs
        )
        self.category_head = nn.Linear(self._hidden, NUM_CATEGORIES)
        self.vad_head = nn.Linear(self._hidden, NUM_VAD)
        if self._vad_output == "internal":
            # Start V/A/D predictions at the middle of the scale rather than at its bottom.
            nn.init.constant_(self.vad_head.bias, float(vad_to_model(VAD_MID)))
        # "tenths" keeps PyTorch's default initialisation, as the baseline's head does.
        self.expression_head = nn.Linear(self._hidden, len(self._expressions)) if self._expressions else None

    def _check_dropout(self, dropout: Mapping[str, float] | None) -> dict[str, float]:
        if dropout is None:
            return {}
        if not isinstance(dropout, Mapping):
            raise EmoctxError(
                f"model config: 'modality_dropout' must map stream names to probabilities, got {dropout!r}"
            )
        out = {}
        for name, p in dropout.items():
            if name not in self.stream_names:
                raise EmoctxError(
                    f"model config: 'modality_dropout' names '{name}', which is not a stream of this model "
                    f"({list(self.stream_names)})"
                )
            ok = isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= float(p) < 1.0
            if not ok:
                raise EmoctxError(
                    f"model config: 'modality_dropout.{name}' must be a probability in [0, 1), got {p!r}"
                )
            out[str(name)] = float(p)
        return out

    @staticmethod
    def _check_expressions(expressions: Sequence[str] | None) -> tuple[str, ...]:
        if not expressions:
            return ()
        names = tuple(expressions) if not isinstance(expressions, str) else (expressions,)
        if (
            not all(isinstance(e, str) and e.strip() for e in names)
            or len(set(names)) != len(names)
            or len(names) > MAX_EXPRESSIONS
        ):
            raise EmoctxError(
                f"model config: 'expressions' must be up to {MAX_EXPRESSIONS} distinct non-empty names, got {expressions!r}"
            )
        return names

    @property
    def expressions(self) -> tuple[str, ...]:
        """The expression classes of the ``"expression"`` output, in order (empty: no such output)."""
        return self._expressions

    @property
    def face_config(self) -> FaceConfig | None:
        """The face stream's options (None: no face stream)."""
        return self._face_cfg

    # -- running ---------------------------------------------------------------------------------------------

    def encode(self, name: str, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """Run one stream: images ``[B, 3, H, W]`` (normalised) to features ``[B, F]``.

        For the face stream, ``x`` holds face crops (present faces only) and ``landmarks`` ``[B, K, 3]`` their
        landmarks for the attention (None: none).
        """
        if name not in self.backbones:
            raise EmoctxError(f"unknown stream '{name}'; this model has streams {list(self.stream_names)}")
        if name == FACE_STREAM:
            return self.encode_face(x, landmarks)
        return self.backbones[name](x)

    def encode_face(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """Face crops ``[P, 3, S, S]`` (present faces only) to features ``[P, F]``.

        The backbone's feature map, landmark attention (when configured and ``landmarks`` ``[P, K, 3]`` are
        given), then average pooling.
        """
        if FACE_STREAM not in self.backbones:
            raise EmoctxError(f"this model has no face stream (streams {list(self.stream_names)})")
        fmap = self.backbones[FACE_STREAM](x)
        if self.face_attention is not None and landmarks is not None:
            if landmarks.shape[:1] != x.shape[:1] or landmarks.shape[1:] != (self._face_cfg.num_landmarks, 3):
                raise EmoctxError(
                    f"face landmarks: expected [{x.shape[0]}, {self._face_cfg.num_landmarks}, 3] "
                    f"({self._face_cfg.landmarks}: x, y, confidence), got {list(landmarks.shape)}"
                )
            fmap = self.face_attention(fmap, landmarks.to(fmap.device))
        return fmap.mean(dim=(2, 3))

    def _batch_size(self, inputs: Mapping[str, torch.Tensor]) -> int:
        for name in self.stream_names:
            if name != FACE_STREAM:
                return int(inputs[name].shape[0])
        given = inputs.get("face_present")
        return int(given.shape[0]) if given is not None else int(inputs[FACE_STREAM].shape[0])

    def _rows(self, t: torch.Tensor, given: torch.Tensor, batch: int, what: str) -> torch.Tensor:
        """``t`` with one row per person: as it is, or spread from the rows of the present faces."""
        if t.shape[0] == batch:
            return t
        if t.shape[0] == int(given.sum()):
            full = t.new_zeros((batch, *t.shape[1:]))
            full[given.to(t.device)] = t
            return full
        raise EmoctxError(
            f"'{what}' has {t.shape[0]} rows: expected one per person ({batch}) or one per present face "
            f"({int(given.sum())})"
        )

    def _encode_faces(
        self, inputs: Mapping[str, torch.Tensor], given: torch.Tensor, present: torch.Tensor, batch: int
    ) -> torch.Tensor:
        """Features ``[B, F]`` of the present faces (zeros elsewhere: :meth:`head` puts the no-face embedding)."""
        x = self._rows(inputs[FACE_STREAM], given, batch, FACE_STREAM)
        landmarks = inputs.get("face_landmarks")
        if landmarks is not None:
            landmarks = self._rows(landmarks, given, batch, "face_landmarks")
        index = present.to(x.device).nonzero().squeeze(1)
        width = self._resolved[FACE_STREAM]["num_features"]
        if index.numel() == 0:
            feats = x.new_zeros((batch, width))
            if self.training and torch.is_grad_enabled():
                # No face in this batch: every face parameter still takes part in the loss (with a zero
                # gradient), as distributed training needs every process to use the same parameters.
                parts = [self.backbones[FACE_STREAM], self.face_attention]
                feats = feats + 0.0 * sum(p.sum() for m in parts if m is not None for p in m.parameters())
            return feats
        encoded = self.encode_face(x[index], None if landmarks is None else landmarks[index])
        return encoded.new_zeros((batch, encoded.shape[1])).index_copy(0, index, encoded)

    def encode_streams(
        self, inputs: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Encode every stream; returns ``(features, present)`` for :meth:`head`.

        ``features``: ``{stream: [B, F]}``; ``present``: ``{stream: [B] booleans}`` for the streams some
        persons lack (the face; in training, the streams modality dropout dropped). See the module docstring
        for the inputs.
        """
        missing = [n for n in self.stream_names if n not in inputs]
        if missing:
            raise EmoctxError(
                f"model input lacks stream(s) {missing}; the model expects {list(self.stream_names)}"
            )
        present: dict[str, torch.Tensor] = {}
        dropping = self.training and any(p > 0 for p in self._modality_dropout.values())
        if FACE_STREAM not in self.stream_names and not dropping:
            # The plain path: no batch size is read (an ONNX export keeps its batch dimension dynamic).
            return {name: self.encode(name, inputs[name]) for name in self.stream_names}, present
        batch = self._batch_size(inputs)
        device = inputs[self.stream_names[0]].device
        given = None
        if FACE_STREAM in self.stream_names:
            flags = inputs.get("face_present")
            given = (
                torch.ones(batch, dtype=torch.bool, device=device)
                if flags is None
                else flags.to(device=device, dtype=torch.bool)
            )
            if given.shape != (batch,):
                raise EmoctxError(
                    f"'face_present' must hold one flag per person ({batch}), got {list(given.shape)}"
                )
            present[FACE_STREAM] = given
        if dropping:
            present.update(self._drop_streams(present, batch, device))
        features = {}
        for name in self.stream_names:
            if name == FACE_STREAM:
                features[name] = self._encode_faces(inputs, given, present[name], batch)
            else:
                features[name] = self.encode(name, inputs[name])
        return features, present

    def _drop_streams(
        self, present: Mapping[str, torch.Tensor], batch: int, device: torch.device
    ) -> dict[str, torch.Tensor]:
        """Modality dropout: new presence masks of the dropped streams; a person keeps at least one stream."""
        before = {
            n: present.get(n, torch.ones(batch, dtype=torch.bool, device=device)) for n in self.stream_names
        }
        after = dict(before)
        for name, p in self._modality_dropout.items():
            if p > 0:
                after[name] = before[name] & (torch.rand(batch, device=device) >= p)
        left = torch.stack(list(after.values()), dim=1).any(dim=1)
        return {n: torch.where(left, after[n], before[n]) for n, p in self._modality_dropout.items() if p > 0}

    def head(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Fuse per-stream features and apply the heads.

        Args:
            features: ``{stream name: [B, F]}`` for every stream of the model (extra keys are ignored).
            present: ``{stream name: [B] booleans}`` for streams some persons lack; their features there are
                replaced by the stream's learned missing embedding and the fusion gates over the streams
                present. None: every stream present (a face stream's model then sees every face).

        Returns:
            ``{"logits": [B, NUM_CATEGORIES], "vad": [B, NUM_VAD]}`` (V/A/D on the internal 0-1 scale), with
            ``"expression"`` when configured and ``"face_present"`` for a face stream.
        """
        present = dict(present or {})
        features = dict(features)
        for name, mask in present.items():
            if name in self.missing and name in features:
                f = features[name]
                stand_in = self.missing[name].to(dtype=f.dtype, device=f.device)
                features[name] = torch.where(mask.to(f.device)[:, None], f, stand_in)
        fused = self.fusion(features, present or None)
        vad = self.vad_head(fused)
        if self._vad_output == "tenths":
            vad = vad_to_model(vad * _TENTHS)
        out = {"logits": self.category_head(fused), "vad": vad}
        if self.expression_head is not None:
            out["expression"] = self.expression_head(fused)
        if FACE_STREAM in self.stream_names:
            mask = present.get(FACE_STREAM)
            out["face_present"] = (
                mask.to(fused.device)
                if mask is not None
                else torch.ones(fused.shape[0], dtype=torch.bool, device=fused.device)
            )
        return out

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encode every stream and apply the heads.

        Args:
            inputs: ``{stream name: [B, 3, H, W]}`` for every stream (extra keys are ignored), and for a face
                stream optionally ``face_present`` and ``face_landmarks`` (see the module docstring).

        Returns:
            ``{"logits": [B, NUM_CATEGORIES], "vad": [B, NUM_VAD]}`` and the optional outputs of :meth:`head`.
        """
        features, present = self.encode_streams(inputs)
        return self.head(features, present)

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
            "face": self._face_cfg,
            "modality_dropout": dict(self._modality_dropout),
            "expressions": list(self._expressions),
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
        if self._face_cfg is not None:
            cfg["face"] = self._face_cfg.to_dict()
        if self._modality_dropout:
            cfg["modality_dropout"] = dict(self._modality_dropout)
        if self._expressions:
            cfg["expressions"] = list(self._expressions)
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

    def head_modules(self) -> nn.ModuleList:
        """Every part that is not a backbone: the fusion, the heads, the face attention, the missing embeddings."""
        parts = [self.fusion, self.category_head, self.vad_head, self.face_attention, self.expression_head]
        parts.append(self.missing)
        return nn.ModuleList([m for m in parts if m is not None])

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of everything that is not a backbone (:meth:`head_modules`)."""
        return itertools.chain(self.head_modules().parameters())

    def freeze_backbones(self, frozen: bool = True) -> None:
        """Stop (or resume) gradient updates of every backbone parameter."""
        for p in self.backbone_parameters():
            p.requires_grad_(not frozen)
