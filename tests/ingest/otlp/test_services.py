"""`otlp_spans_write` under concurrency: exports of one trace at once."""

from __future__ import annotations

import functools
import threading

import pytest
from django.db import connection, transaction

from audit.models import Event
from ingest.otlp import mapping, services
from tests.ingest.otlp import builder
from tests.ingest.otlp.test_views import delegation_trace, partial, post, state
from tests.utils import at_once, postgres_only

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 8


def _at_once(clients, requests) -> None:
    """Post each request with its client at the same moment; all 200, no
    span refused."""
    bodies = [request.SerializeToString() for request in requests]
    answers = at_once(
        [
            functools.partial(post, client, None, body=body)
            for client, body in zip(clients, bodies, strict=True)
        ]
    )
    for answer in answers:
        assert not isinstance(answer, BaseException), answer
        assert partial(answer).ByteSize() == 0


def test_halves_of_a_trace_exported_at_once_give_the_rows_of_one_export(
    project, other_project, make_api_client
):
    """Two services of a distributed trace export their spans at the same
    moment: one the agents, the other the model calls under them. Whichever
    writes second sees the first's spans, so messages get their senders and
    runs their delegations, as when the trace came in one export."""
    whole = make_api_client(project)
    halves = [make_api_client(other_project, name=f"service {i}") for i in range(2)]
    for _ in range(ROUNDS):
        spans = delegation_trace()
        post(whole, builder.request(*spans))
        _at_once(halves, [builder.request(*spans[:3]), builder.request(*spans[3:])])
        assert state(other_project) == state(project)
    filled = Event.objects.filter(project=other_project, kind="message.updated")
    assert filled.count() == len({e.payload["message"] for e in filled})


def test_an_export_of_many_traces_and_one_of_a_few_exclude_each_other(
    project, other_project, make_api_client
):
    """An export of more traces than MAX_TRACE_LOCKS locks its project's
    traces as a whole; one of a few traces still waits for it."""
    whole = make_api_client(project)
    halves = [make_api_client(other_project, name=f"service {i}") for i in range(2)]
    for _ in range(3):
        spans = delegation_trace()
        others = [
            builder.agent_span(builder.new_trace(), f"solo {i}")
            for i in range(services.MAX_TRACE_LOCKS)
        ]
        post(whole, builder.request(*spans, *others))
        _at_once(
            halves,
            [builder.request(*others, *spans[:3]), builder.request(*spans[3:])],
        )
        assert state(other_project) == state(project)


@postgres_only
def test_an_export_kept_waiting_for_its_trace_answers_503_and_writes_nothing(
    project, make_api_client, monkeypatch
):
    """Another export of the trace holds it past LOCK_WAIT_MS: the exporter
    is told to retry (503, Retry-After), and its retry writes the spans."""
    monkeypatch.setattr(services, "LOCK_WAIT_MS", 200)
    spans = delegation_trace()
    task = mapping.Ids(project.pk).task(spans[0].trace_id.hex())
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s)", [services.trace_lock_key(task)]
                )
                held.set()
                release.wait(60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    client = make_api_client(project)
    try:
        assert held.wait(60)
        answer = post(client, builder.request(*spans))
    finally:
        release.set()
        holder.join(60)
    assert answer.status_code == 503, answer.content
    assert answer["Retry-After"]
    assert answer.json()["error"]["code"] == "unavailable"
    assert not Event.objects.filter(project=project).exists()

    assert partial(post(client, builder.request(*spans))).ByteSize() == 0
    assert Event.objects.filter(project=project, kind="otel.span").count() == len(spans)
