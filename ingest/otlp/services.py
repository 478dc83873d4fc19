"""Writing an OTLP export: spans mapped to ingest items, applied by ingest.

OTLP is a way in, not a second write path: the items go through the same
service (`ingest_items`) as a `POST /api/v1/ingest/` body, so validation by
the services, journaling, audit, streams, roll-ups, idempotency and the
refusal of reserved kinds are the ingest path's. Only the API's parsing of
the JSON is skipped: the mapping built the items (`typed_items`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction
from django.db.models.fields.json import KT

from audit.models import Event
from audit.services import SYSTEM, Actor
from conversations.models import Conversation
from ingest.otlp import mapping
from ingest.otlp.parsing import Span
from ingest.serializers import typed_items
from ingest.services import ItemResult, ingest_items, ingest_transaction
from swarmsite.models import Project
from tasks.models import Agent, Task

# Once more when a concurrent request registered one of our agent names under
# another id between our read and our write.
MAX_ATTEMPTS = 2
# Error codes that refuse no span: the item was written by an earlier export
# (idempotency_conflict), or its trace's task got a final status elsewhere
# first (a person cancelled it): that status stands, the span is kept.
SETTLED = frozenset({"idempotency_conflict", "illegal_transition"})


@dataclass
class ExportResult:
    """What the exporter is told: spans refused and why (partial_success)."""

    spans: int
    rejected: int
    message: str
    items: int


def _stored(
    project: Project, spans: list[Span], ids: mapping.Ids
) -> tuple[set[str], dict[str, str]]:
    """Ids of the trace tasks and conversations stored, and the tasks' titles."""
    traces = {ids.task(s.trace_id) for s in spans}
    talks = {ids.conversation(s) for s in spans if mapping.classify(s) == mapping.LLM}
    titles = {
        str(pk): title
        for pk, title in Task.objects.filter(
            project=project, pk__in=traces
        ).values_list("pk", "title")
    }
    found = set(titles)
    if talks:
        found |= {
            str(pk)
            for pk in Conversation.objects.filter(
                project=project, pk__in=talks
            ).values_list("pk", flat=True)
        }
    return found, titles


def _stored_spans(
    project: Project, spans: list[Span], ids: mapping.Ids
) -> list[mapping.Stored]:
    """The spans earlier exports wrote in these traces, from their events."""
    # Only the keys the skeleton needs, as text: a long trace's payloads are
    # not decoded whole, and SQLite does not read an id such as
    # "0e12345678901234" as a number.
    rows = (
        Event.objects.filter(
            project=project,
            task_id__in={ids.task(s.trace_id) for s in spans},
            kind=mapping.EVENT_KIND,
        )
        .order_by()
        .values_list(*(KT(f"payload__{key}") for key in mapping.Stored.KEYS))
    )
    found = (mapping.Stored.from_keys(row) for row in rows)
    return [s for s in found if s is not None]


# An export of more traces locks all of its project's traces at once:
# PostgreSQL's lock table is shared and small (64 locks per connection).
MAX_TRACE_LOCKS = 64
# Advisory locks of the two-key form: (LOCK_SPACE, project id) is a project's
# traces as a whole. Trace locks use the one-key form, another key space.
LOCK_SPACE = 0x07E1
# Exporters give up on a request after 10 s by default: waiting longer for
# another export of the trace helps no one. The wait ends in a 503.
LOCK_WAIT_MS = 10_000


def trace_lock_key(task_id: str) -> int:
    """The advisory lock key of a trace: its task id's first 64 bits."""
    return int.from_bytes(uuid.UUID(task_id).bytes[:8], "big", signed=True)


