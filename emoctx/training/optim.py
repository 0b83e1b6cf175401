"""Optimisation of a training run: parameter groups (head and backbones, weight decay), optimiser, schedule."""

from __future__ import annotations

from typing import Any

import torch

from emoctx.models.network import EmotionNet


def param_groups(
    net: EmotionNet, lr: float, backbone_lr_scale: float, weight_decay: float, filter_bias_and_bn: bool = True
) -> list[dict[str, Any]]:
    """Optimiser parameter groups of the head and of the backbones.

    The backbones' learning rate is ``lr x backbone_lr_scale``; with ``filter_bias_and_bn`` each part is split
    into weight-decayed and not-decayed parameters by timm's rule (``timm.optim.param_groups_weight_decay``: every
    parameter with at most one dimension, and those a timm model lists in ``no_weight_decay()``, get none);
    without it every parameter is decayed.
    """
    from timm.optim import param_groups_weight_decay

    head = torch.nn.ModuleList([net.fusion, net.category_head, net.vad_head])
    parts = [(head, lr, ())]
    for backbone in net.backbones.values():
        skip = backbone.no_weight_decay() if hasattr(backbone, "no_weight_decay") else ()
        parts.append((backbone, lr * backbone_lr_scale, tuple(skip)))
    groups = []
    for module, part_lr, skip in parts:
        if filter_bias_and_bn:
            split = param_groups_weight_decay(module, weight_decay=weight_decay, no_weight_decay_list=skip)
        else:
            split = [{"params": list(module.parameters()), "weight_decay": weight_decay}]
        groups += [dict(g, lr=part_lr) for g in split if g["params"]]
    return groups


def make_optimizer(
    name: str, groups: list[dict[str, Any]], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``sgd`` (with momentum), ``adam`` (weight decay added to the gradient) or ``adamw`` over ``groups``."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up, then cosine decay: torch's ``LinearLR`` then ``CosineAnnealingLR``.

    The rate rises from ``lr / W`` to ``lr`` over the first ``W = warmup_steps`` steps and falls to 0 at
    ``total_steps``: at step ``k`` the factor is ``(k + 1) / W`` during the warm-up and
    ``(1 + cos(pi (k - W) / (total - W))) / 2`` after it.
    """
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    warmup = min(int(warmup_steps), total_steps - 1)
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - max(warmup, 0)))
    if warmup < 2:  # no warm-up (one step of warm-up would start at the full rate anyway)
        return cosine
    linear = LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1)
    return SequentialLR(optimizer, [linear, cosine], milestones=[warmup])
