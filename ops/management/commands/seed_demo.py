"""`manage.py seed_demo`: load the demo data (`ops.demo`) into a project."""

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from ops.demo import demo_seed
from swarmsite.errors import ServiceError
from swarmsite.models import DEFAULT_PROJECT_SLUG, Project


class Command(BaseCommand):
    help = (
        "Load demo agents, workflows, tasks in every status, runs, conversations "
        "and audit records. Idempotent: a second run writes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--project",
            default=DEFAULT_PROJECT_SLUG,
            help=f"Project slug (default: {DEFAULT_PROJECT_SLUG}).",
        )

    def handle(self, *args, **options):
        slug = options["project"]
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}; run migrate or create_project.")
        try:
            report = demo_seed(project=project)
        except ServiceError as exc:
            raise CommandError(f"Seeding failed: {exc.message}") from exc
        except IntegrityError as exc:
            raise CommandError(f"Seeding failed: {exc}") from exc
        parts = [
            f"{report.total[kind]} {kind} ({report.created[kind]} new)"
            for kind in report.total
        ]
        self.stdout.write(f"Demo data in project {slug!r}: {', '.join(parts)}.")
        if report.kept:
            self.stdout.write(
                f"{report.kept} demo objects changed since they were seeded "
                "were left as they are."
            )
