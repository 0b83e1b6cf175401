"""The PyTorch dataset of annotated people: one item per records row, decoded from the original image.

Each item is a dict:

* one float tensor ``[3, H, W]`` per stream of the transform, by name (``body``: the person crop; ``scene``:
  the whole image, the person masked if the preprocessing says so; see :mod:`emoctx.data.preprocess`);
* ``box``: float tensor ``[4]``, the person's box in the scene as fractions of its width and height;
* ``categories``: float tensor ``[NUM_CATEGORIES]``, multi-hot in canonical order;
* ``vad``: float tensor ``[3]``, valence/arousal/dominance on the model's internal 0-1 scale, 0 where missing;
* ``vad_mask``: bool tensor ``[3]``, False where the value is missing;
* ``index``: int, the row of the item in the records frame;
* with a face stream (:mod:`emoctx.data.preprocess`, region ``face``): the face crop under the stream's name
  (zeros when the person shows no face), ``face_present`` (bool), ``face_landmarks`` (``[5, 3]``, ``coco5`` in
  the crop's frame; NaN and confidence 0 where unseen), from the records' optional face columns (a record
  without a face box, or records without face columns, give no face);
* ``expression``: int64, the index of the record's ``expression`` in :data:`emoctx.labels.EXPRESSIONS`, ``-1``
  where there is none.

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
from emoctx.data.records import BOX_COLUMNS, FACE_BOX_COLUMNS, category_matrix, vad_matrix
from emoctx.data.transforms import StreamTransform, build_transform
from emoctx.faces import to_network_landmarks
from emoctx.labels import EXPRESSION_INDEX, vad_to_model

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
        self._expressions = torch.tensor(
            [
                EXPRESSION_INDEX.get(e, -1) if isinstance(e, str) else -1
                for e in self.records.get("expression", pd.Series([None] * len(self.records)))
            ],
            dtype=torch.int64,
        )
        self._faces = self._face_arrays() if transform.face_streams else None
        self.skipped = 0  # items this process could not load (each worker process counts its own)
        self._warned: set[str] = set()

    def _face_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes ``[N, 4]`` (NaN: no face) and ``coco5`` landmarks ``[N, 5, 3]`` in the records' pixels."""
        n = len(self.records)
        if not set(FACE_BOX_COLUMNS) <= set(self.records.columns):
            logger.warning(
                "the model has a face stream but the records have no face columns (face_x1 .. face_y2): every "
                "person goes without a face; 'emoctx faces' adds them from a pose model"
            )
            boxes = np.full((n, 4), np.nan)
        else:
            boxes = self.records[list(FACE_BOX_COLUMNS)].to_numpy(dtype=np.float64)
        points = np.full((n, 5, 3), np.nan)
        points[:, :, 2] = 0.0
        if "face_landmarks" in self.records.columns:
            conventions = self.records.get("face_landmark_convention", pd.Series([None] * n))
            for i, (lm, conv) in enumerate(zip(self.records["face_landmarks"], conventions)):
                if isinstance(lm, (list, np.ndarray)) and len(lm) and isinstance(conv, str):
                    points[i] = to_network_landmarks([list(p) for p in lm], conv)
        return boxes, points

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
            scale = np.divide(decoded.size, self._sizes[index])
            box = self._boxes[index] * np.tile(scale, 2)
            if self._faces is None:
                streams = self.transform(decoded.pixels, box)
            else:
                face = self._faces[0][index]
                points = self._faces[1][index].copy()
                points[:, :2] *= scale
                present = bool(np.isfinite(face).all())
                streams = self.transform(
                    decoded.pixels,
                    box,
                    face * np.tile(scale, 2) if present else None,
                    points if present else None,
                )
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
            "expression": self._expressions[index].clone(),
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


MOSTLY_MISSING = 0.5
""":func:`check_images` refuses records of which more than this share of the images cannot be found."""


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; a name the system refuses (too long, no permission) counts as missing."""
    try:
        return path.is_file()
    except OSError:
        return False


def check_images(
    records: pd.DataFrame,
    root: str | os.PathLike,
    option: str = "--root",
    records_name: str | os.PathLike | None = None,
) -> int:
    """Check, before any model work, that the records' images are where ``root`` says.

    A wrong root would otherwise show up as one "skipping item" warning per person, and then an error. Every
    distinct image path is looked up once (a file-system lookup each, no decoding).

    Args:
        records: canonical records (their ``image`` column, relative to ``root``).
        root: the folder the image paths are relative to.
        option: how the user gave ``root`` (named in the message: ``--root``, ``data.root``).
        records_name: the records file, for the message.

    Returns:
        The number of images not found (their persons will be skipped with a warning).

    Raises:
        EmoctxError: ``root`` is not a folder, or more than :data:`MOSTLY_MISSING` of the images are not under
            it: one example path, and a close folder that holds it where one is found.
    """
    from emoctx.errors import EmoctxError

    root = Path(root)
    where = f" of {records_name}" if records_name is not None else ""
    images = list(dict.fromkeys(str(p) for p in records["image"]))
    if not images:
        return 0
    if not root.is_dir():
        raise EmoctxError(
            f"{option} {root}: no such folder; it must be the folder the image paths{where} are relative to "
            f"(e.g. {images[0]}){_root_hint(root, images[0], option)}"
        )
    missing = [p for p in images if not _is_file(root / p)]
    if len(missing) > MOSTLY_MISSING * len(images):
        raise EmoctxError(
            f"{option} {root}: {len(missing)} of the {len(images)} images{where} are not there (e.g. "
            f"{root / missing[0]} does not exist); {option} must be the folder the records' image paths are "
            f"relative to{_root_hint(root, missing[0], option)}"
        )
    if missing:
        logger.warning(
            "%d of %d images%s are not under %s (e.g. %s); their persons are left out",
            len(missing),
            len(images),
            where,
            root,
            missing[0],
        )
    return len(missing)


def _root_hint(root: Path, image: str, option: str) -> str:
    """``; did you mean --root X?`` for a folder near ``root`` (or the current one) that holds ``image``."""
    candidates = [Path(".")]
    for base in (root, *list(root.parents)[:2]):
        if base.is_dir():
            candidates.append(base)
            try:
                candidates += sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))[
                    :200
                ]
            except OSError:
                continue
    for folder in candidates:
        if _is_file(folder / image) and folder.resolve() != root.resolve():
            return f"; did you mean {option} {folder}?"
    return ""
