from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ops.backup import BackupError, backup_restore
from ops.management.commands.backup import write_tables


class Command(BaseCommand):
    help = (
        "Restore a backup into the configured database, which must be empty "
        "unless --force (which replaces its contents). Stop the server first."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Backup file.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace the contents of a database that is not empty.",
        )
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args, **options):
        try:
            report = backup_restore(
                path=options["path"],
                force=options["force"],
                using=options["database"],
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Restored {report.path}; row counts match the backup:")
        write_tables(self, report)
        self.stdout.write(
            "Run `manage.py migrate` next if the backup predates this version."
        )
