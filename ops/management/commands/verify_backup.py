from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ops.backup import BackupError, backup_verify
from ops.management.commands.backup import write_tables


class Command(BaseCommand):
    help = (
        "Open a backup and print its tables and row counts, read back from the "
        "file (--restore-test also restores a pg_dump archive into a scratch "
        "database, then drops it); exits non-zero when it cannot be read."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Backup file.")
        parser.add_argument(
            "--restore-test",
            action="store_true",
            help="PostgreSQL: also restore into a scratch database, then drop it.",
        )
        parser.add_argument(
            "--database",
            default="default",
            help="Alias whose server hosts the scratch database (PostgreSQL).",
        )

    def handle(self, *args, **options):
        try:
            report = backup_verify(
                path=options["path"],
                restore_test=options["restore_test"],
                using=options["database"],
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{report.path}: readable {report.vendor} backup")
        write_tables(self, report)
