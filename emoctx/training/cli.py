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
from emoctx.training.progress import MONITOR, EpochLog, figure_text
from emoctx.training.trainer import Trainer

log = logging.getLogger(__name__)


def _stream_specs(model: EmotionModule) -> dict[str, dict[str, Any]]:
    """The network's streams (resolved input size, mean, std) for the data module (``data.streams``)."""
    return {
        name: {"input_size": spec["input_size"], "mean": list(spec["mean"]), "std": list(spec["std"])}
        for name, spec in model.net.stream_specs().items()
    }


PROG = "emoctx train"

DESCRIPTION = (
    "Train a model from a YAML config (Lightning), test it, and write a self-describing model file. Every "
    "config key can be given as --KEY VALUE. The short help: emoctx train --help."
)

OPTIMISER_HINT = (
    "the optimiser and its schedule are the model's settings: --model.optimizer {sgd,adam,adamw}, --model.lr, "
    "--model.weight_decay, --model.scheduler {step,cosine,none} (recorded in the model file). Lightning's "
    "--optimizer and --lr_scheduler are not offered: they would replace the model's optimiser, its schedule and "
    "its backbone learning rates without the model file knowing"
)
"""Why ``--optimizer``/``--lr_scheduler`` (LightningCLI's own, which would override ``configure_optimizers``)
are refused, and what to use instead."""

COMMAND_OPTIONS = ("--device", "--help", "--help-all")
"""Options ``emoctx train`` takes besides LightningCLI's (:mod:`emoctx.commands.train`)."""

_USAGE_LINES = 12  # an argument error shows at most this many lines of the parser's message


class EmoctxCLI(LightningCLI):
    """LightningCLI for ``emoctx train``.

    * the data module's streams (input sizes, normalisation) are linked to the model's;
    * a logger given without a ``save_dir`` (or with ``.``, wandb's default) writes into the run folder
      (``trainer.default_root_dir``);
    * an argument error is an :class:`~emoctx.errors.EmoctxError` of a few lines (what is wrong, close
      matches of a mistyped option, where the help is), not the parser's usage text.
    """

    def add_arguments_to_parser(self, parser) -> None:  # noqa: D102 (LightningCLI hook)
        parser.add_argument(
            "--resume",
            default=None,
            help="continue an interrupted run: 'last' (the run folder's last.ckpt) or a path to a .ckpt",
        )
        parser.add_argument("--skip_test", action="store_true", help="do not evaluate on the test split")
        parser.link_arguments("model", "data.streams", compute_fn=_stream_specs, apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:  # noqa: D102 (LightningCLI hook)
        from jsonargparse import ArgumentError

        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            known = option_strings(parser) + list(COMMAND_OPTIONS)
            raise EmoctxError(usage_error(str(e), known)) from None

    def before_instantiate_classes(self) -> None:
        """Loggers given without a folder (or with ``.``) write into the run folder (``trainer.default_root_dir``)."""
        trainer = self.config.get("trainer")
        root = trainer.get("default_root_dir") if trainer is not None else None
        if not root:
            return
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init = logger.get("init_args") if hasattr(logger, "get") else None
            # WandbLogger's own default is "." (the current folder): that counts as not given.
            if init is not None and "save_dir" in init and init.get("save_dir") in (None, "", "."):
                init["save_dir"] = root


def option_strings(parser: Any) -> list[str]:
    """Every ``--option`` a parser knows (dotted config keys included)."""
    return sorted({s for action in parser._actions for s in action.option_strings if s.startswith("--")})


def suggest_options(given: str, known: list[str], n: int = 3) -> list[str]:
    """Options of ``known`` close to a mistyped ``given`` (``--trainer.max_epocs``: ``--trainer.max_epochs``).

    Whole names are compared, and so are their last parts (``--max_epochs`` finds ``--trainer.max_epochs``,
    ``--batch_size`` finds ``--data.batch_size``).
    """
    import difflib

    name = given.split("=", 1)[0]
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.85)
    if close:
        return close[:1] if len(close) > 1 and _ratio(name, close[0]) > _ratio(name, close[1]) else close
    last = name.lstrip("-").rsplit(".", 1)[-1]
    by_last: dict[str, list[str]] = {}
    for option in known:
        by_last.setdefault(option.lstrip("-").rsplit(".", 1)[-1], []).append(option)
    for match in difflib.get_close_matches(last, list(by_last), n=1, cutoff=0.8):
        close += [o for o in by_last[match] if o not in close]
    return close[:n]


