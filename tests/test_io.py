"""The helpers every writer shares: one JSON rule, one JSON-lines reader, one file hash, one IoU."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from emoctx.data.boxes import box_iou, clip_box, pixel_box
from emoctx.errors import EmoctxError
from emoctx.io import file_sha256, jsonable, printable, read_jsonl


def test_jsonable_gives_strict_json():
    value = {
        1: np.float32(0.5),
        "nan": float("nan"),
        "inf": [np.inf, -math.inf, np.float64(2.0)],
        "ints": np.arange(3),
        "flag": np.bool_(True),
        "path": Path("a/b.jpg"),
        "version": torch.__version__,  # a str subclass
        "tuple": (np.int64(4), None),
    }
    out = jsonable(value)
    assert out == {
        "1": 0.5,
        "nan": None,
        "inf": [None, None, 2.0],
        "ints": [0, 1, 2],
        "flag": True,
        "path": "a/b.jpg",
        "version": str(torch.__version__),
        "tuple": [4, None],
    }
    assert type(out["version"]) is str and type(out["flag"]) is bool and type(out["ints"][0]) is int
    json.dumps(out, allow_nan=False)  # strict JSON
    # strings can be passed through a rule (the prediction table escapes undecodable file-name bytes)
    assert jsonable({"source": "caf\udce9.jpg"}, printable) == {"source": "caf\\xe9.jpg"}


def test_read_jsonl_and_file_sha256(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n[2]\n')
    assert read_jsonl(path) == [{"a": 1}, [2]]
    assert read_jsonl(path, numbered=True) == [(1, {"a": 1}), (3, [2])]
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(EmoctxError, match=r"rows.jsonl: line 2: not valid JSON"):
        read_jsonl(path, EmoctxError)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_box_geometry():
    assert clip_box((-5, 10, 50, 200), 40, 100) == (0.0, 10.0, 40.0, 100.0)
    assert pixel_box((1.2, 2.7, 3.1, 3.9), 10, 10) == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="outside"):
        clip_box((50, 0, 60, 10), 40, 40)
    iou = box_iou([[0, 0, 10, 10], [0, 0, 0, 0]], [[5, 0, 15, 10], [0, 0, 10, 10], [1, 1, 1, 1]])
    np.testing.assert_allclose(iou, [[1 / 3, 1.0, 0.0], [0.0, 0.0, 0.0]])  # empty unions: 0, not NaN
