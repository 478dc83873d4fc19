"""What every resource class shares: the client it calls and its writes."""

from __future__ import annotations

from typing import Any

from swarmsite_client._core import Call, new_operation_id, plain, query

IdLike = Any  # a UUID or its string


def _p(value: IdLike) -> str:
    return str(value)


class Resource:
    def __init__(self, client: Any) -> None:
        self._c = client

    def _call(self, call: Call) -> Any:
        return self._c._call(call)

    def _pages(self, path: str, params: dict[str, Any]) -> Any:
        return self._c._pages(path, params)

    def _write(
        self,
        method: str,
        path: str,
        data: dict[str, Any],
        *,
        operation_id: IdLike | None = None,
        endpoint: str | None = None,
        idempotent: bool = True,
    ) -> Any:
        data = {k: plain(v) for k, v in data.items()}
        if endpoint is not None:
            data["id"] = new_operation_id(operation_id)
        return self._call(
            Call(
                method,
                path,
                json=data,
                idempotent=idempotent,
                operation_endpoint=endpoint,
            )
        )


def _list(resource: Resource, path: str, page_size: int | None, **filters: Any):
    return resource._pages(path, query(page_size=page_size or 200, **filters))
