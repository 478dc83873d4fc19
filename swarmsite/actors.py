"""Who caused a change. Agents are not Django users, so actors are snapshots."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class ActorType(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    AGENT = "agent", "Agent"
    API_KEY = "api_key", "API key"


@dataclass(frozen=True)
class Actor:
    """The actor of a write: its type, id, a label and a correlation id."""

    type: str = ActorType.SYSTEM
    id: str = ""
    label: str = "system"
    correlation_id: str = ""


SYSTEM = Actor()
