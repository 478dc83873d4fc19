import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.chain import audit_chain_verify
from audit.models import AuditLog, Event
from audit.services import audit_custom_event_create
from conversations.models import Conversation, Message
from conversations.services import conversation_create, message_append
from ops.services import PRUNE_MODELS
from tasks.models import AgentHeartbeat, AgentRun, Task
from tasks.services import (
    agent_heartbeat,
    run_create,
    task_create,
    task_transition,
)
from tests.ops.conftest import export_text, import_file

pytestmark = pytest.mark.django_db

LONG_AGO = timezone.now() - timedelta(days=200)


def _finish(task, status="completed", when=LONG_AGO):
    if status != "cancelled":
        task_transition(task=task, status="running")
    task_transition(task=task, status=status)
    if when is not None:
        Task.objects.filter(pk=task.pk).update(completed_at=when, updated_at=when)
    return task


@pytest.fixture
def history(project, agent):
    """Old finished work that goes, and work that must stay."""
    old = _finish(task_create(project=project, title="old done")[0])
    run_create(project=project, task=old, agent=agent, prompt_tokens=5)
    chat = conversation_create(project=project, task=old, participants=[agent])[0]
    said = message_append(conversation=chat, messages=[{"role": "user"}])
    message_append(
        conversation=chat,
        messages=[{"role": "assistant", "reply_to": str(said[0][0].pk)}],
    )
    parent = task_create(project=project, title="old parent")[0]
    child = task_create(project=project, title="old child", parent=parent)[0]
    _finish(child, "failed")
    _finish(parent, "cancelled")
    busy_parent = _finish(task_create(project=project, title="parent of busy")[0])
    busy = task_create(project=project, title="busy child", parent=busy_parent)[0]
    needed = _finish(task_create(project=project, title="needed")[0])
    waiting = task_create(project=project, title="waits", depends_on=[needed])[0]
    stale = task_create(project=project, title="never started")[0]
    Task.objects.filter(pk=stale.pk).update(created_at=LONG_AGO, updated_at=LONG_AGO)
    recent = _finish(task_create(project=project, title="recent")[0], when=None)
    loose_old = audit_custom_event_create(
        project_id=project.pk, kind="deploy.done", occurred_at=LONG_AGO
    )
    loose_new = audit_custom_event_create(project_id=project.pk, kind="deploy.done")
    about_busy = audit_custom_event_create(
        project_id=project.pk, kind="note", task_id=busy.pk, occurred_at=LONG_AGO
    )
    beat = agent_heartbeat(agent=agent, status="busy")
    AgentHeartbeat.objects.filter(pk=beat.pk).update(created_at=LONG_AGO)
    agent_heartbeat(agent=agent, status="idle")
    return {
        "gone": [old, parent, child],
        "kept": [busy_parent, busy, needed, waiting, stale, recent],
        "chat": chat,
        "loose_old": loose_old,
        "loose_new": loose_new,
        "about_busy": about_busy,
    }


def _prune(*args) -> str:
    out = io.StringIO()
    call_command("prune", *args, stdout=out)
    return out.getvalue()


def _counts(output: str, verb: str) -> dict[str, int]:
    listed = re.search(rf"{verb} (.*?)(?: in \d+ batches|\.$)", output, re.M)
    return {
        name: int(n) for name, n in re.findall(r"([a-z_.]+) (\d+)", listed.group(1))
    }


def test_prune_removes_exactly_what_dry_run_listed(history, other_project):
    dry = _counts(_prune("--older-than", "90d", "--dry-run"), "would delete")
    assert Task.objects.filter(pk__in=[t.pk for t in history["gone"]]).count() == 3

    done = _counts(_prune("--older-than", "90d", "--project", "default"), "deleted")

    assert done == dry
    assert dry["tasks.task"] == 3
    assert dry["tasks.agentrun"] == 1
    assert dry["conversations.conversation"] == 1
    assert dry["conversations.message"] == 2
    assert dry["tasks.agentheartbeat"] == 1
    assert not Task.objects.filter(pk__in=[t.pk for t in history["gone"]]).exists()
    assert not Event.objects.filter(
        task_id__in=[t.pk for t in history["gone"]]
    ).exists()
    assert not Conversation.objects.filter(pk=history["chat"].pk).exists()
    assert not Message.objects.filter(conversation_id=history["chat"].pk).exists()
    assert not AgentRun.objects.filter(task__title="old done").exists()


