"""Event positions follow commit order, so an "after P" reader misses nothing.

PostgreSQL only: SQLite runs one writer at a time, so commit order is trivially
the order of any counter there.
"""

import threading
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from audit.journal import journaled
from audit.models import Event
from audit.services import audit_custom_event_create
from swarmsite.services import project_create
from tasks.services import task_create, task_progress_set
from tests.utils import postgres_only

pytestmark = [postgres_only, pytest.mark.django_db(transaction=True)]

WRITERS = 8
ROUNDS = 8
WAIT = 10


@pytest.fixture
def project(transactional_db):
    return project_create(slug="positions")[0]


def in_thread(target: Callable[[], None], errors: list) -> threading.Thread:
    """A thread running `target` on its own connection, closed at the end."""

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def read_after(project, field: str, last: int) -> list[int]:
    return list(
        Event.objects.filter(project=project, **{f"{field}__gt": last})
        .order_by(field)
        .values_list(field, flat=True)
    )


def test_a_position_reader_sees_every_event_of_concurrent_writers_once(project):
    barrier = threading.Barrier(WRITERS + 1)
    writers_done = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def writer(number: int) -> Callable[[], None]:
        def write() -> None:
            barrier.wait(WAIT)
            for round_ in range(ROUNDS):
                if number % 2:
                    audit_custom_event_create(
                        project_id=project.pk,
                        kind="writer.tick",
                        payload={"writer": number, "round": round_},
                    )
                else:
                    task, _ = task_create(project=project, title=f"{number}-{round_}")
                    task_progress_set(task=task, progress=50)

        return write

    def reader() -> None:
        last = 0
        barrier.wait(WAIT)
        while True:
            finished = writers_done.is_set()
            batch = read_after(project, "position", last)
            seen.extend(batch)
            if batch:
                last = batch[-1]
            elif finished:
                return

    threads = [in_thread(writer(n), errors) for n in range(WRITERS)]
    reading = in_thread(reader, errors)
    for thread in threads:
        thread.join(60)
    writers_done.set()
    reading.join(60)

    assert errors == []
    expected = (WRITERS // 2) * ROUNDS * 2 + (WRITERS - WRITERS // 2) * ROUNDS
    stored = list(
        Event.objects.filter(project=project)
        .order_by("position")
        .values_list("position", flat=True)
    )
    assert stored == list(range(1, expected + 1))
    assert seen == stored
    recorded = list(
        Event.objects.filter(project=project)
        .order_by("position")
        .values_list("recorded_at", flat=True)
    )
    assert recorded == sorted(recorded)


def test_an_id_cursor_misses_a_row_that_commits_late_with_a_smaller_id(project):
    inserted, may_commit = threading.Event(), threading.Event()
    ids: dict[str, int] = {}
    errors: list[BaseException] = []

    def slow_writer() -> None:
        with transaction.atomic():
            ids["slow"] = Event.objects.create(
                project=project, position=1, kind="slow.writer"
            ).pk
            inserted.set()
            assert may_commit.wait(WAIT)

    def fast_writer() -> None:
        ids["fast"] = Event.objects.create(
            project=project, position=2, kind="fast.writer"
        ).pk

    slow = in_thread(slow_writer, errors)
    assert inserted.wait(WAIT)
    in_thread(fast_writer, errors).join(WAIT)

    first = read_after(project, "id", 0)
    may_commit.set()
    slow.join(WAIT)
    second = read_after(project, "id", first[-1])

    assert errors == []
    assert ids["slow"] < ids["fast"]
    assert first == [ids["fast"]]
    assert second == []
    assert ids["slow"] not in first + second
    assert Event.objects.filter(pk=ids["slow"]).exists()


@pytest.mark.parametrize("head_exists", [True, False], ids=["head", "no-head"])
def test_the_journal_head_lock_makes_a_later_writer_wait_for_the_slow_one(
    project, head_exists
):
    if head_exists:
        audit_custom_event_create(project_id=project.pk, kind="warm.up")
    start = read_after(project, "position", 0)
    flushed, may_commit, fast_done = (threading.Event() for _ in range(3))
    events: dict[str, Event] = {}
    errors: list[BaseException] = []

    def slow_writer() -> None:
        with transaction.atomic():
            with journaled():
                events["slow"] = audit_custom_event_create(
                    project_id=project.pk, kind="slow.writer"
                )
            # The journal has flushed: the head row stays locked until commit.
            flushed.set()
            assert may_commit.wait(WAIT)

    def fast_writer() -> None:
        events["fast"] = audit_custom_event_create(
            project_id=project.pk, kind="fast.writer"
        )
        fast_done.set()

    slow = in_thread(slow_writer, errors)
    assert flushed.wait(WAIT)
    fast = in_thread(fast_writer, errors)

    assert not fast_done.wait(0.5)
    last = start[-1] if start else 0
    assert read_after(project, "position", last) == []
    may_commit.set()
    slow.join(WAIT)
    fast.join(WAIT)

    assert errors == []
    assert events["fast"].position == events["slow"].position + 1 == last + 2
    assert read_after(project, "position", last) == [last + 1, last + 2]
    assert list(
        Event.objects.filter(project=project, position__gt=last)
        .order_by("position")
        .values_list("kind", flat=True)
    ) == ["slow.writer", "fast.writer"]
