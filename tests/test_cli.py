"""The command line and the package as a newcomer meets them: mistyped commands, a light ``import emoctx``, and
ultralytics kept out of the user's own settings and console."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emoctx.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _env(**changes):
    env = {k: v for k, v in os.environ.items() if k not in changes or changes[k] is not None}
    env.update({k: v for k, v in changes.items() if v is not None})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [("predcit", "'predict'"), ("summarise", "'summarize'"), ("evalute", "'evaluate'")],
)
def test_a_mistyped_command_gets_a_suggestion(typed, suggested, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([typed, "photos/"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"unknown command '{typed}'; did you mean {suggested}?" in err


def test_an_unknown_command_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["-v", "frobnicate"])
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate' (commands: convert," in err and "did you mean" not in err


def test_predictor_is_importable_from_the_package_and_import_stays_light():
    code = (
        "import sys, emoctx\n"
        "assert 'torch' not in sys.modules and 'ultralytics' not in sys.modules, 'import emoctx is heavy'\n"
        "from emoctx import Predictor\n"
        "import emoctx.inference\n"
        "assert Predictor is emoctx.inference.Predictor and 'Predictor' in dir(emoctx)\n"
        "try:\n"
        "    emoctx.Nothing\n"
        "except AttributeError as e:\n"
        "    assert 'Nothing' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_plain_predict_keeps_ultralytics_settings_out_of_the_users_config(tiny_model_path, tmp_path):
    """Without YOLO_CONFIG_DIR, ultralytics' settings go to emoctx's own folder, and its banner is not printed."""
    from ultralytics.utils import ASSETS

    home = tmp_path / "home"
    home.mkdir()
    env = _env(HOME=str(home), YOLO_CONFIG_DIR=None, XDG_CONFIG_HOME=None, YOLO_OFFLINE="1")
    argv = [
        sys.executable,
        "-m",
        "emoctx",
        "predict",
        str(ASSETS / "bus.jpg"),
        "--model",
        str(tiny_model_path),
    ]
    argv += ["--detector-weights", "yolo11n.yaml", "--out", str(tmp_path / "bus.jsonl"), "--no-progress"]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not (home / ".config" / "Ultralytics").exists()
    assert (home / ".config" / "emoctx" / "Ultralytics" / "settings.json").is_file()
    assert "Ultralytics Settings" not in done.stdout + done.stderr and "yolo settings" not in done.stdout


# ---------------------------------------------------------------------------------------- output paths, devices
def _photo(tmp_path):
    from ultralytics.utils import ASSETS

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "bus.jpg").write_bytes((ASSETS / "bus.jpg").read_bytes())
    return photos


def test_output_names_are_checked_before_any_work(tiny_model_path, tmp_path, monkeypatch, capsys):
    """A table's name and --format agree, a name ending in '/' is a folder, a model is written as
    .safetensors, and a source that names nothing is refused: one line each, before any model is loaded,
    nothing written."""
    import emoctx.checkpoint
    import emoctx.inference.predictor

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(emoctx.inference.predictor, "load_model", no_model)
    monkeypatch.setattr(emoctx.checkpoint, "load_model", no_model)
    photos = _photo(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    records = tmp_path / "records.parquet"
    records.write_bytes(b"PAR1")
    predict = ["predict", str(photos), "--model", str(tiny_model_path)]
    cases = [
        ([*predict, "--out", str(out / "table.xlsx")], "'.xlsx' is not a table type emoctx writes"),
        ([*predict, "--out", str(out / "t.csv"), "--format", "parquet"], "is CSV by its name but --format is"),
        ([*predict, "--out", str(out / "results2") + "/"], "is a folder"),
        ([*predict, "--out", str(out / "results2")], "the file name says no table type"),
        (["predict", str(tmp_path / "photoz"), "--model", str(tiny_model_path), "--out", str(out / "t.csv")],
         f"{tmp_path / 'photoz'}: no such file or folder (did you mean {photos}?)"),
        (["calibrate", str(tiny_model_path), "--records", str(records), "--root", str(tmp_path),
          "--out", str(out)], "is a folder"),
        (["calibrate", str(tiny_model_path), "--records", str(records), "--root", str(tmp_path),
          "--out", str(out / "calibrated") + "/"], "is a folder"),
        (["calibrate", str(tiny_model_path), "--records", str(records), "--root", str(tmp_path),
          "--out", str(out / "calibrated")], "a model file is written as .safetensors"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    assert list(out.iterdir()) == []  # nothing written, no folder or file named after the output
    assert not (tmp_path / "out.safetensors").exists() and not (out / "calibrated.safetensors").exists()


def test_a_missing_gpu_is_one_line_in_every_command(tiny_model_path, tmp_path, monkeypatch, capsys, caplog):
    """--device cuda (or gpu) on a machine without a GPU: one line naming the option and what to use, the same
    option in every command that runs a model (train's is tested in test_train_command)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    photos = _photo(tmp_path)
    records = tmp_path / "records.parquet"
    records.write_bytes(b"PAR1")
    model = str(tiny_model_path)
    commands = [
        ["predict", str(photos), "--model", model, "--out", str(tmp_path / "t.csv")],
        ["evaluate", "--model", model, "--records", str(records), "--root", str(tmp_path),
         "--out", str(tmp_path / "eval")],
        ["calibrate", model, "--records", str(records), "--root", str(tmp_path),
         "--out", str(tmp_path / "c.safetensors")],
        ["predict-records", "--model", model, "--records", str(records), "--root", str(tmp_path),
         "--out", str(tmp_path / "p.parquet")],
    ]  # fmt: skip
    for argv in commands:
        for device in ("cuda", "gpu", "cuda:1"):
            assert main([*argv, "--device", device]) == 2, argv
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
            assert f"error: --device {device}: this machine has no CUDA GPU" in err and "--device cpu" in err
    assert not any(p.name in ("t.csv", "eval", "c.safetensors", "p.parquet") for p in tmp_path.iterdir())
    # predict-records' old --accelerator still works, with a warning naming --device
    caplog.set_level("WARNING")
    assert main([*commands[3], "--accelerator", "gpu"]) == 2
    assert "error: --accelerator gpu: this machine has no CUDA GPU" in capsys.readouterr().err
    assert any("--accelerator is deprecated: use --device" in r.getMessage() for r in caplog.records)
    # an unknown name lists the values --device takes
    assert main([*commands[0], "--device", "tpu"]) == 2
    assert (
        "--device tpu: not a device emoctx runs on; use auto (a GPU when there is one, else the CPU), cpu"
        in (capsys.readouterr().err)
    )


def test_help_examples_name_models_that_exist_after_the_demo():
    """The model files the commands' examples read are the demo's (or any name, outside runs/): a newcomer who
    ran 'make demo' can paste them."""
    import re

    from emoctx.cli import COMMANDS, build_parser

    demo = {"runs/demo/train/model.safetensors", "runs/demo/train/checkpoints/last.ckpt"}
    for line in (ROOT / "scripts" / "demo.sh").read_text().splitlines():
        if line.startswith('MODEL="$OUT/train/model.safetensors"'):
            break
    else:
        raise AssertionError("scripts/demo.sh no longer writes $OUT/train/model.safetensors")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in COMMANDS:
        text = sub.choices[name].format_help().replace("\\\n", " ")
        for m in re.finditer(r"(--out\s+|--out=)?(runs/[\w./-]+\.(?:safetensors|ckpt))", text):
            assert m.group(1) or m.group(2) in demo, (name, m.group(2))
    # A docstring with a backslash (a continued example line) is raw: else Python joins the lines it continues.
    for path in sorted((ROOT / "emoctx" / "commands").glob("*.py")):
        source = path.read_text()
        if source.startswith(('"""', 'r"""')):
            doc = source[: source.index('"""', 4)]
            assert "\\" not in doc or doc.startswith('r"""'), path.name
