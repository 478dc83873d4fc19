from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ops.management.commands._files import open_for_writing
from ops.selectors import header_line
from ops.services import PRUNE_MODELS, prune_archive, prune_count, prune_run
from swarmsite.models import Project
from swarmsite.validation import parse_age


class Command(BaseCommand):
    help = (
        "Delete finished (completed, failed, cancelled) tasks older than the "
        "cut-off with their runs, conversations, messages and events, plus old "
        "events that concern nothing still stored and old heartbeats. Without "
        "--older-than each project's event_retention_days is used. Unfinished "
        "tasks are never touched."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", help="Age such as 90d, 12w or 36h (default: per project)."
        )
        parser.add_argument("--project", help="Prune only this project (slug).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would go; delete none."
        )
        parser.add_argument(
            "--archive", help="First write what goes as an export file (.gz: gzip)."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Tasks (or events, heartbeats) per transaction (default 500).",
        )
        parser.add_argument(
            "--max-batches", type=int, help="Stop after this many batches."
        )

    def handle(self, *args, **options):
        try:
            age = parse_age(options["older_than"]) if options["older_than"] else None
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from exc
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["max_batches"] is not None and options["max_batches"] < 1:
            raise CommandError("--max-batches must be at least 1.")
        projects = Project.objects.order_by("slug")
        if options["project"]:
            projects = projects.filter(slug=options["project"])
            if not projects.exists():
                raise CommandError(f"--project: no project {options['project']!r}.")
        now = timezone.now()
        plans = []
        for project in projects:
            if age is not None:
                keep, reason = age, f"--older-than {options['older_than']}"
            elif project.event_retention_days:
                keep = timedelta(days=project.event_retention_days)
                reason = f"retention of {project.event_retention_days} days"
            else:
                self.stdout.write(
                    f"{project.slug}: skipped, no retention set "
                    "(event_retention_days is empty and no --older-than)."
                )
                continue
            plans.append((project, now - keep, reason))
        if options["archive"] and plans:
            with open_for_writing(options["archive"], self.stdout) as stream:
                stream.write(header_line())
                for project, cutoff, _ in plans:
                    counts = prune_archive(
                        project=project, cutoff=cutoff, stream=stream, header=False
                    )
            self.stdout.write(f"Archived to {options['archive']}.")
        for project, cutoff, reason in plans:
            head = f"{project.slug}: cut-off {cutoff:%Y-%m-%d %H:%M:%S} UTC ({reason})"
            if options["dry_run"]:
                counts = prune_count(project=project, cutoff=cutoff)
                self.stdout.write(f"{head}, dry run, would delete {_show(counts)}.")
                continue
            report = prune_run(
                project=project,
                cutoff=cutoff,
                reason=reason,
                batch_size=options["batch_size"],
                max_batches=options["max_batches"],
            )
            self.stdout.write(
                f"{head}, deleted {_show(report.counts)} in {report.batches} "
                f"batches; stopped: {report.stopped}."
            )


def _show(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {counts.get(name, 0)}" for name in PRUNE_MODELS)
