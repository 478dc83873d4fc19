import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, transaction
from django.test.utils import CaptureQueriesContext

from audit.chain import (
    GENESIS_HASH,
    audit_chain_verify,
    audit_log_digest,
)
from audit.journal import journaled
from audit.models import (
    RESERVED_EVENT_PREFIXES,
    AuditLog,
    DeletionGrant,
    Event,
    EventKind,
    JournalHead,
)
from audit.retention import audit_deletion_granted
from audit.services import (
    Actor,
    audit_custom_event_create,
    audit_event_record,
    audit_events_record,
    audit_log_record,
)
from swarmsite.errors import ValidationError
from swarmsite.services import project_create
from tests.audit.factories import (
    audit_actions,
    doorbell,
    event_kinds,
    last_position,
    table_counts,
    triggers_dropped,
)

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


def positions(project) -> list[int]:
    return list(
        Event.objects.filter(project=project)
        .order_by("position")
        .values_list("position", flat=True)
    )


# Custom events --------------------------------------------------------------


@pytest.mark.parametrize("prefix", RESERVED_EVENT_PREFIXES)
def test_custom_event_refuses_every_reserved_prefix(project, prefix):
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        audit_custom_event_create(project_id=project.pk, kind=f"{prefix}forged")

    assert list(exc.value.fields) == ["kind"]
    assert table_counts() == before


@pytest.mark.parametrize("kind", EventKind.values)
def test_custom_event_refuses_every_kind_the_services_emit(project, kind):
    with pytest.raises(ValidationError) as exc:
        audit_custom_event_create(project_id=project.pk, kind=kind)

    assert "kind" in exc.value.fields
    assert not Event.objects.exists()


@pytest.mark.parametrize("kind", ["", "   ", "x" * 101])
def test_custom_event_refuses_an_empty_or_too_long_kind(project, kind):
    with pytest.raises(ValidationError) as exc:
        audit_custom_event_create(project_id=project.pk, kind=kind)

    assert "kind" in exc.value.fields
    assert not Event.objects.exists()


@pytest.mark.parametrize("payload", [["a list"], "text", {"x": object()}])
def test_custom_event_refuses_a_payload_that_is_not_a_json_object(project, payload):
    with pytest.raises(ValidationError) as exc:
        audit_custom_event_create(
            project_id=project.pk, kind="deploy.finished", payload=payload
        )

    assert "payload" in exc.value.fields
    assert not Event.objects.exists()


def test_custom_event_is_appended_with_the_next_position_and_its_actor(project, task):
    start = last_position(project)
    actor = Actor(type="agent", id="a-1", label="planner", correlation_id="req-9")
    event_id = uuid.uuid4()

    event = audit_custom_event_create(
        project_id=project.pk,
        kind="  deploy.finished  ",
        actor=actor,
        task_id=task.pk,
        payload={"when": datetime(2024, 1, 2, tzinfo=UTC), "cost": Decimal("1.50")},
        event_id=event_id,
    )

    stored = Event.objects.get(uuid=event_id)
    assert stored.position == event.position == start + 1
    assert stored.kind == "deploy.finished"
    assert stored.task_id == task.pk
    assert (stored.actor_type, stored.actor_id, stored.actor_label) == (
        "agent",
        "a-1",
        "planner",
    )
    assert stored.correlation_id == "req-9"
    assert stored.payload == {"when": "2024-01-02T00:00:00+00:00", "cost": "1.50"}
    assert stored.recorded_at is not None
    assert last_position(project) == start + 1


def test_custom_event_rings_the_project_doorbell_only_after_commit(
    project, django_capture_on_commit_callbacks
):
    with doorbell(project) as bell:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            event = audit_custom_event_create(project_id=project.pk, kind="x.y")
            assert Event.objects.filter(uuid=event.uuid).exists()
            assert bell.rings(timeout=0.01) == []
        rings = bell.rings()

    assert len(callbacks) == 1
    assert rings == [
        {
            "type": "events_appended",
            "project": project.pk,
            "position": event.position,
            "tasks": [],
            "conversations": [],
        }
    ]


def test_many_events_in_one_transaction_ring_once_with_the_latest_position(
    project, task, django_capture_on_commit_callbacks
):
    conversation_id = uuid.uuid4()
    with doorbell(project) as bell:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            events = audit_events_record(
                project_id=project.pk,
                events=[
                    {"kind": "a.one", "task_id": task.pk},
                    {"kind": "a.two", "conversation_id": conversation_id},
                    {"kind": "a.three"},
                ],
            )
        rings = bell.rings()

    assert len(callbacks) == 1
    assert [e.position for e in events] == [events[0].position + i for i in range(3)]
    assert len(rings) == 1
    assert rings[0]["position"] == events[-1].position == last_position(project)
    assert rings[0]["tasks"] == [str(task.pk)]
    assert rings[0]["conversations"] == [str(conversation_id)]


