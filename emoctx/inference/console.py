"""The lines a prediction run prints on the console beside its progress bar: one per photo, one per video.

A photo's line names it, its persons and each one's top categories (``*`` marks those at or above the model's
threshold) and V/A/D; a video's line comes when its last frame is done and counts its frames, person rows and
tracks. After ``lines`` of them one line says the rest are in the table (``None``: every one; 0: none).
"""

from __future__ import annotations

from typing import Any

from emoctx.io import printable


class ConsoleLines:
    """The per-photo (and per-video) lines of a run, printed beside the progress bar (``lines`` of them).

    Args:
        bar: what prints them (a tqdm bar or :class:`~emoctx.progress.LogProgress`: its ``write``).
        lines: how many to print (``None``: every one; 0: none).
    """

    def __init__(self, bar: Any, lines: int | None) -> None:
        self.bar = bar
        self.limit = lines
        self.shown = 0
        self.videos: dict[str, dict[str, Any]] = {}

    def _print(self, text: str) -> None:
        if self.limit is not None and self.shown >= self.limit:
            if self.shown == self.limit and self.limit > 0:
                self.bar.write(
                    "... further photos and videos are not listed here (--verbose lists every one); "
                    "the table has them all"
                )
                self.shown += 1
            return
        self.bar.write(printable(text))
        self.shown += 1

    def result(self, result: Any) -> None:
        """Show a photo's line now, or count a video frame's persons and tracks until its last frame."""
        if self.limit == 0:
            return
        if result.frame < 0:  # a photo, or a file that could not be read
            self._print(result.describe())
            return
        video = self.videos.setdefault(
            result.source or "", {"frames": 0, "persons": 0, "tracks": set(), "errors": 0}
        )
        video["errors"] += result.error is not None
        if result.error is None:
            video["frames"] += 1
            video["persons"] += len(result.persons)
            video["tracks"].update(p.track_id for p in result.persons if p.track_id is not None)
        if result.source_done:
            v = self.videos.pop(result.source or "")
            text = f"{result.source}: {v['frames']} frame(s), {v['persons']} person row(s)"
            if v["tracks"]:
                text += f", {len(v['tracks'])} track(s)"
            if v["errors"]:
                text += f", {v['errors']} error row(s)"
            self._print(text)
