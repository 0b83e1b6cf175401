"""The Lightning data module: records files + images -> train/val/test/predict data loaders.

Configured entirely through typed ``__init__`` arguments, so a ``LightningCLI`` YAML can set every one::

    data:
      root: /data/emotic            # images are <root>/<records image path>
      batch_size: 32
      num_workers: 4
      augment: light                # none | light | strong | baseline
      mask_subject: false

The streams (each one's input size and normalisation) come from the model: ``emoctx train`` links the
network's streams into ``data.streams``. With the data settings they make the preprocessing
(:attr:`EmotionDataModule.preprocess`, :mod:`emoctx.data.preprocess`) that the model file stores.

Records default to ``<root>/annotations/{train,val,test}.parquet``; validation and test records are
optional (no loader when the default file does not exist). Undecodable images are skipped and logged by the
dataset; each batch carries the number of skipped items in ``batch["skipped"]``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from emoctx.data.augment import check_preset
from emoctx.data.dataset import EmotionDataset, collate, worker_init_fn
from emoctx.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessCfg, PreprocessError, as_hw
from emoctx.data.records import category_matrix, read_records
from emoctx.data.transforms import StreamTransform, build_transform
from emoctx.errors import EmoctxError

logger = logging.getLogger(__name__)

_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class EmotionDataModule(pl.LightningDataModule):
    """Data loaders of body crops and scenes for training, validation, testing and prediction.

    Args:
        root: dataset root; the records' ``image`` paths are relative to it.
        train_records: training records (``.parquet`` or ``.jsonl``); default
            ``<root>/annotations/train.parquet``.
        val_records: validation records; default ``<root>/annotations/val.parquet`` if that file exists,
            otherwise no validation.
        test_records: test records; default ``<root>/annotations/test.parquet`` if that file exists.
        predict_records: records for ``predict``; default the test records, else the validation records.
        batch_size: people per batch (all stages).
        num_workers: data-loading processes (kept alive between epochs when > 0).
        augment: training augmentation preset: ``none``, ``light``, ``strong`` or ``baseline``. Evaluation never
            augments.
        streams: the model's streams, ``{name: {"input_size", "mean", "std"}}`` (optionally ``"region"``,
            ``"resize"``; see :meth:`PreprocessCfg.for_streams`). ``emoctx train`` links them from the model.
            Default: a 128-pixel body and a 224-pixel scene with ImageNet normalisation.
        mask_subject: fill the person's box in the whole-image streams with their mean colour, so the scene
            stream sees only the context.
        pin_memory: pin batches in page-locked memory (for GPU training).
        limit: use at most this many people per split (a fixed random subset), for quick runs.
        max_side: decode images with their longest side at most this many pixels (faster for large JPEGs;
            boxes are rescaled). ``None`` decodes at full size.
        body_size: deprecated (use ``streams``): the body's input size, int or ``[height, width]``.
        scene_size: deprecated (use ``streams``): the scene's input size.
        body_mean: deprecated (use ``streams``).
        body_std: deprecated (use ``streams``).
        scene_mean: deprecated (use ``streams``).
        scene_std: deprecated (use ``streams``).
    """

    def __init__(
        self,
        root: str,
        train_records: str | None = None,
        val_records: str | None = None,
        test_records: str | None = None,
        predict_records: str | None = None,
        batch_size: int = 32,
        num_workers: int = 2,
        augment: str = "light",
        streams: dict[str, dict[str, Any]] | None = None,
        mask_subject: bool = False,
        pin_memory: bool = False,
        limit: int | None = None,
        max_side: int | None = None,
        body_size: int | tuple[int, int] | None = None,
        scene_size: int | tuple[int, int] | None = None,
        body_mean: tuple[float, float, float] | None = None,
        body_std: tuple[float, float, float] | None = None,
        scene_mean: tuple[float, float, float] | None = None,
        scene_std: tuple[float, float, float] | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise EmoctxError(f"data.batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise EmoctxError(f"data.num_workers must be 0 or more, got {num_workers}")
        if limit is not None and limit < 1:
            raise EmoctxError(f"data.limit must be a positive number of people or null, got {limit}")
        # The deprecated size arguments are recorded (in the model file's training.data) only when given.
        sizes = {
            "body_size": body_size,
            "scene_size": scene_size,
            "body_mean": body_mean,
            "body_std": body_std,
            "scene_mean": scene_mean,
            "scene_std": scene_std,
        }
        self.save_hyperparameters(ignore=[k for k, v in sizes.items() if v is None])
        self.root = Path(root)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = check_preset(augment)
        self.pin_memory = pin_memory
        self.limit = limit
        self.max_side = max_side
        self._paths = {
            "train": train_records,
            "val": val_records,
            "test": test_records,
            "predict": predict_records,
        }
        given = {k: v for k, v in sizes.items() if v is not None}
        if given:
            if streams is not None:
                raise EmoctxError(
                    f"data.{', data.'.join(given)}: the streams' sizes and normalisation come from data.streams "
                    "(linked from the model); leave these out"
                )
            warnings.warn(
                f"EmotionDataModule({', '.join(given)}) is deprecated: pass streams={{name: {{'input_size', "
                "'mean', 'std'}}}}",
                DeprecationWarning,
                stacklevel=2,
            )
        if streams is None:
            streams = {
                "body": {
                    "input_size": body_size or 128,
                    "mean": body_mean or IMAGENET_MEAN,
                    "std": body_std or IMAGENET_STD,
                },
                "scene": {
                    "input_size": scene_size or 224,
                    "mean": scene_mean or IMAGENET_MEAN,
                    "std": scene_std or IMAGENET_STD,
                },
            }
        try:
            self._preprocess = PreprocessCfg.for_streams(
                streams, mask_subject=mask_subject, max_side=max_side
            )
        except PreprocessError as e:
            raise EmoctxError(f"data.streams: {e}") from e
        self._records: dict[str, pd.DataFrame | None] = {}
        self._datasets: dict[str, EmotionDataset | None] = {}

    # -- configuration ------------------------------------------------------------------------------------

    @property
    def preprocess(self) -> PreprocessCfg:
        """How every stream's input is made: the preprocessing the model file stores (see the module docstring)."""
        return self._preprocess

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Deprecated: the body/scene keyword arguments of the deprecated ``build_transform(preset, ...)``.

        Use :attr:`preprocess`.
        """
        warnings.warn(
            "EmotionDataModule.preprocessing is deprecated: use EmotionDataModule.preprocess (a PreprocessCfg)",
            DeprecationWarning,
            stacklevel=2,
        )
        out: dict[str, Any] = {"mask_subject": self._preprocess.mask_subject}
        for name in ("body", "scene"):
            spec = self._preprocess.streams.get(name)
            if spec is not None:
                out.update(
                    {
                        f"{name}_size": as_hw(spec.input_size),
                        f"{name}_mean": spec.mean,
                        f"{name}_std": spec.std,
                    }
                )
        return out

    def transform(self, split: str) -> StreamTransform:
        """The transform of a split: the ``augment`` preset for ``train``, no augmentation otherwise."""
        if split == "train":
            # Seeded from torch's generator so that seed_everything makes the main process reproducible;
            # each worker re-seeds from its own seed (worker_init_fn).
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
            return build_transform(self._preprocess, augment=self.augment, seed=seed)
        return build_transform(self._preprocess)

    def records_path(self, split: str) -> Path | None:
        """The records file of a split (``train``, ``val``, ``test``, ``predict``), or None when it has none.

        Raises:
            EmoctxError: the file was given but does not exist, or the training file cannot be found.
        """
        if split == "predict" and self._paths["predict"] is None:
            return self.records_path("test") or self.records_path("val")
        given = self._paths[split]
        if given is not None:
            path = Path(given)
            if not path.is_file():
                raise EmoctxError(f"{path}: {split} records file not found (data.{split}_records)")
            return path
        default = self.root / "annotations" / f"{split}.parquet"
        if default.is_file():
            return default
        if split == "train":
            raise EmoctxError(
                f"{default}: no training records; convert the annotations into this file or set "
                "data.train_records to a .parquet/.jsonl records file"
            )
        return None

    # -- data ---------------------------------------------------------------------------------------------

    def records(self, split: str) -> pd.DataFrame | None:
        """The records of a split as used by its dataset (after ``limit``); item ``index`` is a row here."""
        if split not in self._records:
            path = self.records_path(split)
            if path is None:
                self._records[split] = None
            else:
                df = read_records(path)
                if self.limit is not None and len(df) > self.limit:
                    df = df.sample(n=self.limit, random_state=0).sort_index()
                df = df.reset_index(drop=True)
                logger.info("%s: %d people from %s", split, len(df), path)
                self._records[split] = df
        return self._records[split]

    def category_counts(self) -> np.ndarray:
        """Number of positive examples of each category in the training records (int64, canonical order)."""
        df = self.records("train")
        assert df is not None  # records("train") raises when there are none
        return category_matrix(df).sum(axis=0).astype(np.int64)

    def dataset(self, split: str) -> EmotionDataset | None:
        """The dataset of a split (built on first use), or None when the split has no records."""
        if split not in self._datasets:
            df = self.records(split)
            self._datasets[split] = (
                None
                if df is None
                else EmotionDataset(df, self.root, transform=self.transform(split), max_side=self.max_side)
            )
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        """Read the records of the stage's splits and build their datasets."""
        splits = _STAGE_SPLITS.get(stage or "", ("train", "val", "test"))
        for split in splits:
            self.dataset(split)

    def _loader(self, split: str, train: bool = False) -> DataLoader | list:
        dataset = self.dataset(split)
        if dataset is None:
            return []
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            # A last batch of one breaks batch norm in training; drop the remainder when there is a full batch.
            drop_last=train and len(dataset) >= self.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.pin_memory,
            collate_fn=collate,
            worker_init_fn=worker_init_fn if workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training batches."""
        loader = self._loader("train", train=True)
        assert isinstance(loader, DataLoader)  # records("train") raises when there are none
        return loader

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches (an empty list when there are no validation records)."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader | list:
        """Test batches (an empty list when there are no test records)."""
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader | list:
        """Batches of the prediction records (by default the test, else the validation records)."""
        return self._loader("predict")
