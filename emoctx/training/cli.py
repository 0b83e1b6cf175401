"""Training entry point built on Lightning's ``LightningCLI``: typed YAML configs, CLI overrides, saved configs.

:func:`fit` fits, keeps the best checkpoint's weights, tests them and writes ``model.safetensors`` (the
self-describing model file) into the run folder. ``emoctx train`` (:func:`emoctx.commands.train.train`) then
calibrates the model's decision thresholds on the validation split (:mod:`emoctx.evaluation.calibrate`): the
command composes training and evaluation, neither imports the other.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from emoctx.data.datamodule import EmotionDataModule
from emoctx.errors import EmoctxError
from emoctx.training.callbacks import ReplicaCheck
from emoctx.training.module import EmotionModule
from emoctx.training.trainer import Trainer

log = logging.getLogger(__name__)


def _stream_specs(model: EmotionModule) -> dict[str, dict[str, Any]]:
    """The network's streams (resolved input size, mean, std) for the data module (``data.streams``)."""
    return {
        name: {"input_size": spec["input_size"], "mean": list(spec["mean"]), "std": list(spec["std"])}
        for name, spec in model.net.stream_specs().items()
    }


class EmoctxCLI(LightningCLI):
    """LightningCLI with the data module's streams (input sizes, normalisation) linked to the model's."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: D102 (LightningCLI hook)
        parser.add_argument(
            "--resume",
            default=None,
            help="continue an interrupted run: 'last' (the run folder's last.ckpt) or a path to a .ckpt",
        )
        parser.add_argument("--skip_test", action="store_true", help="do not evaluate on the test split")
        parser.link_arguments("model", "data.streams", compute_fn=_stream_specs, apply_on="instantiate")


MONITOR = "val/mAP"


def _best_checkpoint(trainer: Any) -> ModelCheckpoint | None:
    """The callback that keeps the best ``val/mAP`` checkpoint."""
    return next((cb for cb in trainer.checkpoint_callbacks if cb.monitor == MONITOR), None)


def select_best(trainer: Any, model: EmotionModule) -> dict[str, Any]:
    """Give ``model`` the weights of its best ``val/mAP`` epoch, on every process; say what was selected.

    Lightning's ``ModelCheckpoint`` (``best.ckpt``) names the best epoch; its weights are read back with
    ``torch.load(weights_only=True)``. Without a validation split (or before any validation) there is
    nothing to choose by: the model keeps the last epoch's weights, and the returned description says so.
    """
    callback = _best_checkpoint(trainer)
    best = callback.best_model_path if callback is not None else ""
    best = trainer.strategy.broadcast(best)  # the path the main process holds, on every process
    trainer.strategy.barrier()  # the main process has finished writing it
    if not best:
        return {"monitor": None, "weights": "last epoch (no validation score to choose by)"}
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["state_dict"])
    score = callback.best_model_score
    log.info("the model holds the best %s weights: epoch %d (%s)", MONITOR, ckpt["epoch"], best)
    return {
        "monitor": MONITOR,
        "weights": "best validation epoch",
        "epoch": int(ckpt["epoch"]),
        "global_step": int(ckpt["global_step"]),
        "score": None if score is None else float(score),
        "checkpoint": Path(best).name,
    }


def fit(args: list[str] | None = None) -> dict[str, Any]:
    """Fit a model from a config (and overrides), test its best checkpoint, and write ``model.safetensors``.

    The model that is tested and written holds the weights of the epoch with the best ``val/mAP``
    (:func:`select_best`), whether or not the test split is evaluated; the model file records which epoch that
    was (``training["selected_checkpoint"]``) and how its inputs were made (the data module's preprocessing).

    Args:
        args: LightningCLI arguments, e.g. ``["--config", "configs/synth_tiny.yaml", "--trainer.max_epochs", "2"]``.

    Returns:
        The test metrics (empty when ``--skip_test``), with ``model_path`` and ``run_dir`` added as strings and,
        in the main process of a run with a validation split, ``calibration``: the keyword arguments of
        :func:`emoctx.evaluation.calibrate.calibrate_model` that fit the thresholds on that split
        (``records``, ``root``, ``batch_size``, ``num_workers``, ``records_name``).
    """
    # args are given explicitly (also when the command line holds other words, e.g. under pytest).
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    cli = EmoctxCLI(
        EmotionModule,
        EmotionDataModule,
        trainer_class=Trainer,
        run=False,
        args=args,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "callbacks": [
                # best.ckpt: the best val/mAP so far. last.ckpt: every completed epoch (Lightning's own
                # save_last refreshes only when the metric improves). Both are written when the epoch is
                # complete, so that resuming continues with the next epoch.
                ModelCheckpoint(monitor=MONITOR, mode="max", filename="best", save_on_train_epoch_end=True),
                ModelCheckpoint(filename="last", save_on_train_epoch_end=True, enable_version_counter=False),
                ReplicaCheck(),
            ],
        },
    )
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    # The model file says how its inputs were made: the data module's preprocessing and settings.
    model.preprocess, model.data_settings = dm.preprocess, dict(dm.hparams)
    run_dir = Path(trainer.default_root_dir)
    ckpt_dir = run_dir / "checkpoints"
    for cb in trainer.checkpoint_callbacks:
        if cb.dirpath is None:
            cb.dirpath = str(
                ckpt_dir
            )  # a fixed place (not inside a logger's version folder), for --resume last
    resume = cli.config.get("resume")
    if resume == "last":
        resume = ckpt_dir / "last.ckpt"
        if not resume.is_file():
            raise EmoctxError(f"{resume}: nothing to resume (no last checkpoint in this run folder)")
    if resume is not None:
        _check_resumable(Path(resume))
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=resume, weights_only=True)
        model.selected_checkpoint = select_best(trainer, model)
        results: dict[str, Any] = {}
        if not cli.config.get("skip_test") and dm.records_path("test") is not None:
            tested = trainer.test(model, datamodule=dm, verbose=False)  # the selected weights, as they are
            results.update(tested[0] if tested else {})
        model_path = run_dir / "model.safetensors"
        if trainer.is_global_zero:
            from emoctx.checkpoint import save_model

            save_model(model_path, model.net, model.description())
            log.info("model written to %s", model_path)
            val = dm.records_path("val")
            if val is not None:  # where the decision thresholds are fitted (by the train command)
                results["calibration"] = {
                    "records": dm.records("val"),
                    "root": dm.root,
                    "batch_size": dm.batch_size,
                    "num_workers": dm.num_workers,
                    "records_name": str(val),
                }
        results.update(model_path=str(model_path), run_dir=str(run_dir))
        return results
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # else the process aborts at exit


def _check_resumable(path: Path) -> None:
    """Refuse a checkpoint that cannot be read safely before Lightning reads it (a clear error, not a traceback).

    The tensors are mapped, not read, so this costs little even for a large checkpoint; Lightning then loads
    the file itself with ``weights_only=True``.
    """
    from emoctx.checkpoint import safe_torch_load

    if not path.is_file():
        raise EmoctxError(f"{path}: no such checkpoint to resume from")
    ckpt = safe_torch_load(path, mmap=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise EmoctxError(
            f"{path}: not a training checkpoint (no 'state_dict' inside); pass a .ckpt that emoctx train wrote"
        )


def is_rank_zero() -> bool:
    """True in the main process of a (possibly distributed) run."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def train(args: list[str] | None = None) -> dict[str, Any]:
    """Deprecated: :func:`emoctx.commands.train.train` (fit, then calibrate: what ``emoctx train`` runs).

    :func:`fit` alone trains and writes the model without calibrating its thresholds.
    """
    import warnings

    warnings.warn(
        "emoctx.training.cli.train is deprecated: use emoctx.commands.train.train (fit and calibrate, as "
        "`emoctx train` does) or emoctx.training.cli.fit (no calibration)",
        DeprecationWarning,
        stacklevel=2,
    )
    from emoctx.commands.train import train as train_and_calibrate

    return train_and_calibrate(args)
