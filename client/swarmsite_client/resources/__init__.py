"""The API's resources, one class each, shared by `Client` and `AsyncClient`.

Each method returns what `client._call(...)` returns: the JSON body (a
dict) with the sync client, a coroutine of it with the async one. List
methods return lazy iterators over every item of every page (async
iterators with the async client). Creates send an `id` (a fresh uuid4
unless one is given) and updates an operation `id`, so a retried request
is harmless.

The modules follow the server's apps: `tasks` (agents, tasks, workflows,
runs), `conversations` (conversations, messages, memories) and `audit`
(the audit log and the event log).
"""

from swarmsite_client.resources._base import IdLike, Resource
from swarmsite_client.resources.audit import AuditLogs, Events
from swarmsite_client.resources.conversations import Conversations, Memories, Messages
from swarmsite_client.resources.tasks import Agents, Runs, Tasks, Workflows

__all__ = [
    "Agents",
    "AuditLogs",
    "Conversations",
    "Events",
    "IdLike",
    "Memories",
    "Messages",
    "Resource",
    "Runs",
    "Tasks",
    "Workflows",
]
