"""A real Label Studio server: its own virtual environment, started offline on 127.0.0.1, stopped cleanly.

Label Studio pins heavy exact versions of its dependencies (Django, pyarrow, numpy...), so it never goes
into emoctx's environment: :func:`ensure_environment` makes a separate virtual environment on first use,
from a pinned version (:data:`LABEL_STUDIO_VERSION`), under the user's cache folder
(``~/.cache/emoctx/label-studio-<version>`` on Linux; ``$EMOCTX_LABEL_STUDIO_HOME`` or ``--ls-env`` to put it
elsewhere). It takes about 1 GB and, from the package registry, one to two minutes.

:class:`LabelStudioServer` runs ``label-studio start`` bound to 127.0.0.1 (``--internal-host``; ``--host``
would only set the public address), with version checks, analytics and error reporting off and a private
data folder, and serves the photo folder as local files. The version is read from the package metadata:
``label-studio --version`` is never called, because it starts a server on all interfaces. Accounts are made
before the start with ``label-studio init`` (email, password and a fixed API token each); the first one
owns the organisation, created with legacy token authentication on so that the REST API takes
``Authorization: Token <token>``. The server runs in its own process group, which :meth:`stop` ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from emoctx.errors import EmoctxError
from emoctx.io import atomic_write_text

log = logging.getLogger(__name__)

LABEL_STUDIO_VERSION = "1.23.2"
"""The Label Studio release the labelling config, the tasks and the export were checked against."""

ENV_HOME_VARIABLE = "EMOCTX_LABEL_STUDIO_HOME"
"""Environment variable naming the folder of Label Studio's virtual environment."""

_MARKER = ".emoctx-installed"
_STATE = "emoctx-accounts.json"
HOST = "127.0.0.1"

# What the server must not do here: phone home, report errors, open a browser.
_OFFLINE_ENV = {
    "LATEST_VERSION_CHECK": "false",
    "COLLECT_ANALYTICS": "false",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
}


def default_environment_dir(version: str = LABEL_STUDIO_VERSION) -> Path:
    """Where Label Studio's virtual environment lives: ``$EMOCTX_LABEL_STUDIO_HOME``, else the user cache."""
    given = os.environ.get(ENV_HOME_VARIABLE)
    if given:
        return Path(given).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("emoctx")) / f"label-studio-{version}"


def _bin(env_dir: Path, name: str) -> Path:
    return env_dir / ("Scripts" if os.name == "nt" else "bin") / name


