"""The LightningModule: the training logic around an injected EmotionNet (loss, metrics, optimisation).

Everything a run needs is an ``__init__`` argument, so LightningCLI turns it into a typed YAML config
(see ``configs/``); the network is one of them (``model.net``), built from its own ``init_args``. The network
itself (:mod:`emoctx.models`) runs without Lightning.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Literal

import pytorch_lightning as pl
import torch

from emoctx import labels
from emoctx.data.preprocess import PreprocessCfg
from emoctx.errors import EmoctxError
from emoctx.losses import EmotionLoss
from emoctx.metrics import EmotionMetrics
from emoctx.models.backbones import StreamConfig
from emoctx.models.network import EmotionNet
from emoctx.models.outputs import scores_from_logits, vad_ratings
from emoctx.training.optim import make_optimizer, param_groups, warmup_cosine

log = logging.getLogger(__name__)


def _default_streams() -> dict[str, StreamConfig]:
    return {
        "body": StreamConfig(backbone="resnet18", input_size=128),
        "scene": StreamConfig(backbone="resnet18", input_size=224),
    }


_NETWORK_ARGS = ("streams", "fusion", "hidden", "dropout", "vad_output")
_NETWORK_CLASSES = ("emoctx.models.EmotionNet", "emoctx.models.network.EmotionNet")
"""The network's arguments the module took before the network was injected (deprecated)."""


def _network(net: EmotionNet | None, **legacy: Any) -> EmotionNet:
    """The network given, or built from the deprecated flat arguments (with a warning), or the default one."""
    given = {k: v for k, v in legacy.items() if v is not None}
    if isinstance(net, Mapping) and "class_path" in net:  # a config's model.net, given as plain data
        if net["class_path"] not in _NETWORK_CLASSES:
            raise EmoctxError(
                f"model.net: class_path {net['class_path']!r} is not one of {list(_NETWORK_CLASSES)}"
            )
        net = EmotionNet(**net.get("init_args", {}))
    elif isinstance(
        net, Mapping
    ):  # EmotionModule({...streams...}): the first argument used to be the streams
        given, net = {"streams": net, **given}, None
    if given:
        if net is not None:
            raise EmoctxError(
                f"model: give the network once, as model.net; model.{', model.'.join(given)} are its deprecated "
                "flat arguments"
            )
        warnings.warn(
            f"EmotionModule({', '.join(given)}) is deprecated: give the network, EmotionModule(net=EmotionNet(...)) "
            "(in a config: model.net with class_path emoctx.models.EmotionNet and its init_args)",
            DeprecationWarning,
            stacklevel=3,
        )
        return EmotionNet(given.pop("streams", None) or _default_streams(), **given)
    return net if net is not None else EmotionNet(_default_streams())


def _network_hparams(net: EmotionNet) -> dict[str, Any]:
    """The network's arguments as plain data, recorded with the training settings as before injection."""
    args = net.init_args()
    out = {
        "streams": {name: asdict(cfg) for name, cfg in args["streams"].items()},
        "fusion": args["fusion"],
        "hidden": args["hidden"],
        "dropout": args["dropout"],
        "vad_output": args["vad_output"],
    }
    if args["fusion_kwargs"]:
        out["fusion_kwargs"] = dict(args["fusion_kwargs"])
    if args["face"] is not None:
        out["face"] = args["face"].to_dict()
    if args["modality_dropout"]:
        out["modality_dropout"] = dict(args["modality_dropout"])
    if args["expressions"]:
        out["expressions"] = list(args["expressions"])
    return out


