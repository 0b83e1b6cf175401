"""What a training run shows while it runs: a bar with the loss and ``val/mAP``, and one line per epoch.

The epoch line shows the figure that picks the saved epoch (``val/mAP``, or the model's own: ``val/vad_ccc``
for a face-only model).

* :class:`EpochLog` (always on in ``emoctx train``) writes one line at the end of every epoch: the epoch, the
  training loss, ``val/mAP``, the best ``val/mAP`` so far (and its epoch) and the epoch's time. It goes
  beside the bar in a terminal and into the log elsewhere, so a run on a slow CPU or in a batch job says how
  it is doing at least once an epoch.
* :class:`TerminalProgressBar`: Lightning's tqdm bar showing the loss and ``val/mAP`` (not the logger's
  version id), with epochs counted from 1 as the epoch lines count them.
* :class:`LogProgressBar`: the bar away from a terminal (a file, a pipe, a CI log), where tqdm's redraws
  would make one endless line: a log line every quarter of an epoch or every minute
  (:class:`emoctx.progress.LogProgress`), for training, testing and prediction.

:class:`emoctx.training.trainer.Trainer` picks the bar by where standard error goes
(:func:`emoctx.progress.is_terminal`) unless a progress bar is given or ``enable_progress_bar`` is false.
Epochs are counted from 1 in what is shown; checkpoints and the model file keep Lightning's count from 0.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar

from emoctx.progress import LogProgress, _elapsed

log = logging.getLogger(__name__)

LOSS = "train/loss"
MONITOR = "val/mAP"
"""The default figure that picks the saved epoch (a model may choose another: ``EmotionModule.monitor``)."""


def _value(metrics: dict[str, Any], *names: str) -> float | None:
    """The first of ``names`` in ``metrics`` as a float (``None`` when absent or not finite)."""
    for name in names:
        if name in metrics:
            try:
                value = float(metrics[name])
            except (TypeError, ValueError):
                continue
            return value if math.isfinite(value) else None
    return None


def _epochs(trainer: pl.Trainer) -> str:
    """``3/6``: the current epoch counted from 1, and the last one when known."""
    current = trainer.current_epoch + 1
    last = trainer.max_epochs
    return f"{current}/{last}" if last is not None and last > 0 else str(current)


def bar_metrics(metrics: dict[str, Any]) -> dict[str, str]:
    """The figures the bars show: the step's loss (or the epoch's) and ``val/mAP`` in percent."""
    out: dict[str, str] = {}
    loss = _value(metrics, f"{LOSS}_step", LOSS, f"{LOSS}_epoch")
    if loss is not None:
        out["loss"] = f"{loss:.4g}"
    val = _value(metrics, MONITOR)
    if val is not None:
        out["val_mAP"] = f"{100 * val:.2f}%"
    return out


def _batches(counts: Any) -> float | None:
    """The total of Lightning's per-dataloader batch counts (``None`` when unknown or infinite)."""
    try:
        total = float(sum(counts))
    except TypeError:
        return None
    return total if math.isfinite(total) and total > 0 else None


class EpochLog(pl.Callback):
    """One line per epoch: ``epoch 3/6: train loss 0.4123, val mAP 63.21% (best 63.21%, epoch 3), 41 s``.

    The best ``val/mAP`` so far counts the epochs of a resumed run too (from the checkpoint callback that
    keeps the best epoch). A model that is chosen by another figure (``EmotionModule.monitor``, e.g.
    ``val/vad_ccc`` for a face-only model) shows that one. Only the main process of a distributed run writes
    the line.
    """

    def __init__(self) -> None:
        self.monitor = MONITOR
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._start = time.monotonic()
        self._val: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self.monitor = getattr(pl_module, "monitor", MONITOR) or MONITOR
        for cb in trainer.checkpoint_callbacks:  # a resumed run: the best epoch before it
            if getattr(cb, "monitor", None) == self.monitor and cb.best_model_score is not None:
                score = float(cb.best_model_score)
                if math.isfinite(score) and (self.best is None or score > self.best):
                    self.best = score

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self._start = time.monotonic()
        self._val = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        if trainer.sanity_checking:
            return
        self._val = _value(trainer.callback_metrics, self.monitor)
        if self._val is not None and (self.best is None or self._val > self.best):
            self.best, self.best_epoch = self._val, trainer.current_epoch + 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        if trainer.is_global_zero:
            write_line(trainer, self.line(trainer))

    def line(self, trainer: pl.Trainer) -> str:
        """The line for the epoch that just ended."""
        metrics = trainer.callback_metrics
        loss = _value(metrics, f"{LOSS}_epoch", LOSS)
        parts = [f"train loss {loss:.4f}" if loss is not None else "train loss -"]
        if self._val is not None:
            best = f"best {self._figure(self.best)}" if self.best is not None else "best -"
            if self.best_epoch is not None:
                best += f", epoch {self.best_epoch}"
            name = self.monitor.removeprefix("val/")
            parts.append(f"val {name} {self._figure(self._val)} ({best})")
        else:
            parts.append("no validation this epoch")
        parts.append(_elapsed(time.monotonic() - self._start))
        return f"epoch {_epochs(trainer)}: " + ", ".join(parts)

    def _figure(self, value: float) -> str:
        return figure_text(self.monitor, value)


