"""Benchmark harness: how fast emoctx predicts and trains on this machine, and what the fast paths cost.

Everything is measured in one run, side by side, so that the ratios hold even on a busy machine:

* **machine**: what a 2048x2048 matrix multiply reaches in fp32 and bf16 at the start and at the end of the
  run (a shared machine delivers less than its specification, and not the same all run long);
* **bf16 only where it is native**: on a CPU without native bf16 (AVX512-BF16 or AMX) bf16 arithmetic is
  emulated, orders of magnitude slower than fp32, and nothing here would run it by default (``predict`` and
  ``precision: auto`` pick fp32 there): every bf16 row is skipped, and the tables say so;
* **model floor**: the emotion model alone on preprocessed tensors (persons/s, batch 1 and 32) in fp32,
  channels-last fp32 and bf16 autocast (channels-last), under ``torch.inference_mode``, and in every inference
  engine and precision (:mod:`emoctx.engines`: torch, onnxruntime, openvino; fp32, bf16, int8); warm-up
  excluded, median of several alternating rounds. Also each stream alone, which gives the floor of the
  shared-scene computation (body per person + scene per image); and what building each engine costs (first
  build, from the cache);
* **prediction**: ``emoctx predict`` end to end (the command, in this process) on a generated folder of
  640x480 JPEGs with 1-4 people each (EMOTIC-synth), boxes given, in every engine and precision (int8
  calibrated on the train split), the masked scene and 2 decoding processes; each row's ratio to its own
  floor, to the best engine's floor, to ``--engine torch --precision fp32`` and to the common EMOTIC
  baseline's inference path (one person at a time, the image re-decoded per person, fp32) measured here too;
* **detector**: ultralytics person detection, images/s at its default size (640) in PyTorch and in each
  exported engine, with ``yolo11n.yaml`` (random weights: the compute of a forward is that of the trained
  model; the number of candidate boxes, and so the NMS time, can differ);
* **training**: samples/s of a full training step (forward, loss, backward, optimiser step; ``precision: auto``)
  fed by the data module from JPEGs with ``light`` augmentation and 2 workers, against the same step fed by
  batches already in memory;
* **memory**: peak RSS of prediction and of a few training steps, each in its own process, at three dataset
  sizes, and the memory prediction still holds at the end (neither should grow with the dataset);
* **accuracy cost**: on EMOTIC-synth test (320x240), mAP of a small trained model (``configs/synth_tiny.yaml``
  trained here with and without ``mask_subject``, or ``--model``) with shared vs masked scene and bf16 vs
  fp32, and the largest probability difference between bf16 and fp32; int8 against PyTorch fp32 per engine;
* **faces**: the face stream's cost per face, and ``emoctx predict`` end to end with and without a face
  stream on EMOTIC-synth with faces.

    .venv/bin/python scripts/bench.py [--quick] [--out runs/bench] [--model FILE] [--profile]

``--quick`` runs every section at toy sizes with tiny networks and a 128x128 matrix multiply (a smoke test of the
harness; its figures mean nothing). Writes ``bench.json`` (every figure, the machine, the plan) and ``bench.md`` (the tables) in
``--out`` and prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("floor", "predict", "detector", "training", "memory", "accuracy", "faces")
NO_BF16 = (
    "bf16 rows skipped: this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 arithmetic is emulated and "
    "far slower than fp32; `emoctx predict` and `precision: auto` run fp32 here"
)


def native_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (the detection ``emoctx predict`` uses)."""
    from emoctx.hardware import cpu_supports_bf16

    return cpu_supports_bf16()


def default_mode(native: bool) -> tuple[str, str, str]:
    """(engine, precision, scene mode) that `emoctx predict` runs by default on this CPU
    (:func:`emoctx.engines.default_engine`, which reads the same detection as ``native``)."""
    from emoctx.engines.choice import default_engine

    engine, precision = default_engine("cpu")
    if precision == "auto":
        precision = "bf16" if native else "fp32"
    return (engine, precision, "shared")


PREDICT_ENGINES: tuple[tuple[str, str], ...] = (
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("onnxruntime", "int8"),
    ("openvino", "int8"),
)
"""The engines `emoctx predict` is measured with end to end: (engine, precision)."""


def prediction_modes(
    native: bool, openvino: bool | None = None
) -> dict[str, tuple[str, str, str, tuple[str, ...]]]:
    """Prediction runs: label -> (engine, precision, scene mode, extra options); the default decoding workers
    unless said. Every engine with the shared scene (bf16 only where the CPU has native bf16, OpenVINO only
    where installed); the default engine also with the masked scene and with 2 decoding processes."""
    openvino = have_openvino() if openvino is None else openvino
    engine, fast, _ = default_mode(native)
    modes: dict[str, tuple[str, str, str, tuple[str, ...]]] = {}
    for e, p in PREDICT_ENGINES:
        if (native or p != "bf16") and (openvino or e != "openvino"):
            default = " (default)" if (e, p) == (engine, fast) else ""
            modes[f"{e} {p} shared{default}"] = (e, p, "shared", ())
    modes[f"{engine} {fast} masked"] = (engine, fast, "masked", ())
    modes[f"{engine} {fast} shared, --workers 2 (decoding processes)"] = (
        engine,
        fast,
        "shared",
        ("--workers", "2"),
    )
    return modes


def training_precision(native: bool) -> str:
    """Lightning precision of the training measurements: what ``precision: auto`` runs on this CPU."""
    return "bf16-mixed" if native else "32-true"


@dataclass(frozen=True)
class Plan:
    """The sizes of one benchmark run."""

    arch: str  # "paper" (ResNet-18 body @128 + ResNet-18 scene @224) or "tiny" (timm test_resnet)
    matmul: int  # side of the square matrix multiply that measures the machine
    predict_images: int  # 640x480 JPEGs predicted in each mode
    rounds: int  # repeats of each prediction mode (median reported)
    floor_batch: int
    floor_reps: tuple[int, int]  # timed repeats at batch 1 and at floor_batch, in each round
    floor_rounds: int  # rounds over every floor variant in turn (median of the rounds reported)
    calibration_persons: int  # persons int8 is calibrated on (the floor's and the accuracy section's)
    baseline_persons: int
    detector_images: int
    train_batch: int
    train_warmup: int  # steps not timed
    train_steps: int  # steps timed
    train_rounds: int  # repeats of each training feed (median reported)
    memory_train_steps: int  # training steps of each peak-memory run
    memory_images: tuple[int, ...]  # dataset sizes compared for peak memory (ascending)
    acc_counts: tuple[int, int, int]  # EMOTIC-synth train/val/test images (320x240)
    acc_epochs: int


FULL = Plan(
    arch="paper",
    matmul=2048,
    predict_images=200,
    rounds=3,
    floor_batch=32,
    floor_reps=(10, 2),
    floor_rounds=5,
    calibration_persons=128,
    baseline_persons=80,
    detector_images=24,
    train_batch=32,
    train_warmup=2,
    train_steps=5,
    train_rounds=2,
    memory_train_steps=4,
    memory_images=(100, 400, 800),
    acc_counts=(1200, 300, 300),
    acc_epochs=2,
)
QUICK = Plan(
    arch="tiny",
    matmul=128,
    predict_images=6,
    rounds=1,
    floor_batch=4,
    floor_reps=(2, 2),
    floor_rounds=1,
    calibration_persons=8,
    baseline_persons=4,
    detector_images=2,
    train_batch=4,
    train_warmup=1,
    train_steps=2,
    train_rounds=1,
    memory_train_steps=2,
    memory_images=(3, 6),
    acc_counts=(24, 8, 10),
    acc_epochs=1,
)
ARCHS = {
    "paper": {"body": ("resnet18", 128), "scene": ("resnet18", 224)},
    "tiny": {"body": ("test_resnet", 64), "scene": ("test_resnet", 96)},
}
ARCH_NAMES = {
    "paper": "EmotionNet: ResNet-18 body @128 + ResNet-18 scene @224, concat fusion, random init",
    "tiny": "EmotionNet: timm test_resnet body @64 + scene @96 (quick run: figures mean nothing)",
}


