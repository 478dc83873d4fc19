import pytest

from audit.services import audit_custom_event_create

pytestmark = pytest.mark.django_db


def test_live_events_page_starts_a_backlog_before_the_latest_position(
    staff_client, project
):
    for index in range(60):
        audit_custom_event_create(project_id=project.pk, kind=f"demo.{index}")
    response = staff_client.get("/admin/live-events/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "/ws/v1/events/?batch=1&after=" in body
    assert '<script id="stream-after" type="application/json">10</script>' in body


def test_live_events_page_sends_anonymous_visitors_to_the_login(client, project):
    response = client.get("/admin/live-events/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
