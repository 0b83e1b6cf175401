"""Where exported engine graphs are kept: beside the model file, keyed by its content, built once.

Layout (``<digest12>``: the first 12 hex digits of the model file's SHA-256)::

    model.safetensors.engines/          the cache folder of this model file (CACHEDIR.TAG marks it as emoctx's)
        <digest12>/                     one folder per content of the model file
            onnx-fp32-op18-<v>/         one entry per kind of graph: precision, opset, library versions (<v>),
                manifest.json           and for int8 the calibration set (-cal<c>)
                body.onnx scene.onnx head.onnx

An entry is built in a temporary folder beside it and renamed into place when complete (a reader never sees a
half-written entry), by one process at a time (a lock file per entry: a second process waits, then loads what
the first one built). When the model file changes, its digest changes: the entries of the old content are
never read again, and are removed when an entry of the new content is written.

The cache folder is only ever written where emoctx made it (it carries a ``CACHEDIR.TAG`` that emoctx wrote): a
folder of that name that emoctx did not make, or a model folder that cannot be written (a read-only model
store), makes the cache fall back to the user's cache folder (``platformdirs.user_cache_dir("emoctx")/engines``),
then to the system's temporary folder, with a warning naming where the graphs went. Entries already beside a
read-only model (prepared by whoever could write there) are read from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoctx.errors import EmoctxError
from emoctx.io import file_sha256

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CACHE_FORMAT = "emoctx-engine-cache"
CACHE_FORMAT_VERSION = 1
LOCK_TIMEOUT_S = 1800.0
"""How long a process waits for another one that builds the same entry (an int8 ResNet build takes minutes on
two cores) before giving up with an error naming the lock file."""

_TAG = "CACHEDIR.TAG"
_TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This folder holds engine graphs exported by emoctx from the model file beside it;\n"
    "# they are rebuilt when missing. See https://bford.info/cachedir/\n"
)
_DIGEST_DIR = re.compile(r"^[0-9a-f]{12}$")
_warned: set[str] = set()


def short_hash(value: Any, n: int = 8) -> str:
    """The first ``n`` hex digits of the SHA-256 of ``value`` as canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:n]


def _warn_once(message: str, *args: Any) -> None:
    text = message % args
    if text not in _warned:
        _warned.add(text)
        log.warning("%s", text)


