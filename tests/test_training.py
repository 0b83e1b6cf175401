"""Training end to end on a tiny EMOTIC-synth: model files, resuming, safe loading, the paper config, DDP."""

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from emoctx import labels
from emoctx.checkpoint import load_model, save_model
from emoctx.commands.train import train
from emoctx.data.synth import generate
from emoctx.errors import EmoctxError
from emoctx.io import default_file_mode
from emoctx.models.network import EmotionNet

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "synth_tiny.yaml")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=24, n_val=10, n_test=10, image_size=(160, 120), seed=1, progress=False)
    return root


def _args(root, run_dir, *extra, config=TINY, logger=False):
    return [
        "--config", config,
        "--data.root", str(root),
        "--trainer.default_root_dir", str(run_dir),
        *(["--trainer.logger.init_args.save_dir", str(run_dir)] if logger else ["--trainer.logger", "false"]),
        "--trainer.enable_progress_bar", "false",
        "--data.num_workers", "0",
        "--data.batch_size", "16",
        *extra,
    ]  # fmt: skip


def _inputs(net, n=3):
    g = torch.Generator().manual_seed(0)
    return {
        k: torch.randn(n, 3, s["input_size"], s["input_size"], generator=g)
        for k, s in net.stream_specs().items()
    }


def test_train_writes_self_describing_model(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # the config's wandb logger, offline: files only, no network
    import emoctx.hardware

    # A CPU without native bf16: the config's precision "auto" trains in fp32, and the model file says so.
    monkeypatch.setattr(emoctx.hardware, "cpu_supports_bf16", lambda: False)
    run = tmp_path / "run"
    results = train(_args(synth_root, run, "--trainer.max_epochs", "1", logger=True))
    assert 0.0 <= results["test/mAP"] <= 1.0
    assert {f"test/vad_mae/{d}" for d in labels.VAD_NAMES} <= set(results)
    assert any(k.startswith("test/ap/") for k in results)
    assert list((run / "wandb").glob("offline-run-*")), "wandb logged offline into the run folder"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["net"]["init_args"]["streams"]["body"]["backbone"] == "test_resnet"

    net, info = load_model(run / "model.safetensors")
    assert info.categories == list(labels.CATEGORIES) and info.score_activation == "sigmoid"
    assert (run / "model.safetensors").stat().st_mode & 0o777 == default_file_mode()  # readable by others
    assert info.streams["body"]["input_size"] == 64 and info.streams["scene"]["input_size"] == 128
    assert info.training["optimizer"] == "adamw"
    assert info.training["precision"] == "32-true" and info.training["precision_requested"] == "auto"
    # The best Lightning checkpoint (read with weights_only=True) holds the same network and weights.
    net_ckpt, _ = load_model(run / "checkpoints" / "best.ckpt")
    x = _inputs(net)
    with torch.no_grad():
        a, b = net(x), net_ckpt(x)
    assert a["logits"].shape == (3, labels.NUM_CATEGORIES) and a["vad"].shape == (3, labels.NUM_VAD)
    torch.testing.assert_close(a["logits"], b["logits"])


def test_saved_model_is_the_best_validation_epoch(synth_root, tmp_path, monkeypatch):
    """3 epochs whose validation mAP goes up, then down: the model file holds the best epoch's weights with
    --skip_test too (no test step to reload them), and says which epoch that was. The first epoch runs with
    the backbones frozen (a warm-up of the head)."""
    from emoctx.training.module import EmotionModule

    scripted = [0.30, 0.90, 0.50]  # val/mAP per epoch: the best is epoch 1, not the last
    weights: dict[int, dict[str, torch.Tensor]] = {}
    original = EmotionModule._log_metrics

    def log_metrics(self, stage):
        if stage == "val" and self.trainer.sanity_checking:  # before any training step
            weights["initial"] = {k: v.detach().clone() for k, v in self.net.named_parameters()}
        if stage != "val" or self.trainer.sanity_checking:
            return original(self, stage)
        real = self.val_metrics.compute()
        self.val_metrics.reset()
        assert 0.0 <= float(real["mAP"]) <= 1.0
        weights[self.current_epoch] = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        if self.current_epoch == 0:  # the frozen epoch: the optimiser holds no state for the backbones
            state = self.trainer.optimizers[0].state
            assert not any(p in state for p in self.net.backbone_parameters())
            assert all(p in state for p in self.net.head_parameters())
        self.log("val/mAP", scripted[self.current_epoch])

    monkeypatch.setattr(EmotionModule, "_log_metrics", log_metrics)
    run = tmp_path / "run"
    results = train(
        _args(
            synth_root, run, "--trainer.max_epochs", "3", "--skip_test", "--model.freeze_backbone_epochs", "1"
        )
    )
    assert sorted(weights, key=str) == [0, 1, 2, "initial"]
    start, first = weights.pop("initial"), weights[0]
    for name, value in start.items():  # backbones unchanged in the frozen epoch, the head trained
        assert torch.equal(value, first[name]) is name.startswith("backbones."), name
    assert any(not torch.equal(first[k], weights[1][k]) for k in start if k.startswith("backbones."))

    net, info = load_model(results["model_path"])
    saved = net.state_dict()
    changed = [k for k in saved if not torch.equal(weights[1][k], weights[2][k])]
    assert changed, "training changed the weights after epoch 1"
    for k in saved:
        torch.testing.assert_close(saved[k], weights[1][k], rtol=0, atol=0)
    selected = info.training["selected_checkpoint"]
    assert (
        selected["epoch"] == 1
        and selected["score"] == pytest.approx(0.9)
        and selected["monitor"] == "val/mAP"
    )
    # Thresholds were calibrated on the saved (best) weights, after the selection.
    assert set(info.thresholds) == set(labels.SLUGS)


def test_weight_decay_spares_biases_and_norms():
    import timm.layers

    from emoctx.training.module import EmotionModule

    streams = {
        "body": {"backbone": "test_vit", "input_size": 160},
        "scene": {"backbone": "test_resnet", "input_size": 32},
    }
    module = EmotionModule(
        EmotionNet(streams, hidden=16), optimizer="adamw", weight_decay=0.05, backbone_lr_scale=0.1
    )
    groups = module.param_groups()
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in module.net.parameters())  # each parameter once
    names = {id(p): n for n, p in module.net.named_parameters()}
    norms = {
        id(p)
        for m in module.net.modules()
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm, timm.layers.LayerNorm))
        for p in m.parameters()
    }
    assert norms
    for g in groups:
        for p in g["params"]:
            name = names[id(p)]
            decayed = not (p.ndim <= 1 or name.endswith(".bias") or name.endswith(("cls_token", "pos_embed")))
            assert g["weight_decay"] == (0.05 if decayed else 0.0), name
            assert not (decayed and id(p) in norms), name
            assert g["lr"] == pytest.approx(0.001 if name.startswith("backbones.") else 0.01), name
    # The paper's recipe decays every parameter, as the authors' code did.
    plain = EmotionModule(
        EmotionNet(streams, hidden=16), weight_decay=0.05, filter_bias_and_bn=False
    ).param_groups()
    assert {g["weight_decay"] for g in plain} == {0.05}


