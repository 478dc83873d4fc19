from django.core.management.base import BaseCommand, CommandError

from audit.chain import audit_chain_verify
from swarmsite.models import Project


class Command(BaseCommand):
    help = (
        "Recompute each project's audit hash chain and report the first broken "
        "link; exits non-zero when a chain is broken."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", help="Check only this project (slug).")

    def handle(self, *args, **options):
        projects = Project.objects.order_by("slug")
        if options["project"]:
            projects = projects.filter(slug=options["project"])
            if not projects.exists():
                raise CommandError(f"No project {options['project']!r}.")
        broken = []
        for project in projects:
            report = audit_chain_verify(project_id=project.pk)
            if report.intact:
                self.stdout.write(f"{project.slug}: intact ({report.checked} records)")
            else:
                broken.append(project.slug)
                self.stdout.write(
                    self.style.ERROR(
                        f"{project.slug}: BROKEN at seq {report.broken_at}: "
                        f"{report.reason}"
                    )
                )
        if broken:
            raise CommandError(f"Audit chain broken in: {', '.join(broken)}.")
