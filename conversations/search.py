"""Full-text index of memories: one API, two engines.

PostgreSQL: a generated `tsvector` column (`key` weighted A, `content` B,
English stemming and stop words) with a GIN index, ranked by `ts_rank_cd`.
SQLite: an external-content FTS5 table (Porter stemming) kept in step by
triggers, ranked by `bm25()`. Installed by migration 0005.

SQLite rebuilds a table on most ALTERs and drops its triggers with it: a
migration that alters `conversations_memory` must call `install()` again.
"""

from __future__ import annotations

import re

TABLE = "conversations_memory"
FTS_TABLE = "conversations_memory_fts"
PG_CONFIG = "english"
# bm25 column weights (key, content), as setweight's A and B on PostgreSQL.
BM25_WEIGHTS = (2.0, 1.0)

_PG_INSTALL = [
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS search_vector tsvector "
    "GENERATED ALWAYS AS ("
    f"setweight(to_tsvector('{PG_CONFIG}'::regconfig, coalesce(key, '')), 'A') || "
    f"setweight(to_tsvector('{PG_CONFIG}'::regconfig, coalesce(content, '')), 'B')"
    ") STORED",
    f"CREATE INDEX IF NOT EXISTS memory_search_idx ON {TABLE} USING GIN "
    "(search_vector)",
    f"CREATE INDEX IF NOT EXISTS memory_tags_idx ON {TABLE} USING GIN "
    "(tags jsonb_path_ops)",
]
_PG_UNINSTALL = [
    "DROP INDEX IF EXISTS memory_tags_idx",
    "DROP INDEX IF EXISTS memory_search_idx",
    f"ALTER TABLE {TABLE} DROP COLUMN IF EXISTS search_vector",
]

_FTS_DELETE = (
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, key, content) "
    "VALUES ('delete', old.id, old.key, old.content);"
)
_FTS_INSERT = (
    f"INSERT INTO {FTS_TABLE}(rowid, key, content) "
    "VALUES (new.id, new.key, new.content);"
)
_SQLITE_TRIGGERS = [
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ai",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ad",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_au",
    f"CREATE TRIGGER {FTS_TABLE}_ai AFTER INSERT ON {TABLE} BEGIN {_FTS_INSERT} END",
    f"CREATE TRIGGER {FTS_TABLE}_ad AFTER DELETE ON {TABLE} BEGIN {_FTS_DELETE} END",
    f"CREATE TRIGGER {FTS_TABLE}_au AFTER UPDATE OF key, content ON {TABLE} "
    f"BEGIN {_FTS_DELETE} {_FTS_INSERT} END",
]
_SQLITE_INSTALL = [
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
    f"key, content, content='{TABLE}', content_rowid='id', "
    "tokenize='porter unicode61')",
    *_SQLITE_TRIGGERS,
    # Index what is stored already (a no-op on an empty table).
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')",
]
_SQLITE_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ai",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ad",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_au",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
]


def _run(schema_editor, statements: list[str]) -> None:
    for sql in statements:
        schema_editor.execute(sql)


def install(schema_editor) -> None:
    """Create the index of this database's engine (idempotent)."""
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, _PG_INSTALL)
    elif vendor == "sqlite":
        _run(schema_editor, _SQLITE_INSTALL)


def uninstall(schema_editor) -> None:
    """Drop what `install` created."""
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, _PG_UNINSTALL)
    elif vendor == "sqlite":
        _run(schema_editor, _SQLITE_UNINSTALL)


_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_WORDS = 32


def query_words(text: str) -> list[str]:
    """The words of a search, lower-cased, in order, without repeats."""
    words = [w.lower() for w in _WORD.findall(text or "")]
    return list(dict.fromkeys(words))[:MAX_QUERY_WORDS]


def pg_query(words: list[str], *, every: bool) -> str:
    """A `websearch_to_tsquery` text: all of the words, or any of them."""
    # "or" is websearch syntax (and an English stop word).
    words = [w for w in words if w != "or"]
    return " ".join(words) if every else " or ".join(words)


def fts5_query(words: list[str], *, every: bool) -> str:
    """An FTS5 MATCH expression: all of the words, or any, each quoted."""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    return " ".join(quoted) if every else " OR ".join(quoted)
