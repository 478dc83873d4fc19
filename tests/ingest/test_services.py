"""The bulk services ingest shares with the single endpoints."""

import uuid

import pytest

from audit.chain import audit_chain_verify
from audit.journal import journaled
from audit.models import AuditLog, Event
from audit.services import audit_custom_events_create, audit_logs_create
from ingest.services import Item, ingest_items
from swarmsite.errors import IdempotencyConflict, ValidationError
from tasks.models import Task, TaskDependency
from tasks.services import task_create_many

pytestmark = pytest.mark.django_db


def test_task_create_many_links_tasks_to_earlier_ones_of_the_list(project, agent):
    parent_id, child_id = uuid.uuid4(), uuid.uuid4()

    results = task_create_many(
        project=project,
        tasks=[
            {"task_id": parent_id, "title": "Parent", "assigned_agent": agent.pk},
            {
                "task_id": child_id,
                "title": "Child",
                "parent": str(parent_id),
                "depends_on": [parent_id],
            },
        ],
    )

    assert [created for _, created in results] == [True, True]
    child = Task.objects.get(pk=child_id)
    assert child.parent_id == parent_id
    assert TaskDependency.objects.filter(task=child, depends_on_id=parent_id).exists()
    assert list(Task.objects.get(pk=parent_id).agents.all()) == [agent]
    assert Event.objects.filter(kind="task.created").count() == 2
    assert AuditLog.objects.filter(action="task.created").count() == 2
    assert audit_chain_verify(project_id=project.pk).intact


def test_task_create_many_refuses_a_later_task_as_parent_and_writes_nothing(project):
    later = uuid.uuid4()

    with pytest.raises(ValidationError) as caught:
        task_create_many(
            project=project,
            tasks=[
                {"title": "Early", "parent": later},
                {"task_id": later, "title": "Late"},
            ],
        )

    assert "parent" in caught.value.fields
    assert not Task.objects.exists()
    assert not Event.objects.exists()


def test_task_create_many_repeats_in_one_list_are_duplicates_or_conflicts(project):
    pk = uuid.uuid4()

    results = task_create_many(
        project=project,
        tasks=[{"task_id": pk, "title": "Same"}, {"task_id": pk, "title": "Same"}],
    )
    with pytest.raises(IdempotencyConflict):
        task_create_many(
            project=project,
            tasks=[{"task_id": pk, "title": "Same"}, {"task_id": pk, "title": "No"}],
        )

    assert [created for _, created in results] == [True, False]
    assert Task.objects.count() == 1


def test_custom_events_repeated_in_one_transaction_are_stored_once(project):
    event_id = uuid.uuid4()
    spec = {"kind": "eval.scored", "event_id": event_id, "payload": {"s": 1}}

    with journaled():
        first = audit_custom_events_create(project_id=project.pk, events=[spec, spec])
        # Still buffered, not inserted: found in the journal all the same.
        again = audit_custom_events_create(project_id=project.pk, events=[spec])
        with pytest.raises(IdempotencyConflict):
            audit_custom_events_create(
                project_id=project.pk, events=[spec | {"payload": {"s": 2}}]
            )

    assert [created for _, created in first] == [True, False]
    assert again[0] == (first[0][0], False)
    assert Event.objects.filter(uuid=event_id).count() == 1


def test_audit_logs_create_is_idempotent_by_id_and_keeps_the_chain(project):
    entry = {"entry_id": uuid.uuid4(), "action": "tool.invoke", "target": "grep"}

    created = audit_logs_create(project_id=project.pk, entries=[entry])
    repeated = audit_logs_create(project_id=project.pk, entries=[entry])
    with pytest.raises(IdempotencyConflict):
        audit_logs_create(project_id=project.pk, entries=[entry | {"target": "sed"}])

    assert created[0][1] is True
    assert repeated[0][1] is False
    assert repeated[0][0].uuid == entry["entry_id"]
    assert AuditLog.objects.filter(uuid=entry["entry_id"]).count() == 1
    assert audit_chain_verify(project_id=project.pk).intact


def test_a_failed_segment_keeps_no_event_of_its_rolled_back_items(project):
    good, bad = uuid.uuid4(), uuid.uuid4()
    Task.objects.create(id=bad, project=project, title="Taken")
    items = [
        Item(0, "task", {"task_id": good, "title": "Good"}),
        Item(1, "task", {"task_id": bad, "title": "Different"}),
    ]

    results = ingest_items(project=project, items=items)

    assert [r.status for r in results] == ["created", "error"]
    assert isinstance(results[1].error, IdempotencyConflict)
    assert list(
        Event.objects.filter(kind="task.created").values_list("task_id", flat=True)
    ) == [good]
    assert audit_chain_verify(project_id=project.pk).intact