def _ratio(a: str, b: str) -> float:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio()


def usage_error(message: str, known: list[str]) -> str:
    """A short message for an argument error of ``emoctx train``: what is wrong, close matches, where help is."""
    import re

    lines = [line.rstrip() for line in message.strip().splitlines() if line.strip()]
    text = "\n".join(lines[:_USAGE_LINES] + (["  ..."] if len(lines) > _USAGE_LINES else []))
    hints = []
    unknown = re.match(r"unrecognized arguments: (.*)", lines[0]) if lines else None
    if unknown:
        for option in [w for w in unknown.group(1).split() if w.startswith("--")]:
            root = option.split("=", 1)[0].split(".", 1)[0]
            if root in ("--optimizer", "--lr_scheduler"):
                hints.append(f"{option}: {OPTIMISER_HINT}")
                continue
            close = suggest_options(option, known)
            if close:
                hints.append(f"{option}: did you mean {' or '.join(close)}?")
    return "\n".join([text, *hints, f"run: {PROG} --help (every option: {PROG} --help-all)"])


def make_cli(args: list[str] | None) -> EmoctxCLI:
    """The ``emoctx train`` LightningCLI for ``args``, parsed and with its classes built (nothing run yet)."""
    # args are given explicitly (also when the command line holds other words, e.g. under pytest).
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        from lightning_fabric.utilities.exceptions import MisconfigurationException
    except ImportError:  # pragma: no cover (another Lightning layout)
        MisconfigurationException = ValueError  # noqa: N806
    try:
        return EmoctxCLI(
            EmotionModule,
            EmotionDataModule,
            trainer_class=Trainer,
            run=False,
            args=args,
            parser_kwargs={"prog": PROG, "description": DESCRIPTION, "exit_on_error": False},
            save_config_kwargs={"overwrite": True},
            # The model's own configure_optimizers is the one way to set the optimiser (see OPTIMISER_HINT).
            auto_configure_optimizers=False,
            # emoctx reads its checkpoints itself (emoctx.checkpoint); no instantiation recipe in the model's
            # hyper-parameters (it would appear in the model file as "_instantiator").
            load_from_checkpoint_support=False,
            trainer_defaults={
                "callbacks": [
                    # best.ckpt: the best val/mAP so far (fit switches to the model's own figure). last.ckpt: every completed epoch (Lightning's own
                    # save_last refreshes only when the metric improves). Both are written when the epoch is
                    # complete, so that resuming continues with the next epoch.
                    ModelCheckpoint(
                        monitor=MONITOR, mode="max", filename="best", save_on_train_epoch_end=True
                    ),
                    ModelCheckpoint(
                        filename="last", save_on_train_epoch_end=True, enable_version_counter=False
                    ),
                    ReplicaCheck(),
                    EpochLog(),  # one line per epoch: loss, val/mAP, the best so far, time
                ],
            },
        )
    except EmoctxError:
        raise
    except (
        MisconfigurationException,
        ValueError,
    ) as e:  # more devices than there are, an unknown accelerator
        raise EmoctxError(f"{e} (run: {PROG} --help)") from None


