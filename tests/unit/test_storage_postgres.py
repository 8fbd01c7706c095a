"""The store's PostgreSQL server and how ByzerStorage chooses it: ``byzerllm storage start --engine
postgres`` / ``status`` / ``stop`` through Click's runner, the server's user and files, the order in
which ``url=``, ``$BYZERLLM_STORAGE_URL`` and the connection file choose the engine."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
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