def test_events_of_two_projects_in_one_transaction_get_their_own_positions(
    project, other_project, django_capture_on_commit_callbacks
):
    project_start = last_position(project)
    with (
        doorbell(project) as bell,
        doorbell(other_project) as other_bell,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        journaled(),
    ):
        mine = audit_custom_event_create(project_id=project.pk, kind="a.b")
        theirs = audit_custom_event_create(project_id=other_project.pk, kind="a.b")
        theirs_too = audit_custom_event_create(project_id=other_project.pk, kind="a.c")

    assert mine.position == project_start + 1
    assert (theirs.position, theirs_too.position) == (1, 2)
    assert len(callbacks) == 2
    assert [r["position"] for r in bell.rings()] == [mine.position]
    assert [r["position"] for r in other_bell.rings()] == [2]


def test_positions_are_gap_free_across_a_rolled_back_transaction(project):
    first = audit_custom_event_create(project_id=project.pk, kind="a.first")
    with pytest.raises(Boom), journaled():
        audit_custom_event_create(project_id=project.pk, kind="a.lost")
        raise Boom

    second = audit_custom_event_create(project_id=project.pk, kind="a.second")

    assert second.position == first.position + 1
    assert positions(project) == list(range(1, second.position + 1))


def test_rolled_back_journal_writes_nothing_and_rings_nothing(
    project, django_capture_on_commit_callbacks
):
    audit_custom_event_create(project_id=project.pk, kind="a.before")
    before = table_counts()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Boom),
        journaled(),
    ):
        audit_custom_event_create(project_id=project.pk, kind="a.lost")
        audit_log_record(project_id=project.pk, action="tool.invoke")
        raise Boom

    assert callbacks == []
    assert table_counts() == before


def test_outer_transaction_rolled_back_after_journal_flush_leaves_nothing(
    project, django_capture_on_commit_callbacks
):
    before = table_counts()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Boom),
        transaction.atomic(),
    ):
        audit_custom_event_create(project_id=project.pk, kind="a.flushed")
        assert Event.objects.filter(kind="a.flushed").exists()
        raise Boom

    assert callbacks == []
    assert table_counts() == before


def test_nested_journal_that_fails_drops_only_its_own_events(project):
    start = last_position(project)

    with journaled():
        audit_custom_event_create(project_id=project.pk, kind="outer.kept")
        with pytest.raises(Boom), journaled():
            audit_custom_event_create(project_id=project.pk, kind="inner.dropped")
            audit_log_record(project_id=project.pk, action="inner.dropped")
            raise Boom
        audit_custom_event_create(project_id=project.pk, kind="outer.after")

    assert event_kinds(project, position__gt=start) == ["outer.kept", "outer.after"]
    assert "inner.dropped" not in audit_actions(project)
    assert positions(project) == list(range(1, start + 3))


def test_a_caught_error_in_a_plain_savepoint_drops_what_it_buffered(project):
    start = last_position(project)

    with journaled():
        audit_custom_event_create(project_id=project.pk, kind="item.one")
        try:
            with transaction.atomic():
                audit_custom_event_create(project_id=project.pk, kind="item.two")
                audit_log_record(project_id=project.pk, action="item.two")
                raise Boom
        except Boom:
            pass
        audit_custom_event_create(project_id=project.pk, kind="item.three")

    assert event_kinds(project, position__gt=start) == ["item.one", "item.three"]
    assert "item.two" not in audit_actions(project)
    assert audit_chain_verify(project_id=project.pk).intact


def test_a_rolled_back_manual_savepoint_drops_what_it_buffered(project):
    start = last_position(project)

    with journaled():
        sid = transaction.savepoint()
        audit_custom_event_create(project_id=project.pk, kind="item.lost")
        with transaction.atomic():
            audit_custom_event_create(project_id=project.pk, kind="item.inner")
        transaction.savepoint_rollback(sid)
        audit_custom_event_create(project_id=project.pk, kind="item.kept")

    assert event_kinds(project, position__gt=start) == ["item.kept"]


def test_a_released_savepoint_keeps_what_it_buffered(project):
    start = last_position(project)

    with journaled():
        with transaction.atomic():
            audit_custom_event_create(project_id=project.pk, kind="item.kept")
        sid = transaction.savepoint()
        transaction.savepoint_commit(sid)

    assert event_kinds(project, position__gt=start) == ["item.kept"]


