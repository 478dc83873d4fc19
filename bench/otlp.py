"""Spans per second through /otlp/v1/traces against items per second through ingest.

Serves a fresh database with a real daphne process (production settings) on
a free port: PostgreSQL when DATABASE_URL names one (the database
swarmsite_bench_otlp is created next to it and dropped afterwards), else a
temporary SQLite file.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/swarmsite_dev \\
        python -m bench.otlp

(a) spans/s of OTLP/HTTP protobuf exports of 500 spans, each export 10
    traces of 50 GenAI spans (agents, model calls with input and output
    messages and tokens, tool calls, other spans), from CLIENTS clients;
(b) items/s of `POST /api/v1/ingest/` batches of 500 event items (what
    bench.ingest sends), from as many clients, in the same run;
the ratio (a)/(b) has a goal of at least 50%. (a) and (b) take TURNS turns
each, alternating, so a change in the machine's load moves both; the median
ratio of the turns is the figure. Also printed: the ingest items one span
maps to, items/s through OTLP against (b), and (c) spans/s when the items
fresh exports map to are posted to ingest as JSON, so (a)/(c) is what the
OTLP layer costs (parsing, mapping, its reads) or saves (no JSON to parse
and validate, no per-item answer) against that; (d) spans/s of exports
of conversations whose model calls each re-send the history so far, as
chat instrumentations do; and the rows each path writes (a span is an event
and the rows of what it maps to, with their own events and audit records;
an event item one row), so rows/s through OTLP compare to rows/s through
ingest for the same kind of durable work.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench import database

BENCH_DB = "swarmsite_bench_otlp"
CLIENTS = 2
SPANS_PER_EXPORT = 500
SPANS_PER_TRACE = 50
ITEMS_PER_BATCH = 500
ROUNDS = 4  # per client, after one warm-up request
TURNS = 3  # OTLP then ingest, taking turns
RATIO_GOAL = 0.50


def _server_env(url: str, tmp: Path) -> dict[str, str]:
    """Production settings: DEBUG would keep every query in memory."""
    return os.environ | {
        "DATABASE_URL": url,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "API_THROTTLE_RATE": "1000000/minute",
        "SWARMSITE_DATA_DIR": str(tmp),
        "LOG_LEVEL": "WARNING",
    }


def _trace_spans(builder, n: int) -> list:
    """One agent trace of `n` spans: planner -> workers -> chat, tool, step."""
    trace = builder.new_trace()
    root = builder.new_span_id()
    spans = [
        builder.span(
            trace,
            "invoke_agent planner",
            span_id=root,
            duration_ms=n * 10,
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="bench-planner",
        )
    ]
    worker = root
    for i in range(1, n):
        role = i % 4
        start = i * 10
        if role == 1:
            worker = builder.new_span_id()
            spans.append(
                builder.span(
                    trace,
                    "invoke_agent worker",
                    span_id=worker,
                    parent=root,
                    start_ms=start,
                    gen_ai__operation__name="invoke_agent",
                    gen_ai__agent__name=f"bench-worker-{i % 3}",
                )
            )
        elif role == 2:
            spans.append(
                builder.span(
                    trace,
                    "chat gpt-bench",
                    parent=worker,
                    start_ms=start,
                    gen_ai__operation__name="chat",
                    gen_ai__request__model="gpt-bench",
                    gen_ai__usage__input_tokens=900 + i,
                    gen_ai__usage__output_tokens=40,
                    gen_ai__usage__cache_read__input_tokens=512,
                    gen_ai__input__messages=json.dumps(
                        [{"role": "user", "parts": [builder.text(f"Step {i}?")]}]
                    ),
                    gen_ai__output__messages=json.dumps(
                        [{"role": "assistant", "parts": [builder.text(f"Done {i}.")]}]
                    ),
                )
            )
        elif role == 3:
            spans.append(
                builder.span(
                    trace,
                    "execute_tool search",
                    parent=worker,
                    start_ms=start,
                    gen_ai__operation__name="execute_tool",
                    gen_ai__tool__name="search",
                    gen_ai__tool__call__arguments='{"q": "x"}',
                )
            )
        else:
            spans.append(builder.span(trace, "retrieve", parent=worker, start_ms=start))
    return spans


def _conversation_spans(builder, calls: int) -> list:
    """One agent whose model calls each re-send the conversation so far, as
    chat instrumentations do, with a tool call after each."""
    trace, agent = builder.new_trace(), builder.new_span_id()
    root = builder.agent_span(
        trace, "bench-assistant", span_id=agent, duration_ms=calls * 10
    )
    chats = builder.history_calls(
        trace,
        calls,
        parent=agent,
        gen_ai__request__model="gpt-bench",
        gen_ai__usage__input_tokens=500,
        gen_ai__usage__output_tokens=20,
    )
    tools = [
        builder.span(
            trace,
            "execute_tool search",
            parent=agent,
            start_ms=n * 10 + 5,
            gen_ai__operation__name="execute_tool",
            gen_ai__tool__name="search",
        )
        for n in range(calls)
    ]
    return [root, *chats, *tools]


def _conversation_exports(builder, count: int) -> list[bytes]:
    """Exports of 10 such conversations of 24 calls (490 spans each)."""
    return [
        builder.request(
            *[span for _ in range(10) for span in _conversation_spans(builder, 24)],
            service="bench",
        ).SerializeToString()
        for _ in range(count)
    ]


def _exports(builder, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        spans = []
        for _ in range(SPANS_PER_EXPORT // SPANS_PER_TRACE):
            spans += _trace_spans(builder, SPANS_PER_TRACE)
        out.append(builder.request(*spans, service="bench").SerializeToString())
    return out


def _batches(count: int, task_id: str) -> list[bytes]:
    return [
        json.dumps(
            {
                "items": [
                    {
                        "type": "event",
                        "data": {
                            "id": str(uuid.uuid4()),
                            "kind": "eval.scored",
                            "task": task_id,
                            "payload": {"score": (i % 100) / 100, "n": i},
                        },
                    }
                    for i in range(ITEMS_PER_BATCH)
                ]
            }
        ).encode()
        for _ in range(count)
    ]


def _rows() -> int:
    """Rows in the tables the write path fills (events, tasks, runs, ...)."""
    from django.apps import apps

    return sum(
        model._base_manager.count()
        for app in ("audit", "conversations", "tasks")
        for model in apps.get_app_config(app).get_models(include_auto_created=True)
    )


def _rate(port: int, headers: dict, path: str, bodies: list[list[bytes]]) -> float:
    """Requests/s of len(bodies) clients, each posting its bodies in turn."""
    failures: list[str] = []
    barrier = threading.Barrier(len(bodies) + 1)

    def client(own: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for index, body in enumerate(own):
            if index == 1:
                barrier.wait()  # the first request warms the server up
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            content = response.read()
            if response.status != 200 or (
                path.startswith("/otlp") and content not in (b"",)
            ):
                failures.append(f"{response.status}: {content[:300]!r}")
        conn.close()

    threads = [threading.Thread(target=client, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{path} failed: {failures[0]}")
    return len(bodies) * (len(bodies[0]) - 1) / elapsed


def main(argv: list[str]) -> int:
    url = os.environ.get("DATABASE_URL", "")
    postgres = url.startswith(("postgres://", "postgresql://"))
    tmp = Path(tempfile.mkdtemp(prefix="swarmsite-bench-otlp-"))
    bench_url = (
        database.create(url, BENCH_DB)
        if postgres
        else f"sqlite:///{tmp / 'bench.sqlite3'}"
    )
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")

    import django

    django.setup()

    from django.core.management import call_command

    from swarmsite.models import Project
    from swarmsite.services import api_key_create
    from tests.e2e.stack import Daphne
    from tests.ingest.otlp import builder

    server = None
    try:
        began = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        project = Project.objects.get(slug="default")
        _, key = api_key_create(project=project, name="bench", scopes=["read", "write"])
        server = Daphne(_server_env(bench_url, tmp), tmp / "daphne.log")
        auth = {"Authorization": f"Bearer {key}"}

        # OTLP and ingest take turns, so a change in the machine's load
        # moves both; the medians of the turns are reported.
        from tasks.models import Task

        protobuf = auth | {"Content-Type": "application/x-protobuf"}
        span_rates, item_rates, ratios = [], [], []
        # Rows written by each path and what was posted (warm-ups included).
        otlp_rows = ingest_rows = 0
        posted = CLIENTS * (ROUNDS + 1) * TURNS
        for _turn in range(TURNS):
            exports = [_exports(builder, ROUNDS + 1) for _ in range(CLIENTS)]
            before = _rows()
            otlp = _rate(server.port, protobuf, "/otlp/v1/traces", exports)
            otlp_rows += _rows() - before
            task_id = str(Task.objects.filter(project=project).first().pk)
            batches = [_batches(ROUNDS + 1, task_id) for _ in range(CLIENTS)]
            before = _rows()
            ingest = _rate(
                server.port,
                auth | {"Content-Type": "application/json"},
                "/api/v1/ingest/",
                batches,
            )
            ingest_rows += _rows() - before
            span_rates.append(otlp * SPANS_PER_EXPORT)
            item_rates.append(ingest * ITEMS_PER_BATCH)
            ratios.append(span_rates[-1] / item_rates[-1])
        span_rate = statistics.median(span_rates)
        item_rate = statistics.median(item_rates)

        # (c) The items fresh exports map to, posted to ingest as they are:
        # what the OTLP layer itself (parsing, mapping, reads) costs.
        from ingest.otlp import mapping
        from ingest.otlp.parsing import PROTOBUF, parse_request, spans_of

        ids = mapping.Ids(project.pk)

        def mapped(body: bytes) -> bytes:
            spans = spans_of(parse_request(body, PROTOBUF))
            plan = mapping.map_spans(spans, ids=ids, agents={})
            return json.dumps({"items": plan.items}).encode()

        same = [
            [mapped(b) for b in _exports(builder, ROUNDS + 1)] for _ in range(CLIENTS)
        ]
        direct = _rate(
            server.port,
            auth | {"Content-Type": "application/json"},
            "/api/v1/ingest/",
            same,
        )
        direct_span_rate = direct * SPANS_PER_EXPORT

        # (d) Conversations whose calls re-send their history.
        talks = [_conversation_exports(builder, ROUNDS + 1) for _ in range(CLIENTS)]
        talk_spans = len(spans_of(parse_request(talks[0][0], PROTOBUF)))
        talk_rate = _rate(server.port, protobuf, "/otlp/v1/traces", talks) * talk_spans

        sample = spans_of(parse_request(exports[0][0], PROTOBUF))
        plan = mapping.map_spans(sample, ids=mapping.Ids(0), agents={})
        per_span = len(plan.items) / len(sample)
        ratio = statistics.median(ratios)
        engine = "PostgreSQL" if postgres else "SQLite"
        print(f"OTLP spans vs ingest items through daphne ({engine}):")
        print(
            f"  POST /otlp/v1/traces, {CLIENTS} clients x {ROUNDS} exports of "
            f"{SPANS_PER_EXPORT} spans ({SPANS_PER_TRACE} per trace): "
            f"{span_rate:,.0f} spans/s"
        )
        print(
            f"  POST /api/v1/ingest/, {CLIENTS} clients x {ROUNDS} batches of "
            f"{ITEMS_PER_BATCH} events: {item_rate:,.0f} items/s"
        )
        print(
            f"  Ratio {ratio:.1%} (median of {TURNS} turns: "
            f"{', '.join(f'{r:.1%}' for r in ratios)}): goal {RATIO_GOAL:.0%} "
            f"{'met' if ratio >= RATIO_GOAL else 'not met'}."
        )
        print(
            f"  One span maps to {per_span:.2f} ingest items (an otel.span event "
            f"and a run, messages or a tool audit): {span_rate * per_span:,.0f} "
            f"items/s through OTLP, {span_rate * per_span / item_rate:.1%} of "
            f"ingest's event items/s."
        )
        span_row_count = otlp_rows / (posted * SPANS_PER_EXPORT)
        item_row_count = ingest_rows / (posted * ITEMS_PER_BATCH)
        print(
            f"  Rows written: {span_row_count:.2f} per span, {item_row_count:.2f} "
            f"per event item: {span_rate * span_row_count:,.0f} rows/s through "
            f"OTLP, {span_rate * span_row_count / (item_rate * item_row_count):.1%} "
            f"of ingest's {item_rate * item_row_count:,.0f} rows/s."
        )
        print(
            f"  The same items posted to ingest directly: {direct_span_rate:,.0f} "
            f"spans/s; OTLP reaches {span_rate / direct_span_rate:.1%} of it."
        )
        print(
            f"  Exports of 10 conversations whose 24 model calls each re-send "
            f"the history ({talk_spans} spans): {talk_rate:,.0f} spans/s. "
            f"Total {time.perf_counter() - began:.0f} s."
        )
        return 0
    finally:
        if server is not None:
            server.stop()
        if postgres:
            database.drop(bench_url, BENCH_DB)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