def say(message: str) -> None:
    """Progress on stderr (stdout carries the tables)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def quiet_logs() -> None:
    """Warnings only from emoctx, Lightning and ultralytics (the commands run here log at INFO)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("emoctx", "pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


# --------------------------------------------------------------------------------------------- the network
def streams_of(arch: str) -> dict[str, Any]:
    from emoctx.models.backbones import StreamConfig

    return {name: StreamConfig(backbone, input_size=size) for name, (backbone, size) in ARCHS[arch].items()}


def build_net(arch: str) -> Any:
    import torch

    from emoctx.models.network import EmotionNet

    torch.manual_seed(0)
    return EmotionNet(streams_of(arch)).eval()


def save_random_model(arch: str, path: Path) -> Path:
    """The architecture with random weights as an emoctx model file (for the prediction measurements)."""
    from emoctx.checkpoint import describe, save_model

    net = build_net(arch)
    return save_model(path, net, describe(net))


# ----------------------------------------------------------------------------------------------- the floor
FLOOR_VARIANTS = ("fp32", "fp32 channels-last", "bf16 autocast, channels-last")
PREDICT_NET = "as `emoctx predict` runs it: bf16 weights, BN folded, conv+ReLU fused, channels-last"
TORCH_FP32 = (
    "engine torch fp32: BN folded, conv+ReLU fused, channels-last (as `predict --precision fp32` runs it)"
)
ENGINE_ROWS: tuple[tuple[str, str, str], ...] = (
    (TORCH_FP32, "torch", "fp32"),
    ("engine onnxruntime fp32", "onnxruntime", "fp32"),
    ("engine openvino fp32", "openvino", "fp32"),
    ("engine openvino bf16", "openvino", "bf16"),
    ("engine onnxruntime int8", "onnxruntime", "int8"),
    ("engine openvino int8", "openvino", "int8"),
)
"""The engines measured beside PyTorch: (label, engine, precision)."""
NO_OPENVINO = "openvino rows skipped: OpenVINO is not installed (pip install 'emoctx[openvino]')"


def have_openvino() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def engine_rows(native: bool, openvino: bool) -> list[tuple[str, str, str]]:
    """The engine rows this machine runs: bf16 only where native, OpenVINO only where installed."""
    return [
        (label, engine, precision)
        for label, engine, precision in ENGINE_ROWS
        if (native or precision != "bf16") and (openvino or engine != "openvino")
    ]


def time_call(fn: Callable[[], Any], reps: int, warmup: bool = True) -> float:
    """Median seconds of ``fn`` over ``reps`` calls (after one warm-up call unless ``warmup`` is False)."""
    if warmup:
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


# ----------------------------------------------------------------------------------------- model inputs
def person_dataset(info: Any, root: Path, df: Any) -> Any:
    """The persons of ``df`` as the model takes them: its preprocessing (sizes, resize rules, normalisation, the
    subject masked in the scene where the model was trained so), no augmentation."""
    from emoctx.data.dataset import EmotionDataset
    from emoctx.evaluation.scoring import records_transform

    return EmotionDataset(
        df.reset_index(drop=True),
        root,
        transform=records_transform(info),
        max_side=info.preprocessing.max_side,
    )


def person_batches(info: Any, root: Path, df: Any, batch: int = 32) -> Any:
    """Batches ``{stream: [B, 3, H, W]}`` of the persons of ``df``, in order, with their rows."""
    from torch.utils.data import DataLoader

    from emoctx.data.dataset import collate

    loader = DataLoader(person_dataset(info, root, df), batch_size=batch, num_workers=0, collate_fn=collate)
    for b in loader:
        if "index" in b:
            yield {s: b[s] for s in info.preprocessing.streams}, b["index"].numpy()


def records_calibration(info: Any, root: Path, df: Any, limit: int, what: str) -> Any:
    """int8 calibration on the first ``limit`` persons of ``df`` (identified by image and box)."""
    from emoctx.engines import CalibrationSet

    df = df.head(limit).reset_index(drop=True)
    items = [f"{r.image}#{r.x1:g},{r.y1:g},{r.x2:g},{r.y2:g}" for r in df.itertuples()]
    return CalibrationSet.from_items(
        items, lambda: (x for x, _ in person_batches(info, root, df)), name=f"{len(df)} persons of {what}"
    )


def engine_outputs(engine: Any, info: Any, root: Path, df: Any) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and V/A/D (1-10) of every person of ``df`` (one scene per person) through ``engine``
    (an engine, or a network: both have ``forward``)."""
    import torch

    from emoctx.engines.base import outputs_on_scales

    probs = np.full((len(df), 26), np.nan)
    vad = np.full((len(df), 3), np.nan)
    with torch.inference_mode():
        for x, rows in person_batches(info, root, df):
            dtype = getattr(engine, "input_dtype", torch.float32)  # an engine, or the network itself
            out = engine.forward({s: t.to(dtype) for s, t in x.items()})
            probs[rows], vad[rows] = outputs_on_scales(out, info.score_activation)
    return probs, vad


# ----------------------------------------------------------------------------------------------- the floor
def build_floor_engines(
    plan: Plan, model: Path, root: Path, work: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each engine of :data:`ENGINE_ROWS` for ``model``, built twice: the first build exports (and calibrates)
    into a fresh cache, the second loads from it. Also each engine's outputs against PyTorch fp32 on the first
    persons of the test split (a random-weights model: how far the outputs move, not an accuracy).

    Returns:
        ``({label: engine}, {label: build facts})``.
    """
    import shutil
    import tempfile

    from emoctx.checkpoint import load_model
    from emoctx.engines import build_engine

    _, info = load_model(model)
    native = native_bf16()
    calibration = records_calibration(
        info,
        root,
        records_of(root, "train"),
        plan.calibration_persons,
        "the EMOTIC-synth 640x480 train split",
    )
    test = records_of(root, "test").head(plan.calibration_persons)
    want = engine_outputs(load_model(model)[0], info, root, test)  # the network in PyTorch fp32
    cache = Path(tempfile.mkdtemp(prefix="engine-cache-", dir=work))
    engines: dict[str, Any] = {}
    builds: dict[str, Any] = {}
    try:
        for label, engine, precision in engine_rows(native, have_openvino()):
            kwargs = {"calibration": calibration if precision == "int8" else None, "cache_dir": cache}
            first = build_engine(model, engine, precision, **kwargs)
            again = build_engine(model, engine, precision, **kwargs)
            got = engine_outputs(again, info, root, test)
            builds[label] = {
                "engine": engine,
                "precision": precision,
                "first_s": first.info["seconds"],
                "export_s": first.info.get("export_seconds"),
                "quantize_s": first.info.get("quantize_seconds"),
                "cached_s": again.info["seconds"],
                "cached": again.info.get("cached"),
                "check": again.check.to_dict(),
                "test_persons": len(test),
                "test_max_prob_diff": float(np.abs(got[0] - want[0]).max()),
                "test_max_vad_diff": float(np.abs(got[1] - want[1]).max()),
                "calibration": again.info.get("calibration"),
                "threads": again.info.get("threads"),
            }
            engines[label] = again
            say(
                f"engine {label}: first build {first.info['seconds']:.1f} s, from the cache {again.info['seconds']:.1f} s"
            )
    finally:
        # the engines hold their graphs in memory; the folder is this run's alone
        shutil.rmtree(cache, ignore_errors=True)
    return engines, builds


def measure_floor(plan: Plan, model: Path, root: Path, work: Path) -> dict[str, Any]:
    """Persons/s of the model alone on preprocessed tensors, per variant and batch; and each stream alone.

    The variants are the plain network in fp32, in fp32 channels-last and, where the CPU has native bf16, under
    bf16 autocast (channels-last) and as the prediction pipeline prepares it from ``model``; then each engine
    (:data:`ENGINE_ROWS`). The variants are measured in turn, ``plan.floor_rounds`` rounds (the order reversed
    every other round), and the median of the rounds reported: a machine that slows down or speeds up during
    the run moves every variant alike.
    """
    import torch

    from emoctx.inference.predictor import Predictor

    sizes = {name: size for name, (_, size) in ARCHS[plan.arch].items()}
    variants: dict[str, tuple[Any, Any, torch.memory_format, bool]] = {}
    net = build_net(plan.arch)
    variants["fp32"] = (net, torch.float32, torch.contiguous_format, False)
    cl = build_net(plan.arch).to(memory_format=torch.channels_last)
    variants["fp32 channels-last"] = (cl, torch.float32, torch.channels_last, False)
    if native_bf16():
        variants["bf16 autocast, channels-last"] = (cl, torch.float32, torch.channels_last, True)
        prepared = Predictor(model, engine="torch", precision="bf16", num_workers=0).engine
        variants[PREDICT_NET] = (prepared, torch.bfloat16, torch.channels_last, False)
    engines, builds = build_floor_engines(plan, model, root, work)
    for label, engine in engines.items():
        fmt = torch.channels_last if engine.channels_last else torch.contiguous_format
        variants[label] = (engine, engine.input_dtype, fmt, False)

    batches = (1, plan.floor_batch)
    inputs = {
        (variant, batch): {
            n: torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(batch))
            .to(dtype)
            .contiguous(memory_format=fmt)
            for n, s in sizes.items()
        }
        for variant, (_, dtype, fmt, _) in variants.items()
        for batch in batches
    }

    def forward(m: Any, x: dict[str, torch.Tensor]) -> Any:
        return m.head({n: m.encode(n, x[n]).float() for n in sizes})

    def measure(variant: str) -> dict[str, float]:
        m, _, _, autocast = variants[variant]
        out = {}
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            for batch, reps in zip(batches, plan.floor_reps, strict=True):
                x = inputs[variant, batch]
                out[str(batch)] = time_call(lambda m=m, x=x: forward(m, x), reps, warmup=False)
            x = inputs[variant, plan.floor_batch]
            for n in sizes:  # each stream alone at the same batch (the head costs next to nothing)
                out[n] = time_call(lambda m=m, n=n, x=x: m.encode(n, x[n]), plan.floor_reps[1], warmup=False)
        return out

    for variant, (m, _, _, autocast) in variants.items():  # warm-up: first-call caches, kernel selection
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            for batch in batches:
                forward(m, inputs[variant, batch])
    rounds: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    order = list(variants)
    for r in range(plan.floor_rounds):
        for variant in order if r % 2 == 0 else order[::-1]:
            rounds[variant].append(measure(variant))
        say(f"floor round {r + 1}/{plan.floor_rounds} done")
    out: dict[str, Any] = {
        "persons_per_s": {},
        "stream_ms": {},
        "rounds": plan.floor_rounds,
        "engines": builds,
    }
    for variant, runs in rounds.items():
        seconds = {k: median([run[k] for run in runs]) for k in runs[0]}
        out["persons_per_s"][variant] = {str(b): b / seconds[str(b)] for b in batches}
        out["stream_ms"][variant] = {n: 1000 * seconds[n] / plan.floor_batch for n in sizes}
        rates = out["persons_per_s"][variant]
        say(f"floor {variant}: " + ", ".join(f"batch {b}: {r:.1f}/s" for b, r in rates.items()))
    out["skipped"] = [] if have_openvino() else [NO_OPENVINO]
    return out


