"""Fusion of the per-stream feature vectors into one hidden vector, built by name.

Every fusion takes ``{stream name: [B, F_stream]}`` and returns ``[B, hidden]``; the category and V/A/D heads
sit on top of it in :class:`~emoctx.models.network.EmotionNet`. Streams are read in the order given at
construction, so the order of the input mapping does not matter.

* ``concat``: the EMOTIC baseline (Kosti et al.): concatenate, Linear, BatchNorm, ReLU, Dropout.
* ``gated``: each stream projected to ``hidden`` (Linear, BatchNorm, tanh), then weighted by sigmoid gates computed
  from all projected streams together and summed: a multi-stream form of the gated multimodal unit
  (Arevalo et al., 2017). A stream can be turned down per person and per feature.
* ``attention``: each stream projected to a token (Linear + a learned stream embedding, LayerNorm); a learned
  query attends over the stream tokens with multi-head attention (softmax weights over the streams).

A stream can be absent for some persons (a face not seen, a stream dropped in training): ``present`` maps such
a stream to a ``[B]`` boolean mask. Its features for the absent persons are a learned stand-in
(:class:`~emoctx.models.network.EmotionNet` puts them there), and the fusion gates over the streams present:
``gated`` zeroes the absent streams (in the gate's input too) and their gates, ``attention`` leaves their
tokens out of the softmax, and ``concat``, which has no gate, reads the learned stand-in (to a linear layer,
the same as a validity flag). A
person with no stream present keeps all of them (the stand-ins). Without ``present`` every fusion computes
exactly what it computed before masks existed.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from emoctx.errors import EmoctxError


class Fusion(nn.Module):
    """Base class: holds the stream order and widths, checks the inputs.

    Args:
        in_features: ``{stream name: feature width}`` in the order the streams are fused.
        hidden: Width of the fused vector.
        dropout: Dropout probability on the fused vector.
    """

    def __init__(self, in_features: Mapping[str, int], hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        if not in_features:
            raise EmoctxError("fusion: at least one stream is needed")
        if hidden < 1:
            raise EmoctxError(f"fusion: 'hidden' must be a positive integer, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise EmoctxError(f"fusion: 'dropout' must be in [0, 1), got {dropout}")
        self.stream_names: tuple[str, ...] = tuple(in_features)
        self.in_features: dict[str, int] = {k: int(v) for k, v in in_features.items()}
        self.hidden = int(hidden)
        self.out_features = int(hidden)

    def _present(
        self, present: Mapping[str, torch.Tensor] | None, batch: int, device: torch.device
    ) -> torch.Tensor | None:
        """``[B, S]`` booleans (streams in fusion order) for ``present``; None when every stream is present.

        Streams missing from ``present`` are present for everyone; a person with no stream present keeps all.
        """
        if not present or not any(n in present for n in self.stream_names):
            return None
        columns = []
        for n in self.stream_names:
            mask = present.get(n)
            if mask is None:
                columns.append(torch.ones(batch, dtype=torch.bool, device=device))
                continue
            if mask.shape != (batch,):
                raise EmoctxError(
                    f"fusion: the presence mask of stream '{n}' has shape {tuple(mask.shape)}, expected ({batch},)"
                )
            columns.append(mask.detach().to(device=device, dtype=torch.bool))
        m = torch.stack(columns, dim=1)
        return m | ~m.any(dim=1, keepdim=True)

    def _ordered(self, features: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        missing = [n for n in self.stream_names if n not in features]
        if missing:
            raise EmoctxError(
                f"fusion: no features for stream(s) {missing}; the model fuses {list(self.stream_names)}"
            )
        return [features[n] for n in self.stream_names]

    def extra_repr(self) -> str:
        """The streams and widths, shown when the module is printed."""
        return f"streams={self.in_features}, hidden={self.hidden}"


class ConcatFusion(Fusion):
    """Concatenate the stream features, then Linear, BatchNorm, ReLU and Dropout (the EMOTIC baseline)."""

    def __init__(self, in_features: Mapping[str, int], hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__(in_features, hidden, dropout)
        self.net = nn.Sequential(
            nn.Linear(sum(self.in_features.values()), hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )

    def forward(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Fuse ``{stream: [B, F]}`` into ``[B, hidden]`` (``present`` is not used: no gate to set)."""
        return self.net(torch.cat(self._ordered(features), dim=1))


