r"""Train a model with Lightning from a YAML config, test it, and write a self-describing model file.

All arguments go to Lightning's LightningCLI: ``--config FILE`` (repeatable), dotted overrides such as
``--trainer.max_epochs 5``, ``--model.lr 0.001``, ``--data.root DIR``, ``--data.batch_size 32``.
Extra options: ``--resume last`` continues an interrupted run from its last checkpoint; ``--skip_test``.

Examples:
  emoctx train --config configs/synth_tiny.yaml --data.root runs/demo/synth
  emoctx train --config configs/emotic_kosti_resnet18.yaml --data.root /data/emotic \\
      --trainer.accelerator gpu --trainer.devices 4 --trainer.strategy ddp
  emoctx train --config configs/synth_tiny.yaml --resume last

Outputs (in trainer.default_root_dir): config.yaml, checkpoints/{best,last}.ckpt, model.safetensors (the weights
of the best val/mAP epoch, with decision thresholds calibrated on the validation split), logs.
Run 'emoctx train --help' for every option LightningCLI accepts.
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "train a model from a YAML config (LightningCLI), test it, write model.safetensors"
ADD_HELP = False  # --help goes to LightningCLI, which lists every config key
FORWARD_ARGS = True  # every argument is LightningCLI's


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Nothing of its own: everything is forwarded to LightningCLI."""


def train(args: list[str] | None = None) -> dict[str, Any]:
    """What ``emoctx train`` runs: train and write the model, then calibrate its thresholds on the validation split.

    Training is :func:`emoctx.training.cli.fit` (fit, keep the best epoch, test, write the model file); the
    thresholds are fitted by :func:`emoctx.evaluation.calibrate.calibrate_model` and stored in the model file.

    Args:
        args: LightningCLI arguments, e.g. ``["--config", "configs/synth_tiny.yaml", "--trainer.max_epochs", "2"]``.

    Returns:
        :func:`~emoctx.training.cli.fit`'s results (test metrics, ``model_path``, ``run_dir``).
    """
    from emoctx.training.cli import fit

    results = fit(args)
    calibration = results.pop("calibration", None)
    if calibration is not None:  # the main process of a run with a validation split
        from emoctx.evaluation.calibrate import calibrate_model

        calibrate_model(results["model_path"], progress=False, **calibration)
    return results


def run(args: argparse.Namespace) -> int:
    """Train, calibrate, and report."""
    results = train(args.forwarded)
    if "test/mAP" in results:
        from emoctx import labels

        maes = "  ".join(
            f"{d}={results.get(f'test/vad_mae/{d}', float('nan')):.2f}" for d in labels.VAD_NAMES
        )
        persons = results.get("test/num_persons")
        on = f" on {int(persons)} persons" if persons is not None else ""
        print(f"test mAP{on}: {100 * results['test/mAP']:.2f}%   V/A/D MAE (1-10 scale): {maes}")
    print(f"model: {results['model_path']}")
    return 0