def floor_variant(engine: str, precision: str) -> str:
    """The model floor row of an engine and precision."""
    if engine == "torch":
        return PREDICT_NET if precision == "bf16" else TORCH_FP32
    return f"engine {engine} {precision}"


def shared_floor(stream_ms: dict[str, float], persons_per_image: float) -> float:
    """Persons/s of the model when the scene is encoded once per image (body per person)."""
    per_person = stream_ms["body"] + stream_ms["scene"] / persons_per_image
    return 1000.0 / per_person


# ------------------------------------------------------------------------------------------------ the data
def make_data(root: Path, counts: tuple[int, int, int], size: tuple[int, int], seed: int) -> Path:
    """EMOTIC-synth at ``size`` with (train, val, test) images; generated once, reused when it matches."""
    from emoctx.data.synth import generate

    manifest = root / "synth.json"
    wanted = dict(zip(("train", "val", "test"), counts, strict=True))
    if manifest.is_file():
        meta = json.loads(manifest.read_text())
        if meta["images"] == wanted and meta["image_size"] == list(size) and meta["seed"] == seed:
            return root
    say(f"generating EMOTIC-synth {size[0]}x{size[1]}: {wanted}")
    generate(root, *counts, image_size=size, seed=seed, workers=2, overwrite=True, progress=False)
    return root


def records_of(root: Path, split: str) -> Any:
    from emoctx.data.records import read_records

    df = read_records(root / "annotations" / f"{split}.parquet")
    df = df.sort_values(["image", "person"], kind="stable").reset_index(drop=True)
    df["k"] = df.groupby("image").cumcount()  # the person's index in the image, as predict numbers them
    return df


def first_images(df: Any, n: int) -> list[str]:
    return list(dict.fromkeys(df["image"]))[:n]


def write_boxes(df: Any, path: Path) -> Path:
    """A box file for ``emoctx predict --boxes`` (image path, x1 y1 x2 y2 in pixels)."""
    from emoctx.io import atomic_write_text

    atomic_write_text(path, df[["image", "x1", "y1", "x2", "y2"]].to_csv(index=False))
    return path


# ------------------------------------------------------------------------------------------ prediction
_RUN_LINE = re.compile(r"(\d+) person\(s\) in ([\d.]+) s")


def run_predict(
    model: Path,
    sources: Sequence[str],
    boxes: Path,
    out: Path,
    engine: str,
    precision: str,
    scene_mode: str,
    extra: Sequence[str] = (),
    calibration: Path | None = None,
) -> tuple[float, int, float | None]:
    """``emoctx predict`` in this process (int8: calibrated on the records ``calibration``).

    Returns:
        Wall seconds of the whole command (model loading to table written), persons predicted (rows without
        an error in the table), and the seconds the command itself reports for its prediction loop.
    """
    from emoctx.cli import main
    from emoctx.inference import read_prediction_table

    argv = ["predict", *sources, "--model", str(model), "--boxes", str(boxes), "--out", str(out)]
    argv += [
        "--engine",
        engine,
        "--precision",
        precision,
        "--scene-mode",
        scene_mode,
        "--no-progress",
        *extra,
    ]
    if precision == "int8":
        argv += ["--calibration-records", str(calibration)]
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        status = main(argv)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"emoctx {' '.join(argv)} exited with {status}")
    table = read_prediction_table(out)
    persons = int(table["error"].isna().sum())
    line = _RUN_LINE.search(printed.getvalue())
    return seconds, persons, float(line.group(2)) if line else None


def measure_predict(plan: Plan, model: Path, root: Path, work: Path) -> dict[str, Any]:
    import torch

    df = records_of(root, "test")
    images = first_images(df, plan.predict_images)
    sub = df[df["image"].isin(images)]
    boxes = write_boxes(sub, work / "predict_boxes.csv")
    sources = [str(root / p) for p in images]
    out = work / "predictions.jsonl"
    train = root / "annotations" / "train.parquet"  # int8 is calibrated on the train split's persons
    native = native_bf16()
    modes = prediction_modes(native)
    # warm-up: imports, first-call caches, and each engine's graphs exported (int8: calibrated) into the cache
    # beside the model, as a user's first run does once
    build: dict[str, float] = {}
    for engine, precision in dict.fromkeys(m[:2] for m in modes.values()):
        s, _, _ = run_predict(model, sources[:4], boxes, out, engine, precision, "shared", calibration=train)
        build[f"{engine} {precision}"] = s
        say(f"predict warm-up {engine} {precision}: {s:.1f} s")
    seconds: dict[str, list[float]] = {label: [] for label in modes}
    loop: dict[str, list[float]] = {label: [] for label in modes}
    persons = 0
    order = list(modes)
    for r in range(plan.rounds):  # each mode in turn, the order reversed every other round
        for label in order if r % 2 == 0 else order[::-1]:
            engine, precision, mode, extra = modes[label]
            s, persons, inner = run_predict(
                model, sources, boxes, out, engine, precision, mode, extra, calibration=train
            )
            seconds[label].append(s)
            loop[label].append(inner or s)
            say(f"predict round {r + 1}/{plan.rounds} {label}: {persons / s:.1f} persons/s")
    if persons != len(sub):
        raise RuntimeError(f"predict returned {persons} persons for {len(sub)} boxes")
    from emoctx.cli import build_parser
    from emoctx.hardware import default_workers

    defaults = build_parser().parse_args(["predict", "x", "--model", "m"])
    workers = default_workers(torch.device("cpu")) if defaults.workers is None else defaults.workers
    return {
        "modes": {label: list(mode[:3]) for label, mode in modes.items()},
        "first_run_seconds": build,
        "images": len(images),
        "persons": persons,
        "persons_per_image": persons / len(images),
        "default_workers": workers,
        "default_batch": defaults.batch_size,
        "seconds": seconds,
        "loop_seconds": loop,
        "persons_per_s": {k: persons / median(v) for k, v in seconds.items()},
        "loop_persons_per_s": {k: persons / median(v) for k, v in loop.items()},
    }