class EmotionModule(pl.LightningModule):
    """Trains an :class:`EmotionNet` on EMOTIC-format data: the loss, the metrics and the optimisation.

    The network is given (``net``; in a config ``model.net`` with ``class_path: emoctx.models.EmotionNet`` and
    its ``init_args``), so this module holds only the training logic (lightning-hydra-template's
    ``MNISTLitModule(net=...)``).

    Args:
        net: the network to train (default: ResNet-18 body at 128 px and scene at 224 px, concatenation).
        discrete_loss: ``emotic`` (the authors' weighted squared error) or ``bce``.
        continuous_loss: ``deadzone`` (the authors' one-point dead zone), ``smoothl1``, ``l1`` or ``l2``.
        discrete_weights: category weights from each ``batch``, from the training-set counts (``dataset``)
            or ``none``; default ``batch`` for ``emotic`` (the authors'), ``none`` for ``bce``.
        combine: ``fixed`` task weights or ``shake`` (random mixing of the two task losses during training).
        loss_weights: (discrete, continuous) weights for ``fixed`` (and for evaluation under ``shake``).
        loss_reduction: ``mean`` (average over the persons of a batch) or ``sum`` (the common PyTorch baseline's).
        continuous_scale: compare V/A/D on the internal ``0-1`` scale or in points of the ``1-10`` scale (the
            baseline's); see :mod:`emoctx.losses`.
        optimizer: ``sgd``, ``adam`` (``torch.optim.Adam``: weight decay added to the gradient, as the baseline
            trains) or ``adamw`` (decoupled weight decay).
        lr: learning rate of the fusion head (and of the backbones times ``backbone_lr_scale``).
        momentum: SGD momentum.
        weight_decay: weight decay.
        filter_bias_and_bn: no weight decay on biases and normalisation weights (every parameter with at
            most one dimension, and those a timm model lists in ``no_weight_decay()``), timm's rule
            (``timm.optim.param_groups_weight_decay``); ``false`` decays every parameter.
        backbone_lr_scale: learning-rate multiplier for the (pretrained) backbones.
        freeze_backbone_epochs: keep the backbones frozen for this many epochs (warm-up of the head).
        scheduler: ``step`` (lr x ``gamma`` every ``step_size`` epochs), ``cosine`` (per step, after a linear
            warm-up of ``warmup_epochs``; torch's ``LinearLR`` then ``CosineAnnealingLR``) or ``none``.
        step_size: epochs between decays for ``step``.
        gamma: decay factor for ``step``.
        warmup_epochs: linear warm-up length for ``cosine`` (may be fractional).
        channels_last: run the network in channels-last memory format (faster convolutions on CPU and GPU).
        compile: wrap the network in ``torch.compile``.
        ap_variant: average-precision variant of the validation/test metrics (``sklearn`` or ``voc``).
        streams: deprecated (use ``net``): one :class:`StreamConfig` per input stream.
        fusion: deprecated (use ``net``): fusion head by name.
        hidden: deprecated (use ``net``): width of the fused representation.
        dropout: deprecated (use ``net``): dropout before the output heads.
        vad_output: deprecated (use ``net``): ``internal`` or ``tenths`` (the baseline's V/A/D head).
    """

    def __init__(
        self,
        net: EmotionNet | None = None,
        discrete_loss: Literal["emotic", "bce"] = "emotic",
        continuous_loss: Literal["deadzone", "smoothl1", "l1", "l2"] = "deadzone",
        discrete_weights: Literal["batch", "dataset", "none"] | None = None,
        combine: Literal["fixed", "shake"] = "fixed",
        loss_weights: tuple[float, float] = (0.5, 0.5),
        loss_reduction: Literal["mean", "sum"] = "mean",
        continuous_scale: Literal["0-1", "1-10"] = "0-1",
        optimizer: Literal["sgd", "adam", "adamw"] = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        filter_bias_and_bn: bool = True,
        backbone_lr_scale: float = 1.0,
        freeze_backbone_epochs: int = 0,
        scheduler: Literal["step", "cosine", "none"] = "step",
        step_size: int = 7,
        gamma: float = 0.1,
        warmup_epochs: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
        ap_variant: Literal["sklearn", "voc"] = "sklearn",
        streams: dict[str, StreamConfig] | None = None,
        fusion: str | None = None,
        hidden: int | None = None,
        dropout: float | None = None,
        vad_output: Literal["internal", "tenths"] | None = None,
    ) -> None:
        super().__init__()
        net = _network(
            net, streams=streams, fusion=fusion, hidden=hidden, dropout=dropout, vad_output=vad_output
        )
        self.save_hyperparameters(ignore=["net", *_NETWORK_ARGS])
        # The network's own arguments are recorded with the training settings (in the model file's "training"),
        # as plain types, so checkpoints load with torch.load(weights_only=True).
        self.hparams.update(_network_hparams(net))
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        # Kept outside the module registry so the compiled wrapper adds no duplicate keys to the state dict.
        object.__setattr__(self, "_forward", torch.compile(self.net) if compile else self.net)
        # With dataset weights, the training-set counts arrive in setup(); until then every count is 0.
        self.criterion = self._make_criterion(torch.zeros(labels.NUM_CATEGORIES))
        self.val_metrics = EmotionMetrics(ap_variant=ap_variant)
        self.test_metrics = EmotionMetrics(ap_variant=ap_variant)
        # Which epoch's weights the module holds after training (set by the training entry point).
        self.selected_checkpoint: dict[str, Any] | None = None
        # How the data module makes the inputs, and its settings: given by the training entry point, stored in
        # every checkpoint and model file (without them the description says: the streams' defaults).
        self.preprocess: PreprocessCfg | None = None
        self.data_settings: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------------------------- set-up
    def _make_criterion(self, category_counts: torch.Tensor) -> EmotionLoss:
        hp = self.hparams
        return EmotionLoss(
            discrete=hp.discrete_loss,
            continuous=hp.continuous_loss,
            discrete_weights=hp.discrete_weights,
            category_counts=category_counts if hp.discrete_weights == "dataset" else None,
            combine=hp.combine,
            weights=tuple(hp.loss_weights),
            reduction=hp.loss_reduction,
            continuous_scale=hp.continuous_scale,
        )

    def setup(self, stage: str) -> None:
        """Give the loss the training-set category counts when it weights categories by dataset counts."""
        dm = getattr(self.trainer, "datamodule", None)
        if self.hparams.discrete_weights == "dataset" and dm is not None:
            counts = torch.as_tensor(dm.category_counts(), dtype=torch.float32)
            self.criterion = self._make_criterion(counts).to(self.device)
            log.info("category weights from the training-set counts (%d positives)", int(counts.sum()))

    def backbones_frozen(self) -> bool:
        """Whether this epoch is one of the ``freeze_backbone_epochs`` warm-up epochs of the head."""
        return self.current_epoch < self.hparams.freeze_backbone_epochs

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Freeze the backbones during the warm-up epochs: their gradients are dropped before the step.

        A parameter without a gradient is left alone by the optimiser (no update, no weight decay, no
        momentum or Adam state). The freeze is not done with ``requires_grad`` as Lightning's
        ``BackboneFinetuning`` does it: a parameter that stops or starts requiring a gradient after DDP has
        wrapped the model breaks distributed training (DDP stops with "parameters that were not used in
        producing the loss"; with ``BackboneFinetuning`` the unfrozen backbone is not kept in step across
        processes, Lightning issue #20340). Here every process computes and all-reduces every gradient, and
        every process drops the same ones. ``BackboneFinetuning`` also ramps the backbone's learning rate on
        its own schedule, outside this module's scheduler and weight-decay groups.
        """
        if self.backbones_frozen():
            for p in self.net.backbone_parameters():
                p.grad = None

    def on_train_epoch_start(self) -> None:
        """Log the learning rate of the head."""
        if self.backbones_frozen():
            log.info("epoch %d: backbones frozen (head warm-up)", self.current_epoch)
        if self.trainer.optimizers:
            self.log(
                "train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_epoch=True, on_step=False
            )

    # -------------------------------------------------------------------------------------------- one step
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the network on the streams it has; returns ``logits`` and ``vad`` (internal scale)."""
        inputs = {name: batch[name] for name in self.net.stream_names}
        if self.hparams.channels_last:
            inputs = {k: v.contiguous(memory_format=torch.channels_last) for k, v in inputs.items()}
        return self._forward(inputs)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-category scores in [0, 1] with the activation that fits the training loss."""
        return scores_from_logits(logits, self.criterion.score_activation)

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        # Images the dataset could not read are dropped from the batch (each one logged by the dataset).
        if "categories" not in batch:
            return self._empty_step(stage, f"a batch of {int(batch.get('skipped', 0))} unreadable image(s)")
        if stage == "train" and batch["categories"].shape[0] < 2 and batch.get("skipped", 0):
            # Training-mode batch normalisation cannot normalise a single person.
            return self._empty_step(stage, f"a batch with one readable image of {1 + int(batch['skipped'])}")
        out = self(batch)
        losses = self.criterion(
            out["logits"], out["vad"], batch["categories"], batch["vad"], batch["vad_mask"]
        )
        n = batch["categories"].shape[0]
        for k, v in losses.items():
            self.log(
                f"{stage}/{k}",
                v,
                batch_size=n,
                on_step=stage == "train",
                on_epoch=True,
                sync_dist=stage != "train",
            )
        skipped = int(batch.get("skipped", 0))
        if skipped:
            log.warning("%s: %d unreadable image(s) skipped in this batch", stage, skipped)
            self.log(f"{stage}/skipped_images", float(skipped), batch_size=n, reduce_fx="sum", on_epoch=True)
        if stage != "train":
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            vad_true = labels.vad_from_model(batch["vad"]).masked_fill(~batch["vad_mask"], math.nan)
            metrics.update(
                out["logits"].float(),
                batch["categories"],
                labels.vad_from_model(out["vad"].float()),
                vad_true,
            )
        return losses["loss"]

    def _empty_step(self, stage: str, what: str) -> torch.Tensor | None:
        """A batch whose images were all (or all but one) unreadable: nothing to learn from.

        In one process the step is skipped (``None``). Under DDP every process must take part in each
        step's gradient all-reduce, or the others wait for it forever: this process contributes a zero
        loss that reaches every trainable parameter, so its gradients are zeros and the step stays in sync
        (the others' gradients are averaged with these zeros).
        """
        rank = self.trainer.global_rank if self._trainer is not None else 0
        log.warning("%s: %s skipped (process %d, step %d)", stage, what, rank, self.global_step)
        if stage != "train" or self._trainer is None or self.trainer.world_size < 2:
            return None
        return sum(
            (0.0 * p.sum() for p in self.parameters() if p.requires_grad), torch.zeros((), device=self.device)
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One optimisation step."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate validation metrics."""
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate test metrics."""
        self._step(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        values = metrics.compute()
        self.log_dict({f"{stage}/{k}": float(v) for k, v in values.items()}, sync_dist=False)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        """Log ``val/mAP``, ``val/ap/<slug>``, ``val/vad_mae``."""
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Log ``test/mAP``, ``test/ap/<slug>``, ``test/vad_mae``."""
        self._log_metrics("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Scores in [0, 1] and V/A/D on the 1-10 scale for each person of the batch."""
        out = self(batch)
        return {
            "index": batch["index"],
            "scores": self.scores(out["logits"].float()),
            "vad": vad_ratings(out["vad"].float()),
        }

    # ---------------------------------------------------------------------------------------- optimisation
    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups of the head and of the backbones (:func:`emoctx.training.optim.param_groups`)."""
        hp = self.hparams
        return param_groups(self.net, hp.lr, hp.backbone_lr_scale, hp.weight_decay, hp.filter_bias_and_bn)

    def configure_optimizers(self) -> dict[str, Any]:
        """The optimiser over :meth:`param_groups`, and the learning-rate schedule (:mod:`emoctx.training.optim`)."""
        hp = self.hparams
        opt = make_optimizer(hp.optimizer, self.param_groups(), hp.lr, hp.momentum, hp.weight_decay)
        if hp.scheduler == "none":
            return {"optimizer": opt}
        if hp.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=hp.gamma)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = total / max(1, self.trainer.max_epochs or 1)
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": warmup_cosine(opt, total, hp.warmup_epochs * steps_per_epoch),
                "interval": "step",
            },
        }

    # ------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the self-description (labels, scale, stream specs, versions) next to the weights."""
        checkpoint["emoctx"] = self.description()

    def description(self) -> dict[str, Any]:
        """The model's self-description (see :mod:`emoctx.checkpoint`).

        ``preprocessing`` is :attr:`preprocess` (the data module's, given by the training entry point);
        ``training`` holds the hyper-parameters, ``training["data"]`` the data module's settings
        (:attr:`data_settings`), ``training["precision"]`` the arithmetic the run trained with
        (``precision_requested``: what the config asked for, e.g. ``auto``) and
        ``training["selected_checkpoint"]`` which epoch's weights the model holds (the best ``val/mAP`` one).
        """
        from emoctx.checkpoint import describe

        training = dict(self.hparams)
        if self.data_settings is not None:
            training["data"] = dict(self.data_settings)
        if self.selected_checkpoint is not None:
            training["selected_checkpoint"] = dict(self.selected_checkpoint)
        trainer = self._trainer
        if trainer is not None:
            training["precision"] = str(trainer.precision)
            training["precision_requested"] = str(getattr(trainer, "requested_precision", trainer.precision))
        return describe(
            self.net,
            training=training,
            score_activation=self.criterion.score_activation,
            preprocessing=self.preprocess,
        )