def figure_text(monitor: str, value: float) -> str:
    """A validation figure as the lines show it: mAP in percent (``94.59%``), others (a correlation) as they are."""
    return f"{100 * value:.2f}%" if monitor.endswith("mAP") else f"{value:.4f}"


def write_line(trainer: pl.Trainer, text: str) -> None:
    """Write ``text`` beside the progress bar when one is shown (so it is not torn), else to the log."""
    bar = trainer.progress_bar_callback
    if isinstance(bar, TQDMProgressBar) and bar.is_enabled and bar._train_progress_bar is not None:
        bar.print(text)
    else:
        log.info("%s", text)


class TerminalProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar with the loss and ``val/mAP`` (:func:`bar_metrics`), epochs counted from 1."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:  # noqa: D102
        return bar_metrics(trainer.progress_bar_metrics)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"epoch {_epochs(trainer)}")


class LogProgressBar(ProgressBar):
    """The progress bar away from a terminal: log lines (:class:`emoctx.progress.LogProgress`), no redraws.

    Training: a line every ``every_percent`` of an epoch or every ``every_seconds``; validation: only when it
    lasts (every ``every_seconds``), since the epoch line follows it; testing and prediction like training.

    Args:
        every_percent: a line each time this share of the batches is done.
        every_seconds: a line at least this often while batches run.
    """

    def __init__(self, every_percent: float = 25.0, every_seconds: float = 60.0) -> None:
        super().__init__()
        self.every_percent = every_percent
        self.every_seconds = every_seconds
        self._enabled = True
        self._bar: LogProgress | None = None

    # -- ProgressBar's interface ----------------------------------------------------------------------------
    def disable(self) -> None:  # noqa: D102
        self._enabled = False

    def enable(self) -> None:  # noqa: D102
        self._enabled = True

    @property
    def is_enabled(self) -> bool:  # noqa: D102
        return self._enabled

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:  # noqa: D102
        log.info("%s", sep.join(map(str, args)))

    # -- the lines ----------------------------------------------------------------------------------------------
    def _start(self, desc: str, total: float, percent: float | None) -> None:
        self._close()
        if not self._enabled:
            return
        total = None if total is None or math.isinf(total) else total
        self._bar = LogProgress(
            total=total,
            desc=desc,
            unit="batches",
            every_percent=percent,
            every_seconds=self.every_seconds,
            logger=log,
        )

    def _step(self, trainer: pl.Trainer, n: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix(bar_metrics(trainer.progress_bar_metrics))
            self._bar.update(n - self._bar.n)

    def _close(self, final: bool = True) -> None:
        if self._bar is not None:
            if not final:
                self._bar.disable = True  # no closing line (the epoch line follows)
            self._bar.close()
        self._bar = None

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        self._start(f"epoch {_epochs(trainer)}", self.total_train_batches, self.every_percent)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        self._step(trainer, int(args[-1]) + 1)

    def on_train_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        self._close(final=False)

    def on_validation_start(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        self._val: LogProgress | None = None
        if not trainer.sanity_checking and self._enabled:
            self._val = LogProgress(
                total=_batches(trainer.num_val_batches),
                desc="validation",
                unit="batches",
                every_percent=None,
                every_seconds=self.every_seconds,
                logger=log,
            )

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        val = getattr(self, "_val", None)
        if val is not None and not trainer.sanity_checking:
            val.update(1)

    def on_validation_end(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        val = getattr(self, "_val", None)
        if val is not None:
            val.disable = True
            val.close()
        self._val = None

    def on_test_start(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        self._start("test", _batches(trainer.num_test_batches), self.every_percent)

    def on_test_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        self._step(trainer, self._bar.n + 1 if self._bar is not None else 0)

    def on_test_end(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        self._close()

    def on_predict_start(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        self._start("predict", _batches(trainer.num_predict_batches), self.every_percent)

    def on_predict_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        self._step(trainer, self._bar.n + 1 if self._bar is not None else 0)

    def on_predict_end(self, trainer: pl.Trainer, *args: Any) -> None:  # noqa: D102
        self._close()
