import hashlib
from decimal import Decimal
from unittest import mock

import pytest
from django.contrib import admin
from django.forms import CharField, Form
from django.urls import reverse

from audit.models import AuditLog, DeletionGrant, Event, JournalHead
from audit.retention import audit_deletion_granted
from audit.services import audit_custom_event_create, audit_log_record
from conversations.models import Conversation, Message, Participant
from conversations.services import conversation_create, message_append
from swarmsite import admin_utils
from swarmsite.admin_utils import (
    ApproximateCount,
    LargeTablePaginator,
    add_service_error,
    pretty_json,
    service_error_text,
    table_estimate,
)
from swarmsite.errors import NotFound, ValidationError, VersionConflict
from swarmsite.models import ApiKey, Project
from swarmsite.services import project_create
from tasks.models import (
    Agent,
    AgentHeartbeat,
    AgentRun,
    Task,
    TaskDependency,
    Workflow,
)
from tasks.services import (
    agent_heartbeat,
    agent_register,
    run_create,
    task_create,
    workflow_create,
)
from tests.swarmsite.factories import ApiKeyFactory
from tests.utils import messages_of, postgres_only

pytestmark = pytest.mark.django_db


# Every model ----------------------------------------------------------------


@pytest.fixture
def every_model(project, agent, task):
    """One row at least of every model, each written through its service."""
    other, _ = project_create(slug="other", name="Other")
    key = ApiKeyFactory(project=project, name="ci")
    child, _ = agent_register(project=project, name="helper", parent=agent)
    agent_heartbeat(agent=agent, status="busy", details={"load": 0.5})
    workflow, _ = workflow_create(project=project, name="nightly")
    subtask, _ = task_create(
        project=project,
        title="Draft a section",
        parent=task,
        workflow=workflow,
        assigned_agent=child,
        depends_on=[task.pk],
    )
    run, _ = run_create(project=project, task=task, agent=agent, prompt_tokens=10)
    conversation, _ = conversation_create(
        project=project, task=task, title="Planning", participants=[agent.pk]
    )
    message_append(
        conversation=conversation,
        messages=[
            {"role": "user", "content": "Plan it."},
            {"role": "assistant", "content": "Done.", "sender": str(agent.pk)},
        ],
    )
    audit_custom_event_create(
        project_id=project.pk, kind="deploy.finished", payload={"ok": True}
    )
    audit_log_record(project_id=project.pk, action="tool.invoke", target="search")
    return {
        Project: other,
        ApiKey: key,
        Agent: child,
        AgentHeartbeat: AgentHeartbeat.objects.first(),
        Workflow: workflow,
        Task: subtask,
        TaskDependency: TaskDependency.objects.first(),
        AgentRun: run,
        Conversation: conversation,
        Participant: Participant.objects.first(),
        Message: Message.objects.first(),
        Event: Event.objects.first(),
        AuditLog: AuditLog.objects.first(),
        JournalHead: JournalHead.objects.first(),
    }


WRITABLE = (Project, ApiKey, Agent, Workflow, Task, TaskDependency, AgentRun)
WRITABLE += (Conversation,)


def _url(model, view: str, *args) -> str:
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


def test_every_model_has_changelist_change_and_add_pages(staff_client, every_model):
    assert {*every_model, DeletionGrant} <= set(admin.site._registry)
    index = staff_client.get(reverse("admin:index"))
    assert index.status_code == 200
    for model, obj in every_model.items():
        assert obj is not None, model
        changelist = staff_client.get(_url(model, "changelist"))
        assert changelist.status_code == 200, model
        change = staff_client.get(_url(model, "change", obj.pk))
        assert change.status_code == 200, model
        add = staff_client.get(_url(model, "add"))
        assert add.status_code == (200 if model in WRITABLE else 403), model


def test_deletion_grant_pages_render_while_a_grant_exists(staff_client, project):
    with audit_deletion_granted(reason="admin test"):
        grant = DeletionGrant.objects.get()
        changelist = staff_client.get(_url(DeletionGrant, "changelist"))
        change = staff_client.get(_url(DeletionGrant, "change", grant.pk))
    assert changelist.status_code == 200
    assert b"admin test" in changelist.content
    assert change.status_code == 200
    assert staff_client.get(_url(DeletionGrant, "add")).status_code == 403


def test_every_changelist_search_and_filters_render(staff_client, every_model, task):
    for model in every_model:
        url = _url(model, "changelist")
        for query in ({"q": "plan"}, {"q": str(task.pk)}, {"o": "1"}):
            response = staff_client.get(url, query)
            assert response.status_code == 200, (model, query)
        for spec in response.context["cl"].filter_specs:
            for choice in spec.choices(response.context["cl"]):
                query = choice["query_string"]
                assert staff_client.get(url + query).status_code == 200, (model, query)


# Projects -------------------------------------------------------------------


def test_project_add_goes_through_project_create(staff_client):
    response = staff_client.post(
        _url(Project, "add"), {"slug": "research", "name": "Research"}
    )
    assert response.status_code == 302
    project = Project.objects.get(slug="research")
    assert project.name == "Research"


