"""``emoctx train`` as a newcomer meets it: a short help, short errors with close matches, one way to set the
optimiser, ``--device``, the data checked before any logger starts, logs in the run folder, a line per epoch."""

import logging
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from emoctx.cli import main
from emoctx.commands.train import COMMON_OPTIONS, train, translate_device
from emoctx.data.synth import generate
from emoctx.errors import EmoctxError
from emoctx.training.cli import full_help, make_cli, option_strings

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "synth_tiny.yaml")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=20, n_val=8, n_test=8, image_size=(128, 96), seed=3, progress=False)
    return root


def _train_cli(capsys, *args):
    code = main(["train", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_short_help_leads_with_the_examples_and_names_real_options(capsys):
    code, out, _ = _train_cli(capsys, "--help")
    assert code == 0
    assert out.startswith("usage: emoctx train --config FILE")
    assert len(out.splitlines()) < 45  # a screen, not 600 lines
    first_example = out.index("emoctx train --config configs/synth_tiny.yaml --data.root runs/demo/synth")
    assert first_example < out.index("Options most runs need:")
    assert "``" not in out and ":class:" not in out and "<lambda>" not in out
    # Every option the short help names is one the command takes.
    known = set(option_strings(make_cli_parser())) | {"--device", "--help-all"}
    for option, _ in COMMON_OPTIONS:
        assert option.split()[0] in known, option


def make_cli_parser():
    """The full parser of emoctx train (built by asking LightningCLI for its help)."""
    captured = {}
    from emoctx.training import cli as training_cli

    original = training_cli.EmoctxCLI.parse_arguments

    def grab(self, parser, args):
        captured["parser"] = parser
        raise SystemExit(0)

    training_cli.EmoctxCLI.parse_arguments = grab
    try:
        with pytest.raises(SystemExit):
            make_cli([])
    finally:
        training_cli.EmoctxCLI.parse_arguments = original
    return captured["parser"]


def test_help_all_lists_every_option_without_docstring_markup():
    text = full_help()
    assert text.startswith("usage: emoctx train [--config FILE] [--KEY VALUE ...]\n")
    for option in ("--trainer.max_epochs", "--model.lr", "--data.root", "--resume", "--skip_test"):
        assert option in text
    assert "``" not in text and ":class:" not in text and ":meth:" not in text
    assert "Lightning Trainer command line tool" not in text
    assert "_stream_specs(model)" not in text and "data.streams: taken from the model's streams" in text
    assert "--optimizer CONFIG" not in text and "--lr_scheduler CONFIG" not in text


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (["--trainer.max_epocs", "3"], "did you mean --trainer.max_epochs"),
        (["--max_epochs", "3"], "did you mean --trainer.max_epochs"),
        (["--batch_size", "8"], "did you mean --data.batch_size"),
        (["--devise", "cpu"], "did you mean --device"),
    ],
)
def test_a_mistyped_option_gets_a_short_error_with_a_close_match(typed, expected, capsys, tmp_path):
    code, out, err = _train_cli(capsys, "--config", TINY, "--data.root", str(tmp_path), *typed)
    assert code == 2
    assert err.startswith("emoctx train: error: unrecognized arguments: ")
    assert expected in err
    assert "run: emoctx train --help" in err
    assert len(err.splitlines()) <= 4  # not the 62-line usage dump
    assert "usage:" not in err


def test_trainer_level_optimiser_options_are_refused_with_the_models_own(capsys, tmp_path):
    """LightningCLI's --optimizer would silently replace the model's optimiser, schedule and backbone learning
    rates: it is not offered, and the error says where the optimiser is set."""
    for typed in (["--optimizer", "AdamW"], ["--lr_scheduler", "StepLR"]):
        code, _, err = _train_cli(capsys, "--config", TINY, "--data.root", str(tmp_path), *typed)
        assert code == 2
        assert "--model.optimizer {sgd,adam,adamw}" in err and "--model.scheduler" in err
    cli_args = ["--config", TINY, "--data.root", str(tmp_path), "--trainer.logger", "false"]
    assert "--optimizer" not in option_strings(make_cli_parser())
    del cli_args


def test_a_bad_value_is_a_short_error(capsys, tmp_path):
    code, _, err = _train_cli(capsys, "--config", TINY, "--data.root", str(tmp_path), "--model.lr", "abc")
    assert code == 2
    assert 'Parser key "model.lr"' in err and "abc" in err and len(err.splitlines()) <= 4