def installed_version(env_dir: str | os.PathLike) -> str | None:
    """The Label Studio version installed in ``env_dir`` (from its package metadata), or None."""
    python = _bin(Path(env_dir), "python")
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def ensure_environment(
    env_dir: str | os.PathLike | None = None,
    version: str = LABEL_STUDIO_VERSION,
    python: str | None = None,
) -> Path:
    """Make (once) the virtual environment holding Label Studio ``version``; returns its ``label-studio``.

    The environment counts as made when its marker file names the version and the package metadata
    agrees; otherwise it is (re)made from scratch. A lock file next to it keeps two processes from
    installing at once. pip's output goes to ``install.log`` inside it.

    Args:
        env_dir: the environment's folder (default :func:`default_environment_dir`).
        version: the Label Studio release to install.
        python: the interpreter to base the environment on (default: the one running emoctx).

    Raises:
        EmoctxError: the installation failed (the message ends with pip's last lines).
    """
    env = Path(env_dir) if env_dir is not None else default_environment_dir(version)
    env.parent.mkdir(parents=True, exist_ok=True)
    executable = _bin(env, "label-studio")
    with open(env.parent / f".{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = env / _MARKER
        if marker.is_file() and marker.read_text().strip() == version and executable.exists():
            return executable
        if env.exists():
            if not (env / "pyvenv.cfg").is_file():
                raise EmoctxError(
                    f"{env}: exists and is not a virtual environment; remove it or pass another folder "
                    f"(--ls-env DIR or ${ENV_HOME_VARIABLE})"
                )
            log.info("%s: incomplete or other version; making it again", env)
            shutil.rmtree(env)
        print(f"Installing Label Studio {version} into its own environment {env} (once; 1-2 minutes) ...")
        started = time.monotonic()
        base = python or getattr(sys, "_base_executable", None) or sys.executable
        _run([base, "-m", "venv", str(env)], env / "install.log" if env.exists() else None)
        pip_log = env / "install.log"
        _run(
            [
                str(_bin(env, "python")),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                f"label-studio=={version}",
            ],
            pip_log,
        )
        found = installed_version(env)
        if found != version:
            raise EmoctxError(f"{env}: installed Label Studio reports version {found!r}, expected {version}")
        marker.write_text(version + "\n")
        print(f"Label Studio {version} installed in {time.monotonic() - started:.0f} s")
    return executable


def _run(cmd: Sequence[str], log_path: Path | None) -> None:
    out = open(log_path, "a") if log_path is not None else subprocess.PIPE  # noqa: SIM115
    try:
        done = subprocess.run(list(cmd), stdout=out, stderr=subprocess.STDOUT, text=True, env=_clean_env())
    finally:
        if log_path is not None:
            out.close()  # type: ignore[union-attr]
    if done.returncode != 0:
        text = log_path.read_text(errors="replace") if log_path is not None else (done.stdout or "")
        tail = "\n".join(line for line in text.splitlines() if not line.startswith("WARNING: Location"))[
            -2000:
        ]
        raise EmoctxError(f"command failed ({done.returncode}): {' '.join(cmd)}\n{tail}")


def _clean_env() -> dict[str, str]:
    """This process's environment without what would make the other environment import our packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


# ---------------------------------------------------------------------------------------------- accounts
@dataclass(frozen=True)
class Account:
    """A Label Studio login: email, password, and API token (``Authorization: Token <token>``)."""

    email: str
    password: str
    token: str


def make_accounts(n: int, domain: str = "localhost") -> list[Account]:
    """``n`` accounts ``annotator1@<domain>`` ... with random passwords and tokens."""
    return [
        Account(f"annotator{i}@{domain}", secrets.token_urlsafe(12), secrets.token_hex(20))
        for i in range(1, n + 1)
    ]


def read_accounts(data_dir: str | os.PathLike) -> list[Account]:
    """The accounts :meth:`LabelStudioServer.ensure_accounts` made in a server's data folder (none: [])."""
    state = Path(data_dir) / _STATE
    if not state.is_file():
        return []
    try:
        return [Account(**a) for a in json.loads(state.read_text())["accounts"]]
    except (ValueError, KeyError, TypeError) as e:
        raise EmoctxError(f"{state}: not an accounts file written by emoctx ({e})") from e


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on now (the system picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------------------------- server
class LabelStudioServer:
    """One Label Studio process on 127.0.0.1 with a private data folder, serving a photo folder.

    Args:
        executable: the ``label-studio`` script of its environment (:func:`ensure_environment`).
        data_dir: the server's own folder (database, uploads, ``emoctx-accounts.json``, ``server.log``).
        photos: the photo folder. Label Studio serves files below its local-files document root, which
            must be a parent of the folder it shares; the document root is the photo folder's parent and
            the images' addresses are ``/data/local-files/?d=<folder name>/<image>``.
        port: the port (default: a free one).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        executable: str | os.PathLike,
        data_dir: str | os.PathLike,
        photos: str | os.PathLike,
        port: int | None = None,
    ):
        self.executable = Path(executable)
        self.data_dir = Path(data_dir).resolve()
        self.photos = Path(photos).resolve()
        if not self.photos.is_dir():
            raise EmoctxError(f"{photos}: no such photo folder")
        if self.photos.parent == self.photos:
            raise EmoctxError(f"{photos}: the photo folder cannot be the file system root; use a sub-folder")
        self.port = int(port) if port else free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir / "server.log"

    @property
    def folder_name(self) -> str:
        """The photo folder's name: the first part of every image address."""
        return self.photos.name

    def environment(self) -> dict[str, str]:
        """The server's environment variables (offline, private data folder, local files on)."""
        env = _clean_env()
        for key in [k for k in env if k.startswith("LABEL_STUDIO_")]:
            del env[key]  # nothing from the caller's environment changes this server
        env.update(_OFFLINE_ENV)
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
                "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
                "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.photos.parent),
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            }
        )
        return env

    # -- accounts ------------------------------------------------------------------------------------

    def accounts(self) -> list[Account]:
        """The accounts made in this data folder so far (read from ``emoctx-accounts.json``)."""
        return read_accounts(self.data_dir)

    def ensure_accounts(self, n: int) -> list[Account]:
        """Make sure at least ``n`` accounts exist (made with ``label-studio init`` before the start).

        The accounts and their passwords are kept in ``<data_dir>/emoctx-accounts.json`` (readable by the
        owner only), so that a restart on the same data folder keeps the same logins.
        """
        if self.process is not None:
            raise EmoctxError("accounts are made before the server starts")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        have = self.accounts()
        new = make_accounts(n)[len(have) :]
        for i, account in enumerate(new):
            first = not have and i == 0
            cmd = [
                str(self.executable),
                "init",
                "--username",
                account.email,
                "--password",
                account.password,
                "--user-token",
                account.token,
                "--quiet",
            ]
            if first:
                cmd.append("--enable-legacy-api-token")  # the organisation is made with the first account
            print(f"Making Label Studio account {account.email} ...")
            done = subprocess.run(
                cmd, capture_output=True, text=True, env=self.environment(), cwd=self.data_dir
            )
            if done.returncode != 0 or "already exists" in done.stdout:
                raise EmoctxError(
                    f"label-studio init could not make {account.email} in {self.data_dir}:\n"
                    + (done.stdout + done.stderr)[-2000:]
                )
            have.append(account)
            self._save_accounts(have)
        return have[:n] if n else have

    def _save_accounts(self, accounts: list[Account]) -> None:
        state = self.data_dir / _STATE
        atomic_write_text(state, json.dumps({"accounts": [asdict(a) for a in accounts]}, indent=2))
        os.chmod(state, 0o600)

    # -- process -------------------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> None:
        """Start the server and wait until it answers (the first start migrates its database: ~20-30 s).

        Raises:
            EmoctxError: the process ended, or did not answer within ``timeout`` seconds (the message ends
                with the server log).
        """
        if self.process is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(self.executable),
            "start",
            "--internal-host",
            HOST,
            "--port",
            str(self.port),
            "--no-browser",
        ]
        log.info("starting %s", " ".join(cmd))
        out = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's lifetime
        try:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.data_dir,
                start_new_session=True,  # its own process group: stop() ends it and its children
            )
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise EmoctxError(f"Label Studio exited ({code}) while starting:\n{self.log_tail()}")
            if "is in use" in self.log_tail():
                self.stop()
                raise EmoctxError(f"port {self.port} on {HOST} is in use; pass another --port")
            if self.healthy():
                log.info("Label Studio answers at %s", self.url)
                return
            time.sleep(0.5)
        self.stop()
        raise EmoctxError(
            f"Label Studio did not answer at {self.url} within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def healthy(self) -> bool:
        """Whether the server answers its health check."""
        import requests

        try:
            return requests.get(f"{self.url}/health/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server log."""
        if not self.log_path.is_file():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(max(0, self.log_path.stat().st_size - chars))
            return f.read().decode(errors="replace")

    def wait(self) -> int:
        """Block until the server process ends; returns its exit status."""
        if self.process is None:
            return 0
        return self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server: SIGTERM to its process group, then SIGKILL if it has not ended in ``timeout`` s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.info("Label Studio stopped")

    def __enter__(self) -> LabelStudioServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_server(
    photos: str | os.PathLike,
    data_dir: str | os.PathLike,
    accounts: int = 1,
    port: int | None = None,
    env_dir: str | os.PathLike | None = None,
) -> Iterator[LabelStudioServer]:
    """Install if needed, make the accounts, start, yield the server, and stop it whatever happens."""
    server = LabelStudioServer(ensure_environment(env_dir), data_dir, photos, port)
    server.ensure_accounts(accounts)
    server.start()
    try:
        yield server
    finally:
        server.stop()
