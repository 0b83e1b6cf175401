r"""Scale-out prediction over very large collections of people with known boxes, on Lightning's ``Trainer.predict``.

The input is a canonical records file (one row per person: image path relative to a root, box, image size;
:mod:`emoctx.data.records`). Lightning runs the model over it on any number of devices and nodes (DDP): the
records are split between the processes by Lightning's distributed sampler, data loading runs in worker
processes, and each process streams its predictions, batch by batch, into its own shard
``<out>.shard-<rank>.parquet`` (:class:`ShardWriter`, a ``BasePredictionWriter``; a shard appears under its
name only once complete). When every process is done, rank 0 merges the shards into ``<out>``: one row per
record, sorted by record index, every record exactly once (a record a sampler gave to two processes is kept
once), then removes the shards.

Output (Parquet): the columns of the prediction table (:data:`emoctx.inference.results.COLUMNS`) preceded by
``record``, the row of the person in the records file. ``source`` is the records' image path (relative to the
root), ``frame`` is ``-1``, ``person`` the records' person index, the box and image size come from the records,
``det_score`` is 1.0 (given boxes). A person whose image could not be read, or whose box does not fit its image,
gets a row with ``error`` set and null predictions. A model with a face stream reads the records' face columns
(a person without a face box takes its no-face path); the face columns of the table are the records' face
where the model saw it, with the model's face-derived valence/arousal and expression.

Preprocessing (each stream's region, input size, resize rule, normalisation and mask, and the decoding size
limit) comes from the model file, as in ``emoctx predict`` and ``emoctx evaluate``.

Engines (:mod:`emoctx.engines`): ``engine="torch"`` (default) runs the network in Lightning, in Lightning's
``precision`` (on any accelerator); ``"onnxruntime"`` and ``"openvino"`` run their graphs on the CPU (fp32, bf16
or int8; Lightning's ``32-true`` means fp32 and ``bf16-mixed`` bf16 there), each process building its engine for
itself (from the graph cache beside the model: exported once), with as many threads as Lightning gives the
process; ``"auto"`` takes the machine's default (:func:`emoctx.engines.default_engine`). Every person has its
own scene here (the records are persons, not images). The merged table's Parquet metadata (key ``emoctx``)
records the engine, its precision and its largest probability difference from PyTorch fp32.

Example (4 GPUs; ``--accelerator cpu --devices 2`` runs two CPU processes)::

    emoctx predict_records --model model.safetensors --records people.parquet --root /data/images \
        --out predictions.parquet --accelerator gpu --devices 4 --strategy ddp --batch-size 256 --workers 8
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from emoctx import __version__, defaults, labels
from emoctx.checkpoint import ModelInfo, load_model, model_identity
from emoctx.data.datamodule import EmotionDataModule
from emoctx.data.images import ImageError, read_image
from emoctx.errors import EmoctxError
from emoctx.inference.results import PROB_COLUMNS
from emoctx.inference.writers import METADATA_KEY, table_schema
from emoctx.io import atomic_path, jsonable
from emoctx.models.network import FACE_STREAM
from emoctx.models.outputs import ScoringNet, face_outputs, scores_from_logits, vad_ratings

log = logging.getLogger(__name__)

_SHARD_SCHEMA = pa.schema(
    [("record", pa.int64())]
    + [(c, pa.float32()) for c in PROB_COLUMNS]
    + [(d, pa.float32()) for d in labels.VAD_NAMES]
    + [
        ("face_present", pa.bool_()),
        ("face_valence", pa.float32()),
        ("face_arousal", pa.float32()),
        ("expression_index", pa.int32()),
        ("expression_score", pa.float32()),
    ]
)


@dataclass(frozen=True)
class EngineSpec:
    """An exported engine to build in each process (see :func:`emoctx.engines.build_engine`).

    Attributes:
        model: the model file.
        engine: ``"onnxruntime"`` or ``"openvino"``.
        precision: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"auto"``.
        calibration_records: int8: the records to calibrate on (``None``: the model's validation split).
        calibration_root: the folder their image paths are relative to.
        cache_dir: where the graphs are cached (``None``: beside the model).
    """

    model: str
    engine: str
    precision: str
    calibration_records: str | None = None
    calibration_root: str | None = None
    cache_dir: str | None = None

    def build(self, net: torch.nn.Module, info: ModelInfo) -> Any:
        """Build the engine (in the process that runs it)."""
        from emoctx.engines import build_engine
        from emoctx.engines.calibration import calibration_from_records

        calibration = None
        if self.precision == "int8":
            calibration = calibration_from_records(
                info, self.model, self.calibration_records, self.calibration_root
            )
        return build_engine(
            self.model,
            self.engine,
            self.precision,
            "cpu",
            net=net,
            info=info,
            calibration=calibration,
            cache_dir=self.cache_dir,
        )


class PredictionModule(pl.LightningModule):
    """A thin inference wrapper: batches of body/scene crops in, 0-1 scores and 1-10 V/A/D out.

    Args:
        net: the emotion network (weights loaded).
        score_activation: the model's score activation (``ModelInfo.score_activation``).
        engine: an exported engine to run instead of the network in Lightning, built in :meth:`setup` (in the
            process that runs it, after Lightning has set its threads).
        info: the model's description (with ``engine``).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        score_activation: str = "sigmoid",
        engine: EngineSpec | None = None,
        info: ModelInfo | None = None,
    ) -> None:
        super().__init__()
        self.scoring = ScoringNet(net, score_activation)
        self.engine_spec = engine
        self.info = info
        self.engine: Any = None

    def setup(self, stage: str) -> None:
        """Build the exported engine, if one is asked for."""
        if self.engine_spec is not None and self.engine is None:
            assert self.info is not None
            self.engine = self.engine_spec.build(self.scoring.net, self.info)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """``{"index", "scores", "vad"}`` for the readable people of the batch (none when none is readable).

        With a face stream also ``face_present``, ``face_va`` (1-10; NaN where none) and, with expressions,
        ``expression`` (probabilities).
        """
        if "index" not in batch:  # every image of the batch was unreadable (each one logged by the dataset)
            return {
                "index": torch.zeros(0, dtype=torch.int64),
                "scores": torch.zeros(0, labels.NUM_CATEGORIES),
                "vad": torch.zeros(0, labels.NUM_VAD),
            }
        net = self.scoring.net
        if (
            self.engine is not None
        ):  # an exported engine (body and scene models; face models are not exported)
            out = self.engine.forward({name: batch[name] for name in self.scoring.stream_names})
            scores = scores_from_logits(out["logits"], self.scoring.score_activation)
            vad = vad_ratings(out["vad"])
            return {"index": batch["index"], "scores": scores.float(), "vad": vad.float()}
        if "face" not in net.stream_names:
            scores, vad = self.scoring(*(batch[name] for name in self.scoring.stream_names))
            return {"index": batch["index"], "scores": scores.float(), "vad": vad.float()}
        from emoctx.evaluation.scoring import network_inputs

        out = net(network_inputs(net, batch, self.device))
        pred = {
            "index": batch["index"],
            "scores": scores_from_logits(out["logits"].float(), self.scoring.score_activation),
            "vad": vad_ratings(out["vad"].float()),
            "face_present": out["face_present"],
        }
        return {**pred, **face_outputs(out, net.stream_names)}