def test_warmup_cosine_schedule_is_the_closed_form():
    import math

    from emoctx.training.optim import warmup_cosine

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    total, warmup = 20, 5
    sched = warmup_cosine(opt, total, warmup + 0.7)  # fractional warm-up steps: whole steps of warm-up
    got = []
    for _ in range(total):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    want = [
        0.5
        * (
            (k + 1) / warmup
            if k < warmup
            else 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup)))
        )
        for k in range(total)
    ]
    assert got == pytest.approx(want, abs=1e-12)


def test_precision_auto_follows_the_hardware(monkeypatch):
    import emoctx.hardware
    from emoctx.training.trainer import Trainer, auto_precision

    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(emoctx.hardware, "cpu_supports_bf16", lambda n=native: n)
        assert auto_precision("cpu") == expected
        trainer = Trainer(accelerator="cpu", precision="auto", logger=False, enable_checkpointing=False)
        assert trainer.precision == expected and trainer.requested_precision == "auto"
    # Anything else is used as given (overridable), also bf16 on a CPU without it.
    trainer = Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_checkpointing=False)
    assert trainer.precision == "bf16-mixed"
    # GPUs: bf16 AMP where supported, fp16 AMP on older ones; "auto" accelerator finds them.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for bf16, expected in ((True, "bf16-mixed"), (False, "16-mixed")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda b=bf16: b)
        assert auto_precision("auto") == auto_precision("gpu") == expected
    assert auto_precision("cpu") == "32-true"  # still the CPU's own rule when the CPU is asked for

    # The configs that ran bf16 on every CPU now ask for "auto" (the paper's recipe stays fp32).
    for name, precision in (
        ("synth_tiny.yaml", "auto"),
        ("emotic_strong.yaml", "auto"),
        ("emotic_kosti_resnet18.yaml", "32-true"),
    ):
        assert yaml.safe_load((REPO / "configs" / name).read_text())["trainer"]["precision"] == precision


