r"""Progress that reads well in a terminal and in a log file: tqdm's bar, or a log line now and then.

In a terminal a tqdm bar redraws itself in place. Written to a file, a pipe or a CI log, the same bar becomes
one ever-growing line of ``\r``-separated redraws. :func:`progress` therefore gives tqdm's bar only when the
bar's stream (standard error) is a terminal; elsewhere it gives a :class:`LogProgress`, which logs one line
(``predict: 450/1800 img (25%), 12 s, persons=1210``) each time another :data:`EVERY_PERCENT` percent of the
work is done or :data:`EVERY_SECONDS` seconds have passed since the last line, whichever comes first, and a
last line when it closes. Both take the calls the code makes on a bar (iteration, ``update``,
``set_postfix``, ``write``, ``close``, ``with``).

Lines go through :mod:`logging` (logger ``emoctx.progress``): the ``emoctx`` command shows them; a program
using the library shows them when it configures logging at INFO level.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

log = logging.getLogger(__name__)

EVERY_PERCENT = 25.0
"""Away from a terminal, a line each time this much more of the work is done (percent)."""
EVERY_SECONDS = 60.0
"""Away from a terminal, a line at least this often (seconds) while work goes on."""
MIN_SECONDS = 5.0
"""Away from a terminal, no two lines closer than this (seconds), the last one excepted: short work gets one."""


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default standard error, where bars are drawn) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _elapsed(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class LogProgress:
    """A progress "bar" for logs: a line every :data:`EVERY_PERCENT` percent or :data:`EVERY_SECONDS` seconds.

    Args:
        iterable: iterate over this, counting one step per item (optional).
        total: the number of steps (default ``len(iterable)`` where it has one; unknown otherwise).
        desc: what is counted, at the start of every line.
        unit: the unit of a step (``img``, ``batch``, ...).
        disable: log nothing.
        every_percent: a line each time this much more of ``total`` is done (``None``: never by percent).
        every_seconds: a line when this many seconds have passed since the last one (``None``: never by time).
        min_seconds: no line sooner than this after the previous one (the last line excepted); default
            :data:`MIN_SECONDS`.
        logger: where the lines go (default ``emoctx.progress``).
        clock: the time source (seconds; for tests).
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        disable: bool = False,
        every_percent: float | None = EVERY_PERCENT,
        every_seconds: float | None = EVERY_SECONDS,
        logger: logging.Logger | None = None,
        clock: Any = time.monotonic,
        min_seconds: float | None = None,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.disable = disable
        self.every_percent = every_percent
        self.every_seconds = every_seconds
        self.min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
        self.logger = logger or log
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self._clock = clock
        self._start = clock()
        self._last_time = self._start
        self._last_n = 0
        self._closed = False

    # -- the calls code makes on a tqdm bar -------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LogProgress: nothing to iterate over (give an iterable)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Count ``n`` more steps; log a line when another share of the work is done or time has passed."""
        self.n += n
        if self.disable or self._closed:
            return
        now = self._clock()
        by_time = self.every_seconds is not None and now - self._last_time >= self.every_seconds
        by_share = False
        if self.every_percent is not None and self.total:
            step = self.total * self.every_percent / 100.0
            by_share = int(self.n // step) > int(self._last_n // step) and self.n < self.total
        if (by_time or by_share) and now - self._last_time >= self.min_seconds:
            self._emit(now)

    def set_postfix(
        self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any
    ) -> None:
        """Figures shown at the end of the next line (``persons=1210``)."""
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Change what the lines start with."""
        self.desc = desc or ""

    def reset(self, total: float | None = None) -> None:
        """Start counting again (e.g. the next epoch), with a new ``total``."""
        self.n = self._last_n = 0
        self.total = total
        self._start = self._last_time = self._clock()
        self._closed = False

    def write(self, text: str, file: IO[str] | None = None, end: str = "\n", **kwargs: Any) -> None:
        """Print ``text`` as tqdm's ``write`` does (to standard output unless ``file`` is given)."""
        print(text, file=sys.stdout if file is None else file, end=end)

    def refresh(self) -> None:
        """Nothing to redraw in a log."""

    def close(self) -> None:
        """Log the last line (once), unless nothing was done."""
        if self._closed:
            return
        self._closed = True
        if not self.disable and self.n > self._last_n:
            self._emit(self._clock())

    # -- the line ------------------------------------------------------------------------------------------
    def line(self, now: float | None = None) -> str:
        """The line for the work done so far."""
        now = self._clock() if now is None else now
        n = int(self.n) if float(self.n).is_integer() else self.n
        done = f"{n}/{int(self.total)} {self.unit}" if self.total else f"{n} {self.unit}"
        if self.total:
            done += f" ({100.0 * self.n / self.total:.0f}%)"
        parts = [done, _elapsed(now - self._start)]
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return (f"{self.desc}: " if self.desc else "") + ", ".join(parts)

    def _emit(self, now: float) -> None:
        self.logger.info("%s", self.line(now))
        self._last_time = now
        self._last_n = self.n


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    **tqdm_kwargs: Any,
) -> Any:
    """A progress bar for ``iterable`` (or for ``update`` calls): tqdm's in a terminal, else :class:`LogProgress`.

    Args:
        iterable: what to iterate over (optional: without it, call ``update``).
        total: the number of steps.
        desc: what is counted.
        unit: the unit of a step.
        disable: show nothing (the object still counts and iterates).
        tqdm_kwargs: further tqdm options (``leave``, ``dynamic_ncols``, ...), used in a terminal only.
    """
    if is_terminal() or disable:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, **tqdm_kwargs)
    return LogProgress(iterable, total=total, desc=desc, unit=unit)
