from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.services import conversation_create, message_append
from reports.selectors import (
    StatsWindow,
    api_stats,
    project_stats,
    stats_window,
    task_stats,
    usage_stats,
)
from swarmsite.errors import ValidationError
from tasks.models import Task, TaskStatus
from tasks.services import agent_register, task_create
from tests.reports.factories import SINCE, UNTIL, api_requests, task_at

pytestmark = pytest.mark.django_db

WINDOW = StatsWindow(since=SINCE, until=UNTIL)
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


# Window -------------------------------------------------------------------


def test_window_defaults_to_the_24_hours_before_now():
    window = stats_window(now=NOW)
    assert window == StatsWindow(since=NOW - timedelta(days=1), until=NOW)


def test_window_with_only_until_covers_the_24_hours_before_it():
    until = NOW - timedelta(days=3)
    window = stats_window(until=until, now=NOW)
    assert window == StatsWindow(since=until - timedelta(days=1), until=until)


def test_window_with_only_since_runs_until_now():
    since = NOW - timedelta(days=5)
    assert stats_window(since=since, now=NOW) == StatsWindow(since=since, until=NOW)


def test_window_with_only_a_future_since_covers_the_24_hours_after_it():
    since = NOW + timedelta(hours=1)
    window = stats_window(since=since, now=NOW)
    assert window == StatsWindow(since=since, until=since + timedelta(days=1))


def test_window_refuses_until_not_after_since():
    with pytest.raises(ValidationError) as exc:
        stats_window(since=NOW, until=NOW, now=NOW)
    assert list(exc.value.fields) == ["until"]


def test_window_refuses_a_span_over_the_configured_maximum(settings):
    settings.STATS_MAX_WINDOW_DAYS = 7
    stats_window(since=NOW - timedelta(days=7), until=NOW)
    with pytest.raises(ValidationError) as exc:
        stats_window(since=NOW - timedelta(days=7, seconds=1), until=NOW)
    assert exc.value.fields == {"since": ["The window may span at most 7 days."]}


# Tasks --------------------------------------------------------------------


def test_task_stats_count_the_window_by_status_with_rate_and_durations(project, known):
    stats = task_stats(project=project, window=WINDOW)
    assert stats["total"] == 10
    assert stats["by_status"] == {
        "pending": 1,
        "queued": 0,
        "running": 2,
        "waiting": 0,
        "completed": 5,
        "failed": 1,
        "cancelled": 1,
    }
    assert set(stats["by_status"]) == set(TaskStatus.values)
    assert stats["finished"] == 7
    assert stats["completion_rate"] == round(5 / 7, 6)
    assert stats["duration_seconds"] == {
        "count": 5,
        "avg": 40.0,
        "p50": 30.0,
        "p95": 88.0,
    }


def test_task_stats_of_an_empty_window_have_no_rate_nor_durations(project):
    stats = task_stats(project=project, window=WINDOW)
    assert stats["total"] == 0
    assert stats["completion_rate"] is None
    assert stats["duration_seconds"] == {
        "count": 0,
        "avg": None,
        "p50": None,
        "p95": None,
    }


def test_task_durations_of_one_task_are_its_own(project):
    task_at(project, status="completed", seconds=12.5)
    durations = task_stats(project=project, window=WINDOW)["duration_seconds"]
    assert durations == {"count": 1, "avg": 12.5, "p50": 12.5, "p95": 12.5}


def test_task_percentiles_interpolate_between_neighbours(project):
    # Ranks 0..3 at 0.5 -> 1.5 (between 2 and 3), at 0.95 -> 2.85.
    for seconds in (4, 1, 3, 2):
        task_at(project, status="completed", seconds=seconds)
    durations = task_stats(project=project, window=WINDOW)["duration_seconds"]
    assert durations["p50"] == 2.5
    assert durations["p95"] == pytest.approx(3.85)
    assert durations["avg"] == 2.5


def test_task_stats_ignore_other_projects(project, other_project, known):
    stats = task_stats(project=other_project, window=WINDOW)
    assert stats["total"] == 1
    assert stats["by_status"]["completed"] == 1
    assert stats["duration_seconds"]["avg"] == 1000.0


# Usage --------------------------------------------------------------------


def test_usage_totals_add_messages_and_runs_of_the_window(project, known):
    total = usage_stats(project=project, window=WINDOW)["total"]
    assert total == {
        "messages": 3,
        "runs": 1,
        "prompt_tokens": 1300,
        "completion_tokens": 650,
        "cached_tokens": 10,
        "total_tokens": 1950,
        "cost": Decimal("0.024500"),
    }


def test_usage_by_agent_merges_messages_runs_and_assigned_tasks(project, known):
    by_agent = usage_stats(project=project, window=WINDOW)["by_agent"]
    assert [a["name"] for a in by_agent] == ["worker", "planner", ""]
    worker, planner, nobody = by_agent
    assert worker == {
        "agent": known["worker"].pk,
        "name": "worker",
        "messages": 1,
        "runs": 1,
        "prompt_tokens": 1200,
        "completion_tokens": 600,
        "cached_tokens": 0,
        "total_tokens": 1800,
        "cost": Decimal("0.023000"),
        "tasks": 3,
        "tasks_completed": 2,
        "tasks_failed": 0,
    }
    assert planner["agent"] == known["planner"].pk
    assert (planner["messages"], planner["runs"], planner["total_tokens"]) == (
        1,
        0,
        150,
    )
    assert planner["cost"] == Decimal("0.001500")
    assert (planner["tasks"], planner["tasks_completed"]) == (4, 3)
    assert planner["tasks_failed"] == 1
    assert nobody["agent"] is None
    assert (nobody["messages"], nobody["total_tokens"], nobody["tasks"]) == (1, 0, 0)


