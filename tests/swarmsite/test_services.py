import hashlib
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from swarmsite.errors import NotFound, ValidationError
from swarmsite.models import ApiKey, Project
from swarmsite.services import (
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    project_create,
)

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


# Projects -----------------------------------------------------------------


def test_project_create_makes_a_project_named_after_its_slug_by_default():
    project, created = project_create(slug="research")

    assert created is True
    assert (project.slug, project.name) == ("research", "research")
    assert Project.objects.filter(slug="research").exists()


def test_project_create_is_idempotent_by_slug():
    first, _ = project_create(slug="research", name="Research")

    again, created = project_create(slug="research", name="Another name")

    assert created is False
    assert again.pk == first.pk
    assert again.name == "Research"
    assert Project.objects.filter(slug="research").count() == 1


def test_default_project_exists_after_migrate_and_is_returned_not_recreated():
    project, created = project_create(slug="default")

    assert created is False
    assert project.pk == Project.objects.get(slug="default").pk


@pytest.mark.parametrize("slug", ["", "has space", "a/b", "x" * 65])
def test_project_create_refuses_a_bad_slug_with_a_slug_error(slug):
    before = Project.objects.count()

    with pytest.raises(ValidationError) as exc:
        project_create(slug=slug)

    assert "slug" in exc.value.fields
    assert Project.objects.count() == before


def test_project_create_rolled_back_leaves_no_project():
    with pytest.raises(Boom), transaction.atomic():
        project_create(slug="doomed")
        raise Boom

    assert not Project.objects.filter(slug="doomed").exists()


# API keys -----------------------------------------------------------------


def test_api_key_create_stores_only_a_hash_and_returns_the_secret_once(project):
    key, secret = api_key_create(project=project, name="ci")

    stored = ApiKey.objects.get(pk=key.pk)
    assert secret.startswith(f"ss_{stored.prefix}_")
    assert stored.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {str(v) for v in ApiKey.objects.values_list().get()}
    assert sorted(stored.scopes) == ["read", "write"]
    assert stored.revoked_at is None
    assert stored.last_used_at is None


def test_api_key_create_keeps_the_given_scopes_sorted_and_unique(project):
    key, _ = api_key_create(
        project=project, name="ops", scopes=["admin", "read", " read "]
    )

    assert key.scopes == ["admin", "read"]


@pytest.mark.parametrize("scopes", [[], ["root"], ["read", "superuser"], [""]])
def test_api_key_create_refuses_unknown_or_empty_scopes(project, scopes):
    with pytest.raises(ValidationError) as exc:
        api_key_create(project=project, name="bad", scopes=scopes)

    assert "scopes" in exc.value.fields
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("name", ["", "   ", "x" * 201], ids=["empty", "blank", "long"])
def test_api_key_create_refuses_a_blank_or_too_long_name(project, name):
    with pytest.raises(ValidationError) as exc:
        api_key_create(project=project, name=name)

    assert "name" in exc.value.fields
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("name", ["ci", " ci "])
def test_api_key_create_refuses_a_name_taken_in_the_project(project, name):
    api_key_create(project=project, name="ci")

    with pytest.raises(ValidationError) as exc:
        api_key_create(project=project, name=name)

    assert "name" in exc.value.fields
    assert ApiKey.objects.count() == 1


def test_api_key_names_are_unique_per_project_only(project, other_project):
    api_key_create(project=project, name="ci")

    key, _ = api_key_create(project=other_project, name="ci")

    assert key.project == other_project


def test_api_key_create_refuses_an_expiry_in_the_past(project):
    with pytest.raises(ValidationError) as exc:
        api_key_create(
            project=project, name="old", expires_at=timezone.now() - timedelta(1)
        )

    assert "expires_at" in exc.value.fields
    assert not ApiKey.objects.exists()


def test_api_key_authenticate_returns_the_key_and_records_its_use(project):
    key, secret = api_key_create(project=project, name="ci")

    found = api_key_authenticate(secret=secret)

    assert found.pk == key.pk
    assert found.project == project
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None


def test_api_key_authenticate_writes_last_used_at_at_most_once_a_minute(project):
    _, secret = api_key_create(project=project, name="ci")
    first = api_key_authenticate(secret=secret).last_used_at

    second = api_key_authenticate(secret=secret).last_used_at

    assert second == first
    assert ApiKey.objects.get().last_used_at == first


def test_api_key_authenticate_accepts_a_key_expiring_in_the_future(project):
    key, secret = api_key_create(
        project=project, name="ci", expires_at=timezone.now() + timedelta(hours=1)
    )

    assert api_key_authenticate(secret=secret).pk == key.pk


def test_api_key_authenticate_refuses_a_wrong_secret_with_a_known_prefix(project):
    _, secret = api_key_create(project=project, name="ci")
    wrong = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")

    with pytest.raises(NotFound):
        api_key_authenticate(secret=wrong)

    assert ApiKey.objects.get().last_used_at is None


@pytest.mark.parametrize(
    "secret", ["", "nonsense", "ss_", "ss_deadbeef", "ss_deadbeef_whatever"]
)
def test_api_key_authenticate_refuses_unknown_secrets(project, secret):
    api_key_create(project=project, name="ci")

    with pytest.raises(NotFound):
        api_key_authenticate(secret=secret)


def test_api_key_authenticate_refuses_a_revoked_key(project):
    key, secret = api_key_create(project=project, name="ci")
    api_key_revoke(key=key)

    with pytest.raises(NotFound, match="revoked or expired"):
        api_key_authenticate(secret=secret)


def test_api_key_authenticate_refuses_an_expired_key(project):
    key, secret = api_key_create(
        project=project, name="ci", expires_at=timezone.now() + timedelta(hours=1)
    )
    ApiKey.objects.filter(pk=key.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    with pytest.raises(NotFound, match="revoked or expired"):
        api_key_authenticate(secret=secret)

    assert ApiKey.objects.get(pk=key.pk).last_used_at is None


def test_api_key_revoke_sets_the_time_and_revoking_twice_keeps_the_first(project):
    key, _ = api_key_create(project=project, name="ci")

    revoked_at = api_key_revoke(key=key).revoked_at
    again = api_key_revoke(key=ApiKey.objects.get(pk=key.pk))

    assert revoked_at is not None
    assert again.revoked_at == revoked_at
    assert ApiKey.objects.get(pk=key.pk).revoked_at == revoked_at
    assert not again.is_active


def test_api_key_create_rolled_back_leaves_no_key(project):
    with pytest.raises(Boom), transaction.atomic():
        api_key_create(project=project, name="ci")
        raise Boom

    assert not ApiKey.objects.exists()
