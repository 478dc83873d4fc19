from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from swarmsite.models import ApiKey, Project
from swarmsite.services import api_key_authenticate

pytestmark = pytest.mark.django_db


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


# create_project -----------------------------------------------------------


def test_create_project_creates_it_with_its_name():
    out = run("create_project", "acme", "--name", "Acme Inc")

    project = Project.objects.get(slug="acme")
    assert project.name == "Acme Inc"
    assert "Created project 'acme'" in out


def test_create_project_names_it_after_its_slug_by_default():
    run("create_project", "acme")

    assert Project.objects.get(slug="acme").name == "acme"


def test_create_project_succeeds_when_it_exists_and_changes_nothing():
    run("create_project", "acme", "--name", "Acme Inc")

    out = run("create_project", "acme", "--name", "Another name")

    assert "already exists" in out
    assert Project.objects.get(slug="acme").name == "Acme Inc"
    assert Project.objects.filter(slug="acme").count() == 1


def test_create_project_reports_the_existing_default_project():
    assert "already exists" in run("create_project", "default")


def test_create_project_rejects_a_bad_slug_and_writes_nothing():
    before = Project.objects.count()

    with pytest.raises(CommandError, match="slug"):
        run("create_project", "not a slug!")

    assert Project.objects.count() == before


def test_create_project_requires_a_slug():
    with pytest.raises(CommandError, match="slug"):
        run("create_project")


# create_api_key -----------------------------------------------------------


def test_create_api_key_prints_a_secret_that_authenticates(project):
    out = run("create_api_key", "--project", "default", "--name", "ci")

    lines = out.splitlines()
    secret = lines[-1]
    assert secret == secret.strip() and " " not in secret
    assert len(lines) > 1
    key = api_key_authenticate(secret=secret)
    assert key.project == project
    assert key.name == "ci"


def test_create_api_key_stores_only_a_hash_of_the_secret():
    secret = run("create_api_key", "--project", "default", "--name", "ci")
    secret = secret.splitlines()[-1]
    random_part = secret.split("_", 2)[2]

    for model in apps.get_models(include_auto_created=True):
        for row in model.objects.values_list():
            assert secret not in repr(row), model
            assert random_part not in repr(row), model


def test_create_api_key_defaults_to_read_and_write_without_expiry():
    run("create_api_key", "--project", "default", "--name", "ci")

    key = ApiKey.objects.get(name="ci")
    assert sorted(key.scopes) == ["read", "write"]
    assert key.expires_at is None


def test_create_api_key_takes_scopes_and_an_expiry():
    out = run(
        "create_api_key",
        "--project=default",
        "--name=ops",
        "--scopes=read, admin",
        "--expires-in-days=30",
    )

    key = ApiKey.objects.get(name="ops")
    assert sorted(key.scopes) == ["admin", "read"]
    assert 29 < (key.expires_at - key.created_at).total_seconds() / 86400 <= 30
    assert api_key_authenticate(secret=out.splitlines()[-1]) == key


def test_create_api_key_is_scoped_to_the_named_project(other_project):
    out = run("create_api_key", "--project", "other", "--name", "ci")

    assert api_key_authenticate(secret=out.splitlines()[-1]).project == other_project


def test_create_api_key_rejects_an_unknown_project():
    with pytest.raises(CommandError, match="No project 'nope'"):
        run("create_api_key", "--project", "nope", "--name", "ci")

    assert not ApiKey.objects.exists()


def test_create_api_key_rejects_an_unknown_scope():
    with pytest.raises(CommandError, match="scopes"):
        run(
            "create_api_key", "--project", "default", "--name", "ci", "--scopes", "root"
        )

    assert not ApiKey.objects.exists()


def test_create_api_key_rejects_a_name_taken_in_the_project():
    run("create_api_key", "--project", "default", "--name", "ci")

    with pytest.raises(CommandError, match="ci"):
        run("create_api_key", "--project", "default", "--name", "ci")

    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize("days", ["0", "-3"])
def test_create_api_key_rejects_an_expiry_that_is_not_in_the_future(days):
    with pytest.raises(CommandError, match="expires-in-days"):
        run(
            "create_api_key",
            "--project",
            "default",
            "--name",
            "ci",
            f"--expires-in-days={days}",
        )

    assert not ApiKey.objects.exists()


def test_create_api_key_requires_project_and_name():
    with pytest.raises(CommandError, match="--name"):
        run("create_api_key", "--project", "default")
    with pytest.raises(CommandError, match="--project"):
        run("create_api_key", "--name", "ci")


# ensure_admin -------------------------------------------------------------


def test_ensure_admin_creates_admin_with_the_default_password(
    django_user_model, monkeypatch
):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)

    out = run("ensure_admin")

    user = django_user_model.objects.get(username="admin")
    assert user.is_superuser and user.is_staff
    assert user.check_password("admin")
    assert "/admin/" in out


def test_ensure_admin_takes_the_password_from_the_environment(
    django_user_model, monkeypatch
):
    monkeypatch.setenv("ADMIN_PASSWORD", "s3cret-from-env")

    out = run("ensure_admin")

    user = django_user_model.objects.get(username="admin")
    assert user.check_password("s3cret-from-env")
    assert "s3cret-from-env" not in out


def test_ensure_admin_never_resets_an_existing_password(django_user_model, monkeypatch):
    monkeypatch.setenv("ADMIN_PASSWORD", "first")
    run("ensure_admin")
    monkeypatch.setenv("ADMIN_PASSWORD", "second")

    out = run("ensure_admin")

    assert "nothing changed" in out
    assert django_user_model.objects.count() == 1
    assert django_user_model.objects.get(username="admin").check_password("first")


def test_ensure_admin_does_nothing_when_another_superuser_exists(django_user_model):
    django_user_model.objects.create_superuser(username="root", password="pw")

    run("ensure_admin")

    assert not django_user_model.objects.filter(username="admin").exists()


def test_ensure_admin_refuses_to_promote_a_plain_user_named_admin(django_user_model):
    django_user_model.objects.create_user(username="admin", password="mine")

    with pytest.raises(CommandError, match="not a superuser"):
        run("ensure_admin")

    user = django_user_model.objects.get(username="admin")
    assert not user.is_superuser
    assert user.check_password("mine")
