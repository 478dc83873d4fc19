import threading

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audit.models import AuditLog, DeletionGrant, Event
from audit.retention import audit_deletion_granted
from audit.services import audit_custom_event_create, audit_log_record
from audit.triggers import APPEND_ONLY_TABLES
from swarmsite.services import project_create
from tests.utils import postgres_only

pytestmark = pytest.mark.django_db

MODELS = {"audit_event": Event, "audit_auditlog": AuditLog}


@pytest.fixture
def journal(db):
    """A project (surviving test flushes) with one event and one audit record."""
    project = project_create(slug="default", name="Default")[0]
    audit_custom_event_create(project_id=project.pk, kind="deploy.finished")
    audit_log_record(project_id=project.pk, action="tool.invoke")
    return project


def execute(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def rows(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} ORDER BY id")
        return cursor.fetchall()


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE {table} SET actor_label = 'forged'",
        "UPDATE {table} SET project_id = project_id",
        "DELETE FROM {table}",
    ],
)
def test_raw_sql_update_and_delete_are_refused(journal, table, sql):
    before = rows(table)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        execute(sql.format(table=table))

    assert rows(table) == before


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_orm_queryset_update_is_refused(journal, table):
    model = MODELS[table]

    with pytest.raises(DatabaseError), transaction.atomic():
        model.objects.all().update(actor_label="forged")

    assert not model.objects.filter(actor_label="forged").exists()


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_orm_queryset_delete_is_refused(journal, table):
    model = MODELS[table]

    with pytest.raises(DatabaseError), transaction.atomic():
        model.objects.all().delete()

    assert model.objects.count() == 1


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_orm_instance_save_and_delete_are_refused(journal, table):
    model = MODELS[table]
    row = model.objects.get()

    row.actor_label = "forged"
    with pytest.raises(DatabaseError), transaction.atomic():
        row.save()
    with pytest.raises(DatabaseError), transaction.atomic():
        model.objects.get().delete()

    assert model.objects.get().actor_label == "system"


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_deletes_go_through_inside_a_deletion_grant(journal, table):
    model = MODELS[table]

    with audit_deletion_granted(reason="prune"):
        execute(f"DELETE FROM {table}")

    assert not model.objects.exists()
    assert not DeletionGrant.objects.exists()


def test_orm_deletes_go_through_inside_a_deletion_grant(journal):
    with audit_deletion_granted(reason="prune"):
        Event.objects.filter(project=journal).delete()
        AuditLog.objects.get().delete()

    assert not Event.objects.exists()
    assert not AuditLog.objects.exists()


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_updates_are_refused_even_inside_a_deletion_grant(journal, table):
    before = rows(table)

    with (
        pytest.raises(DatabaseError),
        audit_deletion_granted(reason="not for updates"),
    ):
        execute(f"UPDATE {table} SET actor_label = 'forged'")

    assert rows(table) == before


def test_inserts_are_allowed_without_a_grant(journal):
    Event.objects.create(project=journal, position=1000, kind="raw.insert")

    assert Event.objects.filter(position=1000).exists()


# TRUNCATE cannot follow inserts in one transaction (pending FK checks), so
# these commit their rows first.


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_truncate_is_refused_without_a_grant(journal, table):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        execute(f"TRUNCATE {table}")

    assert MODELS[table].objects.count() == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_truncate_goes_through_inside_a_deletion_grant(journal):
    with audit_deletion_granted(reason="reset"):
        execute("TRUNCATE audit_event, audit_auditlog")

    assert not Event.objects.exists()
    assert not AuditLog.objects.exists()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_grant_in_another_open_transaction_lets_nothing_through(journal):
    granted, done = threading.Event(), threading.Event()

    def hold_a_grant() -> None:
        try:
            with audit_deletion_granted(reason="other connection"):
                granted.set()
                done.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_a_grant)
    holder.start()
    try:
        assert granted.wait(10)
        with pytest.raises(DatabaseError, match="append-only"):
            Event.objects.all().delete()
    finally:
        done.set()
        holder.join(10)

    assert Event.objects.count() == 1


# Flushing the test database ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_flush_empties_the_append_only_tables_and_keeps_their_triggers(journal):
    call_command("flush", interactive=False, verbosity=0)

    assert not Event.objects.exists()
    assert not AuditLog.objects.exists()
    assert not DeletionGrant.objects.exists()
    project = project_create(slug="default")[0]
    audit_custom_event_create(project_id=project.pk, kind="after.flush")
    with pytest.raises(DatabaseError):
        Event.objects.all().delete()
    with pytest.raises(DatabaseError):
        Event.objects.all().update(kind="forged")


@pytest.mark.django_db(transaction=True)
def test_a_transactional_test_commits_events_for_the_next_one_to_not_see(journal):
    assert Event.objects.count() == 1
    assert AuditLog.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_flush_between_transactional_tests_left_no_event_behind():
    assert not Event.objects.exists()
    assert not AuditLog.objects.exists()
    assert not DeletionGrant.objects.exists()
