"""The API's resources, one class each, shared by `Client` and `AsyncClient`.

Each method returns what `client._call(...)` returns: the JSON body (a
dict) with the sync client, a coroutine of it with the async one. List
methods return lazy iterators over every item of every page (async
iterators with the async client). Creates send an `id` (a fresh uuid4
unless one is given) and updates an operation `id`, so a retried request
is harmless.
"""

from __future__ import annotations

from typing import Any

from swarmsite_client._core import Call, body, new_id, plain, query

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
            data["id"] = str(operation_id) if operation_id else new_id()
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
        data = body(
            id=id or new_id(),
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
        data = body(
            id=id or new_id(),
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


class Conversations(Resource):
    """`/api/v1/conversations/`: conversations, messages, participants."""

    def create(
        self,
        *,
        id: IdLike | None = None,
        task: IdLike | None = None,
        title: str | None = None,
        participants: list | None = None,
        metadata: dict | None = None,
    ) -> Any:
        data = body(
            id=id or new_id(),
            task=task,
            title=title,
            participants=participants,
            metadata=metadata,
        )
        return self._write("POST", "conversations/", data)

    def list(
        self,
        *,
        task: IdLike | None = None,
        status: str | list[str] | None = None,
        participant: IdLike | None = None,
        page_size: int | None = None,
        **filters: Any,
    ):
        return _list(
            self, "conversations/", page_size, task=task, status=status,
            participant=participant, **filters,
        )  # fmt: skip

    def get(self, id: IdLike) -> Any:
        return self._call(Call("GET", f"conversations/{_p(id)}/"))

    def update(self, id: IdLike, **fields: Any) -> Any:
        return self._write("PATCH", f"conversations/{_p(id)}/", body(**fields))

    def append(self, id: IdLike, messages: dict | list[dict]) -> Any:
        """Append one message (a dict) or several (a list, all or nothing).

        Each message without an `id` gets one, so a retried append writes
        nothing twice. Answers the message, or the list, each with its `seq`.
        """
        one = isinstance(messages, dict)
        items = [messages] if one else list(messages)
        sent = [
            {**{k: plain(v) for k, v in m.items()}, "id": str(m.get("id") or new_id())}
            for m in items
        ]
        return self._call(
            Call(
                "POST",
                f"conversations/{_p(id)}/messages/",
                json=sent[0] if one else sent,
            )
        )

    def messages(
        self,
        id: IdLike,
        *,
        after_seq: int | None = None,
        sender: IdLike | None = None,
        role: str | list[str] | None = None,
        fields: str | None = None,
        page_size: int | None = None,
    ):
        """The conversation's messages in `seq` order (`fields="full"` for
        content, tool calls and metadata)."""
        return _list(
            self, f"conversations/{_p(id)}/messages/", page_size,
            after_seq=after_seq, sender=sender, role=role, fields=fields,
        )  # fmt: skip

    def participants(self, id: IdLike, *, page_size: int | None = None):
        return _list(self, f"conversations/{_p(id)}/participants/", page_size)

    def add_participant(
        self, id: IdLike, *, agent: IdLike, role: str | None = None
    ) -> Any:
        return self._write(
            "POST",
            f"conversations/{_p(id)}/participants/",
            body(agent=agent, role=role),
        )

    def remove_participant(self, id: IdLike, agent: IdLike) -> Any:
        return self._call(
            Call(
                "DELETE",
                f"conversations/{_p(id)}/participants/{_p(agent)}/",
                missing_ok_on_retry=True,
            )
        )

    def read(self, id: IdLike, *, agent: IdLike, seq: int) -> Any:
        """Move `agent`'s `last_read_seq` forward to `seq` (never back)."""
        return self._write(
            "POST", f"conversations/{_p(id)}/read/", {"agent": agent, "seq": seq}
        )

    def revise(
        self,
        id: IdLike,
        message_id: IdLike,
        *,
        content: str,
        operation_id: IdLike | None = None,
    ) -> Any:
        return self._write(
            "POST",
            f"conversations/{_p(id)}/messages/{_p(message_id)}/revise/",
            {"content": content},
            operation_id=operation_id,
            endpoint="conversations.revise",
        )


class Messages(Resource):
    """`/api/v1/messages/`: messages across conversations (an inbox)."""

    def list(
        self,
        *,
        sender: IdLike | None = None,
        recipient: IdLike | None = None,
        thread: IdLike | None = None,
        conversation: IdLike | None = None,
        unread_by: IdLike | None = None,
        page_size: int | None = None,
        **filters: Any,
    ):
        return _list(
            self, "messages/", page_size, sender=sender, recipient=recipient,
            thread=thread, conversation=conversation, unread_by=unread_by,
            **filters,
        )  # fmt: skip

    def inbox(self, agent: IdLike, *, page_size: int | None = None):
        """Messages addressed to `agent` after its `last_read_seq`."""
        return self.list(unread_by=agent, page_size=page_size)


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
        data = body(id=id or new_id(), task=task, agent=agent, status=status, **fields)
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
        data = body(
            id=id or new_id(),
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


class Memories(Resource):
    """`/api/v1/memories/`: an agent's notes, searchable by words."""

    def put(
        self,
        *,
        content: str,
        id: IdLike | None = None,
        agent: IdLike | None = None,
        namespace: str | None = None,
        key: str | None = None,
        tags: list[str] | None = None,
        metadata: dict | None = None,
        task: IdLike | None = None,
        conversation: IdLike | None = None,
        expires_at: Any = None,
    ) -> Any:
        """Write a memory; with a `key`, the entry of that agent + namespace +
        key is updated (a key, not an id, makes it idempotent then)."""
        data = body(
            id=id or (None if key else new_id()),
            content=content,
            agent=agent,
            namespace=namespace,
            key=key,
            tags=tags,
            metadata=metadata,
            task=task,
            conversation=conversation,
            expires_at=expires_at,
        )
        return self._write("POST", "memories/", data)

    create = put

    def get(self, id: IdLike) -> Any:
        return self._call(Call("GET", f"memories/{_p(id)}/"))

    def search(
        self,
        q: str,
        *,
        agent: IdLike | None = None,
        namespace: str | None = None,
        tag: str | None = None,
        page_size: int | None = None,
        **filters: Any,
    ):
        """Memories matching the words of `q`, most relevant first."""
        return _list(
            self, "memories/", page_size, q=q, agent=agent, namespace=namespace,
            tag=tag, **filters,
        )  # fmt: skip

    def list(self, *, page_size: int | None = None, **filters: Any):
        return _list(self, "memories/", page_size, **filters)

    def update(
        self, id: IdLike, *, operation_id: IdLike | None = None, **fields: Any
    ) -> Any:
        return self._write(
            "PATCH",
            f"memories/{_p(id)}/",
            body(**fields),
            operation_id=operation_id,
            endpoint="memories.update",
        )

    def delete(self, id: IdLike) -> Any:
        return self._call(
            Call("DELETE", f"memories/{_p(id)}/", missing_ok_on_retry=True)
        )


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
        data = body(
            id=id or new_id(),
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