def test_usage_by_model_sums_to_the_totals(project, known):
    usage = usage_stats(project=project, window=WINDOW)
    by_model = {m["model"]: m for m in usage["by_model"]}
    assert list(by_model) == ["claude", "gpt-4o", ""]
    assert by_model["claude"]["total_tokens"] == 1800
    assert (by_model["claude"]["messages"], by_model["claude"]["runs"]) == (1, 1)
    assert by_model["gpt-4o"]["cached_tokens"] == 10
    assert by_model["gpt-4o"]["cost"] == Decimal("0.001500")
    for name in ("messages", "runs", "prompt_tokens", "total_tokens", "cost"):
        assert sum(m[name] for m in by_model.values()) == usage["total"][name]


def test_an_agent_with_tasks_but_no_usage_is_listed(project):
    idle = agent_register(project=project, name="idle")[0]
    task_at(project, status="failed", agent=idle)
    (entry,) = usage_stats(project=project, window=WINDOW)["by_agent"]
    assert entry["agent"] == idle.pk
    assert (entry["tasks"], entry["tasks_failed"], entry["messages"]) == (1, 1, 0)


def test_breakdowns_are_capped_but_totals_are_not(project, settings):
    settings.STATS_MAX_GROUPS = 2
    for n in range(3):
        agent = agent_register(project=project, name=f"a{n}")[0]
        task_at(project, agent=agent)
    conversation = conversation_create(project=project)[0]
    message_append(
        conversation=conversation,
        messages=[
            {"role": "assistant", "model": f"m{n}", "cost": "1", "created_at": SINCE}
            for n in range(3)
        ],
    )
    usage = usage_stats(project=project, window=WINDOW)
    assert [a["name"] for a in usage["by_agent"]] == ["", "a0"]
    assert [m["model"] for m in usage["by_model"]] == ["m0", "m1"]
    assert usage["total"]["messages"] == 3
    assert usage["total"]["cost"] == Decimal("3.000000")


def test_usage_ignores_other_projects(other_project, known):
    total = usage_stats(project=other_project, window=WINDOW)["total"]
    assert (total["messages"], total["prompt_tokens"]) == (1, 5000)
    assert total["cost"] == Decimal("5.000000")


# API traffic --------------------------------------------------------------


def test_api_stats_count_requests_and_errors_by_endpoint(project, known):
    api = api_stats(project=project, window=WINDOW)
    assert (api["requests"], api["errors"], api["server_errors"]) == (5, 2, 1)
    assert api["error_rate"] == 0.4
    assert api["by_endpoint"] == [
        {
            "method": "GET",
            "endpoint": "tasks:task-detail",
            "requests": 3,
            "errors": 1,
            "server_errors": 0,
            "error_rate": 0.333333,
            "avg_duration_ms": 20.0,
        },
        {
            "method": "POST",
            "endpoint": "ingest:ingest",
            "requests": 1,
            "errors": 1,
            "server_errors": 1,
            "error_rate": 1.0,
            "avg_duration_ms": 100.0,
        },
        {
            "method": "POST",
            "endpoint": "tasks:task-list",
            "requests": 1,
            "errors": 0,
            "server_errors": 0,
            "error_rate": 0.0,
            "avg_duration_ms": 40.0,
        },
    ]


def test_api_requests_without_a_route_are_grouped_by_path(project):
    api_requests(project, [("GET", "", 404, 1.0), ("GET", "", 404, 3.0)])
    groups = api_stats(project=project, window=WINDOW)["by_endpoint"]
    assert {g["endpoint"]: g["requests"] for g in groups} == {
        "/api/v1/nowhere/0": 1,
        "/api/v1/nowhere/1": 1,
    }


def test_api_totals_count_endpoints_beyond_the_cap(project, known, settings):
    settings.STATS_MAX_GROUPS = 1
    api = api_stats(project=project, window=WINDOW)
    assert [g["endpoint"] for g in api["by_endpoint"]] == ["tasks:task-detail"]
    assert (api["requests"], api["errors"], api["server_errors"]) == (5, 2, 1)


def test_api_stats_without_requests_have_no_error_rate(project):
    api = api_stats(project=project, window=WINDOW)
    assert api == {
        "requests": 0,
        "errors": 0,
        "server_errors": 0,
        "error_rate": None,
        "by_endpoint": [],
    }


# Cost of the queries ------------------------------------------------------


def _count_queries(project) -> int:
    with CaptureQueriesContext(connection) as ctx:
        project_stats(project=project, window=WINDOW)
    return len(ctx.captured_queries)


def test_queries_do_not_grow_with_rows_agents_models_or_endpoints(project, known):
    before = _count_queries(project)
    conversation = conversation_create(project=project)[0]
    for n in range(20):
        agent = agent_register(project=project, name=f"extra-{n}")[0]
        task = task_create(project=project, title="more", assigned_agent=agent)[0]
        Task.objects.filter(pk=task.pk).update(created_at=SINCE)
        task_at(project, status="completed", agent=agent, seconds=n + 1)
        message_append(
            conversation=conversation,
            messages=[
                {
                    "role": "assistant",
                    "sender": str(agent.pk),
                    "model": f"model-{n}",
                    "prompt_tokens": n,
                    "created_at": SINCE,
                }
            ],
        )
        api_requests(project, [("GET", f"app:route-{n}", 200, 1.0)])
    stats = project_stats(project=project, window=WINDOW)
    assert len(stats["by_agent"]) == 23
    assert len(stats["by_model"]) == 23
    assert len(stats["api"]["by_endpoint"]) == 23
    assert _count_queries(project) == before
    assert before <= 8