def test_resume_continues_to_planned_steps(synth_root, tmp_path):
    run = tmp_path / "run"
    planned = ["--trainer.max_epochs", "3", "--skip_test"]
    stop_early = json.dumps(
        [{"class_path": "pytorch_lightning.callbacks.EarlyStopping",
          "init_args": {"monitor": "train/loss_epoch", "stopping_threshold": 1e9, "check_on_train_epoch_end": True}}]
    )  # fmt: skip
    train(_args(synth_root, run, *planned, "--trainer.callbacks", stop_early))  # "interrupted" after epoch 1
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["epoch"] == 0
    steps_per_epoch = first["global_step"]
    train(_args(synth_root, run, *planned, "--resume", "last"))
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["epoch"] == 2
    assert final["global_step"] == 3 * steps_per_epoch


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_loading_is_safe_and_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"emoctx": {}, "state_dict": {}, "x": _Evil()}, f)
    with pytest.raises(EmoctxError, match="cannot be loaded safely"):
        load_model(bad)
    assert not (tmp_path / "pwned").exists()

    from emoctx.checkpoint import describe
    from emoctx.models.backbones import StreamConfig
    from emoctx.models.network import EmotionNet

    net = EmotionNet({"body": StreamConfig("test_resnet", input_size=32)}, hidden=16)
    info = describe(net)
    good = save_model(tmp_path / "m.safetensors", net, info)
    back, _ = load_model(good)
    torch.testing.assert_close(back.state_dict(), net.state_dict())

    other = dict(info, categories=list(reversed(labels.CATEGORIES)))
    with pytest.raises(EmoctxError, match="other categories"):
        load_model(save_model(tmp_path / "o.safetensors", net, other))
    newer = dict(info, format_version=info["format_version"] + 1)
    with pytest.raises(EmoctxError, match="upgrade emoctx"):
        load_model(save_model(tmp_path / "n.safetensors", net, newer))
    with pytest.raises(EmoctxError, match="not an emoctx model"):
        load_model(save_model(tmp_path / "f.safetensors", net, {"format": "other"}))


def test_model_file_records_torch_and_timm_and_warns_on_another_major(tmp_path, caplog):
    import timm

    from emoctx.checkpoint import describe
    from emoctx.models.backbones import StreamConfig
    from emoctx.models.network import EmotionNet

    net = EmotionNet({"body": StreamConfig("test_resnet", input_size=32)}, hidden=16)
    info = describe(net)
    _, loaded = load_model(save_model(tmp_path / "m.safetensors", net, info))
    assert (loaded.torch_version, loaded.timm_version) == (torch.__version__, timm.__version__)
    assert "another major version" not in caplog.text

    minor = dict(info, torch_version=f"{torch.__version__.split('.')[0]}.0.0")  # same major: silent
    load_model(save_model(tmp_path / "minor.safetensors", net, minor))
    assert "another major version" not in caplog.text
    old = dict(info, torch_version="1.13.1", timm_version="0.9.16")
    load_model(save_model(tmp_path / "old.safetensors", net, old))
    assert "old.safetensors: written with torch 1.13.1" in caplog.text
    assert "written with timm 0.9.16" in caplog.text
    caplog.clear()
    unrecorded = {k: v for k, v in info.items() if k not in ("torch_version", "timm_version")}
    _, loaded = load_model(save_model(tmp_path / "unrecorded.safetensors", net, unrecorded))
    assert loaded.torch_version is None and "another major version" not in caplog.text


@pytest.mark.parametrize(("arch", "size"), [("test_resnet", 32), ("test_vit_relpos", 160)])
def test_loaded_network_is_complete_and_equal(tmp_path, arch, size):
    """Built without random initialisation where the file holds every tensor; built normally where it
    cannot (test_vit_relpos computes position tables no checkpoint holds)."""
    from emoctx.checkpoint import describe
    from emoctx.models.backbones import StreamConfig
    from emoctx.models.network import EmotionNet

    torch.manual_seed(0)
    net = EmotionNet({"body": StreamConfig(arch, input_size=size)}, hidden=16).eval()
    back, _ = load_model(save_model(tmp_path / "m.safetensors", net, describe(net)))
    every = [*back.parameters(), *back.buffers()]
    assert every and not any(t.is_meta for t in every)
    x = {"body": torch.randn(2, 3, size, size)}
    with torch.no_grad():
        want, got = net(x), back(x)
    torch.testing.assert_close(got["logits"], want["logits"])
    torch.testing.assert_close(got["vad"], want["vad"])

    # Weights stored in another dtype load in the network's own, as a copy into it would.
    from safetensors.torch import load_file, save_file

    half = tmp_path / "bf16.safetensors"
    meta = {"emoctx": json.dumps(describe(net))}
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(tmp_path / "m.safetensors").items()}, half, meta)
    assert {p.dtype for p in load_model(half)[0].parameters()} == {torch.float32}

    # Weights of another shape are a clear error naming the file.
    resized = EmotionNet({"body": StreamConfig(arch, input_size=size)}, hidden=8)
    other = save_model(tmp_path / "other.safetensors", resized, describe(net))
    with pytest.raises(EmoctxError, match="other.safetensors: weights do not fit"):
        load_model(other)


