"""The one way to notify live subscribers: after commit, from services only.

The channel layer is a doorbell, not a mailbox: subscribers re-read the event
log on every ring, so a dropped or duplicated notification loses nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from swarmsite.metrics import NOTIFICATION_FAILURES

logger = logging.getLogger(__name__)


def project_group(project_id: int) -> str:
    """Channel-layer group that rings for every event of a project."""
    return f"project.{project_id}"


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # The periodic check heals a missed ring; never fail the caller.
        NOTIFICATION_FAILURES.inc()
        logger.warning("notification to %s failed", group, exc_info=True)


def publish_on_commit(group: str, type: str, payload: dict[str, Any]) -> None:
    """Send `payload` to `group` once the surrounding transaction commits.

    Outside a transaction it is sent at once; a rolled-back one sends nothing.
    """
    message = {"type": type.replace(".", "_"), **payload}
    transaction.on_commit(lambda: _send(group, message), robust=True)
