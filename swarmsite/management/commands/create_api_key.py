from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from swarmsite.errors import ServiceError
from swarmsite.models import Project
from swarmsite.services import api_key_create


class Command(BaseCommand):
    help = (
        "Create an API key for a project. The secret is printed once, alone, "
        "as the last line of stdout; only its hash is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--name", required=True, help="Unique in the project.")
        parser.add_argument(
            "--scopes",
            default="read,write",
            help="Comma-separated: read, write, admin (default: read,write).",
        )
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="Expire the key after this many days (default: never).",
        )

    def handle(self, *args, **options):
        slug = options["project"]
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}; create it with create_project.")
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be 1 or more.")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            key, secret = api_key_create(
                project=project,
                name=options["name"],
                scopes=scopes,
                expires_at=expires_at,
            )
        except ServiceError as exc:
            raise CommandError(f"Cannot create the key: {exc.message}") from exc
        expiry = "never expires"
        if key.expires_at is not None:
            expiry = f"expires {key.expires_at:%Y-%m-%d %H:%M} UTC"
        self.stdout.write(
            f"Created API key {key.name!r} for project {project.slug!r} "
            f"(scopes: {', '.join(key.scopes)}; prefix {key.prefix}; {expiry})."
        )
        self.stdout.write("Store the secret below now: it is not shown again.")
        self.stdout.write(secret)
