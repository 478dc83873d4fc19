"""Send running tasks whose lease ran out back to `queued`."""

from django.core.management.base import BaseCommand

from tasks.services import task_leases_sweep


class Command(BaseCommand):
    help = (
        "Return every running task whose lease has expired to queued "
        "(event task.lease_expired), in every project."
    )

    def handle(self, *args, **options) -> None:
        count = task_leases_sweep()
        self.stdout.write(f"Returned {count} task(s) with an expired lease to queued.")
