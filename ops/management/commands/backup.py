from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ops.backup import BackupError, BackupReport, backup_create


def write_tables(command: BaseCommand, report: BackupReport) -> None:
    """One line per table with its row count, then the totals."""
    width = max((len(name) for name in report.tables), default=0)
    for name, rows in report.tables.items():
        command.stdout.write(f"  {name:<{width}}  {rows}")
    command.stdout.write(
        f"{len(report.tables)} tables, {report.total_rows} rows, "
        f"{report.size_bytes} bytes"
    )


class Command(BaseCommand):
    help = (
        "Back the database up while the server keeps writing (SQLite online "
        "backup API, or pg_dump -Fc on PostgreSQL), named with a UTC timestamp, "
        "then verify it by reading its tables and row counts back."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            type=Path,
            help="Folder (default DATA_DIR/backups) or file to write.",
        )
        parser.add_argument(
            "--keep",
            type=int,
            help="Keep only the newest N backups in the folder; delete the rest.",
        )
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args, **options):
        try:
            report = backup_create(
                output=options["output"],
                keep=options["keep"],
                using=options["database"],
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Verified {report.vendor} backup:")
        write_tables(self, report)
        for path in report.rotated:
            self.stdout.write(f"Removed old backup {path}")
        self.stdout.write(f"Backup written in {report.seconds:.2f}s to")
        self.stdout.write(str(report.path))
