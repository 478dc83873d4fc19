from django.core.management.base import BaseCommand, CommandError

from ops.management.commands._files import open_for_writing, parse_when
from ops.selectors import export_querysets, export_snapshot, export_write
from swarmsite.models import Project


class Command(BaseCommand):
    help = (
        "Export projects, agents, tasks, runs, conversations, messages, events "
        "and audit records as JSON Lines (gzip when FILE ends in .gz; stdout "
        "without --output). API keys are not exported."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", help="Export only this project (slug).")
        parser.add_argument(
            "--since", help="Only rows changed at or after this date or time (UTC)."
        )
        parser.add_argument(
            "--until", help="Only rows changed before this date or time (UTC)."
        )
        parser.add_argument("--output", "-o", help="File to write; - for stdout.")

    def handle(self, *args, **options):
        project = None
        if options["project"]:
            project = Project.objects.filter(slug=options["project"]).first()
            if project is None:
                raise CommandError(f"--project: no project {options['project']!r}.")
        since = parse_when(options["since"], option="--since")
        until = parse_when(options["until"], option="--until")
        if since and until and since >= until:
            raise CommandError("--since must be before --until.")
        querysets = export_querysets(project=project, since=since, until=until)
        output = options["output"]
        with open_for_writing(output, self.stdout) as stream, export_snapshot():
            counts = export_write(stream, querysets)
        summary = ", ".join(f"{name} {n}" for name, n in counts.items()) or "nothing"
        report = self.stderr if not output or output == "-" else self.stdout
        report.write(
            f"Exported {sum(counts.values())} records"
            f"{f' to {output}' if output and output != '-' else ''}: {summary}."
        )
