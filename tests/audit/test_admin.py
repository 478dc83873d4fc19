import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditLog, DeletionGrant, Event, EventKind, JournalHead
from audit.retention import audit_deletion_granted
from audit.services import (
    audit_custom_event_create,
    audit_events_record,
    audit_log_record,
)
from tests.conftest import count_queries
from tests.utils import messages_of

pytestmark = pytest.mark.django_db

EVENTS = reverse("admin:audit_event_changelist")
AUDIT = reverse("admin:audit_auditlog_changelist")


def _record_events(project, task, count: int) -> None:
    kinds = [EventKind.TASK_PROGRESS, "deploy.finished"]
    audit_events_record(
        project_id=project.pk,
        events=[
            {"kind": kinds[n % 2], "task_id": task.pk, "payload": {"n": n}}
            for n in range(count)
        ],
    )


def _urls(obj) -> dict[str, str]:
    name = f"admin:audit_{obj._meta.model_name}"
    return {
        "add": reverse(f"{name}_add"),
        "change": reverse(f"{name}_change", args=[obj.pk]),
        "delete": reverse(f"{name}_delete", args=[obj.pk]),
    }


# Read-only ----------------------------------------------------------------------


@pytest.mark.parametrize("model", [Event, AuditLog, JournalHead])
def test_audit_models_refuse_add_change_and_delete(staff_client, task, model):
    obj = model.objects.first()
    before = model.objects.filter(pk=obj.pk).values().get()
    urls = _urls(obj)
    assert staff_client.get(urls["add"]).status_code == 403
    assert staff_client.post(urls["add"], {}).status_code == 403
    change = staff_client.get(urls["change"])
    assert change.status_code == 200
    assert b'name="_save"' not in change.content
    assert b"deletelink" not in change.content
    assert staff_client.post(urls["change"], {}).status_code == 403
    assert staff_client.get(urls["delete"]).status_code == 403
    assert staff_client.post(urls["delete"], {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).values().get() == before


def test_deletion_grants_refuse_add_change_and_delete(staff_client, project):
    with audit_deletion_granted(reason="prune"):
        grant = DeletionGrant.objects.get()
        urls = _urls(grant)
        assert staff_client.get(urls["add"]).status_code == 403
        assert staff_client.post(urls["change"], {"reason": "x"}).status_code == 403
        assert staff_client.post(urls["delete"], {"post": "yes"}).status_code == 403
        assert DeletionGrant.objects.get().reason == "prune"


def test_event_changelist_offers_no_delete_action(staff_client, task):
    response = staff_client.get(EVENTS)
    model_admin = response.context["cl"].model_admin
    assert "delete_selected" not in model_admin.get_actions(response.wsgi_request)
    assert b"delete_selected" not in response.content


# Event changelist -----------------------------------------------------------------


def test_event_changelist_queries_do_not_grow_with_rows(
    staff_client, project, task, django_assert_max_num_queries
):
    _record_events(project, task, 5)
    few = count_queries(staff_client, EVENTS)
    _record_events(project, task, 45)
    with django_assert_max_num_queries(few):
        response = staff_client.get(EVENTS)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == Event.objects.count()


def test_event_changelist_runs_no_distinct_and_no_full_count(staff_client, task):
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(EVENTS, {"kind": EventKind.TASK_CREATED})
    assert response.status_code == 200
    sql = [q["sql"] for q in queries.captured_queries]
    assert not any("DISTINCT" in s for s in sql)
    counts = [s for s in sql if "COUNT(" in s]
    assert counts
    assert all("LIMIT" in s for s in counts)


def test_event_kind_filter_lists_every_kind_without_a_query(staff_client, task):
    response = staff_client.get(EVENTS)
    kind_filter = next(
        spec
        for spec in response.context["cl"].filter_specs
        if getattr(spec, "parameter_name", "") == "kind"
    )
    offered = [c["display"] for c in kind_filter.choices(response.context["cl"])]
    assert set(EventKind.values) <= set(offered)
    assert "Custom kinds" in offered


def test_event_kind_filters(staff_client, project, task):
    audit_custom_event_create(project_id=project.pk, kind="deploy.finished")
    response = staff_client.get(EVENTS, {"kind": EventKind.TASK_CREATED})
    assert [e.kind for e in response.context["cl"].result_list] == ["task.created"]
    response = staff_client.get(EVENTS, {"kind": "__other__"})
    assert [e.kind for e in response.context["cl"].result_list] == ["deploy.finished"]


def test_event_search_by_task_id_and_filters_render(staff_client, project, task):
    _record_events(project, task, 3)
    response = staff_client.get(EVENTS, {"q": str(task.pk)})
    assert {e.task_id for e in response.context["cl"].result_list} == {task.pk}
    response = staff_client.get(EVENTS, {"q": "deploy.finished"})
    assert len(response.context["cl"].result_list) == 1
    for spec in response.context["cl"].filter_specs:
        for choice in spec.choices(response.context["cl"]):
            assert staff_client.get(EVENTS + choice["query_string"]).status_code == 200


def test_events_of_a_task_are_listed_in_position_order(staff_client, project, task):
    _record_events(project, task, 3)
    response = staff_client.get(
        EVENTS, {"project__id__exact": project.pk, "task_id": str(task.pk)}
    )
    positions = [e.position for e in response.context["cl"].result_list]
    assert positions == sorted(positions, reverse=True)
    assert len(positions) == 4


def test_event_change_page_shows_the_payload_escaped_and_indented(
    staff_client, project, task
):
    event = audit_custom_event_create(
        project_id=project.pk,
        kind="note.added",
        task_id=task.pk,
        payload={"text": "<b>bold</b>", "tags": ["a"]},
    )
    response = staff_client.get(_urls(Event.objects.get(uuid=event.uuid))["change"])
    html = response.content.decode()
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<b>bold</b>" not in html
    assert "&quot;tags&quot;: [\n" in html
    assert reverse("admin:tasks_task_change", args=[task.pk]) in html


# Audit log ------------------------------------------------------------------------


def test_audit_log_changelist_filters_and_searches(staff_client, project, task):
    audit_log_record(
        project_id=project.pk,
        action="tool.invoke",
        target="web.search",
        success=False,
        request_id="req-42",
        details={"q": "<script>"},
    )
    response = staff_client.get(AUDIT, {"action": "tool.invoke"})
    assert [e.target for e in response.context["cl"].result_list] == ["web.search"]
    response = staff_client.get(AUDIT, {"success__exact": "0"})
    assert [e.request_id for e in response.context["cl"].result_list] == ["req-42"]
    response = staff_client.get(AUDIT, {"q": "req-42"})
    assert len(response.context["cl"].result_list) == 1
    for spec in response.context["cl"].filter_specs:
        for choice in spec.choices(response.context["cl"]):
            assert staff_client.get(AUDIT + choice["query_string"]).status_code == 200
    entry = AuditLog.objects.get(request_id="req-42")
    change = staff_client.get(_urls(entry)["change"]).content.decode()
    assert "&lt;script&gt;" in change


def test_audit_log_changelist_queries_do_not_grow_with_rows(
    staff_client, project, django_assert_max_num_queries
):
    def record(count):
        for n in range(count):
            audit_log_record(project_id=project.pk, action="file.read", target=f"{n}")

    record(5)
    few = count_queries(staff_client, AUDIT)
    record(45)
    with django_assert_max_num_queries(few):
        assert staff_client.get(AUDIT).status_code == 200


def test_journal_head_action_verifies_the_audit_chain(staff_client, project, task):
    response = staff_client.post(
        reverse("admin:audit_journalhead_changelist"),
        {"action": "verify_audit_chain", "_selected_action": [project.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert any("chain intact" in m for m in messages_of(response))
