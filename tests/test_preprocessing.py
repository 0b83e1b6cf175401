"""One preprocessing contract: a model trained with the subject masked is masked on every path that feeds it.

The model is trained through the real command (``emoctx train`` on configs/synth_tiny.yaml with
``--data.mask_subject true``); every later path is checked against what training wrote into the model file, by
watching the scene inputs the network receives: with the config's mean of 0.5 no 8-bit pixel normalises to
exactly 0, so an all-zero rectangle in a scene input is the mask, and nothing else.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from emoctx.checkpoint import load_model
from emoctx.cli import main
from emoctx.data.boxes import clip_box
from emoctx.data.datamodule import EmotionDataModule
from emoctx.data.records import read_records
from emoctx.data.synth import generate
from emoctx.data.transforms import build_transform
from emoctx.inference.export import read_onnx_metadata
from emoctx.models.network import EmotionNet

REPO = Path(__file__).resolve().parents[1]


class SceneInputs:
    """Records the zero rectangle of every scene input the network encodes (``None``: no zero pixel).

    The check of prediction's engine against PyTorch when it is built (synthetic images, not a person's
    inputs) is left out.
    """

    def __init__(self, monkeypatch):
        from emoctx.engines import build

        self.rects: list[tuple[int, int, int, int] | None] = []
        self.checking = False
        original = EmotionNet.encode
        original_check = build.check_engine

        def encode(net, name, x, landmarks=None):
            if name == "scene" and not self.checking:
                self.rects.extend(_zero_rect(item) for item in x.detach().float().cpu())
            return original(net, name, x, landmarks)

        def check_engine(*args, **kwargs):
            self.checking = True
            try:
                return original_check(*args, **kwargs)
            finally:
                self.checking = False

        monkeypatch.setattr(EmotionNet, "encode", encode)
        monkeypatch.setattr(build, "check_engine", check_engine)

    def take(self) -> list[tuple[int, int, int, int] | None]:
        rects, self.rects = self.rects, []
        return rects


def _zero_rect(x: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The rectangle of the pixels that are 0 in every channel, checked to be one filled rectangle."""
    zero = (x == 0).all(dim=0)
    if not zero.any():
        return None
    ys, xs = torch.nonzero(zero, as_tuple=True)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    assert bool(zero[y1:y2, x1:x2].all()), "the zero pixels of a scene input form one rectangle"
    return x1, y1, x2, y2


def _expected(info, records) -> Counter:
    """The mask rectangle of each record's person, from the model file's preprocessing alone."""
    transform = build_transform(info.preprocessing)
    rects = Counter()
    for row in records.itertuples():
        w, h = int(row.width), int(row.height)
        person = clip_box((row.x1, row.y1, row.x2, row.y2), w, h)
        rects[transform.mask_rect("scene", (w, h), {"person": person})] += 1
    return rects


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=16, n_val=8, n_test=8, image_size=(160, 120), seed=3, progress=False)
    return root


