"""`otlp_spans_write` under concurrency: exports of one trace at once."""

from __future__ import annotations

import functools

import pytest

from audit.models import Event
from tests.ingest.otlp import builder
from tests.ingest.otlp.test_views import delegation_trace, partial, post, state
from tests.utils import at_once

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 8


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
        # Bodies built first: the threads only send.
        bodies = [builder.request(*spans[:3]), builder.request(*spans[3:])]
        answers = at_once(
            [
                functools.partial(post, client, body)
                for client, body in zip(halves, bodies, strict=True)
            ]
        )
        for answer in answers:
            assert not isinstance(answer, BaseException), answer
            assert partial(answer).ByteSize() == 0
        assert state(other_project) == state(project)
    filled = Event.objects.filter(project=other_project, kind="message.updated")
    assert filled.count() == len({e.payload["message"] for e in filled})
