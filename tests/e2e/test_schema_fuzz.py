"""Schemathesis against a real daphne: no 500, no answer outside the schema,
no bad input accepted.

The schema is read from the running server's `/api/schema/` and every
operation is fuzzed twice: with a read/write key (documented answers must
match their schema), then with no key (every answer must still be a clean
4xx). Each run has a time budget (100 seconds together), so the whole test,
set-up included, takes about two minutes.
"""

import json
import subprocess
import urllib.request

import pytest

from tests.e2e.stack import (
    BASE_DIR,
    BIN,
    Daphne,
    base_env,
    fresh_database,
    prepare,
)
from tests.utils import postgres_only

# PostgreSQL only: its stricter types (JSON without lone surrogates, time
# zone offsets) are where bad input turned into 500s; SQLite accepts them.
pytestmark = [pytest.mark.slow, postgres_only]

# Every check: no 500, answers in the schema, and bad input refused (a
# `?task=` with no value, a number for a text field) while good input is
# accepted. Exceptions the contract defines are in schemathesis.toml.
CHECKS = "all"
CONFIG = BASE_DIR / "schemathesis.toml"
# (label, with the key?, phases, examples per operation, time cap in seconds).
# The coverage phase sends boundary, missing and wrong-type values of every
# parameter and field, deterministically, which is what finds 500s and
# schema breaks while keeping CI repeatable. Without a key every answer is a
# 401, so a few random cases per operation suffice.
RUNS = [
    ("with a key", True, "examples,coverage,fuzzing,stateful", 8, 90),
    ("without a key", False, "examples,fuzzing", 3, 10),
]


def _fetch_schema(port: int, key: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/schema/?format=json",
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.load(response)


def _schemathesis(schema_path, port, key, phases, examples, seconds):
    headers = ["-H", f"Authorization: Bearer {key}"] if key else []
    return subprocess.run(
        [
            str(BIN / "schemathesis"),
            "--config-file",
            str(CONFIG),
            "run",
            str(schema_path),
            "--url",
            f"http://127.0.0.1:{port}",
            *headers,
            "--checks",
            CHECKS,
            "--phases",
            phases,
            "--max-examples",
            str(examples),
            "--max-time",
            str(seconds),
            # One worker: hypothesis describing strategies from several
            # threads trips a CPython 3.11 ast bug ("recursion depth
            # mismatch"), which schemathesis reports as an error.
            "--workers",
            "1",
            "--seed",
            "20261123",
            "--no-shrink",
            "--request-timeout",
            "20",
            "--warnings",
            "off",
        ],
        # Its hypothesis and schemathesis caches go there, not into the tree.
        cwd=schema_path.parent,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )


def test_fuzzing_every_operation_finds_no_server_error_or_schema_break(tmp_path):
    failures = []
    with fresh_database(tmp_path) as database_url:
        env = base_env(tmp_path, database_url)
        key = prepare(env)
        server = Daphne(env, tmp_path / "daphne.log")
        try:
            schema_path = tmp_path / "schema.json"
            schema_path.write_text(json.dumps(_fetch_schema(server.port, key)))
            for label, with_key, phases, examples, seconds in RUNS:
                result = _schemathesis(
                    schema_path,
                    server.port,
                    key if with_key else None,
                    phases,
                    examples,
                    seconds,
                )
                if result.returncode != 0:
                    failures.append(f"--- {label}:\n{result.stdout[-20000:]}")
            assert server.process.poll() is None, server.log.read_text()
        finally:
            server.stop()
    assert not failures, "\n".join(failures)
