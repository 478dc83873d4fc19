"""`/api/v1/` agents, tasks, workflows and runs (the server's `tasks` app)."""

from __future__ import annotations

from typing import Any

from swarmsite_client._core import Call, body, create_body
from swarmsite_client.resources._base import IdLike, Resource, _list, _p


class Agents(Resource):
    """`/api/v1/agents/`: agents are idempotent by `name`."""

    def register(
        self,
        *,
        name: str,
        id: IdLike | None = None,
        role: str | None = None,
        model: str | None = None,
        parent: IdLike | None = None,
        capabilities: list | None = None,
        config: dict | None = None,
        metadata: dict | None = None,
    ) -> Any:
        """Register an agent; an existing name answers the stored agent."""
        data = body(
            name=name,
            id=id,
            role=role,
            model=model,
            parent=parent,
            capabilities=capabilities,
            config=config,
            metadata=metadata,
        )
        return self._write("POST", "agents/", data)

    create = register

    def list(
        self,
        *,
        role: str | None = None,
        status: str | None = None,
        parent: IdLike | None = None,
        page_size: int | None = None,
        **filters: Any,
    ):
        return _list(
            self, "agents/", page_size, role=role, status=status, parent=parent,
            **filters,
        )  # fmt: skip

    def get(self, id: IdLike) -> Any:
        return self._call(Call("GET", f"agents/{_p(id)}/"))

    def update(self, id: IdLike, **fields: Any) -> Any:
        return self._write("PATCH", f"agents/{_p(id)}/", body(**fields))

    def heartbeat(
        self,
        id: IdLike,
        *,
        status: str | None = None,
        details: dict | None = None,
        operation_id: IdLike | None = None,
    ) -> Any:
        return self._write(
            "POST",
            f"agents/{_p(id)}/heartbeat/",
            body(status=status, details=details),
            operation_id=operation_id,
            endpoint="agents.heartbeat",
        )

    def heartbeats(self, id: IdLike, *, page_size: int | None = None):
        return _list(self, f"agents/{_p(id)}/heartbeats/", page_size)


class Tasks(Resource):
    """`/api/v1/tasks/`: tasks, their lifecycle and the work queue."""

    def create(
        self,
        *,
        title: str,
        id: IdLike | None = None,
        key: str | None = None,
        description: str | None = None,
        session_id: str | None = None,
        workflow: IdLike | None = None,
        parent: IdLike | None = None,
        priority: int | None = None,
        assigned_agent: IdLike | None = None,
        agents: list | None = None,
        depends_on: list | None = None,
        input: Any = None,
        metadata: dict | None = None,
        **extra: Any,
    ) -> Any:
        """Create a task (status `pending`); the same id again answers it."""
        data = create_body(
            id,
            title=title,
            key=key,
            description=description,
            session_id=session_id,
            workflow=workflow,
            parent=parent,
            priority=priority,
            assigned_agent=assigned_agent,
            agents=agents,
            depends_on=depends_on,
            input=input,
            metadata=metadata,
            **extra,
        )
        return self._write("POST", "tasks/", data)

    def list(
        self,
        *,
        status: str | list[str] | None = None,
        page_size: int | None = None,
        **filters: Any,
    ):
        """Every task matching the filters (`assigned_agent`, `agent`,
        `workflow`, `session_id`, `parent`, `key`, `created_after`,
        `created_before`, `search`, `fields="full"`), newest first."""
        return _list(self, "tasks/", page_size, status=status, **filters)

    def get(self, id: IdLike) -> Any:
        return self._call(Call("GET", f"tasks/{_p(id)}/"))

    def update(
        self, id: IdLike, *, operation_id: IdLike | None = None, **fields: Any
    ) -> Any:
        """PATCH descriptive fields (`title`, `description`, `metadata`...)."""
        return self._write(
            "PATCH",
            f"tasks/{_p(id)}/",
            body(**fields),
            operation_id=operation_id,
            endpoint="tasks.update",
        )

    def transition(
        self,
        id: IdLike,
        *,
        status: str,
        expected_version: int | None = None,
        result: Any = None,
        result_summary: str | None = None,
        error: str | None = None,
        operation_id: IdLike | None = None,
    ) -> Any:
        """Move the task to `status`; raises `IllegalTransition` or
        `VersionConflict` (both `Conflict`) when refused."""
        return self._write(
            "POST",
            f"tasks/{_p(id)}/transition/",
            body(
                status=status,
                expected_version=expected_version,
                result=result,
                result_summary=result_summary,
                error=error,
            ),
            operation_id=operation_id,
            endpoint="tasks.transition",
        )

    def progress(
        self, id: IdLike, progress: int, *, operation_id: IdLike | None = None
    ) -> Any:
        return self._write(
            "POST",
            f"tasks/{_p(id)}/progress/",
            {"progress": progress},
            operation_id=operation_id,
            endpoint="tasks.progress",
        )

    def events(self, id: IdLike, *, after: int = 0, page_size: int | None = None):
        """The task's events after position `after`, in position order."""
        return _list(self, f"tasks/{_p(id)}/events/", page_size, after=after)

    def claim(
        self,
        *,
        agent: IdLike,
        workflow: IdLike | None = None,
        session_id: str | None = None,
        lease_seconds: int | None = None,
        operation_id: IdLike | None = None,
    ) -> Any:
        """Take the next claimable task (now `running`), or None if none is.

        The claim carries an operation id: resent after a lost answer, it
        answers the task it took the first time instead of taking another.
        """
        return self._write(
            "POST",
            "tasks/claim/",
            body(
                agent=agent,
                workflow=workflow,
                session_id=session_id,
                lease_seconds=lease_seconds,
            ),
            operation_id=operation_id,
            endpoint="tasks.claim",
            # A server that refuses the operation id is an old one: no
            # resending a claim that may have been applied.
            idempotent=True,
        )

    def heartbeat(
        self,
        id: IdLike,
        *,
        lease_seconds: int | None = None,
        operation_id: IdLike | None = None,
    ) -> Any:
        """Extend the lease of a running task."""
        return self._write(
            "POST",
            f"tasks/{_p(id)}/heartbeat/",
            body(lease_seconds=lease_seconds),
            operation_id=operation_id,
            endpoint="tasks.heartbeat",
        )

    def retry(self, id: IdLike, *, operation_id: IdLike | None = None) -> Any:
        """`failed` or `cancelled` back to `queued`."""
        return self._write(
            "POST",
            f"tasks/{_p(id)}/retry/",
            {},
            operation_id=operation_id,
            endpoint="tasks.retry",
        )

    def add_dependencies(self, id: IdLike, depends_on: list) -> Any:
        return self._write(
            "POST", f"tasks/{_p(id)}/dependencies/", {"depends_on": depends_on}
        )

    def remove_dependency(self, id: IdLike, other: IdLike) -> Any:
        return self._call(
            Call(
                "DELETE",
                f"tasks/{_p(id)}/dependencies/{_p(other)}/",
                missing_ok_on_retry=True,
            )
        )