def test_device_is_translated_for_lightning_and_a_missing_gpu_is_one_line(capsys, monkeypatch, tmp_path):
    assert translate_device(["--device", "cpu", "--config", "x.yaml"]) == [
        "--config",
        "x.yaml",
        "--trainer.accelerator",
        "cpu",
    ]
    assert translate_device(["--device=auto"]) == ["--trainer.accelerator", "auto"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for typed in (["--device", "cuda"], ["--device", "gpu"], ["--trainer.accelerator", "gpu"]):
        code, out, err = _train_cli(capsys, "--config", TINY, "--data.root", str(tmp_path), *typed)
        assert code == 2
        (line,) = err.strip().splitlines()
        assert "no CUDA GPU" in line and "--device cpu" in line
        assert "Traceback" not in err
    with pytest.raises(EmoctxError, match="not a device"):
        translate_device(["--device", "tpu9"])
    # names torch knows but emoctx does not run on, and an accelerator Lightning does not know: one line each
    for typed in (["--device", "meta"], ["--device", "xpu"], ["--trainer.accelerator", "foo"]):
        code, out, err = _train_cli(capsys, "--config", TINY, "--data.root", str(tmp_path), *typed)
        assert code == 2 and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and ("not a device emoctx runs on" in err or "foo" in err)


def test_a_wrong_data_root_is_reported_before_any_logger_starts(synth_root, tmp_path, monkeypatch):
    """A folder that does not exist, a subfolder of the data set, and a records file whose images are not under
    the root: each is a one-line error before wandb creates anything."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    cases = [
        (tmp_path / "nothere", "no such folder"),
        (synth_root / "images", f"did you mean --data.root {synth_root}?"),
    ]
    for root, message in cases:
        with pytest.raises(EmoctxError, match=re.escape(message)):
            train(["--config", TINY, "--data.root", str(root), "--trainer.default_root_dir", str(run)])
    # Records whose images are elsewhere: the train records are copied into an empty data set.
    other = tmp_path / "other"
    (other / "annotations").mkdir(parents=True)
    (other / "annotations" / "train.parquet").write_bytes(
        (synth_root / "annotations" / "train.parquet").read_bytes()
    )
    with pytest.raises(EmoctxError) as err:
        train(["--config", TINY, "--data.root", str(other), "--trainer.default_root_dir", str(run)])
    text = str(err.value)
    assert text.startswith(f"--data.root {other}: ") and "are not there (e.g." in text
    # the hint names a folder that holds the records' images (the data set, or a copy of it nearby)
    suggested = Path(re.search(r"did you mean --data\.root (\S+)\?$", text).group(1))
    first = sorted((synth_root / "images").rglob("*.jpg"))[0].relative_to(synth_root)
    assert (suggested / first).is_file()
    assert not list(tmp_path.rglob("wandb")) and not run.exists()


def test_logs_go_into_the_run_folder_and_each_epoch_has_a_line(synth_root, tmp_path, monkeypatch, caplog):
    """--trainer.default_root_dir moves the wandb logs too (the configs give no save_dir); every epoch ends
    with one line (loss, val mAP, the best so far, time), and away from a terminal the bar is log lines."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr("emoctx.progress.MIN_SECONDS", 0.0)  # a line at every quarter, however fast
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "elsewhere" / "run"
    caplog.set_level(logging.INFO)
    results = train(
        [
            "--config", TINY, "--data.root", str(synth_root), "--trainer.default_root_dir", str(run),
            "--trainer.max_epochs", "2", "--data.num_workers", "0", "--data.batch_size", "8", "--skip_test",
        ]
    )  # fmt: skip
    assert Path(results["model_path"]).parent == run
    assert list((run / "wandb").glob("offline-run-*")), "wandb wrote into the run folder"
    assert not (tmp_path / "wandb").exists() and not (tmp_path / "runs").exists()
    lines = [r.getMessage() for r in caplog.records if r.name == "emoctx.training.progress"]
    epochs = [line for line in lines if re.match(r"epoch \d/2: train loss ", line)]
    assert len(epochs) == 2, lines
    assert re.fullmatch(
        r"epoch 1/2: train loss \d+\.\d{4}, val mAP \d+\.\d\d% \(best \d+\.\d\d%, epoch 1\), \d+ s", epochs[0]
    )
    best = max(float(v) for v in re.findall(r"val mAP (\d+\.\d\d)%", "\n".join(epochs)))
    assert f"(best {best:.2f}%" in epochs[1]
    # The bar away from a terminal: lines within the epoch, every quarter of it, no \r.
    assert any(
        re.match(r"epoch 1/2: \d+/\d+ batches \((25|33|50)%\), \d+ s, loss=", line) for line in lines
    ), lines
    assert not any("\r" in line for line in lines)


def test_the_root_check_counts_a_name_the_system_refuses_as_missing(tmp_path):
    from emoctx.data.dataset import check_images

    records = pd.DataFrame({"image": ["x" * 5000 + ".jpg"]})  # too long a name for the file system: OSError
    with pytest.raises(EmoctxError, match="1 of the 1 images of r.parquet are not there"):
        check_images(records, tmp_path, "--root", "r.parquet")
