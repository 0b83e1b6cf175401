"""Small file helpers shared by every writer.

Outputs appear whole or not at all, never over an input, one writer at a time, and any file name can be
written down.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emoctx.errors import EmoctxError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    If the body raises, the temporary file is removed and ``path`` keeps its previous content (or stays absent).
    The file gets the permissions a new file gets from ``open()`` (:func:`default_file_mode`), whatever the
    body's writer gave it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    mode = default_file_mode()
    os.chmod(tmp_path, mode)  # mkstemp creates 0600; give the file the permissions open() would
    try:
        yield tmp_path
        # Again after the body: a writer may have replaced the file with one of its own making (safetensors'
        # save_file creates a new file with mode 0600), and model files are shared with colleagues too.
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def default_file_mode() -> int:
    """The permissions ``open()`` gives a new file: ``0o666`` less the process's umask (``0o644`` usually)."""
    umask = os.umask(0)  # the only way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _hash_file(digest: Any, path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's content (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    _hash_file(digest, path)
    return digest.hexdigest()


def tree_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, or of a folder: the relative path and content of each file, in order.

    A folder's digest covers every file under it, sorted by path, each as its ``/``-separated relative path,
    a NUL byte and its content (model exports such as OpenVINO's are folders).
    """
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        _hash_file(digest, file)
    return digest.hexdigest()


def jsonable(value: Any, text: Callable[[str], str] | None = None) -> Any:
    """A copy of ``value`` made of JSON types only, the one rule every JSON writer of emoctx follows.

    Mappings become dicts with string keys; lists, tuples and numpy arrays become lists; numpy scalars become
    Python numbers and booleans; NaN and infinities become ``None`` (JSON has neither: ``null`` is "undefined");
    paths become strings; strings pass through ``text`` when it is given (the prediction table escapes the
    undecodable bytes of file names, :func:`printable`). Any other object becomes its ``__dict__`` (recorded
    settings objects), or else its ``repr``.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        value = str(value)  # a str subclass (torch's TorchVersion) as a plain string
        return text(value) if text is not None else value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, text) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v, text) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "__dict__"):
        return jsonable(vars(value), text)
    return repr(value)


def read_jsonl(
    path: str | os.PathLike, error: type[Exception] = ValueError, numbered: bool = False
) -> list[Any]:
    """The JSON values of a JSON-lines file (blank lines skipped); a bad line raises ``error`` naming it.

    With ``numbered``, each value comes as ``(line number, value)`` (lines counted from 1).
    """
    rows: list[Any] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    raise error(f"{path}: line {n}: not valid JSON ({e.msg})") from e
                rows.append((n, value) if numbered else value)
    return rows


def printable(text: str) -> str:
    r"""``text`` as it can be written to a UTF-8 file: each file-name byte that is not UTF-8 becomes ``\xNN``.

    On POSIX systems a file name is bytes; Python turns the bytes that are not valid UTF-8 into lone surrogate
    characters (``surrogateescape``), which no UTF-8 file can hold. Here they are written as a backslash, ``x``
    and two hex digits, so ``caf\xe9.jpg`` names the Latin-1 file ``café.jpg``. Text without such bytes is
    returned unchanged.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that does not stand for a byte
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file or folder (links and relative paths resolved)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output_file(
    path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), option: str = "--out"
) -> Path:
    """Refuse an output file path that is a folder or one of the command's inputs (never written over).

    Raises:
        EmoctxError: naming the path and what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise EmoctxError(f"{option} {path} is a folder; give the path of a file to write")
    for item in inputs:
        if item is not None and os.path.exists(item) and same_path(path, item):
            raise EmoctxError(
                f"{option} {path} is one of the inputs ({item}); it is never written over: choose another file"
            )
    return path


def check_output_dir(
    path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike] = (),
    writes: Iterable[str] = (),
    option: str = "--out",
) -> Path:
    """Refuse an output folder that is a file, or in which a file the command writes (``writes``) is an input.

    Raises:
        EmoctxError: naming the path and what to do.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EmoctxError(f"{option} {path} is a file; give a folder for the outputs")
    for name in writes:
        target = path / name
        for item in inputs:
            if item is not None and same_path(target, item):
                raise EmoctxError(
                    f"{option} {path}: writing {name} there would replace the input {item}; choose another folder"
                )
    return path


class OutputLock:
    """An exclusive lock on an output for as long as a command writes it: the file ``<output>.lock``.

    A second command that wants to write the same output gets an :class:`~emoctx.errors.EmoctxError` naming
    the process that holds it, instead of both writing at once and one losing the other's rows. The lock is
    the kernel's (``fcntl.flock``), so it ends with its process however that ends: a killed run leaves no stale
    lock. Written by hand (rather than with the ``filelock`` package) so that the lock file is removed on
    release and says who holds it. Where ``fcntl`` does not exist, the file is created exclusively instead
    (a crashed run then leaves it behind, and the message says to delete it).

    Args:
        output: the file (or folder) to protect.
        command: what holds the lock, for the message (e.g. ``"emoctx predict"``).
    """

    def __init__(self, output: str | os.PathLike, command: str = "emoctx"):
        output = Path(output)
        self.path = output.with_name(output.name + ".lock")
        self.output = output
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        """Take the lock or raise :class:`~emoctx.errors.EmoctxError` if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            fcntl = None
        while self._fd is None:
            if fcntl is None:  # pragma: no cover
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    raise self._busy(extra=f" (if no such run is active, delete {self.path})") from None
            else:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise self._busy() from None
                # The previous holder removes the file when it releases: if it did so between our open and
                # our flock, we hold a lock on a file nobody else will see; start again on the new one.
                try:
                    current = os.stat(self.path)
                except FileNotFoundError:
                    current = None
                if current is None or not os.path.samestat(current, os.fstat(fd)):
                    os.close(fd)
                    continue
            os.ftruncate(fd, 0)
            os.write(
                fd,
                f"{self.command} (process {os.getpid()}) since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
            )
            self._fd = fd
        return self

    def _busy(self, extra: str = "") -> EmoctxError:
        try:
            holder = self.path.read_text(encoding="utf-8", errors="replace").strip() or "another process"
        except OSError:
            holder = "another process"
        return EmoctxError(
            f"{self.output} is being written by another run ({holder}){extra}; wait for it to finish or "
            "choose another output"
        )

    def release(self) -> None:
        """Remove the lock file and release the lock (removed first, so no one locks a file about to vanish)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