class ShardWriter(BasePredictionWriter):
    """Streams each process's predictions into its own Parquet shard, batch by batch.

    The shard is written to a hidden temporary file and renamed to :meth:`shard_path` at the end of the epoch,
    so a shard under its final name is always complete.

    Args:
        out: the merged output path; shards are ``<out>.shard-<rank>.parquet`` beside it.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        super().__init__(write_interval="batch")
        self.out = Path(out)
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self.rows = 0

    def shard_path(self, rank: int) -> Path:
        """The shard of process ``rank``."""
        return shard_path(self.out, rank)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Open this process's temporary shard."""
        final = self.shard_path(trainer.global_rank)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = final.with_name(f".{final.name}.tmp")
        self._writer = pq.ParquetWriter(self._tmp, _SHARD_SCHEMA)
        self.rows = 0

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, torch.Tensor] | None,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Append one batch of predictions to the shard."""
        if prediction is None or self._writer is None or len(prediction["index"]) == 0:
            return
        index = prediction["index"].detach().cpu().numpy().astype(np.int64)
        scores = prediction["scores"].detach().cpu().numpy().astype(np.float32)
        vad = prediction["vad"].detach().cpu().numpy().astype(np.float32)
        arrays = [pa.array(index)]
        arrays += [pa.array(scores[:, i]) for i in range(scores.shape[1])]
        arrays += [pa.array(vad[:, i]) for i in range(vad.shape[1])]
        n = len(index)
        present = prediction.get("face_present")
        present = np.zeros(n, dtype=bool) if present is None else present.detach().cpu().numpy().astype(bool)
        va = prediction.get("face_va")
        va = np.full((n, 2), np.nan) if va is None else va.detach().float().cpu().numpy()
        va = np.where(present[:, None], va, np.nan).astype(np.float32)
        probs = prediction.get("expression")
        if probs is None:
            which, best = np.full(n, -1, dtype=np.int32), np.full(n, np.nan, dtype=np.float32)
        else:
            p = probs.detach().float().cpu().numpy()
            which = np.where(present, p.argmax(axis=1), -1).astype(np.int32)
            best = np.where(present, p.max(axis=1), np.nan).astype(np.float32)
        arrays += [
            pa.array(present),
            pa.array(va[:, 0], from_pandas=True),
            pa.array(va[:, 1], from_pandas=True),
            pa.array(which),
            pa.array(best, from_pandas=True),
        ]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=_SHARD_SCHEMA))
        self.rows += len(index)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the shard and give it its final name."""
        if self._writer is None or self._tmp is None:
            return
        self._writer.close()
        self._writer = None
        os.replace(self._tmp, self.shard_path(trainer.global_rank))
        log.info(
            "rank %d: %d predictions in %s",
            trainer.global_rank,
            self.rows,
            self.shard_path(trainer.global_rank),
        )

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Remove the unfinished temporary shard."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()


