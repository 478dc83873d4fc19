"""The full-text index of memories: a tsvector column and GIN index on
PostgreSQL, an FTS5 table with triggers on SQLite (conversations.search)."""

from django.db import migrations


def forwards(apps, schema_editor):
    from conversations import search

    search.install(schema_editor)


def backwards(apps, schema_editor):
    from conversations import search

    search.uninstall(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0004_participants_recipients_threads_memory"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
