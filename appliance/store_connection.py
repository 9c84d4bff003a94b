"""The job store's connection: opening (with the schema migration an older store needs), one connection per
thread, the write transaction, and the store's faults (busy, full, unreachable, damaged) raised as
`StoreUnavailable` with what an operator can do. The dialect specifics live in appliance.sql; the job SQL in
appliance/jobs.py and the webhook outbox's in appliance/deliveries.py run on it."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

from .job_record import ADDED_COLUMNS, StoreUnavailable
from .sql import dialect_for, redact


class StoreConnection:
    """Thread-safe: one connection per thread. `target`: a SQLite file path / `sqlite:///path`, or a
    `postgresql://user:pw@host/db` URL (the same tables, shared by every process of a cluster)."""

    def __init__(self, target: Path | str, *, busy_timeout: float = 10.0):
        self.dialect = dialect_for(target, busy_timeout)
        self.path = getattr(self.dialect, "path", None)  # the SQLite file; None on PostgreSQL
        self.url = redact(str(target))
        self._local = threading.local()
        try:
            self._open()
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"{exc}. {self._fix(exc)}") from exc.__cause__

    def _fix(self, exc: StoreUnavailable) -> str:
        """What an operator can do about a store that cannot be opened."""
        text = str(exc).lower()
        if self.path is None:
            return "Check that cluster.database_url points at a running PostgreSQL server this user may write to"
        if "locked" in text or "busy" in text:
            return "Another process holds it: stop that process, or wait"
        if "write-ahead log" in text:
            return (f"Put {self.path.name}-wal back, or restore a backup; to go on with what {self.path.name} holds, "
                    f"delete {self.path.name}-shm")
        if "not a database" in text or "malformed" in text or "damaged" in text or "corrupt" in text:
            return (f"Stop the appliance, then restore a backup over it (see `render-appliance backup`), or move "
                    f"{self.path} and its -wal/-shm files away to start with an empty job store")
        return (f"Check that {self.path} and its folder are readable and writable by this user and that the disk "
                f"has room")

    def _open(self) -> None:
        if (risk := self.dialect.before_open()) is not None:
            raise StoreUnavailable(f"job store {self.url}: {risk}")
        damage = self._guard(lambda: self.dialect.check(self._db.raw))
        if damage:
            raise StoreUnavailable(f"job store {self.url} is damaged ({damage})")
        # serialized: processes starting together on a fresh PostgreSQL store would race on CREATE / ALTER TABLE
        with self._tx(serialize=True) as db:
            for statement in self.dialect.schema():
                db.execute(statement)
            if "info" not in {d[0] for d in db.execute("SELECT * FROM render_workers LIMIT 0").description}:
                db.execute("ALTER TABLE render_workers ADD COLUMN info TEXT")  # a store made before the column
            have = {d[0] for d in db.execute("SELECT * FROM render_jobs LIMIT 0").description}
            for column in ADDED_COLUMNS:
                if column not in have:
                    db.execute(f"ALTER TABLE render_jobs ADD COLUMN {column} TEXT")
            if "webhook_pending" not in have:  # 1 until the final webhook delivery is recorded (deliveries.py)
                db.execute("ALTER TABLE render_jobs ADD COLUMN webhook_pending INTEGER NOT NULL DEFAULT 0")
            for statement in self.dialect.schema_after_columns():
                db.execute(statement)

    # --- connection handling (backend specifics live in appliance.sql) ---
    @property
    def _db(self) -> "_Conn":
        conn = getattr(self._local, "conn", None)
        if conn is None or self.dialect.broken(conn.raw):
            raw = self._guard(self.dialect.connect)
            conn = self._local.conn = _Conn(raw, self.dialect, self.url)
        return conn

    @contextmanager
    def _faults(self) -> Iterator[None]:
        """The store's faults (busy, full, unreachable, damaged) raised as StoreUnavailable; others as they are."""
        try:
            yield
        except StoreUnavailable:
            raise
        except Exception as exc:
            if self.dialect.unavailable(exc):
                raise StoreUnavailable(f"job store {self.url}: {exc}") from exc
            raise

    def _guard(self, call):
        with self._faults():
            return call()

    @contextmanager
    def _tx(self, serialize: bool = False) -> Iterator["_Conn"]:
        db = self._db
        with self._faults(), self.dialect.transaction(db.raw, serialize):
            yield db

    def _one(self, sql: str, params: tuple = ()) -> tuple | None:
        return self._db.execute(sql, params).fetchone()

    def _write(self, sql: str, params: tuple = ()) -> int:
        return self._db.execute(sql, params).rowcount

    def backup(self, target: Path) -> int:
        """A consistent copy of the store at `target` (SQLite); returns the number of jobs in it. Raises
        NotImplementedError for PostgreSQL (pg_dump), StoreUnavailable."""
        self._guard(lambda: self.dialect.backup(self._db.raw, target))
        # read back read-only: opening the copy as a JobStore would migrate it and switch it to WAL again
        copy = sqlite3.connect(f"file:{Path(target).resolve()}?mode=ro", uri=True)
        try:
            return int(copy.execute("SELECT COUNT(*) FROM render_jobs").fetchone()[0])
        finally:
            copy.close()

    def checkpoint(self) -> None:
        """At a clean stop: everything committed goes into the database file itself (SQLite: the WAL is moved in
        and truncated), so the file alone holds every job. Best effort: a busy store is left as it is."""
        try:
            self._guard(lambda: self.dialect.checkpoint(self._db.raw))
        except StoreUnavailable:
            pass

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.raw.close()
            self._local.conn = None

    def ping(self) -> None:
        self._one("SELECT COUNT(*) FROM render_leases")


class _Conn:
    """A connection that speaks the portable SQL of this module (qmark parameters) in its dialect."""

    __slots__ = ("raw", "_dialect", "_url")

    def __init__(self, raw: Any, dialect: Any, url: str = "?"):
        self.raw, self._dialect, self._url = raw, dialect, url

    def execute(self, sql: str, params: tuple = ()) -> Any:
        # Enum members go in as their values: no driver's own enum mapping (psycopg dumps names) can apply.
        params = tuple(p.value if isinstance(p, Enum) else p for p in params)
        try:
            return self.raw.execute(self._dialect.sql(sql), params)
        except Exception as exc:
            if self._dialect.unavailable(exc):
                raise StoreUnavailable(f"job store {self._url}: {exc}") from exc
            raise
