"""Generating EMOTIC-synth on disk: JPEG images, canonical records per split, and the manifest ``synth.json``.

Each image is drawn from its own random stream derived from ``(seed, split, index)``: one seed gives
byte-identical records and images, whatever the number of worker processes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emoctx.data.records import records_frame, write_records
from emoctx.data.synth.render import render_image
from emoctx.data.synth.rules import (
    CATEGORY_GROUP,
    N_ANNOTATORS,
    PEOPLE_PER_IMAGE,
    PLACES,
    category_groups,
    choice,
    combine_annotations,
    rule_labels,
    sample_cues,
    simulate_annotator,
    used_categories,
)
from emoctx.errors import EmoctxError
from emoctx.io import atomic_path, atomic_write_text
from emoctx.labels import SPLITS

log = logging.getLogger(__name__)


GENERATOR_VERSION = 1


SOURCE = "synth"


MANIFEST = "synth.json"


DEFAULT_COUNTS: dict[str, int] = {"train": 1200, "val": 300, "test": 300}


DEFAULT_SIZE: tuple[int, int] = (320, 240)


JPEG_QUALITY = 90


def _make_image(task: tuple[int, str, int, tuple[int, int], str, int]) -> list[dict[str, Any]]:
    """Generate, save and label one image; returns its records (one per person)."""
    seed, split, index, size, out_dir, quality = task
    split_id = SPLITS.index(split)
    scene_rng = np.random.default_rng([seed, split_id, index, 0])
    label_rng = np.random.default_rng([seed, split_id, index, 1])
    place = choice(scene_rng, PLACES)
    n_people = choice(scene_rng, PEOPLE_PER_IMAGE)
    cues = [sample_cues(scene_rng, place) for _ in range(n_people)]
    img, boxes = render_image(place, cues, size, scene_rng)
    rel = f"images/{place}/{split}_{index:05d}.jpg"
    with atomic_path(Path(out_dir) / rel) as tmp:
        img.save(tmp, format="JPEG", quality=quality)
    n_annotators = 1 if split == "train" else N_ANNOTATORS
    rows = []
    for person, (c, box) in enumerate(zip(cues, boxes)):
        truth = rule_labels(c)
        anns = [simulate_annotator(truth, label_rng) for _ in range(n_annotators)]
        if n_annotators == 1:
            cats, vad = anns[0]
            ann_cats, ann_vad = [], []
        else:
            cats, vad = combine_annotations(anns)
            ann_cats, ann_vad = [a[0] for a in anns], [a[1] for a in anns]
        rows.append(
            {
                "image": rel,
                "width": size[0],
                "height": size[1],
                "split": split,
                "person": person,
                "x1": box[0],
                "y1": box[1],
                "x2": box[2],
                "y2": box[3],
                "categories": cats,
                "valence": vad[0],
                "arousal": vad[1],
                "dominance": vad[2],
                "annotator_categories": ann_cats,
                "annotator_vad": ann_vad,
                "gender": c.gender,
                "age": c.age,
                "source": SOURCE,
                "synth_place": c.place,
                "synth_pose": c.pose,
                "synth_accessory": c.accessory,
            }
        )
    return rows


def generate(
    out_dir: str | os.PathLike,
    n_train: int = DEFAULT_COUNTS["train"],
    n_val: int = DEFAULT_COUNTS["val"],
    n_test: int = DEFAULT_COUNTS["test"],
    image_size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    jpeg_quality: int = JPEG_QUALITY,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Generate EMOTIC-synth: JPEG images and canonical records for train, val and test.

    Writes ``out_dir/images/<place>/<split>_<index>.jpg``, ``out_dir/annotations/<split>.parquet`` (records with
    image paths relative to ``out_dir``, plus the cue columns ``synth_place``, ``synth_pose`` and
    ``synth_accessory``) and ``out_dir/synth.json`` (the parameters and category groups). Each image is drawn from
    its own random stream derived from ``(seed, split, index)``, so the output does not depend on ``workers``.

    Args:
        out_dir: the dataset root to write.
        n_train: number of training images (one annotator per person).
        n_val: number of validation images (three simulated annotators, combined labels).
        n_test: number of test images (three simulated annotators, combined labels).
        image_size: ``(width, height)`` in pixels.
        seed: the random seed; one seed gives byte-identical records and images.
        jpeg_quality: JPEG quality of the images.
        workers: processes drawing images (1: in this process).
        overwrite: replace an earlier EMOTIC-synth output in ``out_dir``.
        progress: show a progress bar.

    Returns:
        The records of each split (``train``, ``val``, ``test``).

    Raises:
        EmoctxError: on bad sizes or counts, or when ``out_dir`` holds files that are not an earlier
            EMOTIC-synth output (or are one and ``overwrite`` is false).
    """
    out = Path(out_dir)
    w, h = (int(v) for v in image_size)
    if w < 64 or h < 64:
        raise EmoctxError(f"synth: image size {w}x{h} is too small; use at least 64x64 (e.g. 320x240)")
    counts = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
    if any(n < 0 for n in counts.values()) or not any(counts.values()):
        raise EmoctxError(f"synth: image counts must be >= 0 and not all 0, got {counts}")
    _prepare_out_dir(out, overwrite)

    tasks = [
        (int(seed), split, i, (w, h), str(out), int(jpeg_quality))
        for split in SPLITS
        for i in range(counts[split])
    ]
    rows_by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    bar = tqdm(total=len(tasks), desc="synth images", unit="img", disable=not progress)
    try:
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = pool.map(_make_image, tasks, chunksize=16)
                for task, rows in zip(tasks, results):
                    rows_by_split[task[1]].extend(rows)
                    bar.update()
        else:
            for task in tasks:
                rows_by_split[task[1]].extend(_make_image(task))
                bar.update()
    finally:
        bar.close()

    frames = {}
    for split in SPLITS:
        df = records_frame(rows_by_split[split])
        write_records(df, out / "annotations" / f"{split}.parquet")
        frames[split] = df
        log.info("synth %s: %d images, %d persons", split, counts[split], len(df))
    manifest = {
        "generator": "emoctx.data.synth",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "image_size": [w, h],
        "images": counts,
        "persons": {s: len(frames[s]) for s in SPLITS},
        "jpeg_quality": int(jpeg_quality),
        "category_groups": {g: list(c) for g, c in category_groups().items()},
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return frames


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse to mix with other files; with ``overwrite``, clear an earlier EMOTIC-synth output."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / MANIFEST).exists():
        raise EmoctxError(
            f"{out}: the folder is not empty and holds no {MANIFEST}, so it is not an EMOTIC-synth output; "
            "choose an empty or new --out folder"
        )
    if not overwrite:
        raise EmoctxError(f"{out}: already holds an EMOTIC-synth dataset; pass --overwrite to replace it")
    for name in ("images", "annotations"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    (out / MANIFEST).unlink()


def category_counts(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Positives per used category and split, with each category's group, in canonical order."""
    used = used_categories()
    table = pd.DataFrame(
        {split: [sum(c in cats for cats in df["categories"]) for c in used] for split, df in frames.items()},
        index=pd.Index(used, name="category"),
    )
    table.insert(0, "group", [CATEGORY_GROUP[c] for c in used])
    return table
