import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = (
        "Create the superuser 'admin' (password from ADMIN_PASSWORD, default "
        "'admin') unless a superuser exists; never resets a password."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("A superuser exists; nothing changed.")
            return
        if User.objects.filter(**{User.USERNAME_FIELD: ADMIN_USERNAME}).exists():
            raise CommandError(
                f"User {ADMIN_USERNAME!r} exists but is not a superuser; promote "
                "it with 'manage.py createsuperuser' or the admin instead."
            )
        password = os.environ.get("ADMIN_PASSWORD") or "admin"
        User.objects.create_superuser(
            username=ADMIN_USERNAME, email="", password=password
        )
        source = (
            "the password in ADMIN_PASSWORD"
            if os.environ.get("ADMIN_PASSWORD")
            else "password 'admin' (set ADMIN_PASSWORD before the first run "
            "to choose another)"
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Created superuser {ADMIN_USERNAME!r}. Log in at /admin/ as "
                f"{ADMIN_USERNAME} with {source}."
            )
        )
