"""Callbacks the distributed-training tests pass to `emoctx train` (imported by class path in each process)."""

import pytorch_lightning as pl
import torch


class PerturbOneReplica(pl.Callback):
    """At the end of training, the process of rank 1 moves one weight: the replicas no longer agree."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank == 1:
            with torch.no_grad():
                next(pl_module.parameters()).add_(1e-3)
