"""The PostgreSQL database a benchmark owns: made empty before it starts
Django on it, dropped when it ends."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def _on(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _run(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_on(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql)


def create(url: str, name: str) -> str:
    """Create `name` empty, next to the database `url` names; return its URL."""
    _run(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _run(url, f'CREATE DATABASE "{name}"')
    return _on(url, name)


def drop(url: str, name: str) -> None:
    """Close this process's connections and pools, then drop `name`."""
    from django.db import connections

    for connection in connections.all():
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()
    _run(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