def test_prune_leaves_unfinished_and_recent_work_alone(history):
    kept = {t.pk: (t.status, t.version) for t in Task.objects.all()}
    _prune("--older-than", "90d")

    for task in history["kept"]:
        task.refresh_from_db()
        assert (task.status, task.version) == kept[task.pk]
    assert list(history["kept"][3].depends_on.all()) == [history["kept"][2]]
    events = Event.objects.values_list("uuid", flat=True)
    assert history["loose_old"].uuid not in events
    assert history["loose_new"].uuid in events
    assert history["about_busy"].uuid in events
    assert Event.objects.filter(task_id=history["kept"][1].pk).count() > 1


def test_prune_leaves_the_audit_chain_verifiable_and_records_itself(history):
    output = _prune("--older-than", "90d")

    assert "stopped: nothing older than the cut-off is left" in output
    assert audit_chain_verify(project_id=history["chat"].project_id).intact
    entry = AuditLog.objects.get(action="retention.pruned")
    assert entry.details["deleted"]["tasks.task"] == 3
    call_command("verify_audit_chain", stdout=io.StringIO())


def test_prune_uses_each_project_retention_by_default(history, project, other_project):
    project.event_retention_days = 365
    project.save(update_fields=["event_retention_days"])

    output = _prune()
    assert "default: cut-off" in output and "(retention of 365 days)" in output
    assert "other: skipped, no retention set" in output
    assert Task.objects.filter(title="old done").exists()

    project.event_retention_days = 30
    project.save(update_fields=["event_retention_days"])
    _prune()
    assert not Task.objects.filter(title="old done").exists()


def test_prune_in_small_batches_reports_batches_and_where_it_stopped(history):
    output = _prune("--older-than", "90d", "--batch-size", "1", "--max-batches", "2")

    assert "in 2 batches" in output
    assert "stopped: reached --max-batches 2; run again to go on" in output
    output = _prune("--older-than", "90d", "--batch-size", "1")
    assert "stopped: nothing older than the cut-off is left" in output
    assert not Task.objects.filter(title__startswith="old").exists()


def test_prune_archive_holds_what_went_and_imports_back(history, tmp_path):
    def domain(text):
        return {
            line
            for line in text.splitlines()
            if '"model":"audit.auditlog"' not in line
            and '"model":"audit.journalhead"' not in line
        }

    before = export_text(tmp_path, name="before.jsonl")
    archive = tmp_path / "pruned.jsonl.gz"

    _prune("--older-than", "90d", "--archive", str(archive))
    pruned = export_text(tmp_path, name="pruned.jsonl")
    import_file(archive)
    after = export_text(tmp_path, name="after.jsonl")

    # Agents and workflows stay, with roll-ups that no longer count what went.
    rollups = ('"model":"tasks.agent"', '"model":"tasks.workflow"')

    def without_rollups(lines):
        return {line for line in lines if not any(r in line for r in rollups)}

    assert without_rollups(domain(pruned)) < without_rollups(domain(before))
    assert domain(after) == domain(before)
    assert audit_chain_verify(project_id=history["chat"].project_id).intact


def test_dry_run_deletes_nothing(history):
    tasks, events = Task.objects.count(), Event.objects.count()
    _prune("--older-than", "90d", "--dry-run")
    assert (Task.objects.count(), Event.objects.count()) == (tasks, events)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "soon"], "--older-than: 'soon' is not an age"),
        (["--older-than", "90"], "is not an age"),
        (["--project", "nope"], "no project 'nope'"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_prune_refuses_bad_options(db, args, message):
    with pytest.raises(CommandError, match=message):
        _prune(*args)


def test_prune_report_names_every_model(history):
    output = _prune("--older-than", "90d", "--dry-run")
    assert list(_counts(output, "would delete")) == list(PRUNE_MODELS)
