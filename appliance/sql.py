"""The job store's dialect seam: SQLite (embedded, the default) or PostgreSQL (cluster mode), chosen by URL.

jobs.py writes every statement once, in portable SQL with qmark (`?`) parameters. A dialect only knows how to
connect, how to run a write transaction, how a parameter is spelled, which schema types differ, and which
exception means "unique constraint violated". No ORM.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS render_jobs (
        job_id TEXT PRIMARY KEY,
        project_id TEXT,
        user_id TEXT,
        image_url TEXT NOT NULL,
        texture_url TEXT NOT NULL,
        mask_url TEXT,
        options TEXT NOT NULL,
        status TEXT NOT NULL,
        stage TEXT,
        progress REAL NOT NULL DEFAULT 0,
        result_url TEXT,
        error_code TEXT,
        error_message TEXT,
        timings TEXT,
        backends TEXT,
        warnings TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT UNIQUE,
        request_hash TEXT,
        lease_owner TEXT,
        lease_expires_at REAL,
        heartbeat_at REAL,
        created_at REAL NOT NULL,
        queued_at REAL NOT NULL,
        started_at REAL,
        completed_at REAL,
        scale TEXT,
        surfaces TEXT,
        painted TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS render_jobs_status_queued ON render_jobs (status, queued_at)",
    "CREATE INDEX IF NOT EXISTS render_jobs_completed ON render_jobs (completed_at)",
    # GET /render/jobs (newest first, keyset paging): one index per filter the listing offers.
    "CREATE INDEX IF NOT EXISTS render_jobs_created ON render_jobs (created_at, job_id)",
    "CREATE INDEX IF NOT EXISTS render_jobs_project_created ON render_jobs (project_id, created_at, job_id)",
    "CREATE INDEX IF NOT EXISTS render_jobs_user_created ON render_jobs (user_id, created_at, job_id)",
    "CREATE INDEX IF NOT EXISTS render_jobs_status_created ON render_jobs (status, created_at, job_id)",
    # Webhook deliveries (appliance/deliveries.py): the outbox, one row per event of a job, written from the job's
    # durable state and marked done there, so that a crash between the two loses and duplicates nothing.
    """CREATE TABLE IF NOT EXISTS render_webhook_deliveries (
        delivery_id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        event TEXT NOT NULL,
        dedupe_key TEXT NOT NULL UNIQUE,
        url TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        lease_owner TEXT,
        lease_expires_at REAL,
        last_status INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS render_webhook_due ON render_webhook_deliveries (state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS render_webhook_job ON render_webhook_deliveries (job_id, created_at)",
    # Named leases: one holder at a time across processes (e.g. the housekeeping task).
    """CREATE TABLE IF NOT EXISTS render_leases (
        name TEXT PRIMARY KEY,
        owner TEXT,
        expires_at REAL NOT NULL
    )""",
    # Consumers announce themselves here; /readyz reads it.
    """CREATE TABLE IF NOT EXISTS render_workers (
        name TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        device TEXT,
        state TEXT NOT NULL,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        info TEXT
    )""",
]


# The webhook sweep reads only the jobs whose final delivery is not recorded yet (webhook_pending = 1).
SCHEMA_AFTER_COLUMNS = ["CREATE INDEX IF NOT EXISTS render_jobs_webhook_pending ON render_jobs (webhook_pending, status)"]


class Dialect:
    name = "?"
    integrity_errors: tuple[type[BaseException], ...] = ()

    def connect(self) -> Any:
        raise NotImplementedError

    def sql(self, statement: str) -> str:
        return statement

    def schema(self) -> list[str]:
        return list(SCHEMA)

    def schema_after_columns(self) -> list[str]:
        """Statements over columns that an older store gets by ALTER TABLE (run after it)."""
        return list(SCHEMA_AFTER_COLUMNS)

    @contextmanager
    def transaction(self, conn: Any, serialize: bool = False) -> Iterator[None]:
        raise NotImplementedError

    def broken(self, conn: Any) -> bool:
        return False

    def unavailable(self, exc: BaseException) -> bool:
        """Does `exc` mean the store cannot serve right now (busy, locked, disk full, I/O error, unreachable,
        damaged), as opposed to a fault of the statement (a constraint, a bug)?"""
        return False

    def checkpoint(self, conn: Any) -> None:
        """Make the database file complete on its own (SQLite: move the WAL into it)."""

    def check(self, conn: Any) -> str | None:
        """At open: None when the store reads back sound, else what is wrong."""
        return None

    def before_open(self) -> str | None:
        """Before the first connection: None, or why opening would silently lose data."""
        return None

    def backup(self, conn: Any, target: Path) -> None:
        raise NotImplementedError(f"{self.name} job stores are backed up with the database's own tools")


class SqliteDialect(Dialect):
    """One file, WAL so that readers never wait for the worker's writes; `BEGIN IMMEDIATE` serializes writers."""

    name = "sqlite"
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path: Path | str, busy_timeout: float = 10.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout = busy_timeout

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives any crash of our processes (kill -9 included); only an OS crash or power
        # cut can drop the last commits. FULL would fsync on every commit (3-10 ms here, most of a POST).
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def unavailable(self, exc: BaseException) -> bool:
        # OperationalError: locked, busy, disk full, I/O error, cannot open; a bare DatabaseError: a damaged file
        # ("file is not a database", "database disk image is malformed"). IntegrityError is the caller's business.
        return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def check(self, conn: sqlite3.Connection) -> str | None:
        found = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
        return None if found == ["ok"] else "; ".join(found[:3])

    def before_open(self) -> str | None:
        # SQLite keeps -wal and -shm together while the file is in use, and removes both when the last connection
        # closes. A -shm without its -wal means the log was deleted: opening would start from jobs.db alone.
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        if self.path.exists() and shm.exists() and not wal.exists():
            return (f"its write-ahead log {wal.name} is missing while {shm.name} is there: the jobs committed since "
                    f"the last checkpoint are not in {self.path.name}")
        return None

    def backup(self, conn: sqlite3.Connection, target: Path) -> None:
        """A consistent copy through SQLite's online backup API (committed rows, WAL included; writers may go on),
        written beside `target` and renamed into place, so a half-written backup never has its name."""
        target = Path(target)
        partial = target.with_name(f".{target.name}.partial")
        partial.unlink(missing_ok=True)
        copy = sqlite3.connect(str(partial))
        try:
            conn.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            copy.close()
        partial.replace(target)

    @contextmanager
    def transaction(self, conn: sqlite3.Connection, serialize: bool = False) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")  # the write lock up front: every write transaction is serialized anyway
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


_QMARK = re.compile(r"\?")


class PostgresDialect(Dialect):
    """psycopg 3, autocommit outside explicit transactions (READ COMMITTED). Every conditional UPDATE of jobs.py
    re-checks its WHERE clause on the locked row, so the compare-and-set claims and lease writes stay atomic;
    a transaction that must see a stable count (the queue-depth check) takes a transaction-level advisory lock."""

    name = "postgresql"
    ADVISORY_KEY = 0x72656E64  # "rend": serializes job inserts (queue depth check + insert)

    def __init__(self, url: str, connect_timeout: float = 10.0):
        import psycopg

        self.psycopg = psycopg
        self.url = url
        self.connect_timeout = connect_timeout
        self.integrity_errors = (psycopg.errors.IntegrityError,)

    def connect(self) -> Any:
        return self.psycopg.connect(self.url, autocommit=True, connect_timeout=int(self.connect_timeout),
                                    application_name="render-appliance")

    def sql(self, statement: str) -> str:
        return _QMARK.sub("%s", statement)  # no statement of jobs.py has a literal '?' or '%'

    def schema(self) -> list[str]:
        # REAL is 4 bytes in PostgreSQL (epoch seconds would round to minutes): use 8-byte floats.
        return [s.replace(" REAL", " DOUBLE PRECISION") for s in SCHEMA]

    @contextmanager
    def transaction(self, conn: Any, serialize: bool = False) -> Iterator[None]:
        with conn.transaction():
            if serialize:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.ADVISORY_KEY,))
            yield

    def broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def unavailable(self, exc: BaseException) -> bool:
        # OperationalError: unreachable, connection lost, disk full, lock not available, admin shutdown.
        return isinstance(exc, self.psycopg.OperationalError)


def dialect_for(target: Path | str, busy_timeout: float = 10.0) -> Dialect:
    """`postgresql://...` (or postgres://) -> PostgreSQL; `sqlite:///path`, or a plain path -> SQLite."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDialect(text)
    if text.startswith("sqlite:///"):
        return SqliteDialect(text[len("sqlite:///"):], busy_timeout)  # sqlite:///rel/path, sqlite:////abs/path
    return SqliteDialect(target, busy_timeout)


def redact(url: str) -> str:
    """A URL for logs and /readyz: the password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
