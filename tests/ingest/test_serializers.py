"""Typing the items the OTLP mapping builds (`typed_items`)."""

from __future__ import annotations

import uuid

from ingest.serializers import typed_items


def test_an_item_whose_values_cannot_be_typed_is_its_own_error_not_the_batch():
    task = str(uuid.uuid4())
    raw = [
        {"type": "task", "data": {"id": task, "title": "ok"}},
        {
            "type": "message",
            "data": {
                "conversation": str(uuid.uuid4()),
                "id": str(uuid.uuid4()),
                "role": "assistant",
                "cost": "10000000000.000000",
            },
        },
        {"type": "run", "data": {"id": "not-a-uuid", "task": task}},
        {"type": "event", "data": {"kind": "otel.span", "task": task}},
    ]
    items, rejected = typed_items(raw)
    assert [item.index for item in items] == [0, 3]
    assert items[0].supplied_id == task
    assert [(r.index, r.status) for r in rejected] == [(1, "error"), (2, "error")]
    assert "data.cost" in rejected[0].error.fields
    assert "data.id" in rejected[1].error.fields
