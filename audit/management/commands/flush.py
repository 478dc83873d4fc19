from django.core.management.commands import flush
from django.db import DEFAULT_DB_ALIAS, transaction

from audit.models import AuditLog, DeletionGrant, Event


class Command(flush.Command):
    """Django's flush, able to empty the append-only tables too."""

    def handle(self, **options):
        database = options.get("database") or DEFAULT_DB_ALIAS
        # Empty the guarded tables first, under a grant, so the triggers let
        # the deletes through whatever order flush takes the tables in.
        with transaction.atomic(using=database):
            DeletionGrant.objects.using(database).create(reason="flush")
            Event.objects.using(database).all().delete()
            AuditLog.objects.using(database).all().delete()
            super().handle(**options)
            DeletionGrant.objects.using(database).all().delete()
