import pytest

from ingest.otlp import services
from ingest.serializers import typed_items, validate_items


def _fields(items):
    return [(i.index, i.type, i.data, i.supplied_id) for i in items]


@pytest.fixture(autouse=True)
def typed_items_match_validation(monkeypatch):
    """Every export the tests here write checks `typed_items` against the
    API's validation: what the mapping builds passes it, typed the same."""
    checked = []

    def checking(raw):
        typed, refused = typed_items(raw)
        validated, rejected = validate_items(raw)
        assert [r.error for r in rejected] == [r.error for r in refused] == []
        assert _fields(typed) == _fields(validated)
        checked.append(len(raw))
        return typed, refused

    monkeypatch.setattr(services, "typed_items", checking)
    return checked