def _probe(folder: Path) -> None:
    """Create ``folder`` (and its parents) and a file in it, or raise :class:`OSError`."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe."):
        pass


@dataclass
class Entry:
    """A complete cache entry: a folder of graphs and its manifest."""

    path: Path
    manifest: dict[str, Any]
    built: bool  # True: built by this call; False: found in the cache
    seconds: float  # building (export, quantisation) or loading the manifest


class EngineCache:
    """The engine cache of one model file (see the module docstring).

    Args:
        model: the model file.
        cache_dir: a folder to keep the entries in instead of beside the model (``<cache_dir>/<digest12>/``).
        digest: the model file's SHA-256 when the caller has it already (else it is computed here).
    """

    def __init__(
        self, model: str | os.PathLike, cache_dir: str | os.PathLike | None = None, digest: str | None = None
    ):
        self.model = Path(model)
        if not self.model.is_file():
            raise EmoctxError(f"{self.model}: no such model file")
        self.digest = digest or file_sha256(self.model)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    # -------------------------------------------------------------------------------------- locations
    def beside_model(self) -> Path:
        """The cache folder beside the model file (``<model file name>.engines``)."""
        return self.model.with_name(self.model.name + ".engines")

    def candidates(self) -> list[Path]:
        """The folders an entry of this model may be in, in the order they are looked at and written to."""
        if self.cache_dir is not None:
            return [self.cache_dir / self.digest[:12]]
        from platformdirs import user_cache_dir

        uid = os.getuid() if hasattr(os, "getuid") else "user"
        return [
            self.beside_model() / self.digest[:12],
            Path(user_cache_dir("emoctx")) / "engines" / self.digest[:12],
            Path(tempfile.gettempdir()) / f"emoctx-engines-{uid}" / self.digest[:12],
        ]

    def _writable(self, folder: Path) -> bool:
        """Make ``folder`` (a ``<digest12>`` folder) ready for writing, if it can be emoctx's to write."""
        top = folder.parent
        try:
            if top.exists() and not top.is_dir():
                _warn_once(
                    "%s is a file, not an emoctx engine cache: the engine graphs are kept elsewhere", top
                )
                return False
            if top.is_dir() and not (top / _TAG).is_file() and any(top.iterdir()):
                _warn_once(
                    "%s was not made by emoctx (no %s in it): nothing is written there; the engine graphs are "
                    "kept elsewhere",
                    top,
                    _TAG,
                )
                return False
            _probe(folder)
            if not (top / _TAG).is_file():
                from emoctx.io import atomic_write_text

                atomic_write_text(top / _TAG, _TAG_TEXT)
            return True
        except OSError as e:
            log.debug("cannot write the engine cache in %s (%s)", folder, e)
            return False

    def find(self, key: str, valid: Callable[[dict[str, Any]], bool]) -> Entry | None:
        """An existing, complete entry ``key`` whose manifest ``valid`` accepts, wherever it is."""
        for folder in self.candidates():
            entry = self._read(folder / key, valid)
            if entry is not None:
                return entry
        return None

    def _read(self, path: Path, valid: Callable[[dict[str, Any]], bool]) -> Entry | None:
        start = time.perf_counter()
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable engine cache entry (%s); it is rebuilt", path, e)
            return None
        ok = (
            isinstance(manifest, dict)
            and manifest.get("format") == CACHE_FORMAT
            and manifest.get("format_version") == CACHE_FORMAT_VERSION
            and manifest.get("model", {}).get("sha256") == self.digest
            and all(
                (path / name).is_file() and (path / name).stat().st_size == size
                for name, size in manifest.get("files", {}).items()
            )
            and valid(manifest)
        )
        if not ok:
            log.warning(
                "%s: engine cache entry does not match this model or these libraries; it is rebuilt", path
            )
            return None
        return Entry(path, manifest, built=False, seconds=time.perf_counter() - start)

    # ------------------------------------------------------------------------------------------ build
    def get_or_build(
        self,
        key: str,
        manifest: dict[str, Any],
        build: Callable[[Path], dict[str, Any]],
        valid: Callable[[dict[str, Any]], bool] = lambda m: True,
    ) -> Entry:
        """The entry ``key``: found in the cache, or built by ``build`` (once, under a lock) and stored.

        Args:
            key: the entry's folder name (encodes everything its graphs depend on besides the model).
            manifest: what to record in the entry's manifest besides what the cache adds (the model's
                identity, the files and their sizes, the build time).
            build: writes the graphs into the folder it is given and returns more manifest fields.
            valid: whether an existing entry's manifest fits (beyond the model digest and the files).

        Raises:
            EmoctxError: no folder can be written, or another process holds the entry's lock too long.
        """
        found = self.find(key, valid)
        if found is not None:
            log.info("engine graphs from the cache: %s", found.path)
            return found
        folder = next((f for f in self.candidates() if self._writable(f)), None)
        if folder is None:
            raise EmoctxError(
                f"{self.model}: nowhere to write the engine graphs (tried {', '.join(map(str, self.candidates()))}); "
                "make one of these folders writable"
            )
        if folder.parent != self.beside_model() and self.cache_dir is None:
            _warn_once(
                "%s: the model's folder cannot hold its engine cache; the engine graphs are kept in %s",
                self.model,
                folder,
            )
        with self._lock(folder / f"{key}.lock"):
            found = self._read(folder / key, valid)  # built by another process while this one waited
            if found is not None:
                return found
            start = time.perf_counter()
            tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{key}."))
            try:
                extra = build(tmp)
                files = {
                    p.relative_to(tmp).as_posix(): p.stat().st_size
                    for p in sorted(tmp.rglob("*"))
                    if p.is_file()
                }
                seconds = time.perf_counter() - start
                full = {
                    "format": CACHE_FORMAT,
                    "format_version": CACHE_FORMAT_VERSION,
                    "model": {"name": self.model.name, "sha256": self.digest},
                    **manifest,
                    **extra,
                    "files": files,
                    "build_seconds": round(seconds, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                (tmp / MANIFEST).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
                target = folder / key
                if target.exists():  # an entry emoctx wrote that no longer fits: replaced
                    stale = Path(tempfile.mkdtemp(dir=folder, prefix=f".{key}.stale."))
                    os.replace(target, stale / key)
                    shutil.rmtree(stale, ignore_errors=True)
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        self._prune_other_contents(folder)
        log.info("engine graphs built in %.1f s and cached in %s", seconds, target)
        return Entry(target, full, built=True, seconds=seconds)

    @contextlib.contextmanager
    def _lock(self, path: Path) -> Iterator[None]:
        """One builder per entry across processes (a kernel lock: a killed builder leaves no stale lock)."""
        from filelock import FileLock, Timeout

        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("another process is building %s; waiting for it", path.with_suffix(""))
            try:
                lock.acquire(timeout=LOCK_TIMEOUT_S)
            except Timeout:
                raise EmoctxError(
                    f"{path}: another process has been building these engine graphs for over "
                    f"{LOCK_TIMEOUT_S:.0f} s; wait for it, or delete {path.parent} if no such process runs"
                ) from None
        try:
            yield
        finally:
            lock.release()

    def _prune_other_contents(self, folder: Path) -> None:
        """Remove the entries of earlier contents of the model file.

        Beside the model only: elsewhere the folders of many model files live side by side.
        """
        top = folder.parent
        if top != self.beside_model():
            return
        for other in top.iterdir():
            if other.is_dir() and _DIGEST_DIR.match(other.name) and other.name != folder.name:
                log.info("removing engine graphs of an earlier content of %s: %s", self.model, other)
                shutil.rmtree(other, ignore_errors=True)
