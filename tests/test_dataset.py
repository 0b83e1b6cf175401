"""Transforms, dataset and data module: shapes, labels, bad images skipped and counted, geometry in sync."""

from __future__ import annotations

import dataclasses
import logging

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from emoctx.data.datamodule import EmotionDataModule
from emoctx.data.dataset import EmotionDataset, collate
from emoctx.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessCfg, PreprocessError
from emoctx.data.records import category_matrix, records_frame, write_records
from emoctx.data.transforms import PairTransform, PresetError, StreamTransform, build_transform
from emoctx.errors import EmoctxError
from emoctx.labels import CATEGORIES, NUM_CATEGORIES, vad_to_model

BLUE = (0, 0, 255)
GREEN = (0, 255, 0)
W, H = 200, 100
BOX = (10.0, 20.0, 60.0, 90.0)  # the person, on the left


def _scene() -> np.ndarray:
    a = np.zeros((H, W, 3), np.uint8)
    a[:] = BLUE
    x1, y1, x2, y2 = (int(v) for v in BOX)
    a[y1:y2, x1:x2] = GREEN
    return a


def _cfg(body=32, scene=(H, W), mask=False, **streams) -> PreprocessCfg:
    """Body + scene preprocessing (ImageNet statistics unless given)."""
    specs = {
        name: dict(value) if isinstance(value, dict) else {"input_size": value}
        for name, value in (("body", body), ("scene", scene))
    }
    for name, extra in streams.items():
        specs.setdefault(name, {}).update(extra)
    return PreprocessCfg.for_streams(specs, mask_subject=mask)


