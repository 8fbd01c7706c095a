"""Kill a process at an exact point inside a write transaction of the store (either engine).

Used by the crash tests' subprocesses: ``die_inside(engine, 'INSERT INTO "t$fts"', nth=3, after=50)``
makes the 3rd ``executemany`` whose SQL starts with that text feed 50 rows to the database and
then SIGKILL the process, before the statement ends and before the transaction's COMMIT
(``after=None``: the statement runs to its end, then the process dies, still before COMMIT).
On PostgreSQL a single ``execute`` of a matching statement can be the point too (it runs, then
the process dies). The engine is not changed: its connection is wrapped.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from typing import Any

from byzerllm.apps.byzer_storage.engine import StorageEngine


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no finalisers, no rollback: a crash


class DyingConnection:
    """A sqlite3 connection whose ``nth`` ``executemany`` of ``statement`` ends the process."""

    def __init__(self, conn: Any, statement: str, nth: int, after: int | None) -> None:
        self._conn, self.statement, self.nth, self.after = conn, statement, nth, after
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def executemany(self, sql: str, params: Iterable[Any]) -> Any:
        if not sql.startswith(self.statement):
            return self._conn.executemany(sql, params)
        self.calls += 1
        if self.calls < self.nth:
            return self._conn.executemany(sql, params)
        if not self._conn.in_transaction:
            raise AssertionError(f"{sql[:40]!r} runs outside a transaction")

        def feed() -> Iterable[Any]:
            for k, row in enumerate(params):
                if k == self.after:
                    die()
                yield row

        self._conn.executemany(sql, feed())
        die()


class DyingPgConnection:
    """A psycopg connection whose ``nth`` statement starting with ``statement`` (an ``execute``,
    or an ``executemany`` of a cursor) ends the process."""

    def __init__(self, conn: Any, statement: str, nth: int, after: int | None) -> None:
        self._conn, self.statement, self.nth, self.after = conn, statement, nth, after
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def hit(self, sql: str) -> bool:
        if not sql.startswith(self.statement):
            return False
        self.calls += 1
        if self.calls < self.nth:
            return False
        from psycopg.pq import TransactionStatus

        if self._conn.info.transaction_status != TransactionStatus.INTRANS:
            raise AssertionError(f"{sql[:40]!r} runs outside a transaction")
        return True

    def execute(self, sql: str, params: Any = None) -> Any:
        if not self.hit(sql):
            return self._conn.execute(sql, params)
        self._conn.execute(sql, params)
        die()

    def cursor(self) -> DyingPgCursor:
        return DyingPgCursor(self, self._conn.cursor())


class DyingPgCursor:
    def __init__(self, owner: DyingPgConnection, cursor: Any) -> None:
        self.owner, self._cursor = owner, cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __enter__(self) -> DyingPgCursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cursor.close()

    def executemany(self, sql: str, params: Iterable[Any]) -> Any:
        if not self.owner.hit(sql):
            return self._cursor.executemany(sql, params)
        after = self.owner.after

        def feed() -> Iterable[Any]:
            for k, row in enumerate(params):
                if k == after:
                    die()
                yield row

        self._cursor.executemany(sql, feed())
        die()


def die_inside(engine: StorageEngine, statement: str, nth: int, after: int | None = None) -> None:
    """Wrap ``engine``'s connection so that the process dies inside the ``nth`` ``statement``."""
    from byzerllm.apps.byzer_storage.sqlite_engine import SqliteEngine

    wrapper = DyingConnection if isinstance(engine, SqliteEngine) else DyingPgConnection
    engine._conn = wrapper(engine._conn, statement, nth, after)
