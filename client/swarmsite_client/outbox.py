"""The Recorder's outbox: a SQLite file (WAL) of items waiting to be sent.

Tables:

- `items`: items in recording order (`seq`), each the JSON of one ingest
  item. `delivered` holds the last `seq` settled: the sender sends in
  order, so settling a batch is one small update, and the settled rows
  are deleted afterwards in small chunks (a record call never waits
  behind a large delete). Pending items are a contiguous run of `seq`.
- `dead`: items the server refused, with its error.
- `sender`: one row, the lease of the process allowed to send. Only the
  holder reads batches and sends them, so an item is never sent by two
  processes: a holder renews its lease before every batch and gives up a
  batch's HTTP request well before the lease could lapse; another process
  takes over when the lease lapses, when the holder releases it, or at
  once when the holder's process is gone (same host, pid not alive).

Writes of one process go through one lock, so a record call waits for
the sender's short transactions with a thread wake-up, not SQLite's
sleeping busy handler.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    item_id TEXT,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    item_id TEXT,
    body TEXT NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS delivered (
    slot INTEGER PRIMARY KEY CHECK (slot = 1),
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO delivered (slot, seq) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS sender (
    slot INTEGER PRIMARY KEY CHECK (slot = 1),
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""


@dataclass
class Pending:
    seq: int
    type: str
    item_id: str | None
    body: str
    created_at: float


def owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _owner_gone(owner: str) -> bool:
    """True when `owner` is a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _use_wal(conn: sqlite3.Connection, *, timeout: float) -> None:
    """Switch the file to WAL, waiting out other processes opening it.

    While another process creates the file or changes its journal mode,
    SQLite answers this pragma SQLITE_BUSY at once: its busy handler (the
    connection's timeout) is not called here, to avoid deadlocks.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class Outbox:
    """Durable (or memory-only, `path=None`) queue of ingest items."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.lock = threading.Lock()
        self.owner = owner_token()
        if self.path is None:
            self._record = self._connect(":memory:")
            self._send = self._record
        else:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            self._record = self._connect(self.path)
            self._send = self._connect(self.path)
        with self.lock:
            self._record.executescript(SCHEMA)

    def _connect(self, target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            target, timeout=30, isolation_level=None, check_same_thread=False
        )
        if target != ":memory:":
            _use_wal(conn, timeout=30)
            # A committed item survives the process being killed; only a
            # power cut can lose the last ones (FULL would fsync per item).
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints (with their fsync) run on the sender's thread.
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def _reading(self) -> Any:
        """Reads of the sender's own connection see a WAL snapshot and need
        no lock; the memory-only database has one shared connection."""
        return self.lock if self.path is None else contextlib.nullcontext()

    def sender_pending_count(self) -> int:
        with self._reading():
            return self._pending(self._send)

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        with self.lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- recording side --

    def append(self, type_: str, item_id: str | None, body: str) -> None:
        with self.lock:
            self._record.execute(
                "INSERT INTO items (type, item_id, body, created_at) "
                "VALUES (?, ?, ?, ?)",
                (type_, item_id, body, time.time()),
            )

    def pending_count(self) -> int:
        with self.lock:
            return self._pending(self._record)

    @staticmethod
    def _pending(conn: sqlite3.Connection) -> int:
        high, delivered = conn.execute(
            "SELECT (SELECT max(seq) FROM items), seq FROM delivered"
        ).fetchone()
        return 0 if high is None else max(0, high - delivered)

    def last_seq(self) -> int:
        with self.lock:
            (high,) = self._record.execute("SELECT max(seq) FROM items").fetchone()
        return high or 0

    def delivered_up_to(self, seq: int) -> bool:
        """True once no item up to `seq` is pending."""
        with self.lock:
            (delivered,) = self._record.execute("SELECT seq FROM delivered").fetchone()
        return delivered >= seq

    def dead_count(self) -> int:
        with self.lock:
            (count,) = self._record.execute("SELECT count(*) FROM dead").fetchone()
        return count

    def dead_letters(self, limit: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            rows = self._record.execute(
                "SELECT seq, type, item_id, body, error, failed_at FROM dead "
                "ORDER BY seq LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [
            {
                "seq": seq,
                "type": type_,
                "id": item_id,
                "item": json.loads(body),
                "error": json.loads(error),
                "failed_at": failed_at,
            }
            for seq, type_, item_id, body, error, failed_at in rows
        ]

    def resend_dead(self, seqs: list[int] | None = None) -> int:
        """Move dead letters (all, or those of `seqs`) back to the queue's end."""
        where, args = "", ()
        if seqs is not None:
            if not seqs:
                return 0
            where = f" WHERE seq IN ({','.join('?' * len(seqs))})"
            args = tuple(seqs)
        with self._write(self._record) as conn:
            moved = conn.execute(
                "INSERT INTO items (type, item_id, body, created_at) "
                f"SELECT type, item_id, body, ? FROM dead{where} ORDER BY seq",
                (time.time(), *args),
            ).rowcount
            conn.execute(f"DELETE FROM dead{where}", args)
        return moved

    def drop_dead(self, seqs: list[int] | None = None) -> int:
        where, args = "", ()
        if seqs is not None:
            where = f" WHERE seq IN ({','.join('?' * len(seqs))})"
            args = tuple(seqs)
        with self._write(self._record) as conn:
            return conn.execute(f"DELETE FROM dead{where}", args).rowcount

    # -- sending side (one thread) --

    def acquire_lease(self, seconds: float) -> bool:
        """Take or renew the sender lease; False while another holds it."""
        now = time.time()
        with self._reading():
            row = self._send.execute(
                "SELECT owner, expires_at FROM sender WHERE slot = 1"
            ).fetchone()
        if (
            row is not None
            and row[0] != self.owner
            and row[1] > now
            and not _owner_gone(row[0])
        ):
            return False
        with self._write(self._send) as conn:
            # Checked again under the write lock: another process may have
            # taken it since the read above.
            row = conn.execute(
                "SELECT owner, expires_at FROM sender WHERE slot = 1"
            ).fetchone()
            if (
                row is not None
                and row[0] != self.owner
                and row[1] > now
                and not _owner_gone(row[0])
            ):
                return False
            conn.execute(
                "INSERT INTO sender (slot, owner, expires_at) VALUES (1, ?, ?) "
                "ON CONFLICT (slot) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at",
                (self.owner, now + seconds),
            )
        return True

    def release_lease(self) -> None:
        with self._write(self._send) as conn:
            conn.execute("DELETE FROM sender WHERE owner = ?", (self.owner,))

    def batch(self, max_items: int, max_bytes: int) -> list[Pending]:
        """The oldest pending items, at most `max_items` and about
        `max_bytes` (always at least one)."""
        with self._reading():
            rows = self._send.execute(
                "SELECT seq, type, item_id, body, created_at FROM items "
                "WHERE seq > (SELECT seq FROM delivered) ORDER BY seq LIMIT ?",
                (max_items,),
            ).fetchall()
        out: list[Pending] = []
        size = 0
        for row in rows:
            size += len(row[3]) + 1
            if out and size > max_bytes:
                break
            out.append(Pending(*row))
        return out

    def oldest_created(self) -> float | None:
        with self._reading():
            row = self._send.execute(
                "SELECT created_at FROM items "
                "WHERE seq > (SELECT seq FROM delivered) ORDER BY seq LIMIT 1"
            ).fetchone()
        return row[0] if row else None

    def settle(self, batch: list[Pending], errors: dict[int, dict[str, Any]]) -> None:
        """Remove a sent batch; the items of `errors` (by position in the
        batch) go to the dead letters with the server's error."""
        now = time.time()
        with self._write(self._send) as conn:
            if errors:
                conn.executemany(
                    "INSERT OR REPLACE INTO dead "
                    "(seq, type, item_id, body, error, failed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            batch[i].seq,
                            batch[i].type,
                            batch[i].item_id,
                            batch[i].body,
                            json.dumps(error),
                            now,
                        )
                        for i, error in errors.items()
                    ],
                )
            conn.execute("UPDATE delivered SET seq = max(seq, ?)", (batch[-1].seq,))

    def purge(self, chunk: int = 100) -> None:
        """Delete settled items, `chunk` rows per transaction."""
        while True:
            with self._write(self._send) as conn:
                deleted = conn.execute(
                    "DELETE FROM items WHERE seq IN (SELECT seq FROM items "
                    "WHERE seq <= (SELECT seq FROM delivered) ORDER BY seq LIMIT ?)",
                    (chunk,),
                ).rowcount
            if deleted < chunk:
                return
            time.sleep(0)  # let a waiting record call take the lock

    def checkpoint(self) -> None:
        if self.path is not None:
            self._send.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        with self.lock:
            self._record.close()
            if self._send is not self._record:
                self._send.close()