class Workflows(Resource):
    """`/api/v1/workflows/`."""

    def create(
        self,
        *,
        name: str,
        id: IdLike | None = None,
        description: str | None = None,
        metadata: dict | None = None,
        **extra: Any,
    ) -> Any:
        data = create_body(
            id,
            name=name,
            description=description,
            metadata=metadata,
            **extra,
        )
        return self._write("POST", "workflows/", data)

    def list(self, *, page_size: int | None = None, **filters: Any):
        return _list(self, "workflows/", page_size, **filters)

    def get(self, id: IdLike) -> Any:
        return self._call(Call("GET", f"workflows/{_p(id)}/"))

    def update(
        self, id: IdLike, *, operation_id: IdLike | None = None, **fields: Any
    ) -> Any:
        return self._write(
            "PATCH",
            f"workflows/{_p(id)}/",
            body(**fields),
            operation_id=operation_id,
            endpoint="workflows.update",
        )

    def cancel(self, id: IdLike, *, operation_id: IdLike | None = None) -> Any:
        """Cancel every unfinished task of the workflow."""
        return self._write(
            "POST",
            f"workflows/{_p(id)}/cancel/",
            {},
            operation_id=operation_id,
            endpoint="workflows.cancel",
        )


class Runs(Resource):
    """`/api/v1/runs/`: one agent's run on a task."""

    def create(
        self,
        *,
        id: IdLike | None = None,
        task: IdLike | None = None,
        agent: IdLike | None = None,
        status: str | None = None,
        **fields: Any,
    ) -> Any:
        data = create_body(id, task=task, agent=agent, status=status, **fields)
        return self._write("POST", "runs/", data)

    def list(self, *, page_size: int | None = None, **filters: Any):
        return _list(self, "runs/", page_size, **filters)

    def get(self, id: IdLike) -> Any:
        return self._call(Call("GET", f"runs/{_p(id)}/"))

    def update(
        self, id: IdLike, *, operation_id: IdLike | None = None, **fields: Any
    ) -> Any:
        """PATCH `status`, `output_summary`, tokens, `cost`, `error`..."""
        return self._write(
            "PATCH",
            f"runs/{_p(id)}/",
            body(**fields),
            operation_id=operation_id,
            endpoint="runs.update",
        )
