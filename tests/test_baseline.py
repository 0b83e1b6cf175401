"""The common PyTorch EMOTIC baseline (Tandon-A/emotic): its released files imported without running their code and
computing what the baseline computes, its thresholds, its head trained the same way, and its recipe's config.

The files are written here the way the baseline writes them (train.py: ``torch.save`` of whole modules), from the
same structures: torchvision ResNet-18s without their classifier, and the baseline's ``Emotic`` fusion module
(emotic.py) pickled under the module name ``emotic``. Weights are random (nothing is downloaded).
"""

from __future__ import annotations

import copy
import shutil
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
import yaml
from test_losses import baseline_discrete_loss, baseline_sl1_loss
from torch import nn

from emoctx import labels
from emoctx.checkpoint import load_model
from emoctx.cli import main
from emoctx.errors import EmoctxError
from emoctx.io import default_file_mode
from emoctx.losses import EmotionLoss
from emoctx.models.baseline import (
    BASELINE_STREAMS,
    find_files,
    import_baseline,
    read_thresholds,
    thresholds_for_scores,
)
from emoctx.models.network import EmotionNet

REPO = Path(__file__).resolve().parents[1]


class Emotic(nn.Module):
    """The baseline's fusion module, as its emotic.py defines it."""

    __module__ = "emotic"  # pickled as emotic.Emotic, like the released model_emotic1.pth

    def __init__(self, num_context_features, num_body_features):
        super().__init__()
        self.num_context_features = num_context_features
        self.num_body_features = num_body_features
        self.fc1 = nn.Linear((self.num_context_features + num_body_features), 256)
        self.bn1 = nn.BatchNorm1d(256)
        self.d1 = nn.Dropout(p=0.5)
        self.fc_cat = nn.Linear(256, 26)
        self.fc_cont = nn.Linear(256, 3)
        self.relu = nn.ReLU()

    def forward(self, x_context, x_body):
        context_features = x_context.view(-1, self.num_context_features)
        body_features = x_body.view(-1, self.num_body_features)
        fuse_features = torch.cat((context_features, body_features), 1)
        fuse_out = self.fc1(fuse_features)
        fuse_out = self.bn1(fuse_out)
        fuse_out = self.relu(fuse_out)
        fuse_out = self.d1(fuse_out)
        cat_out = self.fc_cat(fuse_out)
        cont_out = self.fc_cont(fuse_out)
        return cat_out, cont_out


def _randomise_norms(module: nn.Module, g: torch.Generator) -> None:
    """Give every batch norm non-trivial statistics and affine weights (fresh ones are the identity)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def save_like_the_baseline(folder: Path, thresholds: np.ndarray) -> dict[str, nn.Module]:
    """Build the baseline's three modules as its train.py does, and save them and the thresholds as it does."""
    g = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    model_context = torchvision.models.resnet18(num_classes=365)  # prepare_models.py (Places365 layout)
    model_body = torchvision.models.resnet18()
    emotic_model = Emotic(
        list(model_context.children())[-1].in_features, list(model_body.children())[-1].in_features
    )
    model_context = nn.Sequential(*(list(model_context.children())[:-1]))
    model_body = nn.Sequential(*(list(model_body.children())[:-1]))
    with torch.no_grad():
        for m in (model_context, model_body, emotic_model):
            _randomise_norms(m, g)
        emotic_model.fc_cont.weight.mul_(0.1)
        emotic_model.fc_cont.bias.fill_(0.5)  # ratings near 5, inside the 1-10 scale that predict clamps to
    baseline_module = types.ModuleType("emotic")
    baseline_module.Emotic = Emotic
    folder.mkdir(parents=True, exist_ok=True)
    sys.modules["emotic"] = baseline_module
    try:
        torch.save(emotic_model, folder / "model_emotic1.pth")
        torch.save(model_context, folder / "model_context1.pth")
        torch.save(model_body, folder / "model_body1.pth")
    finally:
        del sys.modules["emotic"]
    np.save(folder / "val_thresholds.npy", thresholds)
    return {"context": model_context.eval(), "body": model_body.eval(), "fusion": emotic_model.eval()}


