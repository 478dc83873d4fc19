from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain import audit_chain_verify
from audit.models import AuditLog, Event, JournalHead
from conversations.models import Conversation, Message, MessageRole
from conversations.services import conversation_update
from tasks.models import Agent, AgentRun, Task, TaskStatus, Workflow
from tasks.services import agent_update, run_update, task_update

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def row_counts() -> dict[str, int]:
    return {
        model._meta.label: model.objects.count()
        for model in apps.get_models(include_auto_created=True)
    }


def test_seed_demo_twice_writes_nothing_the_second_time(project):
    seed()
    counts = row_counts()
    head = JournalHead.objects.get(project=project)
    tasks = {t.pk: (t.status, t.version, t.progress) for t in Task.objects.all()}

    out = seed()

    assert row_counts() == counts
    head_after = JournalHead.objects.get(project=project)
    assert head_after.last_position == head.last_position
    assert head_after.audit_seq == head.audit_seq
    assert {t.pk: (t.status, t.version, t.progress) for t in Task.objects.all()} == (
        tasks
    )
    assert "15 tasks (0 new)" in out


def test_seed_demo_keeps_demo_objects_edited_since_seeding(project):
    seed()
    task = Task.objects.get(title="Draft the release notes")
    task_update(task=task, title="Draft the 2.3 notes", agents=[])
    run = AgentRun.objects.filter(status="running").first()
    run_update(run=run, status="completed", prompt_tokens=9999)
    agent_update(agent=Agent.objects.get(name="coder"), name="coder-v2")
    workflow = Workflow.objects.get(name="Release 2.3")
    workflow.name = "Release 2.3.0"
    workflow.save(update_fields=["name"])
    conversation = Conversation.objects.get(title="Pricing comparison")
    conversation_update(
        conversation=conversation, participants=[Agent.objects.get(name="planner")]
    )
    counts = row_counts()

    out = seed()

    assert row_counts() == counts
    # A create replayed after updates is a duplicate (tasks, runs, workflows,
    # conversations); only the renamed agent, registered by name, no longer
    # matches its create.
    assert "1 demo objects changed since they were seeded" in out
    task.refresh_from_db()
    assert task.title == "Draft the 2.3 notes"


def test_seed_demo_summarises_what_it_created(project):
    out = seed()

    assert "Demo data in project 'default'" in out
    assert "15 tasks (15 new)" in out
    assert "6 agents (6 new)" in out


def test_seed_demo_puts_tasks_in_every_status(project):
    seed()

    statuses = set(
        Task.objects.filter(project=project).values_list("status", flat=True)
    )
    assert statuses == set(TaskStatus.values)


def test_seed_demo_moves_tasks_through_the_lifecycle(project):
    seed()

    changes = Event.objects.filter(project=project, kind="task.status_changed")
    assert changes.count() > Task.objects.exclude(status="pending").count()
    retried = Task.objects.get(title="Patch the session refresh")
    kinds = list(
        Event.objects.filter(task_id=retried.pk, kind="task.status_changed")
        .order_by("position")
        .values_list("payload__to", flat=True)
    )
    assert kinds == ["running", "failed", "queued"]
    assert retried.version == 4


def test_seed_demo_builds_an_agent_hierarchy(project):
    seed()

    tool_runner = Agent.objects.get(project=project, name="tool-runner")
    assert tool_runner.parent.name == "coder"
    assert tool_runner.parent.parent.name == "orchestrator"
    orchestrator = Agent.objects.get(project=project, name="orchestrator")
    assert orchestrator.parent is None
    assert orchestrator.children.count() == 4
    assert all(a.capabilities for a in Agent.objects.filter(project=project))
    assert Agent.objects.filter(project=project).exclude(model="").count() == 5


def test_seed_demo_records_workflows_subtasks_dependencies_and_progress(project):
    seed()

    assert Workflow.objects.filter(project=project).count() == 3
    assert Task.objects.filter(project=project, parent__isnull=False).count() >= 8
    tag = Task.objects.get(title="Tag and publish 2.3")
    assert {t.title for t in tag.depends_on.all()} == {
        "Draft the release notes",
        "Review the migration",
    }
    running = Task.objects.filter(project=project, status="running")
    assert all(0 < t.progress < 100 for t in running)


def test_seed_demo_rolls_run_and_message_usage_up_into_tasks(project):
    seed()

    runs = AgentRun.objects.filter(project=project)
    assert runs.filter(prompt_tokens__gt=0, cost__gt=0).count() >= 5
    assert {"running", "completed", "failed"} <= set(
        runs.values_list("status", flat=True)
    )
    plan = Task.objects.get(title="Plan the release checklist")
    run_tokens = sum(r.prompt_tokens for r in plan.runs.all())
    message_tokens = sum(
        m.prompt_tokens for m in Message.objects.filter(conversation__task=plan)
    )
    assert plan.prompt_tokens == run_tokens + message_tokens


def test_seed_demo_writes_conversations_with_every_role(project):
    seed()

    conversations = Conversation.objects.filter(project=project)
    assert conversations.count() == 3
    messages = Message.objects.filter(project=project)
    assert set(messages.values_list("role", flat=True)) == set(MessageRole.values)
    assert messages.filter(tool_calls__isnull=False).exists()
    assert messages.exclude(tool_call_id="").exists()
    assert messages.filter(reply_to__isnull=False).exists()
    assert messages.filter(latency_ms__gt=0, completion_tokens__gt=0).exists()
    for conversation in conversations:
        seqs = list(conversation.messages.values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
        assert conversation.message_count == len(seqs)


def test_seed_demo_records_custom_events_and_audit_entries(project):
    seed()

    custom = Event.objects.filter(
        project=project, kind__in=["ci.failed", "budget.warning"]
    )
    assert custom.count() == 2
    actions = set(
        AuditLog.objects.filter(project=project).values_list("action", flat=True)
    )
    assert {"tool.invoke", "file.write"} <= actions
    assert audit_chain_verify(project_id=project.pk).intact


def test_seed_demo_seeds_another_project_without_clashing(project, other_project):
    seed()

    out = seed("--project", "other")

    assert "15 tasks (15 new)" in out
    assert Task.objects.filter(project=other_project).count() == 15
    assert Task.objects.filter(project=project).count() == 15


def test_seed_demo_rejects_an_unknown_project():
    with pytest.raises(CommandError, match="No project 'nope'"):
        seed("--project", "nope")

    assert not Task.objects.exists()