def _random_init_config(src: str, dst: Path) -> str:
    cfg = yaml.safe_load((REPO / "configs" / src).read_text())
    for stream in cfg["model"]["net"]["init_args"]["streams"].values():
        stream["pretrained"] = None  # no downloads in tests: same architecture, random weights
    for split in ("train", "val", "test"):
        cfg["data"].pop(f"{split}_records", None)
    dst.write_text(yaml.safe_dump(cfg))
    return str(dst)


def test_paper_config_trains_and_evaluate_gives_the_same_map(synth_root, tmp_path):
    """The paper's recipe (the authors' squared-error loss: scores clamped to 0-1) for a few steps. Training's
    test mAP, `emoctx evaluate --model` and `emoctx evaluate --predictions` on the file it writes agree to
    1e-6, because all three rank the raw outputs; the clamped scores would tie persons and give another AP."""
    from emoctx import cli
    from emoctx.data.records import category_matrix, read_records
    from emoctx.evaluation.predictions import RAW_COLUMNS, SCORE_COLUMNS
    from emoctx.metrics import mean_average_precision

    config = _random_init_config("emotic_kosti_resnet18.yaml", tmp_path / "kosti.yaml")
    run = tmp_path / "run"
    results = train(
        _args(
            synth_root, run,
            "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--data.batch_size", "8",
            config=config,
        )
    )  # fmt: skip
    _, info = load_model(run / "model.safetensors")
    assert info.streams["body"]["input_size"] == 128 and info.streams["scene"]["input_size"] == 224
    assert info.network["fusion"] == "concat" and info.score_activation == "clamp"  # the authors' L2 loss
    assert info.training["optimizer"] == "sgd" and info.training["lr"] == 0.01
    assert info.training["precision"] == "32-true" and info.training["filter_bias_and_bn"] is False

    test_records = synth_root / "annotations" / "test.parquet"
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", results["model_path"], "--records", str(test_records), "--no-plots"]
    assert (
        cli.main([*argv, "--root", str(synth_root), "--out", str(out), "--workers", "0", "--no-progress"])
        == 0
    )
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["overall"]["mAP"] == pytest.approx(results["test/mAP"], abs=1e-6)
    assert doc["num_persons"] == doc["overall"]["num_persons"] == results["test/num_persons"]
    assert doc["num_persons"] == len(read_records(test_records))
    for slug in labels.SLUGS:
        if f"test/ap/{slug}" in results:
            assert doc["overall"][f"ap/{slug}"] == pytest.approx(results[f"test/ap/{slug}"], abs=1e-6)

    # The predictions file evaluate wrote scores the same, from its raw columns.
    again = tmp_path / "again"
    argv = ["evaluate", "--predictions", str(out / "predictions.parquet"), "--records", str(test_records)]
    assert cli.main([*argv, "--out", str(again), "--no-plots"]) == 0
    assert json.loads((again / "metrics.json").read_text())["overall"]["mAP"] == pytest.approx(
        doc["overall"]["mAP"], abs=1e-12
    )
    # What this guards against: the clamped 0-1 scores tie persons and rank to another mAP.
    preds = pd.read_parquet(out / "predictions.parquet")
    targets = category_matrix(read_records(test_records))
    clamped = mean_average_precision(preds[list(SCORE_COLUMNS)].to_numpy(), targets)["mAP"]
    raw = mean_average_precision(preds[list(RAW_COLUMNS)].to_numpy(), targets)["mAP"]
    assert raw == pytest.approx(doc["overall"]["mAP"], abs=1e-12)
    assert abs(clamped - raw) > 1e-4


def test_strong_config_builds(tmp_path):
    from emoctx.training.module import EmotionModule

    cfg = yaml.safe_load(Path(_random_init_config("emotic_strong.yaml", tmp_path / "s.yaml")).read_text())
    module = EmotionModule(**cfg["model"])
    assert module.net.stream_specs()["scene"]["input_size"] == 224
    with torch.no_grad():
        out = module.net.eval()(_inputs(module.net, n=2))
    assert out["logits"].shape == (2, labels.NUM_CATEGORIES)