THRESHOLDS = np.array([0.11, 0.33, 0.0, *np.linspace(0.05, 0.45, 23)], dtype=np.float32)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The baseline's files written as it writes them, its original modules, and the imported model file."""
    folder = tmp_path_factory.mktemp("baseline")
    originals = save_like_the_baseline(folder / "models", THRESHOLDS)
    shutil.move(folder / "models" / "val_thresholds.npy", folder / "val_thresholds.npy")
    model = folder / "model.safetensors"
    files = find_files(folder / "models", {"thresholds": folder / "val_thresholds.npy"})
    import_baseline(files, model)
    return {
        "folder": folder / "models",
        "thresholds": folder / "val_thresholds.npy",
        "model": model,
        **originals,
    }


def baseline_outputs(originals, x_context, x_body):
    with torch.no_grad():
        return originals["fusion"](originals["context"](x_context), originals["body"](x_body))


def test_import_gives_the_baselines_outputs(baseline):
    net, info = load_model(baseline["model"])
    g = torch.Generator().manual_seed(3)
    x_context, x_body = torch.randn(4, 3, 224, 224, generator=g), torch.randn(4, 3, 128, 128, generator=g)
    cat_out, cont_out = baseline_outputs(baseline, x_context, x_body)
    with torch.no_grad():
        out = net({"scene": x_context, "body": x_body})
    assert cat_out.abs().max() > 0.1  # non-trivial outputs
    torch.testing.assert_close(out["logits"], cat_out, rtol=0, atol=1e-5)
    # The baseline reads 10 * cont_out as the ratings.
    torch.testing.assert_close(labels.vad_from_model(out["vad"]) / 10, cont_out, rtol=0, atol=1e-5)

    # The description: the baseline's input sizes and normalisation per stream, its concatenation order, its head.
    assert list(info.streams) == ["scene", "body"]
    for name, spec in BASELINE_STREAMS.items():
        assert info.streams[name]["input_size"] == spec["input_size"]
        assert info.streams[name]["mean"] == pytest.approx(spec["mean"])
        assert info.streams[name]["std"] == pytest.approx(spec["std"])
        assert info.streams[name]["backbone"] == "resnet18"
    assert info.streams["scene"]["mean"] == pytest.approx(
        [0.4690646, 0.4407227, 0.40508908]
    )  # not ImageNet's
    assert info.network["vad_output"] == "tenths" and info.network["fusion"] == "concat"
    assert info.score_activation == "clamp"
    prep = (
        info.preprocessing
    )  # the baseline's inputs: its sizes and statistics, bilinear, whole images, unmasked
    assert [prep.streams[n].resize for n in prep.streams] == [
        "bilinear",
        "bilinear",
    ] and not prep.mask_subject
    assert prep.streams["scene"].region == "image" and prep.streams["body"].region == "person"
    assert prep.streams["body"].input_size == (128, 128) and prep.max_side is None
    assert prep.streams["body"].mean == pytest.approx(BASELINE_STREAMS["body"]["mean"])
    assert info.training["baseline_inputs"]["resize"] == "bilinear"
    assert set(info.training["files"]) == {"context", "body", "fusion", "thresholds"}
    assert len(info.training["files"]["fusion"]["sha256"]) == 64


def test_thresholds_keep_the_baselines_decision(baseline, caplog):
    _, info = load_model(baseline["model"])
    stored = info.threshold_vector().numpy().astype(np.float64)
    # Raw scores at, just above and around each threshold (float32, as the model outputs them).
    t = THRESHOLDS.astype(np.float32)
    raw = np.stack(
        [t, np.nextafter(t, np.float32(2)), np.nextafter(t, np.float32(-1)), t - 0.2, t + 0.3, t + 1.5],
        axis=0,
    ).astype(np.float32)
    baseline_marks = raw > t  # inference.py: torch.gt(pred_cat, thresholds)
    scores = np.clip(raw, 0.0, 1.0).astype(
        np.float64
    )  # what emoctx shows ("clamp"), compared as predict does
    assert ((scores >= stored) == baseline_marks).all()
    assert baseline_marks.any() and not baseline_marks.all()

    with caplog.at_level("WARNING"):
        out = thresholds_for_scores(np.array([-0.2, 1.5, *[0.2] * 24], dtype=np.float32))
    assert out[labels.SLUGS[0]] == 0.0 and out[labels.SLUGS[1]] > 1.0
    assert "outside [0, 1)" in caplog.text


