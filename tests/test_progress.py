"""Progress away from a terminal: log lines every quarter or every minute, never tqdm's ``\\r`` redraws."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emoctx import progress as progress_module
from emoctx.progress import LogProgress, progress
from emoctx.training.progress import bar_metrics

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "emoctx.progress"]


def test_a_line_every_quarter_and_a_last_one(caplog):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    bar = LogProgress(total=100, desc="predict", unit="img", clock=clock)
    for _ in range(100):
        clock.now += 0.5
        bar.update()
    bar.set_postfix(persons=7)
    bar.close()
    bar.close()  # once only
    assert _lines(caplog) == [
        "predict: 25/100 img (25%), 12 s",
        "predict: 50/100 img (50%), 25 s",
        "predict: 75/100 img (75%), 38 s",
        "predict: 100/100 img (100%), 50 s, persons=7",
    ]


def test_no_two_lines_closer_than_min_seconds_but_the_last(caplog):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    bar = LogProgress(total=8, desc="x", clock=clock)  # every 25%, but 1 s per step: lines 5 s apart at least
    for _ in range(8):
        clock.now += 1
        bar.update()
    bar.close()
    assert _lines(caplog) == ["x: 5/8 it (62%), 5 s", "x: 8/8 it (100%), 8 s"]  # the 25% and 50% lines wait


def test_a_line_every_minute_when_the_work_is_slow_or_of_unknown_size(caplog):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    bar = LogProgress(desc="train", unit="batches", clock=clock)  # no total
    for _ in range(5):
        clock.now += 30
        bar.update()
    bar.close()
    assert _lines(caplog) == [
        "train: 2 batches, 1 min 00 s",
        "train: 4 batches, 2 min 00 s",
        "train: 5 batches, 2 min 30 s",
    ]


def test_iterating_counts_and_disabled_says_nothing(caplog):
    caplog.set_level(logging.INFO)
    assert list(LogProgress(range(8), desc="x", every_percent=50, min_seconds=0)) == list(range(8))
    assert _lines(caplog) == ["x: 4/8 it (50%), 0 s", "x: 8/8 it (100%), 0 s"]
    caplog.clear()
    assert sum(LogProgress(range(8), desc="x", disable=True)) == 28
    assert _lines(caplog) == []


def test_the_bar_follows_where_it_is_drawn(monkeypatch):
    from tqdm.auto import tqdm

    monkeypatch.setattr(progress_module, "is_terminal", lambda stream=None: True)
    assert isinstance(progress(total=3), tqdm)
    monkeypatch.setattr(progress_module, "is_terminal", lambda stream=None: False)
    assert isinstance(progress(total=3), LogProgress)
    assert not progress_module.is_terminal(open(os.devnull, "w"))  # noqa: SIM115 (closed at exit)


def test_a_command_writing_to_a_file_logs_lines_not_redraws(tmp_path):
    """``emoctx synth`` with its output in a file (as in a batch job): a few lines, no ``\\r``."""
    log_file = tmp_path / "synth.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log_file, "w") as f:
        done = subprocess.run(
            [sys.executable, "-m", "emoctx", "synth", "--out", str(tmp_path / "s"), "--train", "8", "--val", "0",
             "--test", "0", "--size", "96x64", "--workers", "1"],
            stdout=f, stderr=subprocess.STDOUT, env=env, timeout=300, check=False,
        )  # fmt: skip
    text = log_file.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text
    lines = [line for line in text.splitlines() if "synth images:" in line]
    assert lines[-1].startswith("INFO emoctx.progress: synth images: 8/8 img (100%)"), lines
    assert 1 <= len(lines) <= 5  # short work: its last line (no two lines closer than 5 s)


@pytest.mark.parametrize(
    ("metrics", "shown"),
    [
        (
            {"train/loss_step": 0.41234, "train/loss_epoch": 0.5, "val/mAP": 0.6321},
            {"loss": "0.4123", "val_mAP": "63.21%"},
        ),
        ({"train/loss_epoch": 0.5}, {"loss": "0.5"}),
        ({}, {}),
    ],
)
def test_the_training_bar_shows_the_loss_and_val_map(metrics, shown):
    assert bar_metrics(metrics) == shown


@pytest.mark.parametrize(
    ("monitor", "values", "line"),
    [
        ("val/mAP", [0.5, 0.6321], "val mAP 63.21% (best 63.21%, epoch 2)"),
        ("val/vad_ccc", [0.41, 0.2], "val vad_ccc 0.2000 (best 0.4100, epoch 1)"),
    ],
)
def test_the_epoch_line_shows_the_figure_that_picks_the_saved_epoch(monitor, values, line):
    from types import SimpleNamespace

    from emoctx.training.progress import EpochLog

    epochs = EpochLog()
    trainer = SimpleNamespace(
        checkpoint_callbacks=[], sanity_checking=False, callback_metrics={}, max_epochs=2, current_epoch=0
    )
    epochs.on_train_start(trainer, SimpleNamespace(monitor=monitor))
    for epoch, value in enumerate(values):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {monitor: value, "train/loss_epoch": 1.0}
        epochs.on_train_epoch_start(trainer, None)
        epochs.on_validation_end(trainer, None)
    assert line in epochs.line(trainer)
