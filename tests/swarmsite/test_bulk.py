import uuid
import warnings
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from audit.models import AuditLog, Event
from conversations.models import Conversation, Message
from swarmsite.bulk import COPY_MIN_ROWS, bulk_insert

pytestmark = pytest.mark.django_db

N = COPY_MIN_ROWS + 5


def _events(project, start: int) -> list[Event]:
    return [
        Event(
            project_id=project.pk,
            position=start + i,
            kind="otel.span",
            task_id=str(uuid.uuid4()) if i % 2 else None,
            payload={"n": i, "text": "tab\tline\nback\\slash", "list": [1.5, None]},
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for i in range(N)
    ]


def test_bulk_insert_writes_every_column_as_bulk_create_would(project):
    events = _events(project, 1)
    bulk_insert(Event, events)
    stored = {e.uuid: e for e in Event.objects.filter(project=project)}
    assert len(stored) == N
    for built in events:
        row = stored[built.uuid]
        assert row.position == built.position
        assert str(row.task_id or "") == str(built.task_id or "")
        assert row.payload == built.payload
        assert row.occurred_at == built.occurred_at
        assert row.actor_type == built.actor_type
        assert not built._state.adding


def test_bulk_insert_converts_values_of_other_types_as_the_field_does(project):
    conversation = Conversation.objects.create(project=project)
    messages = [
        Message(
            id=str(uuid.uuid4()),
            project_id=project.pk,
            conversation=conversation,
            seq=i + 1,
            thread=uuid.uuid4(),
            role="user",
            content=f"m{i}",
            prompt_tokens=True,
            cost=1,
            latency_ms=3,
            tool_calls=None,
            metadata={"i": i},
        )
        for i in range(N)
    ]
    bulk_insert(Message, messages)
    rows = list(Message.objects.filter(conversation=conversation).order_by("seq"))
    assert [m.content for m in rows] == [f"m{i}" for i in range(N)]
    assert {(m.prompt_tokens, m.cost, m.latency_ms) for m in rows} == {
        (1, Decimal(1), 3.0)
    }
    assert rows[0].tool_calls is None
    assert rows[-1].metadata == {"i": N - 1}


def test_bulk_insert_makes_naive_times_aware_as_bulk_create_does(project):
    entries = [
        AuditLog(
            project_id=project.pk,
            seq=i + 1,
            prev_hash="0" * 64,
            hash="1" * 64,
            action="tool.invoke",
            occurred_at=datetime(2026, 1, 1, 12),  # noqa: DTZ001
        )
        for i in range(N)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bulk_insert(AuditLog, entries)
    assert set(
        AuditLog.objects.filter(project=project).values_list("occurred_at", flat=True)
    ) == {datetime(2026, 1, 1, 12, tzinfo=UTC)}


def test_bulk_insert_of_a_taken_unique_key_raises_integrity_error(project):
    events = _events(project, 1)
    bulk_insert(Event, events)
    again = _events(project, N + 1)
    again[-1].uuid = events[0].uuid
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_insert(Event, again)
    assert Event.objects.filter(project=project).count() == N
