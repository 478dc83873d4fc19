"""`/api/v1/` conversations, messages and memories (the server's
`conversations` app)."""

from __future__ import annotations

from typing import Any

from swarmsite_client._core import Call, body, create_body, new_id
from swarmsite_client.resources._base import IdLike, Resource, _list, _p


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
        data = create_body(
            id,
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
        sent = [create_body(**m) for m in items]
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