def test_recording_inside_a_journal_opens_no_savepoint(project):
    with journaled(), CaptureQueriesContext(transaction.get_connection()) as ctx:
        audit_event_record(project_id=project.pk, kind="task.created")
        audit_log_record(project_id=project.pk, action="task.created")

    assert ctx.captured_queries == []


def test_the_journal_leaves_the_connection_as_it_found_it(project):
    wrapper = transaction.get_connection()
    with journaled():
        assert "savepoint_rollback" in wrapper.__dict__
        audit_custom_event_create(project_id=project.pk, kind="a.b")
    with pytest.raises(Boom), journaled():
        raise Boom

    assert "savepoint" not in wrapper.__dict__
    assert "savepoint_rollback" not in wrapper.__dict__
    assert wrapper.swarmsite_journal is None


def test_events_are_written_at_the_end_of_the_outermost_journal(project):
    with journaled():
        audit_custom_event_create(project_id=project.pk, kind="a.buffered")
        assert not Event.objects.filter(kind="a.buffered").exists()

    assert Event.objects.filter(kind="a.buffered").exists()


# Audit log ------------------------------------------------------------------


def test_audit_log_record_chains_entries_from_the_genesis_hash(project):
    start_seq = JournalHead.objects.filter(project=project).first()
    assert start_seq is None or start_seq.audit_seq == 0

    first = audit_log_record(project_id=project.pk, action="tool.invoke")
    second = audit_log_record(project_id=project.pk, action="file.read")

    stored = list(AuditLog.objects.filter(project=project).order_by("seq"))
    assert [e.seq for e in stored] == [1, 2]
    assert stored[0].prev_hash == GENESIS_HASH
    assert stored[1].prev_hash == stored[0].hash == first.hash
    assert stored[1].hash == second.hash
    assert all(audit_log_digest(e) == e.hash for e in stored)
    head = JournalHead.objects.get(project=project)
    assert (head.audit_seq, head.audit_hash) == (2, second.hash)


def test_audit_log_record_keeps_every_field_and_a_snapshot_of_the_object(project):
    actor = Actor(type="user", id="7", label="alice", correlation_id="req-1")

    audit_log_record(
        project_id=project.pk,
        action="api.request",
        actor=actor,
        target="/api/v1/tasks/",
        obj=project,
        success=False,
        duration_ms=12.5,
        error="boom",
        details={"id": uuid.UUID(int=1), "cost": Decimal("0.10")},
        changes={"status": ["pending", "running"]},
        method="POST",
        path="/api/v1/tasks/",
        status_code=500,
        ip="2001:db8:0:0::1",
        user_agent="pytest",
    )

    entry = AuditLog.objects.get(project=project)
    assert entry.content_type == ContentType.objects.get_for_model(project)
    assert (entry.object_id, entry.object_repr) == (str(project.pk), str(project))
    assert (entry.actor_type, entry.actor_id, entry.actor_label) == (
        "user",
        "7",
        "alice",
    )
    assert entry.request_id == "req-1"
    assert entry.ip == "2001:db8::1"
    assert entry.details == {"id": str(uuid.UUID(int=1)), "cost": "0.10"}
    assert entry.changes == {"status": ["pending", "running"]}
    assert (entry.success, entry.status_code, entry.duration_ms) == (False, 500, 12.5)
    assert audit_chain_verify(project_id=project.pk).intact


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"action": ""}, "action"),
        ({"action": "x" * 101}, "action"),
        ({"duration_ms": -1}, "duration_ms"),
        ({"details": ["not", "an", "object"]}, "details"),
        ({"ip": "300.1.1.1"}, "ip"),
        ({"changes": {"x": object()}}, "changes"),
    ],
)
def test_audit_log_record_refuses_bad_input_and_writes_nothing(project, kwargs, field):
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        audit_log_record(project_id=project.pk, **({"action": "error"} | kwargs))

    assert field in exc.value.fields
    assert table_counts() == before


def test_audit_chain_verify_is_intact_after_many_services(project, task):
    for index in range(5):
        audit_log_record(
            project_id=project.pk,
            action="tool.invoke",
            details={"i": index, "nested": {"b": [1, 2.5, None], "a": True}},
            duration_ms=index / 3,
            ip="10.0.0.1",
        )

    report = audit_chain_verify(project_id=project.pk)

    assert report.intact, report.reason
    assert report.checked == AuditLog.objects.filter(project=project).count() >= 6