def profile_predict(plan: Plan, model: Path, root: Path, work: Path, path: Path) -> str:
    """cProfile of the default prediction path (main process; decoding runs in the worker processes)."""
    import cProfile
    import pstats

    df = records_of(root, "test")
    images = first_images(df, plan.predict_images)
    boxes = write_boxes(df[df["image"].isin(images)], work / "predict_boxes.csv")
    sources = [str(root / p) for p in images]
    mode = default_mode(native_bf16())
    profiler = cProfile.Profile()
    profiler.enable()
    seconds, persons, _ = run_predict(model, sources, boxes, work / "profiled.jsonl", *mode)
    profiler.disable()
    text = io.StringIO()
    text.write(f"{persons} persons in {seconds:.2f} s ({persons / seconds:.1f}/s), {' '.join(mode)}\n")
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(r"emoctx", 30)
    stats.sort_stats("tottime").print_stats(25)
    path.write_text(text.getvalue())
    return text.getvalue()


def measure_baseline(plan: Plan, net: Any, root: Path) -> dict[str, Any]:
    """The common EMOTIC baseline's inference path: one person at a time, the image re-read per person.

    As in the widely used PyTorch EMOTIC code: ``cv2.imread`` + BGR->RGB, the body crop and the whole image
    resized with ``cv2.resize``, torchvision ``ToPILImage -> ToTensor -> Normalize``, batch 1, fp32,
    default memory layout, ``torch.no_grad``.
    """
    import cv2
    import torch
    from torchvision import transforms

    df = records_of(root, "test").head(plan.baseline_persons)
    specs = net.stream_specs()
    tf = {
        n: transforms.Compose(
            [transforms.ToPILImage(), transforms.ToTensor(), transforms.Normalize(s["mean"], s["std"])]
        )
        for n, s in specs.items()
    }
    size = {
        n: int(s["input_size"]) if not isinstance(s["input_size"], list) else int(s["input_size"][0])
        for n, s in specs.items()
    }
    model = net.to(memory_format=torch.contiguous_format)

    def one(row: Any) -> None:
        image = cv2.cvtColor(cv2.imread(str(root / row.image)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        x1, y1 = max(0, int(row.x1)), max(0, int(row.y1))
        x2, y2 = min(w, int(row.x2)), min(h, int(row.y2))
        body = cv2.resize(image[y1:y2, x1:x2], (size["body"], size["body"]))
        scene = cv2.resize(image, (size["scene"], size["scene"]))
        x = {"body": tf["body"](body).unsqueeze(0), "scene": tf["scene"](scene).unsqueeze(0)}
        with torch.no_grad():
            model(x)

    rows = list(df.itertuples())
    one(rows[0])  # warm-up
    start = time.perf_counter()
    for row in rows:
        one(row)
    seconds = time.perf_counter() - start
    rate = len(rows) / seconds
    say(f"baseline reference: {rate:.1f} persons/s")
    return {"persons": len(rows), "seconds": seconds, "persons_per_s": rate}


# -------------------------------------------------------------------------------------------- detector
def detector_engines(openvino: bool) -> tuple[str, ...]:
    return ("torch", "onnxruntime", "openvino") if openvino else ("torch", "onnxruntime")


def measure_detector(plan: Plan, root: Path, work: Path) -> dict[str, Any]:
    """Images/s of the person detector in PyTorch and exported (ONNX Runtime, OpenVINO), in turn, median of
    ``plan.rounds`` rounds. The exports are of the same random-weights model as the PyTorch one."""
    from emoctx.data.images import read_image
    from emoctx.engines.detector import export_detector
    from emoctx.inference.detect import UltralyticsDetector

    images = [
        read_image(root / p).pixels for p in first_images(records_of(root, "test"), plan.detector_images)
    ]
    torch_detector = UltralyticsDetector("yolo11n.yaml", device="cpu")
    detectors = {"torch": torch_detector}
    export_s: dict[str, float] = {}
    folder = work / "detector"
    for engine in detector_engines(have_openvino())[1:]:
        start = time.perf_counter()
        exported = _export_same_weights(torch_detector, engine, folder / engine, export_detector)
        export_s[engine] = time.perf_counter() - start
        detectors[engine] = UltralyticsDetector(exported, device="cpu")
    for d in detectors.values():
        # warm-up at the measured batch size: model fusion, first-call caches, and the exported runtimes'
        # preparation for each new input shape (OpenVINO compiles, ONNX Runtime sizes its memory)
        d.detect(images)
    runs: dict[str, list[float]] = {e: [] for e in detectors}
    found: dict[str, int] = {}
    for r in range(plan.rounds):
        for engine, d in detectors.items():
            start = time.perf_counter()
            boxes = d.detect(images)
            runs[engine].append(len(images) / (time.perf_counter() - start))
            found[engine] = int(sum(len(f) for f in boxes))
        say(
            f"detector round {r + 1}/{plan.rounds}: "
            + ", ".join(f"{e} {v[-1]:.1f}/s" for e, v in runs.items())
        )
    rates = {e: median(v) for e, v in runs.items()}
    return {
        "model": "yolo11n.yaml (random weights)",
        "imgsz": torch_detector.imgsz,
        "batch": torch_detector.batch_size,
        "images": len(images),
        "image_size": list(images[0].shape[1::-1]),
        "boxes_found": found["torch"],
        "images_per_s": rates["torch"],
        "engines": {
            e: {"images_per_s": rates[e], "export_s": export_s.get(e), "boxes_found": found[e]} for e in rates
        },
        "skipped": [] if have_openvino() else [NO_OPENVINO],
    }


def _export_same_weights(detector: Any, engine: str, folder: Path, export: Callable[..., str]) -> str:
    """Export the detector's own (random) weights: saved as a .pt first, so the export computes what the
    PyTorch detector does."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "yolo11n_random.pt"
    detector.model.save(weights)
    return export(weights, engine, imgsz=detector.imgsz)


# -------------------------------------------------------------------------------------------- training
def _data_module(plan: Plan, root: Path, records: Path, workers: int) -> Any:
    from emoctx.data.datamodule import EmotionDataModule

    sizes = {name: size for name, (_, size) in ARCHS[plan.arch].items()}
    return EmotionDataModule(
        str(root),
        train_records=str(records),
        val_records=str(records),  # never read: validation is off in these runs
        batch_size=plan.train_batch,
        num_workers=workers,
        augment="light",
        streams={name: {"input_size": size} for name, size in sizes.items()},
    )


def _module(plan: Plan) -> Any:
    import torch

    from emoctx.training.module import EmotionModule

    torch.manual_seed(0)
    return EmotionModule(build_net(plan.arch).train(), optimizer="sgd", scheduler="none", channels_last=True)


def _trainer(precision: str, max_steps: int = -1, callbacks: list | None = None) -> Any:
    import pytorch_lightning as pl

    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=callbacks or [],
    )


class _Replay:
    """Batches already in memory, replayed in turn (a map-style dataset of whole batches)."""

    def __init__(self, batches: list[dict[str, Any]], length: int):
        self.batches, self.length = batches, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.batches[i % len(self.batches)]


def train_rate(plan: Plan, root: Path, records: Path, feed: str, precision: str) -> float:
    """Samples/s of full training steps (SGD, Lightning ``precision``), after ``plan.train_warmup`` untimed
    steps."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from emoctx.data.dataset import collate

    class StepClock(pl.Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.sizes: list[int] = []

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, i: int) -> None:
            self.ends.append(time.perf_counter())
            self.sizes.append(int(batch["categories"].shape[0]))

    steps = plan.train_warmup + plan.train_steps
    clock = StepClock()
    trainer = _trainer(precision, max_steps=steps, callbacks=[clock])
    if feed == "jpeg":
        trainer.fit(_module(plan), datamodule=_data_module(plan, root, records, workers=2))
    else:
        dm = _data_module(plan, root, records, workers=0)
        loader = DataLoader(
            dm.dataset("train"), batch_size=plan.train_batch, shuffle=True, collate_fn=collate, drop_last=True
        )
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == min(steps, 8):
                break
        trainer.fit(_module(plan), train_dataloaders=DataLoader(_Replay(batches, steps), batch_size=None))
    w = plan.train_warmup
    return sum(clock.sizes[w:]) / (clock.ends[-1] - clock.ends[w - 1])


def measure_training(plan: Plan, root: Path) -> dict[str, Any]:
    records = root / "annotations" / "train.parquet"
    precision = training_precision(native_bf16())
    rates: dict[str, list[float]] = {"memory": [], "jpeg": []}
    for r in range(plan.train_rounds):
        for feed in ("memory", "jpeg"):
            rates[feed].append(train_rate(plan, root, records, feed, precision))
            say(f"training round {r + 1}/{plan.train_rounds}, {feed} feed: {rates[feed][-1]:.1f} samples/s")
    memory, jpeg = median(rates["memory"]), median(rates["jpeg"])
    return {
        "architecture": ARCH_NAMES[plan.arch],
        "batch": plan.train_batch,
        "precision": precision,
        "optimizer": "SGD",
        "timed_steps": plan.train_steps,
        "samples_per_s": {"memory": memory, "jpeg": jpeg},
        "runs": rates,
        "ratio": jpeg / memory,
    }


# ---------------------------------------------------------------------------------------------- memory
def _peak_rss_mib() -> dict[str, float]:
    """Peak resident memory (MiB) of this process, and of its largest finished child process.

    This process's own peak is the kernel's high-water mark of its address space (``VmHWM``); the
    ``getrusage`` figure would also count the parent's memory, copied at the fork that started this process.
    A child's figure counts the pages it shares with this process (forked data-loading workers).
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as f:
        own = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    return {"main": own, "largest_child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def _retained_rss_mib() -> float | None:
    """Resident memory (MiB) still held at the end, after garbage collection and after the C allocator has
    returned its free memory to the system (glibc's ``malloc_trim``; ``None`` elsewhere).

    The peak also counts memory that was freed but kept by the allocator for reuse, and bounded caches (e.g.
    oneDNN's kernels, one set per batch shape seen); what the process still holds is what would grow if
    something were kept per image.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, AttributeError, StopIteration):
        return None


def child(kind: str, spec: dict[str, Any]) -> None:
    """Run one measurement in this (fresh) process and print its peak memory as JSON."""
    quiet_logs()
    plan = Plan(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["plan"].items()})
    import torch

    torch.set_num_threads(spec["threads"])
    if kind == "imports":
        import pytorch_lightning  # noqa: F401

        from emoctx.inference import predictor  # noqa: F401

        count = 0
    elif kind == "predict":
        _, count, _ = run_predict(
            Path(spec["model"]), spec["sources"], Path(spec["boxes"]), Path(spec["out"]), *spec["mode"]
        )
    else:
        dm = _data_module(plan, Path(spec["root"]), Path(spec["records"]), workers=2)
        trainer = _trainer(spec["precision"], max_steps=plan.memory_train_steps)
        trainer.fit(_module(plan), datamodule=dm)
        count = len(dm.dataset("train"))  # persons in the training set
    print(json.dumps({"count": count, **_peak_rss_mib(), "retained": _retained_rss_mib()}))


def run_child(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--spec", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement '{kind}' failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_memory(plan: Plan, model: Path, root: Path, work: Path, threads: int) -> dict[str, Any]:
    """Peak RSS of prediction and of one training epoch at two dataset sizes, each in a fresh process.

    The processes run two at a time: peak memory does not depend on what else runs.
    """
    from concurrent.futures import ThreadPoolExecutor

    from emoctx.data.records import write_records

    test, train = records_of(root, "test"), records_of(root, "train")
    boxes = write_boxes(test, work / "memory_boxes.csv")
    native = native_bf16()
    base = {
        "plan": asdict(plan),
        "threads": threads,
        "mode": list(default_mode(native)),
        "precision": training_precision(native),
    }
    jobs: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {("imports", "-"): ("imports", base)}
    if plan.arch == "tiny":  # the quick run: the imports alone tell nothing about a toy model
        jobs.clear()
    for n in plan.memory_images:
        images = [str(root / p) for p in first_images(test, n)]
        out = str(work / f"memory_{n}.jsonl")
        jobs["predict", str(n)] = (
            "predict",
            {**base, "model": str(model), "sources": images, "boxes": str(boxes), "out": out},
        )
        subset = train[train["image"].isin(first_images(train, n))].drop(columns="k")
        records = write_records(subset, work / f"train_{n}.parquet")
        jobs["training", str(n)] = ("train", {**base, "root": str(root), "records": str(records)})
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(jobs, pool.map(lambda job: run_child(*job), jobs.values()), strict=True))
    result: dict[str, Any] = {
        "imports": done.get(("imports", "-")),
        "predict": {},
        "training": {},
        "predict_mode": base["mode"],
        "training_precision": base["precision"],
    }
    for (what, n), peak in done.items():
        if what != "imports":
            result[what][n] = peak
            say(f"memory {what}, {n} images: {peak}")
    return result


# -------------------------------------------------------------------------------------------- accuracy
def train_synth_tiny(root: Path, run: Path, epochs: int, mask_subject: bool) -> Path:
    from emoctx.training.cli import fit as train  # thresholds are not needed here

    args = ["--config", str(REPO / "configs" / "synth_tiny.yaml"), "--data.root", str(root)]
    args += ["--trainer.max_epochs", str(epochs), "--trainer.logger", "false"]
    args += ["--trainer.default_root_dir", str(run), "--trainer.enable_progress_bar", "false"]
    args += ["--data.mask_subject", "true" if mask_subject else "false", "--skip_test"]
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(args)
    return Path(result["model_path"])


def predicted_scores(model: Path, root: Path, df: Any, boxes: Path, precision: str, mode: str) -> np.ndarray:
    """Probabilities of every test person (rows of ``df``) through the prediction pipeline."""
    from emoctx.inference import BoxFileDetector, Predictor

    predictor = Predictor(model, BoxFileDetector(boxes), precision=precision, scene_mode=mode)
    found: dict[tuple[str, int], np.ndarray] = {}
    top = root.resolve()
    for result in predictor.predict_sources([str(root / p) for p in dict.fromkeys(df["image"])]):
        if result.error:
            raise RuntimeError(result.error)
        rel = Path(result.source).resolve().relative_to(top).as_posix()
        for person in result.persons:
            found[(rel, person.person)] = person.probabilities
    return np.stack([found[(row.image, row.k)] for row in df.itertuples()])


def measure_accuracy(plan: Plan, root: Path, work: Path, given: Path | None) -> dict[str, Any]:
    """mAP on EMOTIC-synth test per model, scene mode and precision (one torch thread: nothing here is timed,
    and a single thread does not stall when other work shares the cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _accuracy(plan, root, work, given)
    finally:
        torch.set_num_threads(threads)


def _accuracy(plan: Plan, root: Path, work: Path, given: Path | None) -> dict[str, Any]:
    from emoctx.data.records import category_matrix
    from emoctx.metrics import mean_average_precision

    df = records_of(root, "test")
    boxes = write_boxes(df, work / "accuracy_boxes.csv")
    targets = category_matrix(df)
    if given is not None:
        models = {f"given ({given.name})": given}
    else:
        models = {}
        for masked in (False, True):
            label = "trained with subject masked" if masked else "trained on the whole scene"
            say(f"training configs/synth_tiny.yaml for {plan.acc_epochs} epoch(s), mask_subject={masked}")
            models[label] = train_synth_tiny(
                root, work / ("tiny_masked" if masked else "tiny_scene"), plan.acc_epochs, masked
            )
    precisions = ("fp32", "bf16") if native_bf16() else ("fp32",)
    out: dict[str, Any] = {"persons": len(df), "precisions": list(precisions), "models": {}}
    for label, path in models.items():
        rows = {}
        for mode in ("shared", "masked"):
            scores = {p: predicted_scores(path, root, df, boxes, p, mode) for p in precisions}
            m = {p: mean_average_precision(s, targets)["mAP"] for p, s in scores.items()}
            rows[mode] = {
                "mAP_fp32": m["fp32"],
                "mAP_bf16": m.get("bf16"),
                "max_abs_prob_diff": (
                    float(np.abs(scores["bf16"] - scores["fp32"]).max()) if "bf16" in scores else None
                ),
            }
            say(f"accuracy {label}, {mode}: {rows[mode]}")
        out["models"][label] = {
            "path": str(path),
            "modes": rows,
            "int8": int8_accuracy(plan, path, root, work),
        }
    return out


INT8_ROWS = (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "int8"))


def int8_accuracy(plan: Plan, model: Path, root: Path, work: Path) -> dict[str, Any]:
    """mAP and V/A/D MAE on the test split through each engine of :data:`INT8_ROWS` beside the network in PyTorch
    fp32, int8 calibrated on the first persons of the val split; every person with its own scene (the
    subject masked where the model was trained so), the same inputs for every engine."""
    import shutil
    import tempfile

    from emoctx.checkpoint import load_model
    from emoctx.data.records import category_matrix, vad_matrix
    from emoctx.engines import build_engine
    from emoctx.metrics import mean_average_precision, vad_metrics

    net, info = load_model(model)
    test = records_of(root, "test")
    targets, truth = category_matrix(test), vad_matrix(test)
    calibration = records_calibration(
        info, root, records_of(root, "val"), plan.calibration_persons, "the EMOTIC-synth val split"
    )

    def figures(probs: np.ndarray, vad: np.ndarray) -> dict[str, float]:
        return {
            "mAP": mean_average_precision(probs, targets)["mAP"],
            "vad_mae": vad_metrics(vad, truth)["vad_mae"],
        }

    want = engine_outputs(net, info, root, test)
    rows: dict[str, Any] = {"PyTorch fp32": {**figures(*want), "max_prob_diff": 0.0, "max_vad_diff": 0.0}}
    cache = Path(tempfile.mkdtemp(prefix="engine-cache-", dir=work))
    try:
        for engine, precision in INT8_ROWS:
            if engine == "openvino" and not have_openvino():
                continue
            built = build_engine(
                model,
                engine,
                precision,
                calibration=calibration if precision == "int8" else None,
                cache_dir=cache,
            )
            got = engine_outputs(built, info, root, test)
            rows[f"{engine} {precision}"] = {
                **figures(*got),
                "max_prob_diff": float(np.abs(got[0] - want[0]).max()),
                "max_vad_diff": float(np.abs(got[1] - want[1]).max()),
            }
            say(f"int8 accuracy {model.name}, {engine} {precision}: {rows[f'{engine} {precision}']}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"calibration": calibration.describe(), "persons": len(test), "rows": rows}


# -------------------------------------------------------------------------------------------- the table
def machine() -> dict[str, Any]:
    import torch

    from emoctx.engines import cpu_flags

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "native_bf16": native_bf16(),
        "cpu_flags": cpu_flags(),
        "python": platform.python_version(),
    }


def roofline(n: int = 2048, reps: int = 5) -> dict[str, float | None]:
    """GFLOP/s of an ``n`` x ``n`` matrix multiply in fp32 and bf16 with torch's threads: what this machine
    delivers at the moment (a shared or throttled machine delivers less; compare runs by it). bf16 is
    ``None`` where the CPU has no native bf16 (emulated, it would take minutes at 2048)."""
    import torch

    out: dict[str, float | None] = {"bf16": None}
    dtypes = (
        (("fp32", torch.float32), ("bf16", torch.bfloat16)) if native_bf16() else (("fp32", torch.float32),)
    )
    for name, dtype in dtypes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        out[name] = 2 * n**3 / time_call(lambda a=a, b=b: a @ b, reps) / 1e9
    return out


def _f(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ratio(x: float | None, y: float | None) -> str:
    return f"{x / y:.2f}" if x and y else "-"


def render_floor(res: dict[str, Any], add: Callable[[str], None]) -> None:
    """The model floor table, the engines' build table and what the floor's rounds were."""
    plan, floor = res["plan"], res["floor"]
    b = str(plan["floor_batch"])
    rates_all = floor["persons_per_s"]
    fp32_ref = rates_all.get(TORCH_FP32, {}).get(b)
    bf16_ref = rates_all.get(PREDICT_NET, {}).get(b)
    builds = floor.get("engines", {})
    add("")
    add(
        f"**Model floor** ({ARCH_NAMES[plan['arch']]}; preprocessed tensors, `torch.inference_mode`; each row "
        f"measured in turn after a warm-up of every row, {floor.get('rounds', 1)} round(s), the order reversed "
        f"every other round; median of the rounds, each the median of {plan['floor_reps'][0]} repeats at batch 1 "
        f"and {plan['floor_reps'][1]} at batch {b}. x fp32 / x bf16: batch-{b} rate over that of the network as "
        "`emoctx predict` runs it in "
        "fp32 (the default on CPUs without native bf16) / in bf16 (the default with it), in this run)"
    )
    add("")
    add(
        f"| precision, layout / engine | batch 1 persons/s | batch {b} persons/s | body ms/person | scene ms/image "
        f"| x fp32 | x bf16 | largest prob. difference |"
    )
    add("|---|--:|--:|--:|--:|--:|--:|--:|")
    for variant, rates in rates_all.items():
        ms = floor["stream_ms"][variant]
        diff = builds.get(variant, {}).get("test_max_prob_diff")
        add(
            f"| {variant} | {_f(rates['1'])} | {_f(rates[b])} | {_f(ms['body'], 2)} | {_f(ms['scene'], 2)} | "
            f"{_ratio(rates[b], fp32_ref)} | {_ratio(rates[b], bf16_ref)} | {_f(diff, 4) if diff is not None else '-'} |"
        )
    for note in floor.get("skipped", []):
        add(f"Note: {note}.")
    if builds:
        persons = next(iter(builds.values()))["test_persons"]
        calibrated = next((v["calibration"] for v in builds.values() if v.get("calibration")), None)
        add("")
        add(
            f"Largest prob. difference: of a category probability from the network in PyTorch fp32, on {persons} "
            "persons of the EMOTIC-synth 640x480 test split (random weights: how far the outputs move, not an "
            "accuracy; that is in the accuracy table)."
            + (f" int8 calibrated on {calibrated['name']}." if calibrated else "")
        )
        add("")
        add(
            "**Engines: building** (first build: into an empty cache, in the order of the rows: the fp32 graphs "
            "are exported by the first exported engine and shared by the others, the int8 graphs calibrated and "
            "quantised by the first int8 engine; again: the same engine from the cache; each includes loading "
            "the model file and the check against PyTorch fp32)"
        )
        add("")
        add(
            "| engine, precision | first build s | of which export s | quantisation s | again, from the cache s |"
        )
        add("|---|--:|--:|--:|--:|")
        for e in builds.values():
            add(
                f"| {e['engine']} {e['precision']} | {_f(e['first_s'], 2)} | {_f(e['export_s'], 2)} | "
                f"{_f(e['quantize_s'], 2)} | {_f(e['cached_s'], 2)} |"
            )


def render(res: dict[str, Any]) -> str:
    plan = res["plan"]
    lines: list[str] = []
    add = lines.append
    m = res["machine"]
    add(
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"native bf16: {'yes' if m['native_bf16'] else 'no'}; load average {res['load_start'][0]:.2f} at the "
        f"start, {res['load_end'][0]:.2f} at the end; {res['seconds']:.0f} s in all "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in res['section_seconds'].items())})."
    )
    add(f"Command: `{res['command']}`")
    if m.get("cpu_flags"):
        flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["cpu_flags"].items())
        add(f"CPU flags: {flags}; compute threads of every engine: {m['torch_threads']}.")
    if not m["native_bf16"]:
        add(f"Note: {NO_BF16}.")
    if res.get("roofline_start"):
        a, z = res["roofline_start"], res["roofline_end"]
        n = plan.get("matmul", 2048)
        bf16 = (
            f", bf16 {a['bf16']:.0f} / {z['bf16']:.0f} GFLOP/s"
            if a.get("bf16") is not None and z.get("bf16") is not None
            else ", bf16 not measured (not native)"
        )
        add(
            f"Matrix multiply ({n}x{n}, torch's threads) at the start / end of the run: fp32 "
            f"{a['fp32']:.0f} / {z['fp32']:.0f} GFLOP/s{bf16}: the compute this machine delivered during the run."
        )
    floor = res.get("floor")
    if floor:
        render_floor(res, add)
    pred = res.get("predict")
    if pred:
        ppi = pred["persons_per_image"]
        add("")
        add(
            f"**Prediction**: `emoctx predict` end to end (model load to table written) on {pred['images']} "
            f"EMOTIC-synth 640x480 JPEGs, {pred['persons']} persons ({ppi:.2f} per image), boxes given "
            f"(`--boxes`), the command's defaults otherwise (`--workers {pred['default_workers']}`, "
            f"`--batch-size {pred['default_batch']}`); median of {plan['rounds']} run(s)"
        )
        add("")
        add(
            "| engine, precision, scene | persons/s | / own floor | / best floor | x baseline | x torch fp32 "
            "| persons/s after start-up | first run s (export, calibration) |"
        )
        add("|---|--:|--:|--:|--:|--:|--:|--:|")
        base = res.get("baseline", {}).get("persons_per_s")
        ff = floor["persons_per_s"] if floor else {}
        floors = {  # each floor variant's rate doing the shared-scene work of this image mix
            v: shared_floor(floor["stream_ms"][v], ppi)
            for v in ff
            if v == PREDICT_NET or v.startswith("engine ")
        }
        best = max(floors, key=floors.__getitem__) if floors else None
        modes = pred["modes"]
        ref = next(
            (
                rate
                for label, rate in pred["persons_per_s"].items()
                if modes[label][:3] == ["torch", "fp32", "shared"]
            ),
            None,
        )
        if base:
            add(
                "| baseline reference: 1 person at a time, image re-read per person, fp32 | "
                f"{_f(base)} | - | {_ratio(base, floors.get(best))} | 1.0 | {_ratio(base, ref)} | - | - |"
            )
        for label, rate in pred["persons_per_s"].items():
            engine, precision, mode = modes[label][:3]
            own = None
            variant = floor_variant(engine, precision)
            if floor and variant in ff:
                ms = floor["stream_ms"][variant]
                own = 1000.0 / (ms["body"] + ms["scene"]) if mode == "masked" else shared_floor(ms, ppi)
            first = pred.get("first_run_seconds", {}).get(f"{engine} {precision}")
            add(
                f"| {label} | {_f(rate)} | {_ratio(rate, own)} | {_ratio(rate, floors.get(best))} | "
                f"{_ratio(rate, base)} | {_ratio(rate, ref)} | {_f(pred['loop_persons_per_s'][label])} | "
                f"{_f(first)} |"
            )
        if floor:
            add("")
            add(
                "Own floor: the model alone in that engine and precision doing the mode's work (one body and one "
                "scene per person when masked; one body per person and one scene per image when shared), from "
                "the per-stream times of the model floor table (torch fp32: the engine row; torch bf16: the "
                f"network as `emoctx predict` prepares it). Best floor: the fastest of those floors for the shared "
                f"scene, {best} ({_f(floors.get(best))} persons/s). x torch fp32: over `--engine torch --precision "
                "fp32` end to end in this run (the default before the engines on CPUs without native bf16). "
                "Persons/s after start-up: the rate the command itself reports, from its first image to its table "
                "(model loading, engine building and worker start-up left out). First run: the command on 4 images "
                "with an empty engine cache (exporting the graphs, int8 also calibrating on the train split), "
                "paid once per model file."
            )
    det = res.get("detector")
    if det:
        add("")
        add(
            f"**Detector**: ultralytics `{det['model']}`, imgsz {det['imgsz']}, batch {det['batch']}, "
            f"{det['images']} images of {det['image_size'][0]}x{det['image_size'][1]}, median of "
            f"{plan['rounds']} round(s) (random weights: a forward costs what the trained model's does; NMS time "
            f"depends on the candidates, {det['boxes_found']} person boxes found here); exported by "
            "`emoctx.engines.detector.export_detector`, run by ultralytics' own backends"
        )
        add("")
        add("| engine | images/s | x PyTorch | export s |")
        add("|---|--:|--:|--:|")
        for engine, e in det.get("engines", {"torch": {"images_per_s": det["images_per_s"]}}).items():
            add(
                f"| {engine} | {_f(e['images_per_s'])} | {_ratio(e['images_per_s'], det['images_per_s'])} | "
                f"{_f(e.get('export_s'), 1)} |"
            )
        for note in det.get("skipped", []):
            add(f"Note: {note}.")
    tr = res.get("training")
    if tr:
        add("")
        add(
            f"**Training** ({tr['architecture']}; batch {tr['batch']}, precision {tr['precision']} on CPU, "
            f"{tr['optimizer']}, full step with loss, backward and optimiser; {tr['timed_steps']} timed steps "
            f"after warm-up; median of {len(tr['runs']['jpeg'])} run(s))"
        )
        add("")
        add("| feed | samples/s |")
        add("|---|--:|")
        add(f"| batches already in memory | {_f(tr['samples_per_s']['memory'])} |")
        add(f"| data module: JPEGs, `light` augmentation, 2 workers | {_f(tr['samples_per_s']['jpeg'])} |")
        add(f"| ratio (target >= 0.9) | {_f(tr['ratio'], 2)} |")
    mem = res.get("memory")
    if mem:
        sizes = [str(n) for n in plan["memory_images"]]
        add("")
        add(
            "**Memory** (RSS, MiB; each run in a fresh process: the main process's peak, what it still holds "
            "at the end once the C allocator has returned its free memory, and the largest worker process's "
            "peak, which counts pages it shares with the main one; prediction goes through every image, "
            "training takes the same number of steps from a data set of each size, so what grows with the "
            "size is what is held per image)"
        )
        add("")
        steps = [f"{a} -> {z}" for a, z in zip(sizes, sizes[1:])]
        add(f"| run | {' | '.join(f'{n} images' for n in sizes)} | {' | '.join(steps)} |")
        add("|---|" + "--:|" * (2 * len(sizes) - 1))
        if mem.get("imports"):
            dashes = " | ".join("-" for _ in range(2 * len(sizes) - 2))
            add(
                f"| for scale: Python with torch, Lightning and the pipeline imported | "
                f"{mem['imports']['main']:.0f} | {dashes} |"
            )
        for what, label in (
            ("predict", f"`emoctx predict` ({' '.join(mem['predict_mode'])})"),
            ("training", f"training ({mem['training_precision']}), {plan['memory_train_steps']} steps"),
        ):
            for part, name in (
                ("main", "main, peak"),
                ("retained", "main, held at the end"),
                ("largest_child", "worker, peak"),
            ):
                if any(mem[what][n].get(part) is None for n in sizes):
                    continue
                peaks = [mem[what][n][part] for n in sizes]
                growth = [f"{z - a:+.0f}" for a, z in zip(peaks, peaks[1:])]
                add(f"| {label}, {name} | {' | '.join(f'{v:.0f}' for v in peaks)} | {' | '.join(growth)} |")
    acc = res.get("accuracy")
    if acc:
        add("")
        add(
            f"**Accuracy cost** (EMOTIC-synth 320x240 test, {acc['persons']} persons; "
            f"`configs/synth_tiny.yaml` trained {plan['acc_epochs']} epoch(s) here unless a model was given; "
            "mAP in percent)"
        )
        add("")
        add("| model | scene mode | mAP fp32 | mAP bf16 | bf16 - fp32 (points) | largest prob. difference |")
        add("|---|---|--:|--:|--:|--:|")
        for label, entry in acc["models"].items():
            for mode, r in entry["modes"].items():
                if r["mAP_bf16"] is None:
                    add(f"| {label} | {mode} | {100 * r['mAP_fp32']:.2f} | - | - | - |")
                    continue
                add(
                    f"| {label} | {mode} | {100 * r['mAP_fp32']:.2f} | {100 * r['mAP_bf16']:.2f} | "
                    f"{100 * (r['mAP_bf16'] - r['mAP_fp32']):+.2f} | {r['max_abs_prob_diff']:.4f} |"
                )
        int8 = [(label, entry["int8"]) for label, entry in acc["models"].items() if entry.get("int8")]
        if int8:
            first = int8[0][1]
            add("")
            add(
                f"**int8 accuracy cost** (the same {first['persons']} test persons, each with its own scene, the "
                "subject masked where the model was trained so; the same inputs through every engine; int8 "
                f"calibrated on {first['calibration']['name']}; mAP in percent, V/A/D MAE on 1-10)"
            )
            add("")
            add(
                "| model | engine, precision | mAP | - PyTorch fp32 (points) | V/A/D MAE | - PyTorch fp32 | "
                "largest prob. difference | largest V/A/D difference |"
            )
            add("|---|---|--:|--:|--:|--:|--:|--:|")
            for label, entry in int8:
                ref = entry["rows"]["PyTorch fp32"]
                for row, r in entry["rows"].items():
                    add(
                        f"| {label} | {row} | {100 * r['mAP']:.2f} | {100 * (r['mAP'] - ref['mAP']):+.2f} | "
                        f"{r['vad_mae']:.4f} | {r['vad_mae'] - ref['vad_mae']:+.4f} | {r['max_prob_diff']:.4f} | "
                        f"{r['max_vad_diff']:.4f} |"
                    )
    lines += render_faces(res)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ faces
# The face stream's cost, kept in its own section: a third stream on a face crop per person who shows a face.
FACE_ARCHS = {"paper": ("resnet18", 112), "tiny": ("test_resnet", 64)}


def face_net(arch: str, with_face: bool) -> Any:
    """The benchmark's network with (or without) a face stream: landmark attention, gated fusion both ways."""
    import torch

    from emoctx.models.backbones import StreamConfig
    from emoctx.models.network import EmotionNet

    streams = streams_of(arch)
    if with_face:
        backbone, size = FACE_ARCHS[arch]
        streams["face"] = StreamConfig(backbone, input_size=size)
    torch.manual_seed(0)
    return EmotionNet(streams, fusion="gated", face_va=with_face).eval()


def write_face_boxes(df: Any, path: Path) -> Path:
    """A box file with the persons' face columns (what ``emoctx predict --boxes`` reads faces from)."""
    from emoctx.io import atomic_write_text

    columns = ["image", "x1", "y1", "x2", "y2", "face_x1", "face_y1", "face_x2", "face_y2", "face_score"]
    atomic_write_text(path, df[columns].to_csv(index=False))
    return path


def measure_faces(plan: Plan, work: Path) -> dict[str, Any]:
    """The face stream alone (ms per face, as the prediction pipeline prepares the network) and `emoctx predict`
    end to end with and without a face stream on EMOTIC-synth with faces (640x480, faces given with the boxes).
    """
    import torch

    from emoctx.checkpoint import describe, save_model
    from emoctx.data.synth import generate
    from emoctx.inference.predictor import Predictor

    root = work / "synth640_faces"
    manifest = root / "synth.json"
    if not (manifest.is_file() and json.loads(manifest.read_text())["images"]["test"] == plan.predict_images):
        say(f"generating EMOTIC-synth with faces 640x480: {plan.predict_images} test images")
        generate(
            root, 0, 0, plan.predict_images, faces=True, seed=2, workers=2, overwrite=True, progress=False
        )
    models = {}
    for label, with_face in (("body + scene", False), ("body + scene + face", True)):
        net = face_net(plan.arch, with_face)
        models[label] = save_model(work / f"faces_{plan.arch}_{with_face}.safetensors", net, describe(net))
    # Face models run in the torch engine (emoctx.engines.build_engine): the comparison is made there, in the
    # precision the CPU computes natively, for both models.
    fast = "bf16" if native_bf16() else "fp32"
    out: dict[str, Any] = {"engine": "torch", "precision": fast, "face_ms": {}, "persons_per_s": {}}
    _, size = FACE_ARCHS[plan.arch]
    batch, reps = plan.floor_batch, plan.floor_reps[1]
    for precision in dict.fromkeys(("fp32", fast)):
        net = Predictor(models["body + scene + face"], precision=precision, num_workers=0).engine.net
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        x = torch.randn(batch, 3, size, size).to(dtype).contiguous(memory_format=torch.channels_last)
        points = torch.rand(batch, 5, 3)
        with torch.inference_mode():
            seconds = time_call(lambda net=net, x=x, p=points: net.encode("face", x, p), reps)
        out["face_ms"][precision] = 1000 * seconds / batch
    df = records_of(root, "test")
    images = first_images(df, plan.predict_images)
    sub = df[df["image"].isin(images)]
    boxes = write_face_boxes(sub, work / "face_boxes.csv")
    sources = [str(root / p) for p in images]
    out["persons"] = int(len(sub))
    out["faces"] = int(sub["face_x1"].notna().sum())
    for label, model in models.items():
        runs = [
            run_predict(model, sources, boxes, work / "faces.jsonl", "torch", fast, "shared")
            for _ in range(plan.rounds)
        ]
        out["persons_per_s"][label] = median([persons / seconds for seconds, persons, _ in runs])
        say(f"faces: {label}: {out['persons_per_s'][label]:.1f} persons/s")
    return out


def render_faces(res: dict[str, Any]) -> list[str]:
    """The faces section's tables (empty when the section did not run)."""
    faces = res.get("faces")
    if not faces:
        return []
    arch = res["plan"]["arch"]
    backbone, size = FACE_ARCHS[arch]
    lines = [
        "",
        f"**Faces** (a face stream: {backbone} @{size} on each face crop, landmark attention; gated fusion and "
        "the face-derived V/A head beside the same body and scene streams; random init)",
        "",
        "| precision | face stream ms per face (batch "
        f"{res['plan']['floor_batch']}, as `emoctx predict` prepares the network) |",
        "|---|--:|",
    ]
    lines += [f"| {p} | {ms:.2f} |" for p, ms in faces["face_ms"].items()]
    lines += [
        "",
        f"`emoctx predict` end to end on {res['plan']['predict_images']} EMOTIC-synth 640x480 JPEGs with faces, "
        f"{faces['persons']} persons of whom {faces['faces']} show a face (faces given with the boxes), "
        f"engine torch {faces['precision']}, median of {res['plan']['rounds']} run(s):",
        "",
        "| model | persons/s | relative |",
        "|---|--:|--:|",
    ]
    base = faces["persons_per_s"].get("body + scene")
    for label, rate in faces["persons_per_s"].items():
        lines.append(
            f"| {label} | {rate:.1f} | {rate / base:.2f} |" if base else f"| {label} | {rate:.1f} | - |"
        )
    return lines


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="toy sizes and tiny networks: a smoke test")
    ap.add_argument("--out", default="runs/bench", help="output folder (data are generated in OUT/work)")
    ap.add_argument("--model", default=None, help="model file for the accuracy section (default: train two)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--profile", action="store_true", help="also cProfile the default prediction path")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice, one per core; --quick uses 1)",
    )
    ap.add_argument("--child", choices=("imports", "predict", "train"), help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, json.loads(args.spec))
        return {}
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    if "predict" in sections:
        sections.append("baseline")  # measured beside the pipeline, for the speed-up

    quiet_logs()
    import torch

    from emoctx.io import atomic_write_text

    plan = QUICK if args.quick else FULL
    threads = args.threads or (1 if args.quick else torch.get_num_threads())
    torch.set_num_threads(threads)
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    res: dict[str, Any] = {
        "command": " ".join(["python scripts/bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "plan": asdict(plan),
        "machine": machine(),
        "load_start": list(os.getloadavg()),
        "roofline_start": roofline(plan.matmul),
        "section_seconds": {},
    }
    n_test = max(plan.predict_images, plan.memory_images[-1], plan.baseline_persons, plan.detector_images)
    n_train = plan.memory_images[-1] if "memory" in sections else max(8, plan.train_batch * 2)
    data = make_data(work / "synth640", (n_train, 0, n_test), (640, 480), seed=0)
    model = save_random_model(plan.arch, work / f"{plan.arch}_random.safetensors")
    res["section_seconds"]["data"] = time.perf_counter() - started

    def section(name: str, fn: Callable[[], Any]) -> None:
        if name in sections:
            start = time.perf_counter()
            res[name] = fn()
            res["section_seconds"][name] = time.perf_counter() - start

    section("floor", lambda: measure_floor(plan, model, data, work))
    section("baseline", lambda: measure_baseline(plan, build_net(plan.arch), data))
    section("predict", lambda: measure_predict(plan, model, data, work))
    if args.profile and "predict" in sections:
        say("profile:\n" + profile_predict(plan, model, data, work, out / "profile.txt"))
    section("detector", lambda: measure_detector(plan, data, work))
    section("training", lambda: measure_training(plan, data))
    section("memory", lambda: measure_memory(plan, model, data, work, threads))
    section(
        "accuracy",
        lambda: measure_accuracy(
            plan,
            make_data(work / "synth320", plan.acc_counts, (320, 240), seed=1),
            work,
            Path(args.model) if args.model else None,
        ),
    )
    section("faces", lambda: measure_faces(plan, work))

    res["load_end"] = list(os.getloadavg())
    res["roofline_end"] = roofline(plan.matmul)
    res["seconds"] = time.perf_counter() - started
    table = render(res)
    atomic_write_text(out / "bench.json", json.dumps(res, indent=2) + "\n")
    atomic_write_text(out / "bench.md", table)
    print(table)
    return res


if __name__ == "__main__":
    main()
