"""`TasksDict`: a drop-in for a program's `TASKS = {}`, kept in Swarmsite.

    TASKS = TasksDict()                     # was: TASKS = {}
    TASKS["report"] = {"description": "Write it", "status": "pending"}
    TASKS["report"]["status"] = "completed"  # walks pending -> running -> completed
    TASKS["report"]["progress"] = 50
    for key, task in TASKS.items(): ...

Any string key maps to one task: its `key` (the task's id is derived from
the key, so the same key names the same task in every run). Values are
live views: reading gives the task's fields, under the old names too
(`description`, `status`, `progress`, `agents_involved`, `results`,
`summary`, `session_id`); writing one field writes it to the server at
once. Fields a task does not have are kept in its `metadata`.

Reads are cached. A background thread follows the event stream and drops
a task from the cache when an event concerns it, so a read is never
staler than the stream's delay; while the stream is down, entries expire
after `ttl` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from swarmsite_client import errors
from swarmsite_client.client import Client
from swarmsite_client.recorder import derived_id

log = logging.getLogger("swarmsite_client.tasks_dict")

KEY_FIELD = "tasks_dict_key"
# Old field name -> where it lives on a task.
OLD_NAMES = {
    "description": "description",
    "status": "status",
    "progress": "progress",
    "agents_involved": "agents",
    "results": "result",
    "summary": "result_summary",
    "session_id": "session_id",
}
# Statuses old programs used, and the lifecycle's names for them.
STATUS_ALIASES = {
    "in_progress": "running",
    "started": "running",
    "working": "running",
    "done": "completed",
    "complete": "completed",
    "success": "completed",
    "succeeded": "completed",
    "error": "failed",
    "errored": "failed",
    "canceled": "cancelled",
    "blocked": "waiting",
}
# The lifecycle (DESIGN.md 4): the legal single steps.
TERMINAL = {"completed", "failed", "cancelled"}
STEPS = {
    "pending": ["queued", "running", "cancelled"],
    "queued": ["running", "cancelled"],
    "running": ["completed", "failed", "waiting", "cancelled"],
    "waiting": ["running", "cancelled"],
    "failed": ["queued"],
    "cancelled": ["queued"],
    "completed": [],
}
# Server-owned fields: never written back when a read value is assigned.
SERVER_FIELDS = {
    "id",
    "key",
    "version",
    "result",
    "result_summary",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "project",
    "blocked",
    "attempts",
    "lease_expires_at",
    "assigned_agent",
    "agents",
    "depends_on",
    "workflow",
    "parent",
    "input",
    "files_touched",
}
DESCRIPTIVE = {"title", "description", "priority", "session_id"}


def status_path(current: str, target: str) -> list[str]:
    """The shortest list of legal steps from `current` to `target`."""
    if current == target:
        return []
    seen = {current}
    queue: deque[tuple[str, list[str]]] = deque([(current, [])])
    while queue:
        state, path = queue.popleft()
        for step in STEPS.get(state, []):
            if step in seen:
                continue
            if step == target:
                return [*path, step]
            seen.add(step)
            queue.append((step, [*path, step]))
    raise errors.IllegalTransition(
        f"No legal way from {current!r} to {target!r}.", status=409
    )


def normal_status(value: str) -> str:
    return STATUS_ALIASES.get(str(value).lower(), str(value).lower())


class TaskView(MutableMapping):
    """One task as the old dict: reads from the cache, writes through."""

    def __init__(self, owner: TasksDict, key: str) -> None:
        self._owner = owner
        self._key = key

    @property
    def task(self) -> dict:
        """The task as the server has it (cached)."""
        return self._owner._task(self._key)

    def __getitem__(self, name: str) -> Any:
        return _read(self.task, name)

    def __setitem__(self, name: str, value: Any) -> None:
        self._owner._write(self._key, {name: value}, create=False)

    def __delitem__(self, name: str) -> None:
        task = self.task
        metadata = dict(task.get("metadata") or {})
        if name not in metadata:
            raise KeyError(name)
        del metadata[name]
        self._owner._patch(self._key, task, {"metadata": metadata})

    def __iter__(self) -> Iterator[str]:
        return iter(_names(self.task))

    def __len__(self) -> int:
        return len(_names(self.task))

    def __repr__(self) -> str:
        return f"TaskView({self._key!r}, {dict(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self) == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _read(task: dict, name: str) -> Any:
    metadata = task.get("metadata") or {}
    if name == "agents_involved":
        return metadata.get("agents_involved", task.get("agents", []))
    if name == "results":
        result = task.get("result")
        return result if result is not None else metadata.get("results")
    if name == "summary":
        return task.get("result_summary") or metadata.get("summary", "")
    if name in task and name != "metadata":
        return task[name]
    if name == "metadata":
        return {k: v for k, v in metadata.items() if k != KEY_FIELD}
    if name in metadata and name != KEY_FIELD:
        return metadata[name]
    raise KeyError(name)


def _names(task: dict) -> list[str]:
    names = [n for n in task if n not in ("result", "result_summary")]
    names += [n for n in OLD_NAMES if n not in names]
    names += [
        n
        for n in (task.get("metadata") or {})
        if n not in names and n not in (KEY_FIELD, "agents_involved", "results")
        and n != "summary"
    ]  # fmt: skip
    return names


class TasksDict(MutableMapping):
    """`TASKS = TasksDict()` in place of `TASKS = {}` (see the module doc).

    - `ttl`: seconds a cached read lives while the event stream is down.
    - `live`: follow the event stream to invalidate the cache (default True).
    - `namespace`: keeps the keys of several programs apart (the same key
      in two namespaces is two tasks).
    - `defaults`: fields given to every task this mapping creates
      (`session_id`, `workflow`, `assigned_agent`...).
    - `filters`: task-list filters that bound iteration and `len()`
      (e.g. `{"session_id": "run-42"}`); without them they walk every task
      of the project.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        ttl: float = 5.0,
        live: bool = True,
        namespace: str | None = None,
        defaults: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        client: Client | None = None,
    ) -> None:
        self._client = client or Client(url, api_key)
        self._own_client = client is None
        self.ttl = ttl
        self.namespace = namespace
        self.defaults = dict(defaults or {})
        self.filters = dict(filters or {})
        self._lock = threading.RLock()
        # key -> (task, monotonic time read)
        self._cache: dict[str, tuple[dict, float]] = {}
        # task id -> key; task id -> monotonic time of its last event
        self._keys_by_id: dict[str, str] = {}
        self._changed_at: dict[str, float] = {}
        self._listing: tuple[list[str], float] | None = None
        self._listing_changed_at = 0.0
        # None: not known yet whether the server has the `key` field.
        self._server_keys: bool | None = None
        self._stream_seen_at = 0.0
        self._closed = False
        self._follower: threading.Thread | None = None
        if live:
            self._follower = threading.Thread(
                target=self._follow, name="swarmsite-tasksdict", daemon=True
            )
            self._follower.start()

    # -- the mapping --

    def __getitem__(self, key: str) -> TaskView:
        self._task(key)  # KeyError when there is no such task
        return TaskView(self, key)

    def __setitem__(self, key: str, value: Mapping[str, Any]) -> None:
        if not isinstance(value, Mapping):
            raise TypeError("A task is a mapping of its fields.")
        self._write(key, dict(value), create=True)

    def __delitem__(self, key: str) -> None:
        """Cancel the task (unless finished) and hide it from this mapping;
        the server keeps it and its history."""
        task = self._task(key)
        if task["status"] not in TERMINAL:
            self._client.tasks.transition(task["id"], status="cancelled")
            task = self._fetch(key, task["id"])
        metadata = {**(task.get("metadata") or {}), "tasks_dict_deleted": True}
        self._patch(key, task, {"metadata": metadata})
        with self._lock:
            self._cache.pop(key, None)
            self._listing = None

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self._task(key)
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __repr__(self) -> str:
        return f"TasksDict({self._client.url!r}, {len(self)} tasks)"

    def close(self) -> None:
        self._closed = True
        if self._own_client:
            self._client.close()

    # -- ids and reads --

    def task_id(self, key: str) -> str:
        """The id of the task a key names (derived from the key)."""
        return derived_id("task", key, self.namespace)

    def server_key(self, key: str) -> str:
        """The task's `key` on the server: the key, after the namespace."""
        return f"{self.namespace}:{key}" if self.namespace else key

    def _user_key(self, server_key: str | None) -> str | None:
        if not server_key or not self.namespace:
            return server_key
        prefix = f"{self.namespace}:"
        return (
            server_key[len(prefix) :] if server_key.startswith(prefix) else server_key
        )

    def _fresh(self, read_at: float, task_id: str | None) -> bool:
        now = time.monotonic()
        if task_id is not None and self._changed_at.get(task_id, 0.0) >= read_at:
            return False
        if now - self._stream_seen_at < 30.0:
            return True  # the stream is up: events invalidate
        return now - read_at < self.ttl

    def _task(self, key: str) -> dict:
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and self._fresh(cached[1], cached[0].get("id")):
            return cached[0]
        task = self._lookup(key)
        if task is None:
            with self._lock:
                self._cache.pop(key, None)
            raise KeyError(key)
        return task

    def _remember(self, key: str, task: dict, read_at: float) -> dict:
        with self._lock:
            self._keys_by_id[task["id"]] = key
            if self._changed_at.get(task["id"], 0.0) < read_at:
                self._cache[key] = (task, read_at)
        return task

    def _fetch(self, key: str, task_id: str) -> dict | None:
        read_at = time.monotonic()
        try:
            task = self._client.tasks.get(task_id)
        except errors.NotFound:
            return None
        return self._remember(key, task, read_at)

    def _lookup(self, key: str) -> dict | None:
        task = self._fetch(key, self.task_id(key))
        if task is None and self._server_keys is not False:
            read_at = time.monotonic()
            server_key = self.server_key(key)
            for found in self._client.tasks.list(
                key=server_key, fields="full", page_size=5
            ):
                if found.get("key") == server_key:
                    task = self._remember(key, found, read_at)
                break
        if task is None and _is_uuid(key):
            task = self._fetch(key, key)
        if task is not None and (task.get("metadata") or {}).get("tasks_dict_deleted"):
            return None
        return task

    def _keys(self) -> list[str]:
        with self._lock:
            listing = self._listing
        if (
            listing is not None
            and self._fresh(listing[1], None)
            and self._listing_changed_at < listing[1]
        ):
            return listing[0]
        read_at = time.monotonic()
        keys = []
        for task in self._client.tasks.list(
            fields="full", page_size=500, **self.filters
        ):
            metadata = task.get("metadata") or {}
            if metadata.get("tasks_dict_deleted"):
                continue
            key = self._user_key(task.get("key")) or metadata.get(KEY_FIELD)
            key = key or task["id"]
            keys.append(key)
            self._remember(key, task, read_at)
        keys.reverse()  # oldest first, as a dict iterates in insertion order
        with self._lock:
            self._listing = (keys, read_at)
        return keys

    # -- writes --

    def _write(self, key: str, value: dict[str, Any], *, create: bool) -> None:
        fields = {k: v for k, v in value.items() if k not in SERVER_FIELDS}
        for name in ("results", "summary"):
            if name in value and value[name] is not None:
                fields[name] = value[name]
        status = fields.pop("status", None)
        progress = fields.pop("progress", None)
        try:
            task = self._task(key)
        except KeyError:
            if not create:
                raise
            task = self._create(key, fields)
        else:
            changes = self._changes(task, fields)
            if changes:
                task = self._patch(key, task, changes)
        if status is not None and normal_status(status) != task["status"]:
            task = self._move(key, task, normal_status(status), fields)
        if progress is not None and int(progress) != task.get("progress"):
            task = self._client.tasks.progress(task["id"], int(round(progress)))
            self._remember(key, task, time.monotonic())

    def _create(self, key: str, fields: dict[str, Any]) -> dict:
        metadata = dict(self.defaults.get("metadata") or {})
        metadata.update(fields.pop("metadata", None) or {})
        data: dict[str, Any] = {
            k: v for k, v in self.defaults.items() if k != "metadata"
        }
        for name in DESCRIPTIVE:
            if name in fields:
                data[name] = fields.pop(name)
        for name, value in fields.items():
            metadata[name] = value  # agents_involved, results, custom fields
        metadata[KEY_FIELD] = key
        description = str(data.get("description") or "")
        data.setdefault("title", (description.splitlines() or [key])[0][:200] or key)
        if data.get("session_id") is not None:
            data["session_id"] = str(data["session_id"])
        task_id = self.task_id(key)
        read_at = time.monotonic()
        if self._server_keys is not False:
            try:
                task = self._client.tasks.create(
                    id=task_id, key=self.server_key(key), metadata=metadata, **data
                )
            except errors.ValidationError as exc:
                if set(exc.fields) != {"key"}:
                    raise
                # A server without task keys (before contract 1.1): the id
                # derived from the key and the key in metadata stand in.
                self._server_keys = False
            else:
                self._server_keys = True
                return self._created(key, task, read_at)
        task = self._client.tasks.create(id=task_id, metadata=metadata, **data)
        return self._created(key, task, read_at)

    def _created(self, key: str, task: dict, read_at: float) -> dict:
        with self._lock:
            if self._listing is not None and key not in self._listing[0]:
                self._listing[0].append(key)
        return self._remember(key, task, read_at)

    def _changes(self, task: dict, fields: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        metadata = dict(task.get("metadata") or {})
        for name, value in fields.items():
            if name in DESCRIPTIVE:
                if task.get(name) != value:
                    changes[name] = value
            elif name == "metadata":
                merged = {**metadata, **(value or {})}
                if merged != metadata:
                    metadata = merged
                    changes["metadata"] = metadata
            elif name in ("results", "summary") and task["status"] == "completed":
                if _read(task, name) != value:
                    metadata[name] = value
                    changes["metadata"] = metadata
            elif metadata.get(name) != value:
                metadata[name] = value
                changes["metadata"] = metadata
        return changes

    def _patch(self, key: str, task: dict, changes: dict[str, Any]) -> dict:
        if "session_id" in changes and changes["session_id"] is not None:
            changes["session_id"] = str(changes["session_id"])
        read_at = time.monotonic()
        updated = self._client.tasks.update(task["id"], **changes)
        return self._remember(key, updated, read_at)

    def _move(self, key: str, task: dict, target: str, fields: dict[str, Any]) -> dict:
        """Walk the legal transitions to `target`, re-reading and re-planning
        if another writer moved the task meanwhile."""
        # Results and summary written earlier (kept in metadata until now)
        # become the task's result on completion.
        metadata = task.get("metadata") or {}
        fields = {
            "results": metadata.get("results"),
            "summary": metadata.get("summary"),
            **{k: v for k, v in fields.items() if v is not None},
        }
        for _ in range(5):
            try:
                for step in status_path(task["status"], target):
                    extra: dict[str, Any] = {}
                    if step == "completed":
                        if fields.get("results") is not None:
                            extra["result"] = fields["results"]
                        if fields.get("summary"):
                            extra["result_summary"] = str(fields["summary"])
                    if step == "failed":
                        error = fields.get("error") or fields.get("summary")
                        if error:
                            extra["error"] = str(error)
                    read_at = time.monotonic()
                    task = self._client.tasks.transition(
                        task["id"],
                        status=step,
                        expected_version=task["version"],
                        operation_id=str(uuid.uuid4()),
                        **extra,
                    )
                    self._remember(key, task, read_at)
                return task
            except errors.Conflict:
                fresh = self._fetch(key, task["id"])
                if fresh is None:
                    raise
                task = fresh
                if task["status"] == target:
                    return task
        raise errors.Conflict(
            f"Task {key!r} kept changing while moving it to {target!r}.",
            status=409,
        )

    # -- the stream --

    def _follow(self) -> None:
        backoff = 1.0
        while not self._closed:
            try:
                for event in self._client.events.follow(after=None, heartbeats=True):
                    if self._closed:
                        return
                    now = time.monotonic()
                    self._stream_seen_at = now
                    task_id = event.get("task")
                    if not task_id:
                        continue
                    with self._lock:
                        if len(self._changed_at) > 10_000:
                            # Only reads still in flight need old marks.
                            self._changed_at = {
                                k: v
                                for k, v in self._changed_at.items()
                                if now - v < 60
                            }
                        self._changed_at[task_id] = now
                        if event.get("kind") == "task.created":
                            self._listing_changed_at = now
                        key = self._keys_by_id.get(task_id)
                        if key is not None:
                            self._cache.pop(key, None)
                    backoff = 1.0
            except errors.StreamClosed as exc:
                log.warning("TasksDict cannot follow the event stream: %s", exc)
                return
            except Exception:
                log.exception("TasksDict stream follower failed; retrying")
            with contextlib.suppress(Exception):
                time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
