"""The PyTorch dataset of annotated people: one item per records row, decoded from the original image.

Each item is a dict:

* one float tensor ``[3, H, W]`` per stream of the transform, by name (``body``: the person crop; ``scene``:
  the whole image, the person masked if the preprocessing says so; see :mod:`emoctx.data.preprocess`);
* ``box``: float tensor ``[4]``, the person's box in the scene as fractions of its width and height;
* ``categories``: float tensor ``[NUM_CATEGORIES]``, multi-hot in canonical order;
* ``vad``: float tensor ``[3]``, valence/arousal/dominance on the model's internal 0-1 scale, 0 where missing;
* ``vad_mask``: bool tensor ``[3]``, False where the value is missing;
* ``index``: int, the row of the item in the records frame.

An image that cannot be decoded does not stop an epoch: :meth:`EmotionDataset.__getitem__` logs a warning
naming the file and the reason and returns ``None``; :func:`collate` drops the ``None`` items and reports how
many it dropped in the batch's ``"skipped"`` entry, so the training loop can log the count.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, get_worker_info
from torch.utils.data import default_collate as _default_collate

from emoctx.data.images import DecodedImage, ImageError, read_image
from emoctx.data.preprocess import PreprocessCfg
from emoctx.data.records import BOX_COLUMNS, category_matrix, vad_matrix
from emoctx.data.transforms import StreamTransform, build_transform
from emoctx.labels import vad_to_model

logger = logging.getLogger(__name__)

Item = dict[str, Any]


class EmotionDataset(Dataset):
    """People from canonical records, decoded lazily from the original images.

    Args:
        records: canonical records frame (``emoctx.data.records``); its row order defines item indices.
        root: dataset root; each row's ``image`` is relative to it.
        transform: the transform making every stream's input (default: no augmentation, 128 px body, 224 px
            scene, ImageNet normalisation).
        max_side: decode images so that their longest side is at most this many pixels (fast reduced JPEG
            decoding); boxes are rescaled to match. ``None`` decodes at full size.
    """

    def __init__(
        self,
        records: pd.DataFrame,
        root: str | os.PathLike,
        transform: StreamTransform | None = None,
        max_side: int | None = None,
    ):
        self.root = Path(root)
        if transform is None:
            transform = build_transform(
                PreprocessCfg.for_streams({"body": {"input_size": 128}, "scene": {"input_size": 224}})
            )
        self.transform = transform
        self.max_side = max_side
        self.records = records.reset_index(drop=True)
        # Plain arrays, not DataFrame lookups, in __getitem__: cheaper, and shared by forked workers.
        self._images: list[str] = [str(p) for p in self.records["image"]]
        self._sizes = self.records[["width", "height"]].to_numpy(dtype=np.float64)
        self._boxes = self.records[list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
        self._categories = torch.from_numpy(category_matrix(self.records))
        vad = vad_matrix(self.records)
        self._vad_mask = torch.from_numpy(~np.isnan(vad))
        self._vad = torch.from_numpy(np.nan_to_num(vad_to_model(vad), nan=0.0).astype(np.float32))
        self.skipped = 0  # items this process could not load (each worker process counts its own)
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self._images)

    def path(self, index: int) -> Path:
        """The image file of item ``index``."""
        return self.root / self._images[index]

    def __getitem__(self, index: int) -> Item | None:
        """Load item ``index``; ``None`` (after a logged warning) when its image cannot be used."""
        index = int(index)
        path = self.path(index)
        try:
            decoded = read_image(path, max_side=self.max_side)
            decoded = self._match_records_frame(decoded, index, path)
            box = self._boxes[index] * np.tile(np.divide(decoded.size, self._sizes[index]), 2)
            streams = self.transform(decoded.pixels, box)
        except (ImageError, ValueError, cv2.error) as e:
            self.skipped += 1
            reason = e.reason if isinstance(e, ImageError) else f"{type(e).__name__}: {e}"
            logger.warning("skipping item %d (%s): %s", index, path, reason)
            return None
        return {
            **streams,
            "categories": self._categories[index].clone(),
            "vad": self._vad[index].clone(),
            "vad_mask": self._vad_mask[index].clone(),
            "index": index,
        }

    def _match_records_frame(self, decoded: DecodedImage, index: int, path: Path) -> DecodedImage:
        """Make sure the decoded pixels are in the frame the records' boxes were drawn in.

        Boxes are drawn on the upright image. Some annotation tools ignore the EXIF orientation, though: when
        the records give the stored (unrotated) size of a rotated image, decode it unrotated so that the
        boxes fit. Any other size difference is reported and the box scaled to the file.
        """
        rec_size = tuple(int(v) for v in self._sizes[index])
        if rec_size == decoded.original_size:
            return decoded
        if decoded.oriented and decoded.orientation != 1 and rec_size == decoded.original_size[::-1]:
            self._warn_once(
                path,
                "%s: the records give the stored %dx%d size of this EXIF-rotated image; using it unrotated",
                path,
                *rec_size,
            )
            return read_image(path, max_side=self.max_side, apply_orientation=False)
        self._warn_once(
            path,
            "%s: the records give a %dx%d image but the file is %dx%d; scaling the box to the file",
            path,
            *rec_size,
            *decoded.original_size,
        )
        return decoded

    def _warn_once(self, path: Path, message: str, *args: Any) -> None:
        if str(path) not in self._warned:
            self._warned.add(str(path))
            logger.warning(message, *args)


def collate(items: Sequence[Item | None]) -> dict[str, Any]:
    """Stack dataset items into a batch, dropping the ``None`` of undecodable images.

    Returns:
        The stacked batch (``index`` becomes an int64 tensor) plus ``"skipped"``: the number of dropped
        items. When every item of the batch was dropped the batch holds only ``"skipped"``; a training step
        should then do nothing (e.g. return ``None``).
    """
    kept = [item for item in items if item is not None]
    skipped = len(items) - len(kept)
    batch: dict[str, Any] = _default_collate(kept) if kept else {}
    batch["skipped"] = skipped
    return batch


def worker_init_fn(worker_id: int) -> None:
    """Give each data-loader worker its own augmentation random stream (derived from the worker's seed).

    Without this every forked worker would inherit the same albumentations random state and produce the
    same augmentations.
    """
    info = get_worker_info()
    if info is None:  # pragma: no cover - only called inside workers
        return
    dataset = info.dataset
    while hasattr(dataset, "dataset") and not isinstance(dataset, EmotionDataset):  # torch Subset wrappers
        dataset = dataset.dataset
    if isinstance(dataset, EmotionDataset):
        dataset.transform.reseed(info.seed)