def shard_path(out: str | os.PathLike, rank: int) -> Path:
    """The shard of process ``rank`` for the merged output ``out``: ``<out stem>.shard-<rank>.parquet``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.shard-{rank}.parquet")


def datamodule_for(
    info: ModelInfo,
    root: str | os.PathLike,
    records: str | os.PathLike,
    batch_size: int = defaults.RECORDS_BATCH_SIZE,
    num_workers: int = defaults.RECORDS_WORKERS,
    max_side: int | str | None = "model",
    pin_memory: bool = False,
) -> EmotionDataModule:
    """An :class:`EmotionDataModule` for prediction that makes the inputs as the model's preprocessing says.

    Args:
        info: the model's description.
        root: the folder the records' image paths are relative to.
        records: the records file.
        batch_size: people per batch.
        num_workers: data-loading processes.
        max_side: decoding size limit; ``"model"`` (default): the model's ``preprocessing.max_side``.
        pin_memory: pin batches in page-locked memory.
    """
    prep = info.preprocessing
    assert prep is not None
    streams = {
        name: {
            "region": s.region,
            "input_size": list(s.input_size),
            "mean": list(s.mean),
            "std": list(s.std),
            "resize": s.resize,
        }
        for name, s in prep.streams.items()
    }
    return EmotionDataModule(
        root=str(root),
        predict_records=str(records),
        batch_size=batch_size,
        num_workers=num_workers,
        augment="none",
        streams=streams,
        mask_subject=prep.mask_subject,  # the person is masked out of the scene only if the model was trained so
        max_side=prep.max_side if max_side == "model" else max_side,
        pin_memory=pin_memory,
    )


@dataclass
class RecordsPrediction:
    """The outcome of :func:`predict_records` (in rank 0; other ranks get ``None``).

    Attributes:
        out: the merged Parquet file.
        rows: records written (one per record).
        errors: records that could not be predicted (rows with ``error`` set).
        duplicates: predictions dropped because a record was predicted by more than one process.
        world_size: processes that took part.
        seconds: wall time of ``Trainer.predict`` (rank 0's view).
    """

    out: Path
    rows: int
    errors: int
    duplicates: int
    world_size: int
    seconds: float

    @property
    def persons_per_second(self) -> float:
        """Throughput of the prediction loop (all processes together)."""
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def predict_records(
    model: str | os.PathLike,
    records: str | os.PathLike,
    root: str | os.PathLike,
    out: str | os.PathLike,
    accelerator: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    precision: str = "32-true",
    batch_size: int = defaults.RECORDS_BATCH_SIZE,
    num_workers: int = defaults.RECORDS_WORKERS,
    max_side: int | str | None = "model",
    progress: bool = True,
    engine: str = "torch",
    calibration_records: str | os.PathLike | None = None,
    calibration_root: str | os.PathLike | None = None,
    engine_cache: str | os.PathLike | None = None,
) -> RecordsPrediction | None:
    """Predict every person of a records file with ``Trainer.predict`` and write one merged Parquet table.

    Under DDP every process runs this function (Lightning starts the other processes by re-running the
    command); each writes its shard and rank 0 merges them. The process group is destroyed on return.

    Args:
        model: an emoctx model file.
        records: canonical records (``.parquet`` or ``.jsonl``); images are ``root / image``.
        root: the folder the records' image paths are relative to.
        out: the merged output (``.parquet``).
        accelerator: Lightning accelerator (``cpu``, ``gpu``, ``auto``).
        devices: devices (processes) per node.
        strategy: Lightning strategy (``ddp`` for several devices; ``auto`` picks it).
        num_nodes: machines taking part.
        precision: Lightning precision (``32-true``, ``16-mixed``, ``bf16-mixed``); with an exported engine
            ``fp32``, ``bf16``, ``int8`` or ``auto`` (``32-true`` is fp32 there, ``bf16-mixed`` bf16).
        batch_size: people per batch and process.
        num_workers: data-loading processes per process.
        max_side: decode images with their longest side at most this many pixels (faster for large JPEGs;
            ``None``: full size); default (``"model"``) what the model was trained with.
        progress: show Lightning's progress bar.
        engine: ``"torch"`` (the network in Lightning), ``"onnxruntime"``, ``"openvino"`` (on the CPU) or
            ``"auto"`` (see the module docstring).
        calibration_records: int8: records to calibrate on (default: the model's validation split).
        calibration_root: the folder their image paths are relative to.
        engine_cache: keep exported graphs there instead of beside the model.

    Returns:
        The summary in rank 0, ``None`` in the other processes.

    Raises:
        EmoctxError: a bad output suffix, model or records file, or a missing shard at merge time.
    """
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise EmoctxError(
            f"{out}: the merged output of prediction from records is Parquet; name it *.parquet"
        )
    from emoctx.data.dataset import check_images
    from emoctx.data.records import read_records
    from emoctx.training.trainer import check_accelerator, with_progress_bar

    check_accelerator(accelerator)
    check_images(read_records(records), root, "--root", records)  # a wrong root fails before any model work
    net, info = load_model(model)
    spec, precision = engine_spec(
        model,
        engine,
        precision,
        accelerator,
        calibration_records,
        calibration_root,
        engine_cache,
        face=FACE_STREAM in net.stream_names,
    )
    dm = datamodule_for(
        info,
        root,
        records,
        batch_size=batch_size,
        num_workers=num_workers,
        max_side=max_side,
        pin_memory=accelerator == "gpu",
    )
    writer = ShardWriter(out)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        callbacks=with_progress_bar([writer], progress),  # log lines away from a terminal
    )
    try:
        start = time.perf_counter()
        module = PredictionModule(net, info.score_activation, engine=spec, info=info)
        trainer.predict(module, datamodule=dm, return_predictions=False)
        trainer.strategy.barrier("emoctx-shards-written")
        seconds = time.perf_counter() - start
        if not trainer.is_global_zero:
            return None
        df = dm.records("predict")
        assert df is not None  # predict_records is given explicitly
        table, duplicates = merge_shards(out, trainer.world_size, df, Path(root), info, model_identity(model))
        described = (
            module.engine.describe()
            if module.engine is not None
            else {"engine": "torch", "precision": str(trainer.precision), "runner": "Lightning"}
        )
        metadata = {"emoctx_version": __version__, "engine": described, "world_size": trainer.world_size}
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(jsonable(metadata))})
        with atomic_path(out) as tmp:
            pq.write_table(table, tmp)
        remove_shards(out)
        n_errors = table.num_rows - table.column("error").null_count
        result = RecordsPrediction(out, table.num_rows, n_errors, duplicates, trainer.world_size, seconds)
        log.debug(  # the command prints the same
            "%d people predicted by %d process(es) in %.1f s (%.1f persons/s), %d error(s): %s",
            result.rows,
            result.world_size,
            seconds,
            result.persons_per_second,
            result.errors,
            out,
        )
        return result
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # else the process aborts at exit


_FROM_LIGHTNING = {"32-true": "fp32", "32": "fp32", "bf16-mixed": "bf16", "bf16-true": "bf16"}
_TO_LIGHTNING = {"fp32": "32-true", "bf16": "bf16-mixed"}


def engine_spec(
    model: str | os.PathLike,
    engine: str,
    precision: str,
    accelerator: str,
    calibration_records: str | os.PathLike | None = None,
    calibration_root: str | os.PathLike | None = None,
    engine_cache: str | os.PathLike | None = None,
    face: bool = False,
) -> tuple[EngineSpec | None, str]:
    """The exported engine to run (``None``: the network in Lightning) and Lightning's precision.

    ``face``: the model has a face stream; it runs in Lightning (``auto`` picks it), as
    :func:`emoctx.engines.build_engine` rules for face models.

    Raises:
        EmoctxError: an unknown engine, an exported engine on another accelerator than the CPU or for a face
            model, or a precision the chosen path does not take.
    """
    from emoctx.engines import ENGINES, default_engine
    from emoctx.engines.build import refuse_face_model

    if engine != "auto" and engine not in ENGINES:
        raise EmoctxError(f"unknown engine '{engine}'; choose one of auto, {', '.join(ENGINES)}")
    if face:
        engine = "torch" if engine == "auto" else engine
        refuse_face_model(model, engine, _FROM_LIGHTNING.get(precision, precision))
    if engine == "auto":
        device = "cpu" if accelerator == "cpu" else "auto"
        wanted = _FROM_LIGHTNING.get(precision, precision)
        engine, chosen = default_engine(device, wanted if wanted in ("fp32", "bf16", "int8") else "auto")
        if engine == "torch":
            precision = _TO_LIGHTNING.get(chosen, precision)
    if engine == "torch":
        if precision == "auto":  # bf16 where the hardware computes it natively (a GPU: bf16, else fp16)
            from emoctx.hardware import cpu_supports_bf16

            on_gpu = accelerator not in ("cpu",) and torch.cuda.is_available()
            if on_gpu:
                precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
            else:
                precision = "bf16-mixed" if cpu_supports_bf16() else "32-true"
        if precision in ("fp32", "bf16"):
            precision = _TO_LIGHTNING[precision]
        if precision == "int8":
            raise EmoctxError(
                f"--precision {precision} needs an exported engine (--engine onnxruntime or openvino); the torch "
                "engine takes Lightning's precisions (32-true, 16-mixed, bf16-mixed)"
            )
        return None, precision
    if accelerator not in ("cpu", "auto") or (accelerator == "auto" and torch.cuda.is_available()):
        raise EmoctxError(f"the {engine} engine runs on the CPU; use --accelerator cpu, or --engine torch")
    wanted = _FROM_LIGHTNING.get(precision, precision)
    if wanted not in ("fp32", "bf16", "int8", "auto"):
        raise EmoctxError(
            f"--precision {precision}: the {engine} engine computes in fp32, bf16 or int8 (or auto)"
        )
    spec = EngineSpec(
        str(model),
        engine,
        wanted,
        None if calibration_records is None else str(calibration_records),
        None if calibration_root is None else str(calibration_root),
        None if engine_cache is None else str(engine_cache),
    )
    return spec, "32-true"


def remove_shards(out: str | os.PathLike) -> None:
    """Remove every shard of ``out`` (also those of an earlier run with more processes)."""
    out = Path(out)
    for p in out.parent.glob(f"{out.stem}.shard-*.parquet"):
        p.unlink()


def merge_shards(
    out: str | os.PathLike,
    world_size: int,
    records: pd.DataFrame,
    root: Path,
    info: ModelInfo,
    model_id: str,
) -> tuple[pa.Table, int]:
    """Merge the shards of ``world_size`` processes into the output table (one row per record, in order).

    Returns:
        The table and the number of duplicate predictions dropped.

    Raises:
        EmoctxError: a shard is missing, or a shard names a record the records file does not have.
    """
    parts = []
    for rank in range(world_size):
        path = shard_path(out, rank)
        if not path.is_file():
            raise EmoctxError(f"{path}: the shard of process {rank} is missing; did that process fail?")
        parts.append(pq.read_table(path))
    preds = pa.concat_tables(parts).to_pandas()
    before = len(preds)
    # Samplers may give a record to two processes (padding to equal shares): keep each record once.
    preds = preds.drop_duplicates("record", keep="first").set_index("record").sort_index()
    duplicates = before - len(preds)
    n = len(records)
    if len(preds) and (preds.index.min() < 0 or preds.index.max() >= n):
        raise EmoctxError(f"{out}: the shards name records outside the {n} rows of the records file")
    done = np.zeros(n, dtype=bool)
    done[preds.index.to_numpy()] = True
    preds = preds.reindex(np.arange(n))

    probs = preds[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
    thresholds = info.threshold_vector().numpy().astype(np.float64)
    above = probs >= thresholds
    categories = [
        [labels.CATEGORIES[j] for j in np.flatnonzero(row)] if ok else None for row, ok in zip(above, done)
    ]
    # the most probable of the categories at or above their threshold (as PersonResult.dominant)
    masked = np.where(above, probs, -np.inf)
    dominant = [
        labels.CATEGORIES[int(np.argmax(m))] if ok and row.any() else None
        for m, row, ok in zip(masked, above, done)
    ]
    errors = [None if ok else _failure(records, i, root) for i, ok in enumerate(done)]

    cols: dict[str, Any] = {
        "record": np.arange(n, dtype=np.int64),
        "source": records["image"].astype(str).to_numpy(),
        "frame": np.full(n, -1, dtype=np.int64),
        "time_s": [None] * n,
        "person": records["person"].to_numpy(dtype=np.int64),
        "track_id": [None] * n,
    }
    for c in ("x1", "y1", "x2", "y2"):
        cols[c] = records[c].to_numpy(dtype=np.float64)
    cols["det_score"] = np.ones(n)
    for c in PROB_COLUMNS:
        cols[c] = preds[c].to_numpy(dtype=np.float64)
    cols["categories"] = categories
    cols["dominant_category"] = dominant
    for d in labels.VAD_NAMES:
        cols[d] = preds[d].to_numpy(dtype=np.float64)
    cols["model"] = [model_id] * n
    cols["error"] = errors
    cols["width"] = records["width"].to_numpy(dtype=np.int64)
    cols["height"] = records["height"].to_numpy(dtype=np.int64)
    cols.update(_face_columns(records, preds, info))
    schema = output_schema()
    arrays = [
        pa.array(cols[f.name], type=f.type, from_pandas=True)
        for f in schema  # from_pandas: NaN -> null
    ]
    return pa.Table.from_arrays(arrays, schema=schema), duplicates


def _face_columns(records: pd.DataFrame, preds: pd.DataFrame, info: ModelInfo) -> dict[str, Any]:
    """The table's face columns: the records' face where the model saw it, its face V/A and expression."""
    n = len(records)

    def column(name: str, missing: Any) -> pd.Series:
        # Shards written without the face columns (a model without a face stream, an older shard) have none.
        return preds[name] if name in preds.columns else pd.Series(missing, index=preds.index)

    seen = column("face_present", False).fillna(False).to_numpy(dtype=bool)
    out: dict[str, Any] = {}
    for c in ("face_x1", "face_y1", "face_x2", "face_y2", "face_score"):
        values = records[c].to_numpy(dtype=np.float64) if c in records.columns else np.full(n, np.nan)
        out[c] = np.where(seen, values, np.nan)
    landmarks: list[Any] = [None] * n
    if "face_landmarks" in records.columns:
        for i in np.flatnonzero(seen):
            points = records["face_landmarks"].iat[i]
            if isinstance(points, (list, np.ndarray)) and len(points):
                landmarks[i] = [[None if v != v else float(v) for v in p] for p in points]
    out["face_landmarks"] = landmarks
    out["face_valence"] = column("face_valence", np.nan).to_numpy(dtype=np.float64)
    out["face_arousal"] = column("face_arousal", np.nan).to_numpy(dtype=np.float64)
    names = (info.network or {}).get("expressions") or []
    which = column("expression_index", -1).fillna(-1).to_numpy(dtype=np.int64)
    out["expression"] = [names[k] if 0 <= k < len(names) else None for k in which]
    out["expression_score"] = column("expression_score", np.nan).to_numpy(dtype=np.float64)
    return out


def output_schema() -> pa.Schema:
    """The merged table's schema: ``record`` then the prediction-table columns."""
    return pa.schema([pa.field("record", pa.int64()), *table_schema()])


def _failure(records: pd.DataFrame, i: int, root: Path) -> str:
    """Why record ``i`` has no prediction (the dataset skipped it and logged the reason)."""
    path = root / str(records["image"].iat[i])
    try:
        read_image(path)
    except ImageError as e:
        return str(e)
    box = [float(records[c].iat[i]) for c in ("x1", "y1", "x2", "y2")]
    return (
        f"{path}: person {int(records['person'].iat[i])}: the box {box} could not be used in the "
        f"{int(records['width'].iat[i])}x{int(records['height'].iat[i])} image"
    )
