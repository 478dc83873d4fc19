from django.core.management.base import BaseCommand, CommandError

from swarmsite.errors import ServiceError
from swarmsite.services import project_create


class Command(BaseCommand):
    help = "Create a project (tenant); succeeds too when it already exists."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="Letters, digits, '-' and '_'.")
        parser.add_argument("--name", default="", help="Display name (default: slug).")

    def handle(self, *args, slug: str, name: str, **options):
        try:
            project, created = project_create(slug=slug, name=name)
        except ServiceError as exc:
            raise CommandError(
                f"Cannot create project {slug!r}: {exc.message}"
            ) from exc
        if created:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created project {project.slug!r} ({project.name})."
                )
            )
        else:
            self.stdout.write(
                f"Project {project.slug!r} ({project.name}) already exists; "
                "nothing changed."
            )