class GatedFusion(Fusion):
    """Per-stream projections weighted by learned sigmoid gates and summed.

    ``h_s = tanh(BN(W_s x_s))``, ``g = sigmoid(W_g [h_1, ..., h_S])`` split into one ``hidden``-wide gate per
    stream, output ``Dropout(sum_s g_s * h_s)``.
    """

    def __init__(self, in_features: Mapping[str, int], hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__(in_features, hidden, dropout)
        self.proj = nn.ModuleDict(
            {
                name: nn.Sequential(nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.Tanh())
                for name, width in self.in_features.items()
            }
        )
        n = len(self.stream_names)
        self.gate = nn.Linear(n * hidden, n * hidden)
        self.dropout = nn.Dropout(dropout)

    def gates(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected streams ``[B, S, hidden]`` and their gates ``[B, S, hidden]`` (in ``stream_names`` order).

        A stream absent for a person (``present``) is 0 there, both as a gated input and in what the gates
        are computed from, and its gate is 0.
        """
        h = torch.stack([self.proj[n](x) for n, x in zip(self.stream_names, self._ordered(features))], dim=1)
        mask = self._present(present, h.shape[0], h.device)
        if mask is not None:
            h = h * mask.to(h.dtype)[:, :, None]
        g = torch.sigmoid(self.gate(h.flatten(1))).reshape(h.shape)
        if mask is not None:
            g = g * mask.to(g.dtype)[:, :, None]
        return h, g

    def forward(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Fuse ``{stream: [B, F]}`` into ``[B, hidden]``, gating over the streams ``present``."""
        h, g = self.gates(features, present)
        return self.dropout((g * h).sum(dim=1))


class AttentionFusion(Fusion):
    """Streams as tokens; a learned query pools them with multi-head attention.

    Args:
        in_features: ``{stream name: feature width}``.
        hidden: Token and output width (divisible by ``heads``).
        dropout: Dropout on the attention weights and on the output.
        heads: Number of attention heads.
    """

    def __init__(
        self, in_features: Mapping[str, int], hidden: int = 256, dropout: float = 0.5, heads: int = 4
    ) -> None:
        super().__init__(in_features, hidden, dropout)
        if heads < 1 or hidden % heads:
            raise EmoctxError(f"attention fusion: 'hidden' ({hidden}) must be divisible by 'heads' ({heads})")
        self.heads = int(heads)
        self.proj = nn.ModuleDict({name: nn.Linear(w, hidden) for name, w in self.in_features.items()})
        self.stream_embed = nn.Parameter(torch.zeros(len(self.stream_names), hidden))
        self.query = nn.Parameter(torch.zeros(1, 1, hidden))
        nn.init.trunc_normal_(self.stream_embed, std=0.02)
        nn.init.trunc_normal_(self.query, std=0.02)
        self.token_norm = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=min(dropout, 0.1), batch_first=True)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))

    def attend(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled vector ``[B, hidden]`` and the attention weights over the streams ``[B, S]``.

        Streams absent for a person (``present``) get no attention weight.
        """
        tokens = torch.stack(
            [self.proj[n](x) for n, x in zip(self.stream_names, self._ordered(features))], dim=1
        )
        tokens = self.token_norm(tokens + self.stream_embed.to(tokens.dtype))
        query = self.query.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        mask = self._present(present, tokens.shape[0], tokens.device)
        ignore = None if mask is None else ~mask  # True: left out of the softmax
        pooled, weights = self.attn(
            query, tokens, tokens, key_padding_mask=ignore, need_weights=True, average_attn_weights=True
        )
        return pooled.squeeze(1), weights.squeeze(1)

    def forward(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Fuse ``{stream: [B, F]}`` into ``[B, hidden]``, attending over the streams ``present``."""
        pooled, _ = self.attend(features, present)
        return self.out(pooled)

    def extra_repr(self) -> str:
        """The streams and widths, shown when the module is printed."""
        return f"{super().extra_repr()}, heads={self.heads}"


FUSIONS: dict[str, type[Fusion]] = {
    "concat": ConcatFusion,
    "gated": GatedFusion,
    "attention": AttentionFusion,
}
"""Fusion classes by name."""


def build_fusion(
    name: str, in_features: Mapping[str, int], hidden: int = 256, dropout: float = 0.5, **kwargs: Any
) -> Fusion:
    """Build a fusion module by name (``concat``, ``gated`` or ``attention``).

    Args:
        name: A key of :data:`FUSIONS`.
        in_features: ``{stream name: feature width}`` in fusion order.
        hidden: Width of the fused vector.
        dropout: Dropout probability.
        **kwargs: Fusion-specific options (``heads`` for ``attention``).

    Raises:
        EmoctxError: Unknown name or option.
    """
    if name not in FUSIONS:
        close = difflib.get_close_matches(str(name), list(FUSIONS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise EmoctxError(f"unknown fusion '{name}'{hint}; choose one of {', '.join(FUSIONS)}")
    try:
        return FUSIONS[name](in_features, hidden=hidden, dropout=dropout, **kwargs)
    except TypeError as e:
        raise EmoctxError(f"fusion '{name}': bad option(s) {sorted(kwargs)}: {e}") from e
