"""`/api/v1/` audit logs and the event log (the server's `audit` app)."""

from __future__ import annotations

from typing import Any

from swarmsite_client._core import Call, create_body
from swarmsite_client.resources._base import IdLike, Resource, _list, _p


class AuditLogs(Resource):
    """`/api/v1/audit-logs/`."""

    def create(
        self,
        *,
        action: str,
        id: IdLike | None = None,
        target: str | None = None,
        success: bool | None = None,
        duration_ms: float | None = None,
        error: str | None = None,
        details: dict | None = None,
    ) -> Any:
        data = create_body(
            id,
            action=action,
            target=target,
            success=success,
            duration_ms=duration_ms,
            error=error,
            details=details,
        )
        return self._write("POST", "audit-logs/", data)

    def list(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        success: bool | None = None,
        since: str | None = None,
        until: str | None = None,
        page_size: int | None = None,
        **filters: Any,
    ):
        return _list(
            self, "audit-logs/", page_size, action=action, actor=actor,
            success=success, since=since, until=until, **filters,
        )  # fmt: skip

    def get(self, id: IdLike) -> Any:
        return self._call(Call("GET", f"audit-logs/{_p(id)}/"))


class Events(Resource):
    """`/api/v1/events/`: the append-only event log (and `follow()`)."""

    def create(
        self,
        *,
        kind: str,
        id: IdLike | None = None,
        task: IdLike | None = None,
        conversation: IdLike | None = None,
        payload: dict | None = None,
    ) -> Any:
        data = create_body(
            id,
            kind=kind,
            task=task,
            conversation=conversation,
            payload=payload,
        )
        return self._write("POST", "events/", data)

    def list(
        self,
        *,
        after: int = 0,
        task: IdLike | list | None = None,
        conversation: IdLike | list | None = None,
        kind: str | list[str] | None = None,
        page_size: int | None = None,
    ):
        """Every stored event after `after` matching the filters, in
        position order; ends at the latest one (see `follow()` for live)."""
        return _list(
            self, "events/", page_size, after=after, task=task,
            conversation=conversation, kind=kind,
        )  # fmt: skip
