"""Callbacks the training entry point adds by default."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch

from emoctx.io import atomic_write_text

log = logging.getLogger(__name__)


class ReplicaCheck(pl.Callback):
    """After a distributed run, check that every process ends with the same weights.

    DDP keeps replicas identical by averaging gradients; a difference means a broken set-up (for example
    an unsynchronised random operation in the model). Each process computes a fingerprint of its weights
    (sum and sum of squares in float64); the main process writes all of them to ``replicas.json`` in the
    run folder and logs an error when they differ.

    Args:
        filename: the report's name in the run folder.
    """

    def __init__(self, filename: str = "replicas.json") -> None:
        self.filename = filename

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        if trainer.world_size < 2:
            return
        with torch.no_grad():
            flat = torch.cat([p.detach().double().flatten().cpu() for p in pl_module.parameters()])
            mine = torch.stack([flat.sum(), (flat * flat).sum()])
        gathered = pl_module.all_gather(mine.to(pl_module.device)).cpu().reshape(trainer.world_size, 2)
        if not trainer.is_global_zero:
            return
        rows = gathered.tolist()
        agree = all(torch.allclose(gathered[0], g, rtol=1e-9, atol=0.0) for g in gathered)
        out = Path(trainer.default_root_dir) / self.filename
        atomic_write_text(
            out, json.dumps({"world_size": trainer.world_size, "agree": agree, "fingerprints": rows})
        )
        if agree:
            log.info("all %d processes hold identical weights (%s)", trainer.world_size, out)
        else:
            log.error("processes ended with different weights: %s", rows)
