"""Python client of Swarmsite.

- `Client` / `AsyncClient`: every endpoint of the API, typed errors,
  retries, lazy pagination, `client.events.follow()`.
- `Recorder`: record from agent code without waiting; a local durable
  outbox drained in order into `POST /api/v1/ingest/`.
- `TasksDict`: a drop-in for a program's `TASKS = {}`.

`SWARMSITE_URL` and `SWARMSITE_API_KEY` are the defaults of `url` and
`api_key` everywhere.
"""

from swarmsite_client._core import RetryPolicy
from swarmsite_client.client import AsyncClient, Client
from swarmsite_client.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    ConnectionFailed,
    DependencyCycle,
    IdempotencyConflict,
    IllegalTransition,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    ParseError,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    ServerError,
    StreamClosed,
    SwarmsiteError,
    Unavailable,
    UnsupportedMediaType,
    ValidationError,
    VersionConflict,
)
from swarmsite_client.recorder import OutboxFull, Recorder, Tracked
from swarmsite_client.tasks_dict import TasksDict, TaskView

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AuthenticationFailed",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "DependencyCycle",
    "IdempotencyConflict",
    "IllegalTransition",
    "MethodNotAllowed",
    "NotAuthenticated",
    "NotFound",
    "OutboxFull",
    "Recorder",
    "TaskView",
    "TasksDict",
    "Tracked",
    "ParseError",
    "PermissionDenied",
    "RateLimited",
    "RequestTooLarge",
    "RetryPolicy",
    "ServerError",
    "StreamClosed",
    "SwarmsiteError",
    "Unavailable",
    "UnsupportedMediaType",
    "ValidationError",
    "VersionConflict",
]
