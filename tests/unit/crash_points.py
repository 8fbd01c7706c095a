"""Kill a process at an exact point inside a write transaction of the embedded store.

Used by the crash tests' subprocesses: ``die_inside(engine, 'INSERT INTO "t$fts"', nth=3, after=50)``
makes the 3rd ``executemany`` whose SQL starts with that text feed 50 rows to SQLite and then
SIGKILL the process, before the statement ends and before the transaction's COMMIT
(``after=None``: the statement runs to its end, then the process dies, still before COMMIT).
The engine is not changed: its connection is wrapped.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from typing import Any

from byzerllm.apps.byzer_storage.sqlite_engine import SqliteEngine


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


def die_inside(engine: SqliteEngine, statement: str, nth: int, after: int | None = None) -> None:
    """Wrap ``engine``'s connection so that the process dies inside the ``nth`` ``statement``."""
    engine._conn = DyingConnection(engine._conn, statement, nth, after)
