r"""Train a model from a YAML config (Lightning), test it, and write a self-describing model file.

Examples:
  emoctx train --config configs/synth_tiny.yaml --data.root runs/demo/synth --trainer.max_epochs 3
  emoctx train --config configs/emotic_kosti_resnet18.yaml --data.root /data/emotic/emotic
  emoctx train --config configs/synth_tiny.yaml --data.root runs/demo/synth --resume last   # continue a run
  emoctx train --config configs/emotic_strong.yaml --data.root /data/emotic/emotic --device cuda \
      --trainer.devices 4 --trainer.strategy ddp

Every key of the config can be set on the command line as --KEY VALUE (--model.lr 0.001, --data.batch_size 32);
later options win over earlier ones and over the config.

The run folder (--trainer.default_root_dir) receives config.yaml (the resolved config), checkpoints/{best,last}.ckpt,
the logs (wandb offline in the configs) and model.safetensors: the weights of the epoch with the best val/mAP
(val/vad_ccc for a face-only model, configs/face_va.yaml), with decision thresholds calibrated on the validation
split. Each epoch ends with one line: the training loss, that validation figure, the best so far and the epoch's
time.
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "train a model from a YAML config (Lightning), test it, write model.safetensors"
ADD_HELP = False  # --help is answered here (the short help) and --help-all by LightningCLI
FORWARD_ARGS = True  # every other argument is LightningCLI's

COMMON_OPTIONS: tuple[tuple[str, str], ...] = (
    ("--config FILE", "a YAML config (configs/*.yaml); repeatable, later ones override earlier ones"),
    ("--data.root DIR", "the dataset folder; its records are DIR/annotations/{train,val,test}.parquet"),
    ("--trainer.max_epochs N", "epochs to train"),
    ("--trainer.default_root_dir DIR", "the run folder: config.yaml, checkpoints/, logs, model.safetensors"),
    ("--device DEVICE", "auto, cpu, cuda (or gpu), cuda:1; sets trainer.accelerator (and trainer.devices)"),
    ("--data.batch_size N", "persons per batch"),
    ("--data.num_workers N", "data-loading processes"),
    ("--model.optimizer {sgd,adam,adamw}", "the optimiser (with --model.lr, --model.weight_decay)"),
    ("--model.scheduler {step,cosine,none}", "the learning-rate schedule (recorded in the model file)"),
    ("--trainer.logger false", "no logger (the configs log to wandb offline, in the run folder)"),
    ("--resume last|FILE", "continue an interrupted run (last: the run folder's last checkpoint)"),
    ("--skip_test", "do not evaluate on the test split"),
    ("--print_config", "print the resolved config (the configs and options merged) and stop"),
    ("--help-all", "every option: Lightning's Trainer, the model, the network, the data module"),
)
"""The options the short help lists (each is one of LightningCLI's, or ``--device``/``--help-all``)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Nothing of its own: everything is forwarded to LightningCLI (``--device`` is translated first)."""


def short_help() -> str:
    """``emoctx train --help``: what the command does, the README's examples, the options most runs need."""
    doc = (__doc__ or "").strip()
    summary, rest = doc.split("\n", 1)
    width = max(len(option) for option, _ in COMMON_OPTIONS) + 2
    options = "\n".join(f"  {option:<{width}}{text}" for option, text in COMMON_OPTIONS)
    return (
        "usage: emoctx train --config FILE [--data.root DIR] [--KEY VALUE ...]\n\n"
        f"{summary}\n{rest}\n\nOptions most runs need:\n{options}\n"
    )


def translate_device(args: list[str]) -> list[str]:
    """``args`` with ``--device X`` replaced by ``--trainer.accelerator`` (and ``--trainer.devices``) at the end.

    Put last, so that they win over a config given after them. ``--device`` is the name every command that
    runs a model takes; Lightning's own keys keep working.

    Raises:
        EmoctxError: an unknown device, or one this machine does not have.
    """
    from emoctx.errors import EmoctxError
    from emoctx.hardware import DEVICE_HELP, lightning_device

    out: list[str] = []
    devices: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--device" or arg.startswith("--device="):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(args):
                value = args[i + 1]
                i += 1
            else:
                raise EmoctxError(f"--device needs a value: {DEVICE_HELP}")
            accelerator, indices = lightning_device(value)
            devices = ["--trainer.accelerator", accelerator]
            if indices is not None:
                devices += ["--trainer.devices", str(indices)]
        else:
            out.append(arg)
        i += 1
    return out + devices


def train(args: list[str] | None = None) -> dict[str, Any]:
    """What ``emoctx train`` runs: train and write the model, then calibrate its thresholds on the validation split.

    Training is :func:`emoctx.training.cli.fit` (fit, keep the best epoch, test, write the model file); the
    thresholds are fitted by :func:`emoctx.evaluation.calibrate.calibrate_model` and stored in the model file.

    Args:
        args: LightningCLI arguments, e.g. ``["--config", "configs/synth_tiny.yaml", "--trainer.max_epochs", "2"]``;
            ``--device`` is taken as the command takes it (:func:`translate_device`).

    Returns:
        :func:`~emoctx.training.cli.fit`'s results (test metrics, ``model_path``, ``run_dir``).
    """
    from emoctx.training.cli import fit

    results = fit(None if args is None else translate_device(list(args)))
    calibration = results.pop("calibration", None)
    if calibration is not None:  # the main process of a run with a validation split
        from emoctx.evaluation.calibrate import calibrate_model

        calibrate_model(results["model_path"], progress=False, **calibration)
    return results


def run(args: argparse.Namespace) -> int:
    """Train, calibrate, and report."""
    forwarded = list(args.forwarded)
    if "-h" in forwarded or "--help" in forwarded:
        print(short_help(), end="")
        return 0
    if "--help-all" in forwarded:
        from emoctx.training.cli import full_help

        print(full_help(), end="")
        return 0
    results = train(forwarded)
    if "test/mAP" in results:
        from emoctx import labels

        maes = "  ".join(
            f"{d}={results.get(f'test/vad_mae/{d}', float('nan')):.2f}" for d in labels.VAD_NAMES
        )
        persons = results.get("test/num_persons")
        on = f" on {int(persons)} persons" if persons is not None else ""
        print(f"test mAP{on}: {100 * results['test/mAP']:.2f}%   V/A/D MAE (1-10 scale): {maes}")
    if "test/vad_ccc/valence" in results and (
        "test/expression_accuracy" in results or "test/mAP" not in results
    ):
        va = "  ".join(
            f"{d} CCC {results.get(f'test/vad_ccc/{d}', float('nan')):.3f} "
            f"RMSE {results.get(f'test/vad_rmse/{d}', float('nan')):.2f}"
            for d in ("valence", "arousal")
        )
        expr = results.get("test/expression_accuracy")
        extra = "" if expr is None else f"   expression accuracy {100 * expr:.1f}%"
        print(f"test {va}{extra}")
    print(f"model: {results['model_path']}")
    return 0
