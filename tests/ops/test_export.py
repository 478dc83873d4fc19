import gzip
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from audit.models import Event
from tasks.models import Task
from tests.ops.conftest import export_text

pytestmark = pytest.mark.django_db


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()[1:]]


def test_export_writes_a_header_and_one_record_per_row(swarm, tmp_path):
    text = export_text(tmp_path)
    header, *lines = text.splitlines()

    assert json.loads(header) == {"format": "swarmsite-export", "version": 1}
    models = [json.loads(line)["model"] for line in lines]
    assert models.count("tasks.task") == Task.objects.count()
    assert models.count("audit.event") == Event.objects.count()
    assert "swarmsite.apikey" not in models
    # Parents before children: a model's rows come after the ones it names.
    order = list(dict.fromkeys(models))
    assert order.index("swarmsite.project") < order.index("tasks.agent")
    assert order.index("tasks.task") < order.index("tasks.agentrun")
    assert order.index("conversations.conversation") < order.index(
        "conversations.message"
    )


def test_export_formats_are_stable(swarm, tmp_path):
    records = _records(export_text(tmp_path))
    run = next(r["fields"] for r in records if r["model"] == "tasks.agentrun")
    message = next(
        r["fields"]
        for r in records
        if r["model"] == "conversations.message" and r["fields"]["latency_ms"]
    )
    line = next(
        line
        for line in export_text(tmp_path).splitlines()
        if '"model":"tasks.agentrun"' in line
    )

    assert run["cost"] == "0.012500"
    assert message["cost"] == "0.000123"
    assert message["latency_ms"] == 12.5
    assert message["sender"] == str(swarm["worker"].pk)
    assert run["created_at"].endswith("Z") and len(run["created_at"]) == 27
    assert line.index('"metadata":{"a":2,"z":1}') > 0
    assert ", " not in line.split('"fields":')[0]


def test_export_of_unchanged_data_is_byte_identical(swarm, tmp_path):
    assert export_text(tmp_path) == export_text(tmp_path, name="second.jsonl")


def test_export_project_holds_only_that_project(swarm, tmp_path):
    records = _records(export_text(tmp_path, "--project", "other"))
    projects = [
        r["fields"]["slug"] for r in records if r["model"] == "swarmsite.project"
    ]
    tasks = [r["fields"]["id"] for r in records if r["model"] == "tasks.task"]

    assert projects == ["other"]
    assert tasks == [str(swarm["other_task"].pk)]
    assert all(
        r["fields"]["project"] == "other" for r in records if "project" in r["fields"]
    )


def test_export_since_and_until_filter_by_change_time(swarm, tmp_path):
    old = datetime(2025, 6, 1, tzinfo=UTC)
    Task.objects.filter(pk=swarm["check"].pk).update(updated_at=old)

    since = _records(export_text(tmp_path, "--since", "2026-01-01"))
    until = _records(export_text(tmp_path, "--until", "2026-01-01T00:00:00Z"))

    def task_ids(records):
        return {r["fields"]["id"] for r in records if r["model"] == "tasks.task"}

    def event_kinds(records):
        return {r["fields"]["kind"] for r in records if r["model"] == "audit.event"}

    assert str(swarm["check"].pk) not in task_ids(since)
    assert str(swarm["root"].pk) in task_ids(since)
    assert task_ids(until) == {str(swarm["check"].pk)}
    # The custom event occurred on 2026-01-02; services' events are recent.
    assert "eval.scored" in event_kinds(since)
    assert event_kinds(until) == set()
    # Reference data goes whole, so the file imports on its own.
    assert any(r["model"] == "tasks.agent" for r in until)


def test_export_since_is_inclusive_and_until_exclusive(swarm, tmp_path):
    moment = Event.objects.get(kind="eval.scored").occurred_at
    after = (moment + timedelta(microseconds=1)).isoformat()
    at = moment.isoformat()

    def kinds(*args):
        return {
            r["fields"]["kind"]
            for r in _records(export_text(tmp_path, *args))
            if r["model"] == "audit.event"
        }

    assert "eval.scored" in kinds("--since", at, "--until", after)
    assert "eval.scored" not in kinds("--until", at)


def test_export_to_gz_is_gzip_and_without_output_goes_to_stdout(swarm, tmp_path):
    out = io.StringIO()
    call_command("export", stdout=out, stderr=io.StringIO())
    call_command("export", "--output", str(tmp_path / "e.jsonl.gz"))

    assert gzip.decompress((tmp_path / "e.jsonl.gz").read_bytes()).decode() == (
        out.getvalue()
    )
    assert not (tmp_path / "e.jsonl.gz.partial").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "nope"], "no project 'nope'"),
        (["--since", "last week"], "--since: 'last week' is not a date"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "--since must be before"),
        (["--output", "/nonexistent-dir/x.jsonl"], "Cannot write /nonexistent-dir"),
    ],
)
def test_export_refuses_bad_options(db, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("export", "--output", str(tmp_path / "x.jsonl"), *args)
    assert not (tmp_path / "x.jsonl").exists()


def test_every_model_and_field_of_the_domain_apps_is_exported():
    from django.apps import apps

    from ops.selectors import SPECS

    exported = {spec.model: spec for spec in SPECS}
    # A secret hash is a credential; a grant never outlives its transaction.
    left_out = {"swarmsite.apikey", "audit.deletiongrant"}
    for app in ("swarmsite", "audit", "tasks", "conversations"):
        for model in apps.get_app_config(app).get_models(include_auto_created=True):
            if model._meta.label_lower in left_out:
                continue
            assert model in exported, model._meta.label_lower
            surrogate = (
                {"id"} if model._meta.pk.name not in exported[model].fields else set()
            )
            names = {f.name for f in model._meta.concrete_fields} - surrogate
            assert names == set(exported[model].fields), model._meta.label_lower