def _rgb(t: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Undo the normalisation of a [3, H, W] tensor, back to 0-255."""
    return (t * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]) * 255


def _write_dataset(root, n=6, bad=(), split="train", name=None, sizes=None) -> list[dict]:
    """JPEG scenes (the person in green) and their records under root; returns the rows."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = root / "images" / f"{split}{i}.jpg"
        if i in bad:
            path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        else:
            Image.fromarray(_scene()).save(path, quality=95)
        rows.append(
            dict(
                image=f"images/{split}{i}.jpg",
                width=W,
                height=H,
                split=split,
                person=0,
                x1=BOX[0],
                y1=BOX[1],
                x2=BOX[2],
                y2=BOX[3],
                categories=[CATEGORIES[i % NUM_CATEGORIES], CATEGORIES[-1]],
                valence=float("nan") if i % 2 else 1.0 + i,
                arousal=10.0,
                dominance=5.5,
            )
        )
    write_records(records_frame(rows), root / "annotations" / (name or f"{split}.parquet"))
    return rows


# -- transforms --------------------------------------------------------------------------------------------


def test_flip_moves_person_and_scene_together():
    t = build_transform(_cfg(), geometric=[A.HorizontalFlip(p=1.0)])
    out = t(_scene(), BOX)
    body, scene = _rgb(out["body"]), _rgb(out["scene"])
    assert out["body"].shape == (3, 32, 32) and out["scene"].shape == (3, H, W)
    # the body crop is the (green) person, taken from the flipped scene with the flipped box
    assert body[1].mean() > 200 and body[2].mean() < 30
    # the person now stands at the mirrored position on the right, the left is background
    mirrored = scene[:, 30:80, W - 55 : W - 15]
    assert mirrored[1].mean() > 200 and mirrored[2].mean() < 30
    assert scene[2, 30:80, 15:55].mean() > 200
    np.testing.assert_allclose(out["box"].numpy(), [(W - 60) / W, 0.2, (W - 10) / W, 0.9], atol=1e-5)


def test_no_flip_keeps_person_on_the_left():
    out = build_transform(_cfg())(_scene(), BOX)
    scene = _rgb(out["scene"])
    assert scene[1, 30:80, 15:55].mean() > 200 and scene[2, 30:80, W - 55 : W - 15].mean() > 200
    np.testing.assert_allclose(out["box"].numpy(), [10 / W, 0.2, 60 / W, 0.9], atol=1e-6)


def test_box_pushed_out_falls_back_to_unaugmented_geometry():
    away = A.Affine(translate_px={"x": 190, "y": 0}, p=1.0)
    t = build_transform(_cfg(), geometric=[away])
    out = t(_scene(), BOX)
    assert t.fallbacks == 1
    assert _rgb(out["body"])[1].mean() > 200  # still the person
    np.testing.assert_allclose(out["box"].numpy(), [10 / W, 0.2, 60 / W, 0.9], atol=1e-6)


def test_mask_subject_zeroes_the_person_in_the_scene_only():
    out = build_transform(_cfg(mask=True))(_scene(), BOX)
    assert torch.all(out["scene"][:, 20:90, 10:60] == 0)
    assert _rgb(out["scene"])[2, :, 100:].mean() > 200  # the rest of the scene is untouched
    assert _rgb(out["body"])[1].mean() > 200  # the body stream still sees the person


def test_per_stream_sizes_and_normalisation():
    t = build_transform(
        _cfg(
            body={"input_size": (48, 32), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
            scene={"input_size": 64, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        )
    )
    out = t(_scene(), BOX)
    assert out["body"].shape == (3, 48, 32) and out["scene"].shape == (3, 64, 64)
    assert out["body"].dtype == torch.float32 and out["scene"].dtype == torch.float32
    assert out["body"][1].mean() == pytest.approx(1.0, abs=0.02)  # green channel, 0-1 scale
    assert out["scene"][2, :, -5:].mean() == pytest.approx(1.0, abs=0.02)  # blue (1 - 0.5) / 0.5
    assert out["scene"][0].min() == pytest.approx(-1.0, abs=0.02)


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_augmenting_presets_keep_the_person_in_the_body_crop(preset):
    full = build_transform(_cfg(), augment=preset, seed=0)
    geometry_only = build_transform(_cfg(), augment=preset, seed=0, photometric=[])
    outputs = []
    for _ in range(10):
        out = full(_scene(), BOX)
        assert out["body"].shape == (3, 32, 32) and out["scene"].shape == (3, H, W)
        assert torch.isfinite(out["body"]).all() and torch.isfinite(out["scene"]).all()
        b = out["box"]
        assert 0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1
        outputs.append(out["scene"])
        # whatever the geometry, the body crop follows the (green) person on the (blue) background
        body = _rgb(geometry_only(_scene(), BOX)["body"])
        assert body[1].mean() > 128 > body[2].mean()
    assert not all(torch.equal(outputs[0], o) for o in outputs[1:])  # it does augment


def test_unknown_preset_names_the_choices():
    with pytest.raises(PresetError, match="'light'"):
        build_transform(_cfg(), augment="lite")
    with pytest.raises(PreprocessError, match="positive"):
        _cfg(body=(0, 3))
    with pytest.raises(ValueError, match="outside"):
        build_transform(_cfg())(_scene(), (300, 10, 400, 50))


def test_any_set_of_named_streams():
    """The data side makes whatever streams the preprocessing names: here a masked whole-image 'context' beside an
    unmasked 'scene' and the body; an unknown stream name needs its region."""
    cfg = PreprocessCfg.for_streams(
        {
            "context": {"input_size": 40, "region": "image"},
            "body": {"input_size": 24},
            "scene": {"input_size": (H, W)},
        }
    )
    cfg = PreprocessCfg(
        streams={**cfg.streams, "context": dataclasses.replace(cfg.streams["context"], mask="person")}
    )
    out = build_transform(cfg)(_scene(), BOX)
    assert list(out) == ["context", "body", "scene", "box"]
    assert out["context"].shape == (3, 40, 40) and out["body"].shape == (3, 24, 24)
    assert torch.all(out["context"][:, 8:36, 2:12] == 0)  # the person masked in the context only
    assert _rgb(out["scene"])[1, 30:80, 15:55].mean() > 200
    with pytest.raises(PreprocessError, match="'hands'.*region"):
        PreprocessCfg.for_streams({"hands": {"input_size": 32}})
    with pytest.raises(PreprocessError, match="mask"):
        dataclasses.replace(cfg.streams["body"], mask="person")  # a person crop cannot mask the person


def test_preprocessing_round_trip_and_v1_derivation():
    cfg = _cfg(body=(48, 32), mask=True)
    assert PreprocessCfg.from_dict(cfg.to_dict()) == cfg
    assert cfg.mask_subject and cfg.streams["scene"].mask == "person" and cfg.streams["body"].mask is None
    assert not cfg.with_mask(False).mask_subject and cfg.with_mask(False).with_mask(True) == cfg
    v1 = {
        "body": {"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "backbone": "x"},
        "scene": {"input_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3, "resize": "bilinear"},
    }
    # What training wrote in format v1: the datamodule's settings under "data", mask_subject also on top.
    derived = PreprocessCfg.from_v1(
        v1, {"data": {"mask_subject": True, "max_side": 800}, "mask_subject": True}
    )
    assert derived.mask_subject and derived.max_side == 800
    assert derived.streams["scene"] == dataclasses.replace(
        cfg.streams["scene"], input_size=(64, 64), mean=(0.5,) * 3, std=(0.25,) * 3, resize="bilinear"
    )
    plain = PreprocessCfg.from_v1(v1, {"data": {"mask_subject": False}})
    assert not plain.mask_subject and plain.max_side is None and plain.streams["body"].region == "person"


def test_deprecated_transform_api_warns_and_gives_the_same_inputs():
    new = build_transform(_cfg(32, {"input_size": (H, W), "resize": "bilinear"}, mask=True))(_scene(), BOX)
    with pytest.warns(DeprecationWarning, match="PreprocessCfg"):
        old = PairTransform(
            "none", body_size=32, scene_size=(H, W), mask_subject=True, scene_resize="bilinear"
        )
    with pytest.warns(DeprecationWarning, match="PreprocessCfg"):
        positional = build_transform("none", 32, (H, W), mask_subject=True, scene_resize="bilinear")
    assert isinstance(old, StreamTransform) and old.scene_hw == (H, W) and old.mask_subject
    for legacy in (old, positional):
        out = legacy(_scene(), BOX)
        for name in ("body", "scene", "box"):
            assert torch.equal(out[name], new[name]), name


# -- dataset -----------------------------------------------------------------------------------------------


def test_item_shapes_dtypes_labels_and_missing_vad(tmp_path):
    rows = _write_dataset(tmp_path, n=3)
    df = records_frame(rows)
    ds = EmotionDataset(df, tmp_path, transform=build_transform(_cfg(64, (96, 128))))
    assert len(ds) == 3
    item = ds[0]
    assert item["body"].shape == (3, 64, 64) and item["body"].dtype == torch.float32
    assert item["scene"].shape == (3, 96, 128) and item["scene"].dtype == torch.float32
    assert item["categories"].shape == (NUM_CATEGORIES,) and item["categories"].dtype == torch.float32
    np.testing.assert_array_equal(item["categories"].numpy(), category_matrix(df)[0])
    assert item["vad"].dtype == torch.float32 and item["vad_mask"].dtype == torch.bool
    np.testing.assert_allclose(item["vad"].numpy(), vad_to_model(np.array([1.0, 10.0, 5.5])), atol=1e-6)
    assert item["vad_mask"].tolist() == [True, True, True]
    assert item["index"] == 0
    missing = ds[1]  # valence missing
    assert missing["vad_mask"].tolist() == [False, True, True]
    assert missing["vad"][0] == 0.0 and missing["vad"][1] == pytest.approx(1.0)
    assert _rgb(item["body"])[1].mean() > 200


def test_bad_image_is_skipped_logged_and_counted(tmp_path, caplog):
    rows = _write_dataset(tmp_path, n=4, bad=(2,))
    ds = EmotionDataset(records_frame(rows), tmp_path, transform=build_transform(_cfg(32, 48)))
    loader = DataLoader(ds, batch_size=4, collate_fn=collate)
    with caplog.at_level(logging.WARNING, logger="emoctx.data.dataset"):
        batches = list(loader)
    assert len(batches) == 1
    batch = batches[0]
    assert batch["skipped"] == 1 and ds.skipped == 1
    assert batch["body"].shape == (3, 3, 32, 32) and batch["scene"].shape == (3, 3, 48, 48)
    assert batch["index"].tolist() == [0, 1, 3]
    assert batch["categories"].shape == (3, NUM_CATEGORIES) and batch["vad_mask"].shape == (3, 3)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "train2.jpg" in warnings[0].getMessage()


def test_collate_of_only_bad_items_keeps_the_count():
    assert collate([None, None]) == {"skipped": 2}


def test_records_size_of_unrotated_exif_image(tmp_path):
    """Boxes drawn on the stored pixels of a sideways photo are used on the stored pixels."""
    (tmp_path / "images").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_scene()).save(tmp_path / "images/r.jpg", exif=exif, quality=95)
    row = dict(
        image="images/r.jpg",
        width=W,
        height=H,
        split="val",
        person=0,
        x1=BOX[0],
        y1=BOX[1],
        x2=BOX[2],
        y2=BOX[3],
        categories=[],
        valence=5.0,
        arousal=5.0,
        dominance=5.0,
    )
    ds = EmotionDataset(records_frame([row]), tmp_path, transform=build_transform(_cfg(32, 48)))
    item = ds[0]
    assert item is not None and _rgb(item["body"])[1].mean() > 200


def test_reduced_size_decoding_rescales_boxes(tmp_path):
    rows = _write_dataset(tmp_path, n=1)
    ds = EmotionDataset(records_frame(rows), tmp_path, transform=build_transform(_cfg(32, 48)), max_side=100)
    item = ds[0]
    assert _rgb(item["body"])[1].mean() > 200
    np.testing.assert_allclose(item["box"].numpy(), [10 / W, 0.2, 60 / W, 0.9], atol=0.02)


# -- data module -------------------------------------------------------------------------------------------


def test_datamodule_loaders_and_category_counts(tmp_path):
    train = _write_dataset(tmp_path, n=5)
    _write_dataset(tmp_path, n=3, split="val", name="val.jsonl")
    dm = EmotionDataModule(
        root=str(tmp_path),
        val_records=str(tmp_path / "annotations/val.jsonl"),
        batch_size=2,
        num_workers=0,
        augment="light",
        streams={"body": {"input_size": 32}, "scene": {"input_size": [48, 64]}},
    )
    counts = dm.category_counts()
    assert counts.dtype == np.int64 and counts.shape == (NUM_CATEGORIES,)
    np.testing.assert_array_equal(counts, category_matrix(records_frame(train)).sum(0))
    assert counts[-1] == 5
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 2  # 5 people, batch 2, the last incomplete batch dropped
    b = batches[0]
    assert b["body"].shape == (2, 3, 32, 32) and b["scene"].shape == (2, 3, 48, 64) and b["skipped"] == 0
    val = list(dm.val_dataloader())
    assert [len(v["index"]) for v in val] == [2, 1]
    assert dm.test_dataloader() == []  # no test records: no loader
    assert dm.preprocess.streams["scene"].input_size == (48, 64)
    assert dm.transform("val").view("scene", _scene(), {}).shape == (48, 64, 3)


def test_datamodule_streams_and_its_deprecated_size_arguments(tmp_path):
    _write_dataset(tmp_path, n=2)
    with pytest.warns(DeprecationWarning, match="streams"):
        old = EmotionDataModule(root=str(tmp_path), body_size=32, scene_size=(48, 64), mask_subject=True)
    new = EmotionDataModule(
        root=str(tmp_path),
        streams={"body": {"input_size": 32}, "scene": {"input_size": (48, 64)}},
        mask_subject=True,
    )
    assert old.preprocess == new.preprocess and new.preprocess.mask_subject
    with pytest.warns(DeprecationWarning, match="preprocess"):
        assert old.preprocessing["scene_size"] == (48, 64) and old.preprocessing["mask_subject"] is True
    with pytest.raises(EmoctxError, match="data.body_size"):
        EmotionDataModule(root=str(tmp_path), streams={"body": {"input_size": 32}}, body_size=32)


def test_datamodule_limit_and_missing_train_records(tmp_path):
    _write_dataset(tmp_path, n=6)
    dm = EmotionDataModule(root=str(tmp_path), batch_size=4, num_workers=0, limit=3, augment="none")
    assert len(dm.records("train")) == 3
    assert dm.category_counts().sum() == 6  # two categories per person
    with pytest.raises(EmoctxError, match="train"):
        EmotionDataModule(root=str(tmp_path / "elsewhere"), num_workers=0).category_counts()
    with pytest.raises(EmoctxError, match="val_records"):
        EmotionDataModule(root=str(tmp_path), val_records=str(tmp_path / "no.parquet")).setup("fit")
    with pytest.raises(EmoctxError):
        EmotionDataModule(root=str(tmp_path), augment="heavy")


def test_datamodule_with_workers_skips_bad_images_and_seeds_each_worker(tmp_path):
    _write_dataset(tmp_path, n=9, bad=(4,))
    dm = EmotionDataModule(
        root=str(tmp_path),
        batch_size=1,
        num_workers=2,
        augment="strong",
        streams={"body": {"input_size": 16}, "scene": {"input_size": 24}},
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.persistent_workers and loader.num_workers == 2
    # Identical inputs: with one random stream per worker, the two workers' augmentations differ.
    sequential = DataLoader(
        dm.dataset("train"),
        batch_size=1,
        num_workers=2,
        collate_fn=loader.collate_fn,
        worker_init_fn=loader.worker_init_fn,
    )
    batches = list(sequential)
    assert sum(b["skipped"] for b in batches) == 1
    kept = [b for b in batches if "body" in b]
    assert len(kept) == 8
    by_worker = {0: [], 1: []}
    for b in kept:
        by_worker[int(b["index"][0]) % 2].append(b["scene"])
    assert not all(torch.equal(a, b) for a, b in zip(by_worker[0], by_worker[1]))
    seen = sum(len(b["index"]) for b in loader if "index" in b)
    assert seen == 8
