"""The persistent store: everything ffasr learned, in one SQLite file ``<state_dir>/ffasr.db``.

Durability: WAL journal with ``synchronous=FULL``, so every committed write is fsynced before the
method returns. NORMAL would survive a crashed *process* just as well, but could drop the last
commits on power loss or an OS crash; writes here are human-paced (one per correction or update),
so an fsync each costs nothing noticeable, and a row then never claims less than the adapter files
that :func:`ffasr_cli.paths.atomic_write_bytes` has already fsynced.

Every write method is one transaction, so a SIGKILL leaves the store at the last committed write.
A writer holds an exclusive ``flock`` on ``<state_dir>/lock`` for its lifetime; read-only opens take
no lock and, thanks to WAL, read while a writer runs. This module must not import torch: ``ffasr
stats`` reads the store and has to answer fast.

A damaged file is refused at open, by readers and writers alike, before anything reads or writes
it; damage found later, a full disk and a failing disk each reach the user as one line
(``_failures``), never as SQLite's exception.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import StateError
from .paths import make_private_dir

DB_NAME = "ffasr.db"
LOCK_NAME = "lock"

SOURCES = ("accepted", "typed", "spoken")
STATUSES = ("accepted", "pending", "applied", "rejected", "rolled_back")
UPDATE_STATUSES = ("applied", "rolled_back")
TERM_SOURCES = ("learned", "user")


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


def _in(allowed: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in allowed) + ")"


# Migration i takes the schema from user_version i to i + 1. Append, never edit a shipped one.
_MIGRATIONS = [
    f"""
    CREATE TABLE profiles(
        name TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        mode TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE sessions(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        profile TEXT NOT NULL REFERENCES profiles(name),
        command TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL
    );
    CREATE TABLE interactions(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER REFERENCES sessions(id),
        profile TEXT NOT NULL REFERENCES profiles(name),
        cache_id TEXT UNIQUE,
        audio TEXT,
        hypothesis TEXT,
        label TEXT,
        source TEXT NOT NULL CHECK (source IN {_in(SOURCES)}),
        status TEXT NOT NULL CHECK (status IN {_in(STATUSES)}),
        reason TEXT,
        loss REAL,
        infer_ms REAL,
        update_ms REAL,
        created_at REAL NOT NULL
    );
    CREATE INDEX interactions_by_status ON interactions(profile, status, id);
    CREATE TABLE updates(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        profile TEXT NOT NULL REFERENCES profiles(name),
        step INTEGER NOT NULL,
        loss REAL,
        n_interactions INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN {_in(UPDATE_STATUSES)}),
        reason TEXT,
        duration_ms REAL,
        canary_before REAL,
        canary_after REAL,
        created_at REAL NOT NULL
    );
    CREATE INDEX updates_by_profile ON updates(profile, id);
    CREATE TABLE checkpoints(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        profile TEXT NOT NULL REFERENCES profiles(name),
        step INTEGER NOT NULL,
        path TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX checkpoints_by_profile ON checkpoints(profile, id);
    -- key is term.casefold(): identity ignores case (Unicode-aware, which COLLATE NOCASE is not);
    -- term keeps the latest spelling seen.
    CREATE TABLE terms(
        profile TEXT NOT NULL REFERENCES profiles(name),
        key TEXT NOT NULL,
        term TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        source TEXT NOT NULL CHECK (source IN {_in(TERM_SOURCES)}),
        PRIMARY KEY (profile, key)
    );
    """,
    # When an applied update last held a correction with the term. Unused since the prompt reaches
    # only the base model (agent.ASRAgent._decode_window): a learned term no longer leaves it.
    "ALTER TABLE terms ADD COLUMN applied_at REAL;",
    # The update that applied each correction, and the one that first taught each learned term:
    # what a rollback to an earlier step undoes (NULL: pending, or recorded before this column).
    "ALTER TABLE interactions ADD COLUMN step INTEGER; ALTER TABLE terms ADD COLUMN step INTEGER;",
]
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True)
class Profile:
    name: str
    model: str
    mode: str
    created_at: float


@dataclass(frozen=True)
class Interaction:
    id: int
    session_id: int | None
    profile: str
    cache_id: str | None
    audio: str | None
    hypothesis: str | None
    label: str | None
    source: str
    status: str
    reason: str | None
    loss: float | None
    infer_ms: float | None
    update_ms: float | None
    created_at: float
    step: int | None = None  # the update that applied it

    @property
    def teaches(self) -> bool:
        """A correction learned or waiting to be: not an accepted transcript, applied or pending, with both texts."""
        return self.source != "accepted" and self.status in ("applied", "pending") and bool(self.hypothesis and self.label)


@dataclass(frozen=True)
class Update:
    id: int
    profile: str
    step: int
    loss: float | None
    n_interactions: int
    status: str
    reason: str | None
    duration_ms: float | None
    canary_before: float | None
    canary_after: float | None
    created_at: float


@dataclass(frozen=True)
class Checkpoint:
    id: int
    profile: str
    step: int
    path: str
    created_at: float


@dataclass(frozen=True)
class Term:
    term: str
    count: int
    first_seen: float
    last_seen: float
    source: str


def _code(error: sqlite3.DatabaseError) -> int | None:
    """SQLite's primary result code; None on Python 3.10, which does not attach it."""
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_corrupt(error: sqlite3.DatabaseError) -> bool:
    code = _code(error)
    if code is None:
        return type(error) is sqlite3.DatabaseError  # what SQLite's corruption errors arrive as
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _is_disk_full(error: sqlite3.DatabaseError, directory: Path) -> bool:
    """SQLITE_FULL is a write that met ENOSPC; growing the -shm file or creating a file on a full disk
    fails as a bare I/O error or "unable to open", so for those the file system is asked."""
    code = _code(error)
    if code is None:
        return "disk is full" in str(error)
    if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return _no_room(directory)
    return code == sqlite3.SQLITE_FULL


def _no_room(directory: Path) -> bool:
    """Whether the file system holding ``directory`` is full: under 1 MiB free, or no inode left."""
    try:
        disk = os.statvfs(directory)
    except OSError:
        return False
    return disk.f_bavail * disk.f_frsize < 1 << 20 or (disk.f_files > 0 and disk.f_favail == 0)  # btrfs counts no inodes


def _corrupt(db: Path, problem: str) -> StateError:
    return StateError(f"the store {db} is corrupt ({problem}); move it aside to start afresh")


@contextmanager
def _failures(db: Path, doing: str, advice: str = "") -> Iterator[None]:
    """SQLite's errors as the one line a user gets: a corrupt store, a full disk, a failing disk.

    ``doing`` is what failed ("read", "write to", "open"), ``advice`` what to do about a failing
    disk. Anything else SQLite raises (a constraint, a closed connection) is a bug of ours and
    keeps its traceback.
    """
    try:
        yield
    except sqlite3.DatabaseError as error:
        if _is_corrupt(error):
            raise _corrupt(db, str(error)) from error
        if _is_disk_full(error, db.parent):
            raise StateError(f"cannot write to the store {db} (the disk is full)") from error
        if isinstance(error, sqlite3.OperationalError):
            raise StateError(f"cannot {doing} the store {db} ({error}){advice}") from error
        raise


class Store:
    """One open store. Use :meth:`open`; close it (or use ``with``) to release the writer lock."""

    def __init__(self, state_dir: Path, conn: sqlite3.Connection, lock_fd: int | None, readonly: bool):
        self.state_dir = state_dir
        self.path = state_dir / DB_NAME
        self.conn = conn
        self.readonly = readonly
        self._lock_fd = lock_fd
        # The learner may write from another thread than the one that opened the store.
        self._mutex = threading.RLock()

    # -- opening and closing ---------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path, *, readonly: bool = False, lock_timeout: float = 0.0) -> Store:
        """Open (a writer creates and migrates) the store in ``state_dir``; StateError if unusable."""
        state_dir = Path(state_dir).expanduser().absolute()
        db = state_dir / DB_NAME
        if readonly:
            if not db.is_file():
                raise StateError(f"no ffasr store in {state_dir} yet: nothing has been learned there")
            lock_fd = None
        else:
            _make_private_dir(state_dir)
            lock_fd = _take_lock(state_dir, lock_timeout)
        conn = None
        try:
            with _failures(db, "open", f"; check the permissions of {state_dir}"):
                if db.exists():
                    _check_integrity(db)
                conn = _connect_reader(db) if readonly else _connect_writer(db)
                conn.row_factory = sqlite3.Row
                _migrate(conn, db, readonly)
        except BaseException:
            if conn is not None:
                conn.close()
            _release(lock_fd)
            raise
        return cls(state_dir, conn, lock_fd, readonly)

    def close(self) -> None:
        """Close the database, then release the writer lock. Safe to call twice."""
        with self._mutex:
            if self.conn is not None:
                self.conn.close()  # the last writer checkpoints the WAL into the main file here
                self.conn = None  # type: ignore[assignment]
            _release(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: all of it commits (fsynced) or none of it does."""
        if self.readonly:
            raise RuntimeError("this store was opened read-only")
        with self._mutex, _failures(self.path, "write to"):
            # IMMEDIATE: take the write lock up front, so reads inside see what the writes change.
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back (a full disk); a failed COMMIT stays open.
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._mutex, _failures(self.path, "read"):
            return self.conn.execute(sql, params).fetchall()

    # -- profiles and sessions ---------------------------------------------------------------

    def ensure_profile(self, name: str, model: str = "", mode: str = "") -> Profile:
        """Create the profile if new; return the stored row.

        An existing profile keeps its model and mode, unless they are not known yet (blank: a
        profile that ``vocab add`` created before any session); the first session fills them in.
        """
        with self._write() as conn:
            conn.execute(
                "INSERT INTO profiles(name, model, mode, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET model = excluded.model, mode = excluded.mode WHERE profiles.model = ''",
                (name, model, mode, time.time()),
            )
            row = conn.execute("SELECT * FROM profiles WHERE name = ?", (name,)).fetchone()
        return Profile(**row)

    def profile(self, name: str) -> Profile | None:
        rows = self._rows("SELECT * FROM profiles WHERE name = ?", (name,))
        return Profile(**rows[0]) if rows else None

    def profiles(self) -> list[str]:
        return [row["name"] for row in self._rows("SELECT name FROM profiles ORDER BY name")]

    def start_session(self, profile: str, command: str) -> int:
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO sessions(profile, command, started_at) VALUES (?, ?, ?)",
                (profile, command, time.time()),
            )
        return cursor.lastrowid

    def end_session(self, session_id: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (time.time(), session_id))

    # -- interactions --------------------------------------------------------------------------

    def add_interaction(
        self,
        session_id: int | None,
        profile: str,
        *,
        cache_id: str | None,
        audio: str | None,
        hypothesis: str | None,
        label: str | None,
        source: str,
        status: str,
        reason: str | None = None,
        loss: float | None = None,
        infer_ms: float | None = None,
        update_ms: float | None = None,
    ) -> int:
        """Record one utterance and what the user made of it; returns its id."""
        _check(source, SOURCES, "source")
        _check(status, STATUSES, "status")
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO interactions(session_id, profile, cache_id, audio, hypothesis, label,"
                " source, status, reason, loss, infer_ms, update_ms, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, profile, cache_id, audio, hypothesis, label, source, status, reason,
                 loss, infer_ms, update_ms, time.time()),
            )
        return cursor.lastrowid

    def set_status(self, cache_ids: list[str], status: str, reason: str | None = None) -> int:
        """Move these interactions to ``status`` together (with why, if given); returns how many rows changed."""
        _check(status, STATUSES, "status")
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE interactions SET status = ?, reason = coalesce(?, reason) WHERE cache_id = ?",
                [(status, reason, cache_id) for cache_id in cache_ids],
            )
            return conn.total_changes - before

    def mark_applied(self, profile: str, cache_ids: list[str], terms: list[str], step: int) -> None:
        """An update (``step``) applied these corrections and taught these terms (those it taught first get its step)."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE interactions SET status = 'applied', step = ? WHERE profile = ? AND cache_id = ?",
                [(step, profile, cache_id) for cache_id in cache_ids],
            )
            conn.executemany(
                "UPDATE terms SET step = ? WHERE profile = ? AND key = ? AND source = 'learned' AND step IS NULL",
                [(step, profile, term.casefold()) for term in terms],
            )

    def roll_back_to(self, profile: str, step: int, reason: str, still_pending: set[str] = frozenset()) -> int:
        """Undo the updates after ``step``, in one transaction; returns how many corrections that undid.

        What they applied is rolled back, with ``reason`` (or pending again: the corrections in
        ``still_pending`` whose files are still waiting); the terms they taught first, and their
        checkpoints, are forgotten; the rollback is recorded as an update.
        """
        with self._write() as conn:
            ids = [row["cache_id"] for row in conn.execute(
                "SELECT cache_id FROM interactions WHERE profile = ? AND status = 'applied' AND step > ?", (profile, step))]
            conn.executemany(
                "UPDATE interactions SET status = ?, reason = ?, step = NULL WHERE cache_id = ?",
                [("pending", None, i) if i in still_pending else ("rolled_back", reason, i) for i in ids],
            )
            conn.execute("DELETE FROM terms WHERE profile = ? AND source = 'learned' AND step > ?", (profile, step))
            conn.execute("DELETE FROM checkpoints WHERE profile = ? AND step > ?", (profile, step))
            conn.execute(
                "INSERT INTO updates(profile, step, loss, n_interactions, status, reason, created_at)"
                " VALUES (?, ?, NULL, ?, 'rolled_back', ?, ?)",
                (profile, step, len(ids), reason, time.time()),
            )
        return len(ids)

    def taught_by_step(self, profile: str) -> dict[int, list[str]]:
        """The learned terms each update taught first, by step."""
        rows = self._rows("SELECT step, term FROM terms WHERE profile = ? AND step IS NOT NULL ORDER BY step, first_seen", (profile,))
        taught: dict[int, list[str]] = {}
        for row in rows:
            taught.setdefault(row["step"], []).append(row["term"])
        return taught

    def interactions(self, profile: str) -> list[Interaction]:
        rows = self._rows("SELECT * FROM interactions WHERE profile = ? ORDER BY id", (profile,))
        return [Interaction(**row) for row in rows]

    def pending(self, profile: str) -> list[Interaction]:
        """Corrections not yet learned from, oldest first."""
        rows = self._rows(
            "SELECT * FROM interactions WHERE profile = ? AND status = 'pending' ORDER BY id",
            (profile,),
        )
        return [Interaction(**row) for row in rows]

    # -- updates and checkpoints ---------------------------------------------------------------

    def record_update(
        self,
        profile: str,
        *,
        step: int,
        loss: float | None,
        n_interactions: int,
        status: str,
        reason: str | None = None,
        duration_ms: float | None = None,
        canary_before: float | None = None,
        canary_after: float | None = None,
    ) -> int:
        _check(status, UPDATE_STATUSES, "update status")
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO updates(profile, step, loss, n_interactions, status, reason,"
                " duration_ms, canary_before, canary_after, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (profile, step, loss, n_interactions, status, reason, duration_ms, canary_before,
                 canary_after, time.time()),
            )
        return cursor.lastrowid

    def updates(self, profile: str) -> list[Update]:
        rows = self._rows("SELECT * FROM updates WHERE profile = ? ORDER BY id", (profile,))
        return [Update(**row) for row in rows]

    def record_checkpoint(self, profile: str, step: int, path: str | os.PathLike) -> int:
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO checkpoints(profile, step, path, created_at) VALUES (?, ?, ?, ?)",
                (profile, step, str(path), time.time()),
            )
        return cursor.lastrowid

    def checkpoints(self, profile: str) -> list[Checkpoint]:
        """Oldest first: the last one is the newest."""
        rows = self._rows("SELECT * FROM checkpoints WHERE profile = ? ORDER BY id", (profile,))
        return [Checkpoint(**row) for row in rows]

    # -- terms ---------------------------------------------------------------------------------

    def add_terms(self, profile: str, terms: list[str], source: str = "learned") -> None:
        """Count each distinct term once per call; identity ignores case, the latest spelling wins.

        A term the user added stays ``user`` even when later learned too.
        """
        _check(source, TERM_SOURCES, "term source")
        latest: dict[str, str] = {}
        for term in terms:
            term = term.strip()
            if term:
                latest[term.casefold()] = term
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO terms(profile, key, term, count, first_seen, last_seen, source)"
                " VALUES (?, ?, ?, 1, ?, ?, ?)"
                " ON CONFLICT(profile, key) DO UPDATE SET term = excluded.term,"
                " count = count + 1, last_seen = excluded.last_seen,"
                " source = CASE WHEN source = 'user' THEN 'user' ELSE excluded.source END",
                [(profile, key, term, now, now, source) for key, term in latest.items()],
            )

    def import_terms(self, profile: str, rows: list[dict], step: int) -> None:
        """Terms from another profile (``profiles.py``), with their counts and sources; learned ones as taught by ``step``."""
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO terms(profile, key, term, count, first_seen, last_seen, source, step) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(profile, key) DO UPDATE SET count = count + excluded.count",
                [(profile, row["term"].casefold(), row["term"], int(row["count"]), now, now, row["source"],
                  step if row["source"] == "learned" else None) for row in rows],
            )  # fmt: skip

    def remove_term(self, profile: str, term: str) -> bool:
        """Forget a term (any case); False if it was not there."""
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM terms WHERE profile = ? AND key = ?", (profile, term.strip().casefold())
            )
        return cursor.rowcount > 0

    def glossary(self, profile: str) -> list[str]:
        """The terms, most used first (which of them the prompt has room for: ``ASRAgent.prompt_terms``)."""
        return [t.term for t in self.terms(profile)]

    def terms(self, profile: str, limit: int | None = None) -> list[Term]:
        """Most used first, then most recent."""
        rows = self._rows(
            "SELECT term, count, first_seen, last_seen, source FROM terms WHERE profile = ?"
            " ORDER BY count DESC, last_seen DESC, term LIMIT ?",
            (profile, -1 if limit is None else limit),
        )
        return [Term(**row) for row in rows]

    # -- whole-profile operations ----------------------------------------------------------------

    def reset_profile(self, profile: str) -> dict[str, int]:
        """Forget what a profile learned, in one transaction; returns rows deleted per table.

        The profile and its sessions stay; checkpoint *files* are the caller's to delete.
        """
        deleted = {}
        with self._write() as conn:
            for table in ("interactions", "updates", "checkpoints", "terms"):
                deleted[table] = conn.execute(
                    f"DELETE FROM {table} WHERE profile = ?", (profile,)
                ).rowcount
        return deleted

    def stats(self, profile: str) -> dict:
        """A JSON-ready summary of one profile (zeros for a profile that does not exist)."""
        with self._mutex, _failures(self.path, "read"):
            return self._stats(profile)

    def _stats(self, profile: str) -> dict:
        one = self.conn.execute
        by_status = dict.fromkeys(STATUSES, 0)
        by_source = dict.fromkeys(SOURCES, 0)
        for row in one(
            "SELECT status, source, COUNT(*) AS n FROM interactions WHERE profile = ?"
            " GROUP BY status, source",
            (profile,),
        ):
            by_status[row["status"]] += row["n"]
            by_source[row["source"]] += row["n"]
        steps = dict.fromkeys(UPDATE_STATUSES, 0)
        for row in one(
            "SELECT status, COUNT(*) AS n FROM updates WHERE profile = ? GROUP BY status", (profile,)
        ):
            steps[row["status"]] = row["n"]
        last = one(
            "SELECT step, loss, created_at FROM updates WHERE profile = ? AND status = 'applied'"
            " ORDER BY id DESC LIMIT 10",
            (profile,),
        ).fetchall()
        latest = one(
            "SELECT step, path, created_at FROM checkpoints WHERE profile = ? ORDER BY id DESC"
            " LIMIT 1",
            (profile,),
        ).fetchone()
        n_checkpoints = one(
            "SELECT COUNT(*) FROM checkpoints WHERE profile = ?", (profile,)
        ).fetchone()[0]
        n_terms = one("SELECT COUNT(*) FROM terms WHERE profile = ?", (profile,)).fetchone()[0]
        n_sessions = one("SELECT COUNT(*) FROM sessions WHERE profile = ?", (profile,)).fetchone()[0]
        info = self.profile(profile)
        return {
            "profile": profile,
            "exists": info is not None,
            "model": info.model if info else None,
            "mode": info.mode if info else None,
            "created_at": info.created_at if info else None,
            "sessions": n_sessions,
            "interactions": {
                "total": sum(by_status.values()),
                "by_status": by_status,
                "by_source": by_source,
            },
            "pending": by_status["pending"],
            "updates": {
                "applied": steps["applied"],
                "rolled_back": steps["rolled_back"],
                "last_step": last[0]["step"] if last else None,
                "last_update_at": last[0]["created_at"] if last else None,
                "last_losses": [row["loss"] for row in reversed(last)],  # oldest first
            },
            "checkpoints": {
                "count": n_checkpoints,
                "latest": dict(latest) if latest else None,
            },
            "terms": {
                "count": n_terms,
                "top": [term.__dict__ for term in self.terms(profile, limit=10)],
            },
            "db_bytes": self.db_bytes(),
        }

    def db_bytes(self) -> int:
        """Bytes on disk: the main file plus the WAL not yet folded into it."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
        return total

    def integrity_ok(self) -> bool:
        rows = self._rows("PRAGMA integrity_check")
        return len(rows) == 1 and rows[0][0] == "ok"


# -- helpers for open() ----------------------------------------------------------------------


def _connect_writer(db: Path) -> sqlite3.Connection:
    # SQLite silently falls back to read-only on a file it cannot write, and then fails only at
    # the first write, mid-session: refuse up front instead.
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        raise StateError(f"the store {db} is not writable; fix its permissions or pass another --state-dir")
    created = not db.exists()
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    if created:
        os.chmod(db, 0o600)  # transcripts are private; -wal/-shm inherit this mode
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _connect_reader(db: Path) -> sqlite3.Connection:
    """mode=ro never writes; WAL lets it read while a writer runs."""
    uri = db.as_uri()
    conn = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        if os.access(db.parent, os.W_OK):
            raise
        # Reading a WAL database needs its -shm file, which a read-only directory (a backup on a
        # read-only mount) cannot get. No writer can run there either, so reading the file as
        # immutable is safe.
        conn = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    return conn


def _check_integrity(db: Path) -> None:
    """Refuse a damaged store before anything reads or writes it (a 3 MB store takes ~10 ms).

    Through a reader of its own: a writer's connection, closed, would fold its WAL into the damaged file.
    """
    conn = _connect_reader(db)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(1)")]
    finally:
        conn.close()
    if problems != ["ok"]:
        raise _corrupt(db, problems[0].splitlines()[-1])  # the last line: the first may be "*** in database main ***"


def _make_private_dir(state_dir: Path) -> None:
    """Create ``state_dir`` readable by the user alone; StateError naming it if that fails."""
    try:
        make_private_dir(state_dir)
    except FileExistsError as error:
        raise StateError(f"the state directory {state_dir} is a file; pass another --state-dir") from error
    except OSError as error:
        raise StateError(
            f"cannot create the state directory {state_dir} ({error.strerror}); pass another --state-dir"
        ) from error
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise StateError(
            f"the state directory {state_dir} is not writable; fix its permissions or pass another --state-dir"
        )


def _take_lock(state_dir: Path, timeout: float) -> int:
    """Hold ``<state_dir>/lock`` exclusively, retrying until ``timeout``; record our pid in it."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise StateError(f"cannot write to the state directory {state_dir} (the disk is full)") from error
        raise StateError(
            f"the state directory {state_dir} is not writable ({error.strerror}); "
            "fix its permissions or pass another --state-dir"
        ) from error
    deadline = time.monotonic() + timeout
    while True:
        try:
            # flock dies with the process, so a killed ffasr never leaves a stale lock behind.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise StateError(f"cannot lock {path} ({error.strerror})") from error
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise StateError(
                    f"another ffasr process (pid {holder}) is using {state_dir}; "
                    "wait for it or pass another --state-dir"
                ) from None
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # e.g. a full disk: the pid is only for the message, holding the lock is what counts
    return fd


def _release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the only descriptor drops the flock


def _migrate(conn: sqlite3.Connection, db: Path, readonly: bool) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StateError(
            f"the store {db} was written by a newer ffasr (schema {version}); upgrade ffasr"
        )
    if version == SCHEMA_VERSION:
        return
    if readonly:
        raise StateError(
            f"the store {db} needs an upgrade; run any ffasr command that learns to upgrade it"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        # user_version lives in the file header, so it commits (or not) with the schema change.
        conn.executescript(
            f"BEGIN IMMEDIATE; {_MIGRATIONS[target - 1]} PRAGMA user_version = {target}; COMMIT;"
        )