def full_help() -> str:
    """The full option list of ``emoctx train`` (LightningCLI's help, docstring markup removed)."""
    import contextlib
    import io
    import re

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        make_cli(["--help"])
    text = out.getvalue()
    # The usage block lists every option again (70 lines): one line says the same.
    text = re.sub(
        r"\Ausage: .*?\n\n", f"usage: {PROG} [--config FILE] [--KEY VALUE ...]\n\n", text, flags=re.S
    )
    text = re.sub(r":(?:class|meth|func|mod|attr|data|ref):`~?([^`]+)`", r"\1", text)
    text = text.replace("``", "'")
    text = re.sub(
        r"\n\s*_stream_specs\(model\) --> data\.streams \[applied on instantiate\]\n",
        "\n  data.streams: taken from the model's streams (model.net), not set here\n",
        text,
    )
    return text


def _best_checkpoint(trainer: Any) -> ModelCheckpoint | None:
    """The callback that keeps the best checkpoint (``best.ckpt``, by the model's monitored figure)."""
    return next((cb for cb in trainer.checkpoint_callbacks if cb.filename == "best"), None)


def select_best(trainer: Any, model: EmotionModule) -> dict[str, Any]:
    """Give ``model`` the weights of its best epoch (``val/mAP``, or the model's own figure), on every process.

    Says what was selected.

    Lightning's ``ModelCheckpoint`` (``best.ckpt``) names the best epoch; its weights are read back with
    ``torch.load(weights_only=True)``. Without a validation split (or before any validation) there is
    nothing to choose by: the model keeps the last epoch's weights, and the returned description says so.
    """
    callback = _best_checkpoint(trainer)
    monitor = callback.monitor if callback is not None else MONITOR
    best = callback.best_model_path if callback is not None else ""
    best = trainer.strategy.broadcast(best)  # the path the main process holds, on every process
    trainer.strategy.barrier()  # the main process has finished writing it
    if not best:
        return {"monitor": None, "weights": "last epoch (no validation score to choose by)"}
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["state_dict"])
    score = callback.best_model_score
    log.info(
        "the model holds the weights of epoch %d, the best by %s (%s)",
        int(ckpt["epoch"]) + 1,  # counted from 1, as the epoch lines count them
        monitor + ("" if score is None else " " + figure_text(monitor, float(score))),
        best,
    )
    return {
        "monitor": monitor,
        "weights": "best validation epoch",
        "epoch": int(ckpt["epoch"]),
        "global_step": int(ckpt["global_step"]),
        "score": None if score is None else float(score),
        "checkpoint": Path(best).name,
    }


def fit(args: list[str] | None = None) -> dict[str, Any]:
    """Fit a model from a config (and overrides), test its best checkpoint, and write ``model.safetensors``.

    The model that is tested and written holds the weights of the epoch with the best ``val/mAP`` (or the
    model's own figure, ``EmotionModule.monitor``: ``val/vad_ccc`` for a face-only valence/arousal model)
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
    cli = make_cli(args)
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    best_callback = _best_checkpoint(trainer)
    if best_callback is not None and best_callback.monitor != model.monitor:
        best_callback.monitor = model.monitor  # e.g. val/vad_ccc for a face-only valence/arousal model
        log.info("the saved epoch is the best by %s", model.monitor)
    # The model file says how its inputs were made: the data module's preprocessing and settings.
    model.preprocess = dm.preprocess
    model.data_settings = {k: v for k, v in dm.hparams.items() if not str(k).startswith("_")}  # settings only
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
    dm.check_data()  # a wrong data.root is reported now, before any logger starts a run
    run_dir.mkdir(parents=True, exist_ok=True)  # the loggers' folder, before they start
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
        _finish_wandb(trainer)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # else the process aborts at exit


def _finish_wandb(trainer: Any) -> None:
    """End the wandb run a WandbLogger of ``trainer`` started.

    Lightning leaves it open, and the next WandbLogger of the same process (a second ``fit`` from Python)
    would reuse it: the second run's logs would land in the first run's folder.
    """
    from pytorch_lightning.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
            import wandb

            if wandb.run is not None:
                wandb.finish()


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
