from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.retention import audit_log_prune
from swarmsite.actors import SYSTEM
from swarmsite.errors import ValidationError
from swarmsite.models import Project
from swarmsite.validation import parse_age


class Command(BaseCommand):
    help = (
        "Delete audit records older than an age, oldest first and in batches, "
        "keeping each project's hash chain verifiable (the last deleted record "
        "becomes the chain's anchor). Without --older-than, each project's "
        "audit_retention_days applies; projects without one are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            help="Age such as 90d, 12h or 2w (days, hours, weeks).",
        )
        parser.add_argument("--project", help="Prune only this project (slug).")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report what would be deleted; delete nothing.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help="Records deleted per transaction (default 1000).",
        )

    def handle(self, *args, **options):
        try:
            age = parse_age(options["older_than"]) if options["older_than"] else None
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from exc
        if options["batch_size"] < 1:
            raise CommandError("--batch-size: must be at least 1.")
        projects = Project.objects.order_by("slug")
        if options["project"]:
            projects = projects.filter(slug=options["project"])
            if not projects.exists():
                raise CommandError(f"--project: no project {options['project']!r}.")
        now = timezone.now()
        broken = []
        verb = "would delete" if options["dry_run"] else "deleted"
        for project in projects:
            if age is None and project.audit_retention_days is None:
                self.stdout.write(f"{project.slug}: kept (no audit_retention_days)")
                continue
            if age is None:
                age_here = timedelta(days=project.audit_retention_days)
            else:
                age_here = age
            cutoff = now - age_here
            try:
                report = audit_log_prune(
                    project_id=project.pk,
                    cutoff=cutoff,
                    dry_run=options["dry_run"],
                    batch_size=options["batch_size"],
                    actor=SYSTEM,
                )
            except ValidationError as exc:
                raise CommandError(exc.message) from exc
            span = (
                f" (seq {report.first_seq}..{report.anchor_seq})"
                if report.deleted
                else ""
            )
            line = (
                f"{project.slug}: {verb} {report.deleted} audit records{span} "
                f"recorded before {cutoff.isoformat()} in {report.batches} "
                f"batches; stopped: {report.stopped}"
            )
            if report.chain_broken:
                broken.append(project.slug)
                self.stdout.write(self.style.ERROR(line))
            else:
                self.stdout.write(line)
        if broken:
            raise CommandError(
                f"Audit chain broken in: {', '.join(broken)}; run verify_audit_chain."
            )