def test_project_add_with_taken_slug_shows_the_error(staff_client, project):
    response = staff_client.post(_url(Project, "add"), {"slug": "default", "name": "x"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"]
    assert Project.objects.filter(slug="default").count() == 1


def test_project_change_is_refused(staff_client, project):
    url = _url(Project, "change", project.pk)
    response = staff_client.post(url, {"slug": "renamed", "name": "Renamed"})
    assert response.status_code == 403
    project.refresh_from_db()
    assert project.slug == "default"


# API keys -------------------------------------------------------------------


def test_api_key_add_shows_the_secret_once_and_stores_its_hash(staff_client, project):
    response = staff_client.post(
        _url(ApiKey, "add"),
        {"project": project.pk, "name": "deployer", "scopes": ["read", "admin"]},
        follow=True,
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="deployer")
    assert key.scopes == ["admin", "read"]
    shown = [m for m in messages_of(response) if "secret" in m]
    assert len(shown) == 1
    secret = shown[0].split("<code>")[1].split("</code>")[0]
    assert hashlib.sha256(secret.encode()).hexdigest() == key.key_hash
    again = staff_client.get(_url(ApiKey, "change", key.pk))
    assert secret.encode() not in again.content


def test_api_key_pages_never_show_the_hash(staff_client, project):
    key = ApiKeyFactory(project=project, name="ci")
    for url in (_url(ApiKey, "changelist"), _url(ApiKey, "change", key.pk)):
        response = staff_client.get(url)
        assert response.status_code == 200
        assert key.key_hash.encode() not in response.content
        assert b"key_hash" not in response.content


def test_api_key_revoke_action_goes_through_the_service(staff_client, project):
    key = ApiKeyFactory(project=project, name="ci")
    response = staff_client.post(
        _url(ApiKey, "changelist"),
        {"action": "revoke_keys", "_selected_action": [key.pk]},
        follow=True,
    )
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "Revoked 1 API keys." in messages_of(response)


def test_api_key_cannot_be_changed_or_deleted(staff_client, project):
    key = ApiKeyFactory(project=project, name="ci")
    change = staff_client.post(_url(ApiKey, "change", key.pk), {"name": "renamed"})
    assert change.status_code == 403
    assert staff_client.get(_url(ApiKey, "delete", key.pk)).status_code == 403


# Helpers of swarmsite.admin_utils -------------------------------------------


def test_pretty_json_indents_and_escapes():
    html = pretty_json({"b": "<script>", "a": [1, Decimal("2.5")]})
    assert html.startswith("<pre")
    assert "&lt;script&gt;" in html
    assert "<script>" not in html
    assert "\n  &quot;a&quot;: [" in html


def test_paginator_counts_up_to_its_cap(project):
    for n in range(5):
        project_create(slug=f"p{n}")
    paginator = LargeTablePaginator(Project.objects.order_by("slug"), 2)
    paginator.count_cap = 3
    assert paginator.count == 3
    assert isinstance(paginator.count, ApproximateCount)
    assert str(paginator.count) == "3+"
    assert paginator.num_pages == 2
    # Rows past the cap are reached by filtering, not by paging.
    assert len(paginator.page(2).object_list) == 1


def test_paginator_count_is_exact_below_its_cap(project):
    paginator = LargeTablePaginator(Project.objects.order_by("slug"), 10)
    assert paginator.count == 1
    assert not isinstance(paginator.count, ApproximateCount)


def test_paginator_uses_the_estimate_for_a_big_unfiltered_table(project):
    with mock.patch.object(admin_utils, "table_estimate", return_value=2_000_000):
        unfiltered = LargeTablePaginator(Project.objects.order_by("slug"), 100)
        filtered = LargeTablePaginator(Project.objects.filter(slug="default"), 100)
        assert unfiltered.count == 2_000_000
        assert str(unfiltered.count) == "about 2,000,000"
        assert filtered.count == 1


def test_paginator_ignores_a_small_estimate(project):
    with mock.patch.object(admin_utils, "table_estimate", return_value=3):
        assert LargeTablePaginator(Project.objects.all(), 100).count == 1


@postgres_only
def test_table_estimate_reads_the_planner_statistics(project):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE swarmsite_project")
    assert table_estimate(Project) == Project.objects.count()


def test_service_errors_land_on_the_form_fields():
    class NameForm(Form):
        name = CharField()

    form = NameForm({"name": "x"})
    form.is_valid()
    add_service_error(
        form, ValidationError({"name": "Taken.", "parent": "No agent 1."})
    )
    assert form.errors["name"] == ["Taken."]
    assert form.non_field_errors() == ["parent: No agent 1."]


def test_service_errors_read_as_one_line_in_admin_messages():
    fields = ValidationError({"name": "Taken.", "non_field_errors": "Bad."})
    assert service_error_text(fields) == "name: Taken.; Bad."
    assert service_error_text(NotFound("No task x.")) == "No task x."
    conflict = service_error_text(VersionConflict(expected=1, actual=2))
    assert conflict.endswith("Reload the page to see the changes.")


def test_a_lower_apps_admin_shows_inlines_offered_by_an_upper_app(task):
    task_admin = admin.site.get_model_admin(Task)
    inlines = task_admin.get_inlines(None, task)
    assert [i.model for i in task_admin.offered_inlines(None, task)] == [Conversation]
    assert (
        inlines[-1]
        is admin.site.get_model_admin(Conversation).inlines_for["tasks.Task"]
    )
