"""The test run itself: a time limit per test, and nothing written to the user's home folder."""

import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

ONNX_SESSION = """
import onnxruntime as ort
from onnx import TensorProto, helper

graph = helper.make_graph(
    [helper.make_node("Identity", ["x"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
"""


def test_each_test_has_a_time_limit(request):
    assert request.config.pluginmanager.hasplugin("timeout")
    limit = float(request.config.getini("timeout"))
    assert 0 < limit <= 600


def test_home_and_caches_are_temporary_and_onnxruntime_writes_there():
    """onnxruntime writes a device id under the cache folder of the home: the tests' own temporary one."""
    real_home = Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()
    home = Path.home().resolve()
    assert home != real_home and home.is_relative_to(Path(tempfile.gettempdir()).resolve())
    for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        assert Path(os.environ[var]).resolve().is_relative_to(home), var

    # onnxruntime skips writing its device id where CI is set (as on CI machines): unset it so that it writes.
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    subprocess.run([sys.executable, "-c", ONNX_SESSION], check=True, timeout=120, env=env)
    written = Path(os.environ["XDG_CACHE_HOME"]) / "Microsoft" / "DeveloperTools"
    assert written.is_dir()
