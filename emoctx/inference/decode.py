"""Decoding for the prediction pipeline: image files in worker processes, in-memory images, a prefetch thread.

Image files are decoded in ``DataLoader`` worker processes (:class:`DecodeDataset`), each image once, together
with the views of its whole-image streams (the scene), which travel back through shared memory. Video frames
are read in a background thread (:func:`prefetch`). In-memory images (arrays, PIL images) become
:class:`~emoctx.data.images.DecodedImage` in :func:`decode_image`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from emoctx.data.images import DecodedImage, ImageError, read_image
from emoctx.data.transforms import StreamTransform
from emoctx.errors import EmoctxError


def identity(x: Any) -> Any:
    """The ``collate_fn`` of the decoding loader: items as they come."""
    return x


def worker_init(_: int) -> None:
    """Set up one decoding worker process."""
    cv2.setNumThreads(1)  # the worker processes already run in parallel


@contextlib.contextmanager
def opencv_fork_safe() -> Iterator[None]:
    """Stop OpenCV's idle pool threads while worker processes are forked, then restore them.

    A forked child inherits the pool's condition variable with the parent's sleeping threads still counted as
    waiting on it; its first OpenCV call that touches the pool then blocks forever. With one thread there is
    no pool to inherit.
    """
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


class DecodeDataset(torch.utils.data.Dataset):
    """Decodes image files (and makes their whole-image views) inside ``DataLoader`` worker processes."""

    def __init__(
        self, paths: Sequence[str], max_side: int | None, transform: StreamTransform, views: Sequence[str]
    ):
        """Decode ``paths`` at ``max_side`` and make the ``views`` (whole-image stream names) of ``transform``."""
        self.paths = list(paths)
        self.max_side = max_side
        self.transform = transform
        self.views = tuple(views)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Any, Any, Any, str | None]:
        path = self.paths[i]
        try:
            decoded = read_image(path, max_side=self.max_side)
            views = {name: self.transform.view(name, decoded.pixels, {}) for name in self.views}
        except ImageError as e:
            return i, None, None, None, str(e)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the run; its row says what happened
            return i, None, None, None, f"{path}: cannot read image: {type(e).__name__}: {e}"
        pixels = decoded.pixels if decoded.pixels.flags.writeable else decoded.pixels.copy()
        # Tensors travel from the worker through shared memory instead of being pickled.
        return (
            i,
            torch.from_numpy(pixels),
            decoded.original_size,
            {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in views.items()},
            None,
        )


def prefetch(items: Iterator[Any], size: int) -> Iterator[Any]:
    """Run ``items`` in a background thread, ``size`` ahead (OpenCV decoding releases the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            q.put((end, e))
            return
        q.put((end, None))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
        thread.join(timeout=5)


def decode_image(image: np.ndarray | Image.Image | str | os.PathLike, max_side: int | None) -> DecodedImage:
    """An image file (decoded at ``max_side``), a PIL image (EXIF orientation applied) or an RGB array.

    Arrays are ``(H, W, 3)`` ``uint8``; ``(H, W)`` grey and ``(H, W, 4)`` RGBA are accepted.

    Raises:
        ImageError: an unreadable file. EmoctxError: an array of the wrong type or shape.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_side=max_side)
    if isinstance(image, Image.Image):
        pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    else:
        pixels = np.asarray(image)
        if pixels.dtype != np.uint8:
            raise EmoctxError(f"in-memory images must be uint8 RGB arrays, got dtype {pixels.dtype}")
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        elif pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[:, :, :3]
        if pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
            raise EmoctxError(f"in-memory images must have shape (H, W, 3), got {pixels.shape}")
    pixels = np.ascontiguousarray(pixels)
    return DecodedImage(pixels=pixels, original_size=(pixels.shape[1], pixels.shape[0]))
