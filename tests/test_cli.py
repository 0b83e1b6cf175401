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
