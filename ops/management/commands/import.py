from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from ops.management.commands._files import open_for_reading
from ops.services import DataImportError, data_import


class Command(BaseCommand):
    help = (
        "Import a file written by `export` (plain or gzip) in one transaction. "
        "Importing the same file again changes nothing; a bad record is "
        "reported by line number and nothing is imported."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The export file; - for stdin.")

    def handle(self, *args, **options):
        path = options["file"]
        stream = open_for_reading(path)
        try:
            report = data_import(lines=stream)
        except DataImportError as exc:
            raise CommandError(f"{path}: {exc}. Nothing was imported.") from exc
        except (OSError, EOFError) as exc:
            raise CommandError(
                f"{path}: unreadable ({exc}). Nothing was imported."
            ) from exc
        except DatabaseError as exc:
            raise CommandError(
                f"{path}: the database refused the import ({exc}). "
                "Nothing was imported."
            ) from exc
        finally:
            stream.close()
        for name, read in report.read.items():
            written = report.written.get(name, 0)
            self.stdout.write(f"{name}: {read} read, {written} written")
        total = sum(report.written.values())
        self.stdout.write(
            f"Imported {path}: {sum(report.read.values())} records read, "
            f"{total} rows written."
        )
