"""Opening export files: gzip by name or by content, writes that never leave
half a file behind."""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time
from typing import IO, BinaryIO

from django.core.management.base import CommandError
from django.utils.dateparse import parse_date, parse_datetime

GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def open_for_writing(path: str | None, stdout: IO[str]) -> Iterator[IO[str]]:
    """Write to `path` (gzip when it ends in .gz) through a temporary file.

    The file appears under its name only once it is complete.
    """
    if not path or path == "-":
        yield stdout
        return
    partial = f"{path}.partial"
    try:
        raw = open(partial, "wb")  # noqa: SIM115
    except OSError as exc:
        raise CommandError(f"Cannot write {path}: {exc.strerror}.") from exc
    binary: BinaryIO = (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6)
        if path.endswith(".gz")
        else raw
    )
    text = io.TextIOWrapper(binary, encoding="utf-8", newline="\n")
    try:
        yield text
        text.close()
        raw.close()
        os.replace(partial, path)
    finally:
        for stream in (text, binary, raw):
            if not stream.closed:
                stream.close()
        if os.path.exists(partial):
            os.unlink(partial)


def open_for_reading(path: str) -> BinaryIO:
    """The file's bytes, decompressed when it is gzip (whatever its name)."""
    if path == "-":
        raw: BinaryIO = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from exc
    buffered = io.BufferedReader(raw) if not hasattr(raw, "peek") else raw
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    return buffered


def parse_when(value: str | None, *, option: str) -> datetime | None:
    """A date (midnight UTC) or an ISO 8601 time (UTC when it names no zone)."""
    if value is None:
        return None
    try:
        parsed = parse_datetime(value)
        if parsed is None and (day := parse_date(value)) is not None:
            parsed = datetime.combine(day, time.min)
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(
            f"{option}: {value!r} is not a date (2026-01-31) or an ISO 8601 time."
        )
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
