"""Helpers for tests of the write path: row counts, the doorbell, triggers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.apps import apps
from django.db import connection

from audit import triggers
from audit.models import AuditLog, Event, JournalHead
from swarmsite.realtime import project_group

OWN_APPS = ("swarmsite", "audit", "tasks", "conversations")


def table_counts() -> dict[str, Any]:
    """Rows of every model of the project's apps, and every journal head."""
    counts: dict[str, Any] = {
        model._meta.label: model.objects.count()
        for label in OWN_APPS
        for model in apps.get_app_config(label).get_models()
    }
    counts["heads"] = sorted(
        JournalHead.objects.values_list("project_id", "last_position", "audit_seq")
    )
    return counts


def event_kinds(project, **filters) -> list[str]:
    """Kinds of a project's events in position order."""
    return list(
        Event.objects.filter(project=project, **filters)
        .order_by("position")
        .values_list("kind", flat=True)
    )


def audit_actions(project, **filters) -> list[str]:
    """Actions of a project's audit records in chain order."""
    return list(
        AuditLog.objects.filter(project=project, **filters)
        .order_by("seq")
        .values_list("action", flat=True)
    )


def last_position(project) -> int:
    head = JournalHead.objects.filter(project=project).first()
    return head.last_position if head else 0


@dataclass
class Doorbell:
    """A channel subscribed to a project's group on the channel layer."""

    layer: Any
    channel: str

    def rings(self, timeout: float = 0.05) -> list[dict[str, Any]]:
        """Every message waiting on the channel, oldest first."""

        async def drain() -> list[dict[str, Any]]:
            received = []
            while True:
                try:
                    received.append(
                        await asyncio.wait_for(
                            self.layer.receive(self.channel), timeout
                        )
                    )
                except TimeoutError:
                    return received

        return async_to_sync(drain)()


@contextmanager
def doorbell(project) -> Iterator[Doorbell]:
    """Listen to `project_group(project.pk)` on the default channel layer."""
    layer = get_channel_layer()
    group = project_group(project.pk)
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    try:
        yield Doorbell(layer=layer, channel=channel)
    finally:
        async_to_sync(layer.group_discard)(group, channel)


@contextmanager
def triggers_dropped() -> Iterator[None]:
    """Lift the append-only triggers so a test can tamper like an intruder."""
    with connection.schema_editor() as editor:
        triggers.uninstall(None, editor)
    try:
        yield
    finally:
        with connection.schema_editor() as editor:
            triggers.install(None, editor)