@pytest.mark.parametrize(
    "value",
    [1e20, 1.5e300, -0.0, 1e-7, 1.0, 0.1 + 0.2, 2**70, [1e22, {"a": -0.0}]],
    ids=repr,
)
def test_audit_chain_stays_verifiable_whatever_numbers_the_details_hold(project, value):
    audit_log_record(project_id=project.pk, action="tool.invoke", details={"v": value})
    audit_custom_event_create(project_id=project.pk, kind="a.b", payload={"v": value})

    report = audit_chain_verify(project_id=project.pk)

    assert report.intact, report.reason
    assert Event.objects.get(kind="a.b").payload == AuditLog.objects.get().details


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=repr)
def test_audit_log_record_refuses_numbers_json_cannot_hold(project, value):
    with pytest.raises(ValidationError) as exc:
        audit_log_record(project_id=project.pk, action="x", details={"v": value})

    assert "details" in exc.value.fields
    assert not AuditLog.objects.exists()


def test_audit_chain_verify_of_a_project_without_records_is_intact(other_project):
    report = audit_chain_verify(project_id=other_project.pk)

    assert report.intact
    assert report.checked == 0


# Deletion grants ------------------------------------------------------------


def test_deletion_grant_lets_deletes_through_only_inside_its_block(project):
    audit_custom_event_create(project_id=project.pk, kind="a.b")
    audit_log_record(project_id=project.pk, action="a.b")

    with audit_deletion_granted(reason="test prune"):
        Event.objects.filter(project=project).delete()
        AuditLog.objects.filter(project=project).delete()

    assert not Event.objects.exists()
    assert not AuditLog.objects.exists()
    assert not DeletionGrant.objects.exists()
    audit_custom_event_create(project_id=project.pk, kind="a.c")
    with pytest.raises(DatabaseError), transaction.atomic():
        Event.objects.all().delete()


# Tampering is detected --------------------------------------------------------


@pytest.fixture
def chained(transactional_db):
    """A project (surviving test flushes) with four chained audit records."""
    project = project_create(slug="default", name="Default")[0]
    for index in range(4):
        audit_log_record(
            project_id=project.pk,
            action="tool.invoke",
            target=f"tool-{index}",
            details={"i": index},
        )
    assert audit_chain_verify(project_id=project.pk).intact
    return project


def entry(project, seq: int) -> AuditLog:
    return AuditLog.objects.filter(project=project, seq=seq)


@pytest.mark.django_db(transaction=True)
def test_audit_chain_verify_detects_an_edited_row(chained):
    with triggers_dropped():
        entry(chained, 2).update(target="forged")

    report = audit_chain_verify(project_id=chained.pk)

    assert (report.broken_at, report.checked) == (2, 1)
    assert "altered" in report.reason


@pytest.mark.django_db(transaction=True)
def test_audit_chain_verify_detects_an_edit_whose_hash_was_recomputed(chained):
    with triggers_dropped():
        forged = entry(chained, 2).get()
        forged.target = "forged"
        entry(chained, 2).update(target="forged", hash=audit_log_digest(forged))

    report = audit_chain_verify(project_id=chained.pk)

    assert report.broken_at == 3
    assert "does not link" in report.reason


@pytest.mark.django_db(transaction=True)
def test_audit_chain_verify_detects_a_deleted_row(chained):
    with triggers_dropped():
        entry(chained, 2).delete()

    report = audit_chain_verify(project_id=chained.pk)

    assert report.broken_at == 2
    assert "missing" in report.reason


@pytest.mark.django_db(transaction=True)
def test_audit_chain_verify_detects_a_deleted_last_row(chained):
    with triggers_dropped():
        entry(chained, 4).delete()

    report = audit_chain_verify(project_id=chained.pk)

    assert report.broken_at == 4
    assert "head records 4" in report.reason


@pytest.mark.django_db(transaction=True)
def test_audit_chain_verify_detects_swapped_rows(chained):
    with triggers_dropped(), transaction.atomic():
        entry(chained, 2).update(seq=1000)
        entry(chained, 3).update(seq=2)
        entry(chained, 1000).update(seq=3)

    report = audit_chain_verify(project_id=chained.pk)

    assert report.broken_at == 2
    assert "does not link" in report.reason


@pytest.mark.django_db(transaction=True)
def test_triggers_are_back_after_a_tampering_test(chained):
    with triggers_dropped():
        pass

    with pytest.raises(DatabaseError), transaction.atomic():
        entry(chained, 1).update(target="forged")
    with pytest.raises(DatabaseError), transaction.atomic():
        entry(chained, 1).delete()
    assert audit_chain_verify(project_id=chained.pk).intact


def test_event_record_accepts_system_kinds_that_custom_events_refuse(project):
    event = audit_event_record(project_id=project.pk, kind=EventKind.TASK_CREATED)

    assert Event.objects.get(uuid=event.uuid).kind == "task.created"