def test_a_model_trained_with_masking_is_masked_everywhere(synth, tmp_path, monkeypatch):
    seen = SceneInputs(monkeypatch)
    transforms = []
    made = EmotionDataModule.transform

    def transform(dm, split):
        t = made(dm, split)
        transforms.append((split, t))
        return t

    monkeypatch.setattr(EmotionDataModule, "transform", transform)
    run = tmp_path / "run"
    args = [
        "train", "--config", str(REPO / "configs" / "synth_tiny.yaml"), "--data.root", str(synth),
        "--data.mask_subject", "true", "--trainer.max_epochs", "1", "--trainer.logger", "false",
        "--trainer.default_root_dir", str(run), "--trainer.enable_progress_bar", "false",
        "--data.num_workers", "0", "--data.batch_size", "8",
    ]  # fmt: skip
    assert main(args) == 0
    model = run / "model.safetensors"

    # What training wrote: the scene masked (the person's box), the body not.
    _, info = load_model(model)
    prep = info.preprocessing
    assert prep.mask_subject and prep.streams["scene"].mask == "person" and prep.streams["body"].mask is None
    assert info.format_version == 2

    # Training: the transforms it built (augmented for train) are the file's preprocessing, and every scene the
    # network saw in training, validation, test and calibration had the person masked.
    splits = {split: t for split, t in transforms}
    assert splits["train"].preset == "light" and splits["val"].preset == "none"
    assert all(t.cfg == prep for t in splits.values())
    test = read_records(synth / "annotations" / "test.parquet")
    val = read_records(synth / "annotations" / "val.parquet")
    trained = seen.take()
    assert len(trained) > len(test) + len(val) and all(r is not None for r in trained)
    assert info.training["threshold_calibration"]["num_persons"] == len(val)

    # Evaluation: exactly the masks the model file's preprocessing gives each test person.
    assert main(["evaluate", "--model", str(model), "--records", str(synth / "annotations" / "test.parquet"),
                 "--root", str(synth), "--out", str(tmp_path / "eval"), "--workers", "0", "--no-plots",
                 "--no-progress"]) == 0  # fmt: skip
    assert Counter(seen.take()) == _expected(info, test)

    # Calibration (on its own, as `emoctx calibrate`): the validation persons, masked the same way.
    assert main(["calibrate", str(model), "--records", str(synth / "annotations" / "val.parquet"),
                 "--root", str(synth), "--out", str(tmp_path / "calibrated.safetensors"), "--workers", "0",
                 "--no-progress"]) == 0  # fmt: skip
    assert Counter(seen.take()) == _expected(info, val)

    # predict (the batched pipeline, bf16 or fp32 as the CPU has it), the test persons from their known boxes.
    assert main(["predict", str(synth / "images" / "*" / "test_*.jpg"), "--model", str(model),
                 "--boxes", str(synth / "annotations" / "test.parquet"), "--out", str(tmp_path / "p.jsonl"),
                 "--no-progress"]) == 0  # fmt: skip
    assert Counter(seen.take()) == _expected(info, test)

    # predict-records (Lightning's Trainer.predict over the records).
    assert main(["predict-records", "--model", str(model), "--records", str(synth / "annotations" / "test.parquet"),
                 "--root", str(synth), "--out", str(tmp_path / "pr.parquet"), "--device", "cpu",
                 "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    assert Counter(seen.take()) == _expected(info, test)

    # The ONNX export says how to make the inputs, masking included (its recipe is run in test_export.py).
    monkeypatch.undo()  # the exporter traces the network's own encode
    assert main(["export", str(model), "--out", str(tmp_path / "m.onnx"), "--no-check"]) == 0
    meta = read_onnx_metadata(tmp_path / "m.onnx")
    assert meta["preprocessing"] == prep.to_dict()
    assert meta["preprocessing"]["streams"]["scene"]["mask"] == "person"


def test_a_model_trained_without_masking_is_masked_nowhere(tmp_path, monkeypatch):
    """The check above can fail: the same watch finds no mask when the model was trained without one."""
    from emoctx.checkpoint import describe, save_model
    from emoctx.models.backbones import StreamConfig

    net = EmotionNet(
        {
            "body": StreamConfig("test_resnet", input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3),
            "scene": StreamConfig("test_resnet", input_size=48, mean=(0.5,) * 3, std=(0.25,) * 3),
        },
        hidden=8,
    )
    model = save_model(tmp_path / "plain.safetensors", net, describe(net))
    seen = SceneInputs(monkeypatch)
    rng = np.random.default_rng(0)
    image = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(image)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"image,x1,y1,x2,y2\n{image},10,10,40,50\n")
    assert main(["predict", str(image), "--model", str(model), "--boxes", str(boxes), "--out",
                 str(tmp_path / "p.jsonl"), "--no-progress"]) == 0  # fmt: skip
    assert seen.take() == [None]