def _lock_traces(project: Project, task_ids: set[str]) -> None:
    """Hold these traces until commit: exports of one trace are written one
    after the other. SQLite's write transactions already are (IMMEDIATE)."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql" or not task_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}")
        if len(task_ids) > MAX_TRACE_LOCKS:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_SPACE, project.pk]
            )
        else:
            # Shared: exports of a few traces exclude each other by trace.
            # In key order, so two exports sharing traces never wait in a
            # cycle.
            cursor.execute(
                "SELECT pg_advisory_xact_lock_shared(%s, %s)",
                [LOCK_SPACE, project.pk],
            )
            cursor.execute(
                "SELECT pg_advisory_xact_lock(key) "
                "FROM unnest(%s::bigint[]) AS key ORDER BY key",
                [sorted(trace_lock_key(pk) for pk in task_ids)],
            )
        cursor.execute("SET LOCAL lock_timeout TO DEFAULT")


def otlp_spans_write(
    *, project: Project, spans: list[Span], actor: Actor = SYSTEM
) -> ExportResult:
    """Write the spans of one export into `project`; spans refused are counted.

    A span is refused when it has unusable ids, or when an item it maps to
    is refused by ingest (for instance a reserved kind). An item whose
    derived id is stored with another body is not a refusal: an earlier
    export of the same spans wrote it (a trace's task the root has renamed
    since, a message whose sender was unknown in its first export), and the
    first write stands. Nor is the end of a trace whose task a person
    finished or cancelled first: the task keeps that status. A span
    repeated in one export is written once.

    Opens its own transactions (the view calls it outside any): the trace
    locks must be the first ones they take.
    """
    refused: dict[int, str] = {
        i: f"span {i}: {s.invalid}" for i, s in enumerate(spans) if s.invalid
    }
    seen: set[tuple[str, str]] = set()
    index = []
    for i, span in enumerate(spans):
        key = (span.trace_id, span.span_id)
        if not span.invalid and key not in seen:
            seen.add(key)
            index.append(i)
    valid = [spans[i] for i in index]
    ids = mapping.Ids(project.pk)
    traces = {ids.task(s.trace_id) for s in valid}

    def write() -> tuple[mapping.Plan, list[ItemResult]]:
        # Read after the lock: an export of the same trace written meanwhile
        # is seen whole, so the order two exports commit in does not matter.
        _lock_traces(project, traces)
        stored = _stored_spans(project, valid, ids)
        names = mapping.agent_names(valid) | {s.agent for s in stored if s.agent}
        rows = list(
            Agent.objects.filter(project=project, name__in=names).values_list(
                "name", "id", "parent_id"
            )
        )
        agents = {name: str(pk) for name, pk, _ in rows}
        orphans = {name for name, _, parent in rows if parent is None}
        existing, titles = _stored(project, valid, ids)
        plan = mapping.map_spans(
            valid,
            ids=ids,
            agents=agents,
            existing=existing,
            stored_titles=titles,
            stored=stored,
            orphans=orphans,
        )
        if not plan.items:
            return plan, []
        items, rejected = typed_items(plan.items)
        return plan, ingest_items(
            project=project, items=items, rejected=rejected, actor=actor
        )

    plan, results = mapping.Plan(), []
    # Nothing to read or write when no span is usable.
    attempts = MAX_ATTEMPTS if valid else 0
    for _attempt in range(attempts):
        plan, results = ingest_transaction(write)
        moved = any(
            plan.items[r.index]["type"] == "agent"
            and r.status == "duplicate"
            and r.id != plan.items[r.index]["data"]["id"]
            for r in results
        )
        if not moved:
            break
    for result in results:
        if result.status != "error":
            continue
        error = result.error
        code = getattr(error, "code", "error")
        if code in SETTLED or not plan.owners[result.index]:
            # Settled, or a parent no span asked for (agent_update).
            continue
        item = plan.items[result.index]
        reason = (
            f"{item['type']} item of span "
            f"{valid[plan.owners[result.index][0]].span_id}: "
            f"{getattr(error, 'message', str(error))}"
        )
        for owner in plan.owners[result.index]:
            refused.setdefault(index[owner], reason)
    message = ""
    if refused:
        first = [refused[i] for i in sorted(refused)[:3]]
        message = "; ".join(first)[:1000]
    return ExportResult(
        spans=len(spans), rejected=len(refused), message=message, items=len(plan.items)
    )