def _run_ddp(root, run, *extra):
    args = _args(
        root, run,
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu",
        "--trainer.precision", "32-true", "--skip_test", *extra,
    )  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # A process that waits for the other one forever is a failure, not a hang of the test run.
    return subprocess.run(
        [sys.executable, "-m", "emoctx", "train", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_ddp_two_processes_agree_with_unreadable_batches_and_frozen_backbones(synth_root, tmp_path):
    """2 CPU processes: most training images are unreadable, so that in some steps one process has a batch
    with no image left while the other trains; the first epoch has the backbones frozen. Both kinds of step
    keep the processes in step (no hang, no DDP error), and they end with identical weights. Then one
    process moves a weight: the agreement check reports it (it is not true by construction)."""
    root = tmp_path / "synth"
    shutil.copytree(synth_root, root)
    images = sorted((root / "images").rglob("train_*.jpg"))
    for path in images[3:]:
        path.write_bytes(b"not a JPEG")
    run = tmp_path / "ddp"
    checks = [
        {
            "class_path": "emoctx.training.callbacks.ReplicaCheck",
            "init_args": {"filename": "replicas_trained.json"},
        },
        {"class_path": "tests.ddp_callbacks.PerturbOneReplica"},
    ]  # then the default ReplicaCheck writes replicas.json
    proc = _run_ddp(
        root, run,
        "--trainer.max_epochs", "2", "--data.batch_size", "4", "--model.freeze_backbone_epochs", "1",
        "--trainer.callbacks", json.dumps(checks),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Some step had an empty batch in one process and not in the other (the case that used to fail).
    empty = [
        (int(m.group(1)), int(m.group(2)))
        for m in re.finditer(r"train: a batch .* skipped \(process (\d), step (\d+)\)", proc.stderr)
    ]
    by_step = {}
    for rank, step in empty:
        by_step.setdefault(step, set()).add(rank)
    assert any(len(ranks) == 1 for ranks in by_step.values()), empty
    trained = json.loads((run / "replicas_trained.json").read_text())
    assert trained["world_size"] == 2 and trained["agree"] is True
    assert trained["fingerprints"][0] == trained["fingerprints"][1]
    assert (run / "model.safetensors").exists()

    moved = json.loads((run / "replicas.json").read_text())
    assert moved["agree"] is False and moved["fingerprints"][0] == trained["fingerprints"][0]
    assert moved["fingerprints"][1] != trained["fingerprints"][1]
    assert "processes ended with different weights" in proc.stderr


@pytest.mark.slow  # inductor compiles C++ kernels: minutes on 2 cores
def test_compile_option_matches_eager():
    from emoctx.training.module import EmotionModule

    module = EmotionModule(
        EmotionNet({"body": {"backbone": "test_resnet", "input_size": 32}}, hidden=16), compile=True
    )
    module.eval()
    x = {"body": torch.randn(2, 3, 32, 32)}
    with torch.no_grad():
        compiled, eager = module(x), module.net(x)
    torch.testing.assert_close(compiled["logits"], eager["logits"], rtol=1e-4, atol=1e-4)
    assert "_forward" not in dict(module.named_modules())  # the compiled wrapper adds no state-dict keys


def test_network_overrides_and_configs_from_before_the_injection(synth_root, tmp_path):
    """model.net.init_args.* overrides reach the network; a config with the network's arguments flat under
    model (as before the network was injected) trains the same network, with a deprecation warning."""
    from emoctx.training.cli import fit

    quick = ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", "--skip_test"]
    new = fit(_args(synth_root, tmp_path / "new", *quick, "--model.net.init_args.hidden", "40"))
    _, info = load_model(new["model_path"])
    assert info.network["hidden"] == 40 and info.training["hidden"] == 40

    cfg = yaml.safe_load(Path(TINY).read_text())
    cfg["model"].update(cfg["model"].pop("net")["init_args"])  # streams, fusion, hidden, dropout under model
    old_config = tmp_path / "old.yaml"
    old_config.write_text(yaml.safe_dump(cfg))
    with pytest.warns(DeprecationWarning, match="EmotionModule\\(streams, fusion, hidden, dropout\\)"):
        old = fit(_args(synth_root, tmp_path / "old", *quick, "--model.hidden", "40", config=str(old_config)))
    _, old_info = load_model(old["model_path"])
    assert old_info.network == info.network
    assert {
        k: v for k, v in old_info.training.items() if k in ("streams", "fusion", "hidden", "dropout")
    } == {k: v for k, v in info.training.items() if k in ("streams", "fusion", "hidden", "dropout")}
