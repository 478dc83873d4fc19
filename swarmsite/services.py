"""Writes for projects and API keys."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from swarmsite.errors import NotFound, ValidationError
from swarmsite.models import ApiKey, ApiKeyScope, Project

API_KEY_PREFIX = "ss_"
DEFAULT_SCOPES = (ApiKeyScope.READ, ApiKeyScope.WRITE)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def project_create(*, slug: str, name: str = "") -> tuple[Project, bool]:
    """Create a project, or return the existing one; True when created."""
    existing = Project.objects.filter(slug=slug).first()
    if existing is not None:
        return existing, False
    project = Project(slug=slug, name=name or slug)
    try:
        project.full_clean()
    except DjangoValidationError as exc:
        raise ValidationError.from_django(exc) from exc
    try:
        with transaction.atomic():
            project.save()
    except IntegrityError:
        return Project.objects.get(slug=slug), False
    return project, True


def _parse_scopes(scopes: list[str] | tuple[str, ...] | None) -> list[str]:
    if scopes is None:
        return list(DEFAULT_SCOPES)
    cleaned = sorted({s.strip() for s in scopes if s and s.strip()})
    unknown = [s for s in cleaned if s not in ApiKeyScope.values]
    if unknown or not cleaned:
        raise ValidationError(
            {
                "scopes": f"Choose from {', '.join(ApiKeyScope.values)}; "
                f"got {', '.join(unknown) or 'nothing'}."
            }
        )
    return cleaned


@transaction.atomic
def api_key_create(
    *,
    project: Project,
    name: str,
    scopes: list[str] | tuple[str, ...] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "This field is required."})
    if ApiKey.objects.filter(project=project, name=name).exists():
        raise ValidationError(
            {"name": f"Project {project.slug} has a key named {name}."}
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "Must be in the future."})
    prefix = secrets.token_hex(4)
    secret = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        project=project,
        name=name,
        prefix=prefix,
        key_hash=_hash_secret(secret),
        scopes=_parse_scopes(scopes),
        expires_at=expires_at,
    )
    try:
        key.full_clean()
    except DjangoValidationError as exc:
        raise ValidationError.from_django(exc) from exc
    key.save()
    return key, secret


@transaction.atomic
def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key at once; revoking twice keeps the first time."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def api_key_authenticate(*, secret: str) -> ApiKey:
    """Return the active key for `secret`, recording when it was last used."""
    parts = secret.split("_") if secret.startswith(API_KEY_PREFIX) else []
    if len(parts) < 3:
        raise NotFound("Unknown API key.")
    key = ApiKey.objects.select_related("project").filter(prefix=parts[1]).first()
    if key is None or not secrets.compare_digest(key.key_hash, _hash_secret(secret)):
        raise NotFound("Unknown API key.")
    if not key.is_active:
        raise NotFound("This API key is revoked or expired.")
    now = timezone.now()
    # At most one write a minute per key keeps authentication cheap.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