def test_hostile_pickles_are_refused_and_never_run(baseline, tmp_path):
    import os

    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    folder = tmp_path / "hostile"
    shutil.copytree(baseline["folder"], folder)
    torch.save(Hostile(), folder / "model_emotic1.pth")
    # Unpickled the usual way, the file runs its code.
    torch.load(folder / "model_emotic1.pth", weights_only=False)
    assert marker.is_dir()
    marker.rmdir()

    out = tmp_path / "m.safetensors"
    with pytest.raises(EmoctxError, match=r"model_emotic1.pth: refused: .*mkdir"):
        import_baseline(find_files(folder), out)
    assert not marker.exists() and not out.exists()

    # A pickled object array where the thresholds should be is refused too.
    np.save(folder / "val_thresholds.npy", np.array([{"a": 1}] * 26, dtype=object), allow_pickle=True)
    with pytest.raises(EmoctxError, match="val_thresholds.npy: not a readable .npy array"):
        read_thresholds(folder / "val_thresholds.npy")


def test_command_line_import(baseline, tmp_path, capsys):
    out = tmp_path / "baseline.safetensors"
    args = [
        "import-baseline",
        str(baseline["folder"]),
        "--thresholds",
        str(baseline["thresholds"]),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert out.stat().st_mode & 0o777 == default_file_mode()  # readable by others, as any new file
    assert (
        "the baseline's model (scene: resnet18, body: resnet18), with the baseline's thresholds"
        in capsys.readouterr().out
    )
    before = out.read_bytes()
    assert main(args) == 2  # an existing file is never replaced without --overwrite
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*args, "--overwrite"]) == 0
    # Without thresholds the model has none; a missing part is a clear error.
    bare = tmp_path / "bare.safetensors"
    assert main(["import-baseline", str(baseline["folder"]), "--out", str(bare)]) == 0
    assert load_model(bare)[1].thresholds is None
    assert main(["import-baseline", str(tmp_path), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "context file (model_context1.pth) was not found" in capsys.readouterr().err


def baseline_inputs(image: np.ndarray, box: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline's inference.py process_images: crop, cv2.resize to 224 / 128, ToTensor, Normalize."""
    x1, y1, x2, y2 = box
    image_body = image[y1:y2, x1:x2].copy()
    image_context = cv2.resize(image, (224, 224))
    image_body = cv2.resize(image_body, (128, 128))
    to_tensor = torchvision.transforms.ToTensor()
    context_norm = torchvision.transforms.Normalize(
        BASELINE_STREAMS["scene"]["mean"], BASELINE_STREAMS["scene"]["std"]
    )
    body_norm = torchvision.transforms.Normalize(
        BASELINE_STREAMS["body"]["mean"], BASELINE_STREAMS["body"]["std"]
    )
    return context_norm(to_tensor(image_context)).unsqueeze(0), body_norm(to_tensor(image_body)).unsqueeze(0)


def test_predict_feeds_the_model_as_the_baseline_did(baseline):
    """emoctx predict gives what the baseline's own inference gives on the same photo and boxes."""
    from ultralytics.utils import ASSETS

    from emoctx.inference import Predictor

    image = cv2.cvtColor(cv2.imread(str(ASSETS / "bus.jpg")), cv2.COLOR_BGR2RGB)
    boxes = [[50, 400, 250, 900], [220, 400, 350, 860]]
    predictor = Predictor(baseline["model"], precision="fp32", num_workers=0, max_side=None)
    persons = predictor.predict_images([image], boxes=[boxes])[0].persons
    for person, box in zip(persons, boxes):
        cat_out, cont_out = baseline_outputs(baseline, *baseline_inputs(image, box))
        np.testing.assert_allclose(person.probabilities, cat_out[0].clamp(0, 1).numpy(), atol=1e-4)
        ratings = [person.valence, person.arousal, person.dominance]
        np.testing.assert_allclose(ratings, (10 * cont_out[0]).numpy(), atol=1e-3)
        marked = [labels.CATEGORIES[i] for i in np.flatnonzero(cat_out[0].numpy() > THRESHOLDS)]
        assert person.categories == marked
        assert 0 < len(marked) < labels.NUM_CATEGORIES


def test_bilinear_resize_is_cv2s_default():
    from ultralytics.utils import ASSETS

    from emoctx.data.preprocess import PreprocessCfg
    from emoctx.data.transforms import build_transform, resize_view

    image = cv2.cvtColor(cv2.imread(str(ASSETS / "zidane.jpg")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(resize_view(image, (224, 224), "bilinear"), cv2.resize(image, (224, 224)))
    area = resize_view(image, (224, 224))
    assert not np.array_equal(area, cv2.resize(image, (224, 224)))  # emoctx's own models: INTER_AREA
    cfg = PreprocessCfg.for_streams(
        {"scene": {"input_size": 224, "resize": "bilinear", "mean": (0.0, 0.0, 0.0), "std": (1 / 255,) * 3}}
    )
    scene = build_transform(cfg)(image, [0, 0, 10, 10])["scene"]
    assert np.abs(scene.permute(1, 2, 0).numpy() - cv2.resize(image, (224, 224))).max() < 1e-3


def test_evaluation_feeds_the_baselines_inputs(baseline):
    from emoctx.evaluation.scoring import records_transform

    _, info = load_model(baseline["model"])
    prep = records_transform(info).cfg
    assert prep.streams["scene"].input_size == (224, 224) and prep.streams["body"].input_size == (128, 128)
    assert not prep.mask_subject
    assert prep.streams["scene"].resize == prep.streams["body"].resize == "bilinear"
    assert prep.streams["body"].mean == pytest.approx(BASELINE_STREAMS["body"]["mean"])
    assert prep.streams["scene"].std == pytest.approx(BASELINE_STREAMS["scene"]["std"])


def test_head_trains_like_the_baseline(baseline):
    """Same weights and features: emoctx's recipe options give the baseline's loss and gradients (train.py)."""
    net, _ = load_model(baseline["model"])
    head, emotic = copy.deepcopy(net).train(), copy.deepcopy(baseline["fusion"]).train()
    g = torch.Generator().manual_seed(11)
    f_context, f_body = torch.randn(52, 512, generator=g), torch.randn(52, 512, generator=g)
    labels_cat = (torch.rand(52, labels.NUM_CATEGORIES, generator=g) < 0.2).float()
    ratings = torch.randint(1, 11, (52, labels.NUM_VAD), generator=g).float()

    torch.manual_seed(5)  # the same dropout mask in both
    pred_cat, pred_cont = emotic(f_context, f_body)
    labels_cont = ratings / 10.0  # emotic_dataset.py
    loss_b = 0.5 * baseline_discrete_loss(pred_cat, labels_cat) + 0.5 * baseline_sl1_loss(
        pred_cont * 10, labels_cont * 10
    )
    loss_b.backward()

    torch.manual_seed(5)
    out = head.head({"scene": f_context, "body": f_body})
    criterion = EmotionLoss(
        discrete="emotic",
        continuous="smoothl1",
        discrete_weights="batch",
        reduction="sum",
        continuous_scale="1-10",
    )
    loss_e = criterion(out["logits"], out["vad"], labels_cat, labels.vad_to_model(ratings))["loss"]
    loss_e.backward()

    torch.testing.assert_close(loss_e, loss_b, rtol=1e-5, atol=1e-4)
    pairs = {
        "fusion.net.0": emotic.fc1,
        "fusion.net.1": emotic.bn1,
        "category_head": emotic.fc_cat,
        "vad_head": emotic.fc_cont,
    }
    for name, layer in pairs.items():
        ours = head.get_submodule(name)
        size = (
            layer.weight.grad.abs().max().item()
        )  # (fc1's bias gradient is 0 up to rounding: bn1 follows it)
        assert size > 0
        for p in ("weight", "bias"):
            torch.testing.assert_close(
                getattr(ours, p).grad, getattr(layer, p).grad, rtol=1e-4, atol=1e-5 * size
            )


def test_baseline_config_trains_with_the_baselines_recipe(tmp_path):
    """The config, through the training command (2 steps on EMOTIC-synth), gives its recipe.

    The streams' ResNet-18s become timm's tiny random test_resnet (the recipe is under test, not the backbones).
    """
    from emoctx.commands.train import train
    from emoctx.data.synth import generate

    cfg = yaml.safe_load((REPO / "configs" / "emotic_baseline_resnet18.yaml").read_text())
    for stream in cfg["model"]["net"]["init_args"]["streams"].values():
        stream.update(backbone="test_resnet", pretrained=None)
    for split in ("train", "val", "test"):
        cfg["data"].pop(f"{split}_records")
    config = tmp_path / "baseline.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    generate(tmp_path / "synth", n_train=16, n_val=8, n_test=8, image_size=(160, 120), seed=1, progress=False)
    run = tmp_path / "run"
    train(
        [
            "--config", str(config), "--data.root", str(tmp_path / "synth"), "--trainer.default_root_dir", str(run),
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "2",
            "--trainer.limit_val_batches", "1", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--data.batch_size", "8", "--data.num_workers", "0", "--skip_test",
        ]
    )  # fmt: skip
    _, info = load_model(run / "model.safetensors")
    assert list(info.streams) == ["scene", "body"]  # concatenated context first, as the baseline does
    assert info.network["vad_output"] == "tenths" and info.network["hidden"] == 256
    for name, spec in BASELINE_STREAMS.items():
        assert info.streams[name]["input_size"] == spec["input_size"]
        assert info.streams[name]["mean"] == pytest.approx(spec["mean"])
        # the data module normalised each stream with the model's statistics, and the file says so
        assert info.training["data"]["streams"][name]["std"] == pytest.approx(spec["std"])
        assert info.preprocessing.streams[name].std == pytest.approx(spec["std"])
    t = info.training
    assert (t["loss_reduction"], t["continuous_scale"], t["continuous_loss"], t["discrete_weights"]) == (
        "sum",
        "1-10",
        "smoothl1",
        "batch",
    )
    assert (t["optimizer"], t["lr"], t["weight_decay"], t["step_size"]) == ("adam", 0.01, 0.0005, 7)
    assert t["data"]["augment"] == "baseline" and t["data"]["batch_size"] == 8  # 52 in the file, 8 here


def test_adam_is_torchs_adam_with_weight_decay_in_the_gradient():
    from emoctx.training.module import EmotionModule

    streams = {"scene": {"backbone": "test_resnet", "input_size": 32}, "body": {"backbone": "test_resnet"}}
    module = EmotionModule(EmotionNet(streams, hidden=8), optimizer="adam", lr=0.01, weight_decay=5e-4)
    opt = module.configure_optimizers()["optimizer"]
    assert type(opt) is torch.optim.Adam and opt.defaults["weight_decay"] == 5e-4
    with pytest.raises(EmoctxError, match="unknown vad_output 'tens'"):
        EmotionNet(streams, hidden=8, vad_output="tens")


def test_baseline_augmentation_preset_flips_and_jitters():
    from emoctx.data.preprocess import PreprocessCfg
    from emoctx.data.transforms import build_transform

    image = np.zeros((60, 80, 3), dtype=np.uint8)
    image[:, :40] = (200, 80, 40)  # the left half coloured
    box = [0, 0, 80, 60]
    cfg = PreprocessCfg.for_streams({"body": {"input_size": 32}, "scene": {"input_size": 32}})
    plain = build_transform(cfg)(image, box)["scene"]
    outs = [build_transform(cfg, augment="baseline", seed=s)(image, box)["scene"] for s in range(12)]
    flipped = [o for o in outs if o[:, :, :16].abs().sum() < o[:, :, 16:].abs().sum()]
    assert 0 < len(flipped) < len(outs)  # flipped about half of the time
    assert all(
        not torch.equal(o, plain) and not torch.equal(o, plain.flip(-1)) for o in outs
    )  # colours jittered
