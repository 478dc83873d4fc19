import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.journal import journaled
from audit.models import Event
from conversations.models import Conversation, Message, Participant
from conversations.services import (
    MAX_MESSAGES_PER_APPEND,
    conversation_create,
    conversation_create_many,
    conversation_update,
    message_append,
    message_append_one,
    message_sender_set,
    message_sender_set_many,
    messages_append,
)
from swarmsite.errors import Conflict, IdempotencyConflict, ValidationError
from tasks.models import Task
from tasks.services import agent_register, task_create
from tasks.services.rollups import AGENT_COLUMNS
from tests.audit.factories import (
    audit_actions,
    doorbell,
    event_kinds,
    last_position,
    table_counts,
)

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


@pytest.fixture
def conversation(project, task, agent):
    return conversation_create(
        project=project, task=task, title="Planning", participants=[agent.pk]
    )[0]


def new_events(project, start: int) -> list[Event]:
    return list(
        Event.objects.filter(project=project, position__gt=start).order_by("position")
    )


def rollups(obj) -> tuple:
    fields = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost")
    return tuple(type(obj).objects.filter(pk=obj.pk).values(*fields).get().values())


def seqs(conversation) -> list[int]:
    return list(
        Message.objects.filter(conversation=conversation)
        .order_by("seq")
        .values_list("seq", flat=True)
    )


# Conversations ----------------------------------------------------------------


def test_conversation_create_stores_it_with_participants_and_records_it(
    project, task, agent, django_capture_on_commit_callbacks
):
    start = last_position(project)

    with doorbell(project) as bell:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            conversation, created = conversation_create(
                project=project,
                task=str(task.pk),
                title="Planning",
                participants=[agent.pk],
                metadata={"topic": "report"},
            )
        rings = bell.rings()

    assert created is True
    stored = Conversation.objects.get(pk=conversation.pk)
    assert (stored.task, stored.title, stored.status) == (task, "Planning", "active")
    assert list(stored.participants.all()) == [agent]
    assert stored.message_count == 0
    (event,) = new_events(project, start)
    assert event.kind == "conversation.created"
    assert (event.conversation_id, event.task_id) == (conversation.pk, task.pk)
    assert event.payload["participants"] == [str(agent.pk)]
    assert len(callbacks) == 1
    assert [r["position"] for r in rings] == [event.position]
    assert rings[0]["conversations"] == [str(conversation.pk)]
    assert rings[0]["tasks"] == [str(task.pk)]


def test_conversation_create_with_a_known_id_and_the_same_body_returns_it(
    project, agent
):
    conversation_id = uuid.uuid4()
    body = {"title": "t", "participants": [agent.pk], "metadata": {"a": 1}}
    first, _ = conversation_create(
        project=project, conversation_id=conversation_id, **body
    )
    before = table_counts()

    again, created = conversation_create(
        project=project, conversation_id=str(conversation_id), **body
    )

    assert created is False
    assert again.pk == first.pk
    assert table_counts() == before


def test_conversation_create_retry_matches_while_participants_only_grew(project, agent):
    conversation_id = uuid.uuid4()
    conversation_create(
        project=project, conversation_id=conversation_id, participants=[agent.pk]
    )
    newcomer = agent_register(project=project, name="newcomer")[0]
    before = table_counts()

    # Messages add their senders as participants: a retry sending the
    # original, smaller list is still the same create.
    again, created = conversation_create(
        project=project, conversation_id=conversation_id, participants=[]
    )
    assert created is False
    with pytest.raises(IdempotencyConflict, match="participants"):
        conversation_create(
            project=project,
            conversation_id=conversation_id,
            participants=[agent.pk, newcomer.pk],
        )
    assert table_counts() == before


@pytest.mark.parametrize(
    "change",
    [{"title": "other"}, {"metadata": {"a": 2}}],
    ids=lambda v: next(iter(v)),
)
def test_conversation_create_with_a_known_id_and_another_body_is_a_conflict(
    project, agent, change
):
    conversation_id = uuid.uuid4()
    body = {"title": "t", "participants": [agent.pk], "metadata": {"a": 1}}
    conversation_create(project=project, conversation_id=conversation_id, **body)
    before = table_counts()

    with pytest.raises(IdempotencyConflict, match=next(iter(change))):
        conversation_create(
            project=project, conversation_id=conversation_id, **(body | change)
        )

    assert table_counts() == before


def test_conversation_create_with_an_id_of_another_project_is_a_conflict(
    project, other_project
):
    theirs, _ = conversation_create(project=other_project)

    with pytest.raises(IdempotencyConflict):
        conversation_create(project=project, conversation_id=theirs.pk)


@pytest.mark.parametrize("field", ["task", "participants"])
def test_conversation_create_refuses_rows_of_another_project(
    project, other_project, field
):
    value = {
        "task": lambda: task_create(project=other_project, title="t")[0],
        "participants": lambda: [agent_register(project=other_project, name="a")[0]],
    }[field]()
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        conversation_create(project=project, **{field: value})

    assert list(exc.value.fields) == [field]
    assert table_counts() == before


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"title": "x" * 501}, "title"),
        ({"metadata": [1]}, "metadata"),
        ({"conversation_id": "nope"}, "id"),
        ({"participants": ["nope"]}, "participants"),
    ],
    ids=["title", "metadata", "id", "participants"],
)
def test_conversation_create_refuses_bad_input(project, kwargs, field):
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        conversation_create(project=project, **kwargs)

    assert field in exc.value.fields
    assert table_counts() == before


def test_conversation_create_many_opens_them_in_order_with_one_event_each(
    project, task, agent
):
    start = last_position(project)
    ids = [uuid.uuid4(), uuid.uuid4()]

    results = conversation_create_many(
        project=project,
        conversations=[
            {"conversation_id": ids[0], "task": task.pk, "title": "One"},
            {"conversation_id": ids[1], "participants": [agent.pk], "title": "Two"},
        ],
    )

    assert [(c.pk, c.title, created) for c, created in results] == [
        (ids[0], "One", True),
        (ids[1], "Two", True),
    ]
    assert Conversation.objects.get(pk=ids[0]).task_id == task.pk
    assert list(Conversation.objects.get(pk=ids[1]).participants.all()) == [agent]
    events = new_events(project, start)
    assert [(e.kind, e.conversation_id) for e in events] == [
        ("conversation.created", ids[0]),
        ("conversation.created", ids[1]),
    ]


def test_conversation_create_many_answers_a_repeated_id_as_a_retry(project):
    known = uuid.uuid4()
    conversation_create(project=project, conversation_id=known, title="Known")
    again = uuid.uuid4()

    results = conversation_create_many(
        project=project,
        conversations=[
            {"conversation_id": known, "title": "Known"},
            {"conversation_id": again, "title": "New"},
            {"conversation_id": again, "title": "New"},
        ],
    )

    assert [(c.pk, created) for c, created in results] == [
        (known, False),
        (again, True),
        (again, False),
    ]
    assert Conversation.objects.filter(pk__in=[known, again]).count() == 2


def test_conversation_create_many_refuses_a_repeated_id_with_another_body(project):
    same = uuid.uuid4()
    before = table_counts()

    with pytest.raises(IdempotencyConflict):
        conversation_create_many(
            project=project,
            conversations=[
                {"conversation_id": same, "title": "One"},
                {"conversation_id": same, "title": "Two"},
            ],
        )

    assert table_counts() == before


def test_conversation_create_many_refuses_an_unknown_key(project):
    with pytest.raises(ValidationError) as exc:
        conversation_create_many(project=project, conversations=[{"name": "x"}])

    assert exc.value.fields == {"name": ["Unknown field."]}


def test_conversation_update_changes_fields_and_records_the_changes(
    project, conversation, agent
):
    helper, _ = agent_register(project=project, name="helper")
    start = last_position(project)

    conversation_update(
        conversation=conversation,
        title="Renamed",
        status="closed",
        participants=[helper.pk],
    )

    stored = Conversation.objects.get(pk=conversation.pk)
    assert (stored.title, stored.status) == ("Renamed", "closed")
    assert list(stored.participants.filter(participant_links__active=True)) == [helper]
    left, joined, event = new_events(project, start)
    assert (left.kind, left.payload["agent"]) == (
        "conversation.participant_left",
        str(agent.pk),
    )
    assert (joined.kind, joined.payload["agent"]) == (
        "conversation.participant_joined",
        str(helper.pk),
    )
    assert (event.kind, event.conversation_id) == (
        "conversation.updated",
        conversation.pk,
    )
    assert event.payload["changes"] == {
        "title": ["Planning", "Renamed"],
        "status": ["active", "closed"],
        "participants": [[str(agent.pk)], [str(helper.pk)]],
    }


def test_conversation_update_without_a_change_records_nothing(project, conversation):
    start = last_position(project)

    conversation_update(conversation=conversation, title="Planning")

    assert last_position(project) == start


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": "deleted"}, "status"),
        ({"task": None}, "task"),
        ({"metadata": "x"}, "metadata"),
        ({"title": "x" * 501}, "title"),
        ({"participants": [uuid.uuid4()]}, "participants"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_conversation_update_refuses_bad_input(conversation, kwargs, field):
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        conversation_update(conversation=conversation, **kwargs)

    assert field in exc.value.fields
    assert table_counts() == before


# Messages ---------------------------------------------------------------------------


def test_message_append_one_numbers_it_and_rolls_up_usage(
    project, conversation, task, agent, django_capture_on_commit_callbacks
):
    start = last_position(project)

    with doorbell(project) as bell:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            message, created = message_append_one(
                conversation=conversation,
                role="assistant",
                content="Hello",
                sender=str(agent.pk),
                model="m-1",
                prompt_tokens=10,
                completion_tokens=4,
                cached_tokens=2,
                cost="0.003",
                latency_ms=120.5,
            )
        rings = bell.rings()

    assert created is True
    assert message.seq == 1
    stored = Conversation.objects.get(pk=conversation.pk)
    assert stored.message_count == 1
    assert stored.last_message_at == message.created_at
    assert rollups(conversation) == (10, 4, 2, Decimal("0.003"))
    assert rollups(task) == (10, 4, 2, Decimal("0.003"))
    (event,) = new_events(project, start)
    assert (event.kind, event.conversation_id, event.task_id) == (
        "message.created",
        conversation.pk,
        task.pk,
    )
    assert event.payload["seq"] == 1
    assert event.payload["sender"] == str(agent.pk)
    assert len(callbacks) == 1
    assert [r["position"] for r in rings] == [event.position]


def test_message_append_many_numbers_them_1_to_n_in_one_ring(
    project, conversation, django_capture_on_commit_callbacks
):
    start = last_position(project)
    messages = [
        {"role": "user", "content": f"m{i}", "prompt_tokens": i, "cost": "0.01"}
        for i in range(1, 6)
    ]

    with doorbell(project) as bell:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            results = message_append(conversation=conversation, messages=messages)
        rings = bell.rings()

    assert [(m.seq, created) for m, created in results] == [
        (i, True) for i in range(1, 6)
    ]
    assert [m.content for m, _ in results] == [f"m{i}" for i in range(1, 6)]
    assert seqs(conversation) == [1, 2, 3, 4, 5]
    assert Conversation.objects.get(pk=conversation.pk).message_count == 5
    assert rollups(conversation) == (15, 0, 0, Decimal("0.05"))
    events = new_events(project, start)
    assert [e.payload["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert {e.kind for e in events} == {"message.created"}
    assert len(callbacks) == 1
    assert [r["position"] for r in rings] == [events[-1].position]

    more = message_append(
        conversation=conversation, messages=[{"role": "user"}, {"role": "tool"}]
    )
    assert [m.seq for m, _ in more] == [6, 7]


def test_messages_append_numbers_each_conversation_on_from_its_own_count(
    project, conversation, task, agent, django_capture_on_commit_callbacks
):
    message_append_one(conversation=conversation, role="user")
    other, _ = conversation_create(project=project, title="Other")
    start = last_position(project)

    with doorbell(project) as bell:
        with django_capture_on_commit_callbacks(execute=True):
            results = messages_append(
                project=project,
                messages=[
                    {"conversation": str(other.pk), "role": "user", "content": "a"},
                    {
                        "conversation": str(conversation.pk),
                        "role": "assistant",
                        "sender": str(agent.pk),
                        "prompt_tokens": 5,
                    },
                    {"conversation": str(other.pk), "role": "user", "content": "b"},
                ],
            )
        rings = bell.rings()

    assert [(m.conversation_id, m.seq, new) for m, new in results] == [
        (other.pk, 1, True),
        (conversation.pk, 2, True),
        (other.pk, 2, True),
    ]
    assert seqs(conversation) == [1, 2]
    assert seqs(other) == [1, 2]
    assert Conversation.objects.get(pk=other.pk).message_count == 2
    assert rollups(task)[0] == 5
    assert rollups(other)[0] == 0
    events = new_events(project, start)
    assert [(e.conversation_id, e.task_id, e.payload["seq"]) for e in events] == [
        (other.pk, None, 1),
        (conversation.pk, task.pk, 2),
        (other.pk, None, 2),
    ]
    assert len(rings) == 1


def test_messages_append_adds_each_conversations_usage_to_its_own_totals(
    project, conversation
):
    other, _ = conversation_create(project=project, title="Other")
    at = [timezone.now() - timedelta(minutes=m) for m in range(4)]

    def append(conversation_id, created_at, tokens, cost):
        return {
            "conversation": str(conversation_id),
            "role": "assistant",
            "prompt_tokens": tokens,
            "completion_tokens": tokens + 1,
            "cached_tokens": tokens + 2,
            "cost": cost,
            "created_at": created_at,
        }

    messages_append(
        project=project,
        messages=[
            append(conversation.pk, at[3], 1, "0.000001"),
            append(other.pk, at[2], 10, "1.5"),
            append(conversation.pk, at[1], 2, "0.25"),
        ],
    )
    messages_append(
        project=project,
        messages=[
            append(other.pk, at[0], 2**31 - 3, "9999999.999999"),
            append(conversation.pk, at[2], 3, "0"),
        ],
    )

    def totals(c):
        return Conversation.objects.values_list("message_count", "last_message_at").get(
            pk=c.pk
        ), rollups(c)

    assert totals(conversation) == ((3, at[2]), (6, 9, 12, Decimal("0.250001")))
    assert totals(other) == (
        (2, at[0]),
        (2**31 + 7, 2**31 + 9, 2**31 + 11, Decimal("10000001.499999")),
    )


def test_messages_append_counts_each_sender_in_each_conversation(
    project, conversation, agent
):
    other, _ = conversation_create(project=project)
    second, _ = agent_register(project=project, name="second")

    messages_append(
        project=project,
        messages=[
            {"conversation": conversation.pk, "role": "assistant", "sender": agent.pk},
            {"conversation": other.pk, "role": "assistant", "sender": agent.pk},
            {"conversation": other.pk, "role": "assistant", "sender": second.pk},
            {"conversation": other.pk, "role": "assistant", "sender": agent.pk},
        ],
    )

    links = {
        (link.conversation_id, link.agent_id): link.message_count
        for link in Participant.objects.filter(conversation__in=[conversation, other])
    }
    assert links == {
        (conversation.pk, agent.pk): 1,
        (other.pk, agent.pk): 2,
        (other.pk, second.pk): 1,
    }
    agent.refresh_from_db()
    assert agent.messages_count == 3


def test_messages_append_names_a_missing_conversation_by_index(
    project, conversation, other_project
):
    elsewhere, _ = conversation_create(project=other_project)
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        messages_append(
            project=project,
            messages=[
                {"conversation": conversation.pk, "role": "user"},
                {"conversation": elsewhere.pk, "role": "user"},
            ],
        )

    assert list(exc.value.fields) == ["messages[1].conversation"]
    assert table_counts() == before


def test_messages_append_refuses_a_reply_to_another_conversations_message(
    project, conversation
):
    other, _ = conversation_create(project=project)
    first = uuid.uuid4()

    with pytest.raises(ValidationError) as exc:
        messages_append(
            project=project,
            messages=[
                {"conversation": other.pk, "id": first, "role": "user"},
                {"conversation": conversation.pk, "role": "user", "reply_to": first},
            ],
        )

    assert list(exc.value.fields) == ["messages[1].reply_to"]


def test_messages_of_a_conversation_without_a_task_roll_up_onto_it_only(project, task):
    conversation, _ = conversation_create(project=project)

    message_append_one(conversation=conversation, role="user", prompt_tokens=7)

    assert rollups(conversation)[0] == 7
    assert rollups(task) == (0, 0, 0, Decimal(0))


def test_a_new_sender_becomes_a_participant(project, conversation):
    newcomer, _ = agent_register(project=project, name="newcomer")

    message_append(
        conversation=conversation,
        messages=[
            {"role": "assistant", "sender": newcomer.pk},
            {"role": "assistant", "sender": str(newcomer.pk)},
        ],
    )

    assert newcomer in conversation.participants.all()
    assert Participant.objects.filter(conversation=conversation).count() == 2


def test_a_repeated_message_id_with_the_same_body_returns_the_stored(
    project, conversation, task
):
    message_id = uuid.uuid4()
    body = {"id": message_id, "role": "user", "content": "hi", "prompt_tokens": 3}
    first, _ = message_append_one(conversation=conversation, **body)
    before = table_counts()
    totals = rollups(conversation), rollups(task)

    again, created = message_append_one(
        conversation=conversation, **(body | {"id": str(message_id)})
    )

    assert created is False
    assert (again.pk, again.seq) == (first.pk, 1)
    assert table_counts() == before
    assert (rollups(conversation), rollups(task)) == totals
    assert Conversation.objects.get(pk=conversation.pk).message_count == 1


def test_a_retried_batch_writes_only_its_new_messages(project, conversation):
    ids = [uuid.uuid4() for _ in range(3)]
    message_append(
        conversation=conversation,
        messages=[{"id": ids[0], "role": "user"}, {"id": ids[1], "role": "user"}],
    )
    start = last_position(project)

    results = message_append(
        conversation=conversation,
        messages=[{"id": i, "role": "user"} for i in ids],
    )

    assert [(m.pk, m.seq, created) for m, created in results] == [
        (ids[0], 1, False),
        (ids[1], 2, False),
        (ids[2], 3, True),
    ]
    assert [e.payload["seq"] for e in new_events(project, start)] == [3]
    assert seqs(conversation) == [1, 2, 3]


def test_a_repeated_message_id_with_another_body_is_a_conflict(conversation):
    message_id = uuid.uuid4()
    message_append_one(conversation=conversation, id=message_id, role="user")
    before = table_counts()

    with pytest.raises(IdempotencyConflict, match="content"):
        message_append_one(
            conversation=conversation, id=message_id, role="user", content="edited"
        )

    assert table_counts() == before


def test_a_message_id_taken_in_another_conversation_is_a_conflict(
    project, conversation
):
    other, _ = conversation_create(project=project)
    message, _ = message_append_one(conversation=other, role="user")
    before = table_counts()

    with pytest.raises(IdempotencyConflict):
        message_append_one(conversation=conversation, id=message.pk, role="user")

    assert table_counts() == before


def test_reply_to_a_stored_message(conversation):
    question, _ = message_append_one(conversation=conversation, role="user")

    answer, _ = message_append_one(
        conversation=conversation, role="assistant", reply_to=str(question.pk)
    )

    assert Message.objects.get(pk=answer.pk).reply_to == question


def test_reply_to_an_earlier_message_of_the_same_batch(project, conversation):
    question_id = uuid.uuid4()

    results = message_append(
        conversation=conversation,
        messages=[
            {"id": question_id, "role": "user", "content": "?"},
            {"role": "assistant", "content": "!", "reply_to": question_id},
        ],
    )

    answer = Message.objects.get(pk=results[1][0].pk)
    assert answer.reply_to_id == question_id
    assert new_events(project, 0)[-1].payload["reply_to"] == str(question_id)


@pytest.mark.parametrize("target", ["later", "self", "unknown", "elsewhere", "bad"])
def test_reply_to_a_message_not_earlier_here_is_a_field_error(
    project, conversation, target
):
    elsewhere = message_append_one(
        conversation=conversation_create(project=project)[0], role="user"
    )[0]
    ids = [uuid.uuid4(), uuid.uuid4()]
    reply_to = {
        "later": ids[1],
        "self": ids[0],
        "unknown": uuid.uuid4(),
        "elsewhere": elsewhere.pk,
        "bad": "not-a-uuid",
    }[target]
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        message_append(
            conversation=conversation,
            messages=[
                {"id": ids[0], "role": "user", "reply_to": reply_to},
                {"id": ids[1], "role": "user"},
            ],
        )

    assert list(exc.value.fields) == ["messages[0].reply_to"]
    assert table_counts() == before


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"role": "robot"}, "role"),
        ({"content": 5}, "content"),
        ({"tool_calls": {"not": "a list"}}, "tool_calls"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": "fast"}, "latency_ms"),
        ({"prompt_tokens": -1}, "prompt_tokens"),
        ({"completion_tokens": "2"}, "completion_tokens"),
        ({"cached_tokens": 1.5}, "cached_tokens"),
        ({"cost": "free"}, "cost"),
        ({"metadata": []}, "metadata"),
        ({"id": "nope"}, "id"),
        ({"sender": uuid.uuid4()}, "sender"),
        ({"sender": "nope"}, "sender"),
        ({"model": "x" * 201}, "model"),
        ({"colour": "red"}, "colour"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_a_bad_message_in_a_batch_is_named_by_its_index_and_field(
    conversation, spec, field
):
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        message_append(
            conversation=conversation,
            messages=[{"role": "user"}, {"role": "user"} | spec],
        )

    assert list(exc.value.fields) == [f"messages[1].{field}"]
    assert table_counts() == before


def test_a_bad_single_message_is_named_by_its_field_alone(conversation):
    with pytest.raises(ValidationError) as exc:
        message_append_one(conversation=conversation, role="robot")

    assert list(exc.value.fields) == ["role"]


def test_a_sender_of_another_project_is_refused(conversation, other_project):
    stranger, _ = agent_register(project=other_project, name="stranger")

    with pytest.raises(ValidationError) as exc:
        message_append(
            conversation=conversation,
            messages=[{"role": "user"}, {"role": "user", "sender": stranger.pk}],
        )

    assert list(exc.value.fields) == ["messages[1].sender"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "messages",
    [[], "text", {"role": "user"}, [{"role": "user"}] * (MAX_MESSAGES_PER_APPEND + 1)],
    ids=["empty", "text", "object", "too-many"],
)
def test_message_append_refuses_a_bad_list(conversation, messages):
    with pytest.raises(ValidationError) as exc:
        message_append(conversation=conversation, messages=messages)

    assert list(exc.value.fields) == ["messages"]
    assert not Message.objects.exists()


def test_a_batch_reusing_one_id_twice_is_refused(conversation):
    message_id = uuid.uuid4()

    with pytest.raises(ValidationError) as exc:
        message_append(
            conversation=conversation,
            messages=[{"id": message_id, "role": "user"}] * 2,
        )

    assert list(exc.value.fields) == ["messages"]
    assert not Message.objects.exists()


def test_a_non_object_item_is_named_by_its_index(conversation):
    with pytest.raises(ValidationError) as exc:
        message_append(conversation=conversation, messages=[{"role": "user"}, "hi"])

    assert list(exc.value.fields) == ["messages[1].non_field_errors"]


SERVICES = {
    "conversation_create": (
        lambda c: conversation_create(project=c.project, task=c.task),
        ["conversation.created"],
    ),
    "conversation_update": (
        lambda c: conversation_update(conversation=c, status="closed"),
        ["conversation.updated"],
    ),
    "message_append_one": (
        lambda c: message_append_one(conversation=c, role="user"),
        ["message.created"],
    ),
    "message_append": (
        lambda c: message_append(conversation=c, messages=[{"role": "user"}] * 3),
        ["message.created"] * 3,
    ),
}


@pytest.mark.parametrize("name", SERVICES)
def test_service_appends_its_events_in_its_transaction_and_rings_after_commit(
    project, conversation, name, django_capture_on_commit_callbacks
):
    call, kinds = SERVICES[name]
    start = last_position(project)

    with doorbell(project) as bell:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            call(conversation)
            in_transaction = [e.kind for e in new_events(project, start)]
            assert bell.rings(timeout=0.01) == []
        rings = bell.rings()

    events = new_events(project, start)
    assert [e.kind for e in events] == in_transaction == kinds
    assert [e.position for e in events] == list(
        range(start + 1, start + 1 + len(kinds))
    )
    assert {e.task_id for e in events} == {conversation.task_id}
    assert len(callbacks) == 1
    assert len(rings) == 1
    assert rings[0]["position"] == events[-1].position == last_position(project)
    assert rings[0]["tasks"] == [str(conversation.task_id)]


def test_message_append_rolled_back_leaves_nothing_and_rings_nothing(
    project, conversation, task, django_capture_on_commit_callbacks
):
    message_append_one(conversation=conversation, role="user", prompt_tokens=1)
    before = table_counts()
    totals = rollups(conversation), rollups(task)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Boom),
        journaled(),
    ):
        message_append(
            conversation=conversation,
            messages=[{"role": "user", "prompt_tokens": 5}] * 3,
        )
        raise Boom

    assert callbacks == []
    assert table_counts() == before
    assert (rollups(conversation), rollups(task)) == totals
    assert message_append_one(conversation=conversation, role="user")[0].seq == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda c: conversation_create(project=c.project, title="new"),
        lambda c: conversation_update(conversation=c, title="new"),
        lambda c: message_append_one(conversation=c, role="user"),
    ],
    ids=["create", "update", "append"],
)
def test_conversation_services_rolled_back_leave_nothing(
    conversation, call, django_capture_on_commit_callbacks
):
    before = table_counts()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Boom),
        journaled(),
    ):
        call(conversation)
        raise Boom

    assert callbacks == []
    assert table_counts() == before


def test_events_of_a_conversation_can_be_followed_by_its_id(project, conversation):
    message_append(conversation=conversation, messages=[{"role": "user"}] * 2)

    assert event_kinds(project, conversation_id=conversation.pk) == [
        "conversation.created",
        "message.created",
        "message.created",
    ]
    assert Task.objects.get(pk=conversation.task_id).conversations.get() == (
        conversation
    )


_BUILT = [
    {"role": "user"},
    {"role": "assistant", "content": "é ✓", "latency_ms": 10, "model": "m"},
    {"role": "assistant", "latency_ms": 2.5, "prompt_tokens": 2**31},
    {"role": "tool", "tool_calls": [{"name": "search", "args": {"q": "ü"}}]},
    {"role": "tool", "tool_calls": [], "tool_call_id": 7, "cost": "9999999999.5"},
    {"role": "user", "metadata": {"at": "x\ud800"}},
    {"role": "user", "metadata": {"nul": "a\x00b"}},
    {"role": "user", "metadata": {"escaped": "\\u0000"}},
    {"role": "user", "metadata": {"id": uuid.uuid4()}},
    {"role": "user", "tool_calls": [Decimal("1.5")]},
    {"role": "user", "metadata": {"n": float("nan")}},
    {"role": "user", "created_at": "2024-05-01T10:00:00+00:00"},
    {"role": "user", "created_at": "yesterday"},
    {"role": "user", "model": "x" * 201, "tool_call_id": "y" * 201},
    {"role": "user", "cost": "12345678901", "latency_ms": 10**400},
    {"role": "system", "completion_tokens": 2**63, "cached_tokens": 3},
]


@pytest.mark.parametrize("spec", _BUILT, ids=range(len(_BUILT)))
def test_messages_built_without_clean_fields_match_the_cleaned(
    conversation, agent, monkeypatch, spec
):
    from conversations.services import messages

    def build():
        spec_ = {"id": uuid.uuid4(), "sender": agent.pk} | spec
        try:
            message = messages._build_message(
                spec_, conversation=conversation, senders={str(agent.pk): agent}
            )
        except (ValidationError, OverflowError) as exc:
            return type(exc), getattr(exc, "fields", None)
        values = {k: v for k, v in vars(message).items() if k != "_state"}
        values["id"] = None
        if "created_at" not in spec:
            values["created_at"] = None
        cached = {k: v.pk for k, v in message._state.fields_cache.items()}
        return {k: (type(v), v) for k, v in values.items()}, cached

    plain = build()
    monkeypatch.setattr(messages, "_COUNT_MAX", -1)

    assert build() == plain


# Filling a sender ---------------------------------------------------------------


def sender_rollups(agent) -> dict:
    """Every roll-up column of the agent: a fill moves its message ones only."""
    return type(agent).objects.filter(pk=agent.pk).values(*AGENT_COLUMNS).get()


def talk(conversation) -> dict:
    """A conversation's totals and its participants' message counts."""
    fields = ("message_count", "prompt_tokens", "completion_tokens", "cost")
    row = Conversation.objects.filter(pk=conversation.pk).values(*fields).get()
    links = Participant.objects.filter(conversation=conversation)
    return row | {"links": sorted(links.values_list("message_count", flat=True))}


CALLS = [
    {"role": "assistant", "prompt_tokens": 120, "completion_tokens": 8,
     "cached_tokens": 100, "cost": "0.25", "latency_ms": 40.5},
    {"role": "assistant", "prompt_tokens": 9, "latency_ms": 3.0,
     "metadata": {"run": "its run reports the usage"}},
]  # fmt: skip


def test_message_sender_set_moves_the_rollups_as_if_written_with_the_sender(
    project, task
):
    late, early = (
        agent_register(project=project, name=name)[0] for name in ("late", "early")
    )
    filled, _ = conversation_create(project=project, task=task)
    direct, _ = conversation_create(project=project)
    stored = message_append(conversation=filled, messages=CALLS)
    message_append(
        conversation=direct, messages=[c | {"sender": early.pk} for c in CALLS]
    )
    totals = talk(filled), rollups(task)

    results = message_sender_set_many(
        project=project,
        senders=[{"message": m.pk, "sender": late.pk} for m, _ in stored],
    )

    assert [created for _, created in results] == [True, True]
    assert list(
        Message.objects.filter(conversation=filled).values_list("sender", flat=True)
    ) == [late.pk, late.pk]
    assert sender_rollups(late) == sender_rollups(early)
    assert sender_rollups(late)["prompt_tokens"] == 120  # the run's call not
    assert Participant.objects.get(conversation=filled, agent=late).message_count == 2
    # The conversation and its task counted the messages when appended.
    assert talk(filled)["message_count"] == totals[0]["message_count"]
    assert rollups(task) == totals[1]
    assert (
        event_kinds(project, kind__startswith="message.updated")
        == ["message.updated"] * 2
    )
    event = Event.objects.filter(kind="message.updated").first()
    assert event.payload["changes"] == {"sender": [None, str(late.pk)]}
    assert event.conversation_id == filled.pk and event.task_id == task.pk
    assert audit_actions(project, action="message.updated") == ["message.updated"] * 2


def test_message_sender_set_again_is_a_no_op_and_moves_nothing_twice(
    project, conversation, agent
):
    (message, _), (other, _) = message_append(conversation=conversation, messages=CALLS)
    assert message_sender_set(message=message, sender=agent) == (message, True)
    once = sender_rollups(agent), talk(conversation), table_counts()

    again = message_sender_set_many(
        project=project,
        senders=[
            {"message": message.pk, "sender": str(agent.pk)},
            {"message": other.pk, "sender": agent.pk},
            {"message": other.pk, "sender": agent.pk},
        ],
    )

    assert [created for _, created in again] == [False, True, False]
    other.refresh_from_db()
    assert other.sender == agent
    twice = sender_rollups(agent)
    assert twice["messages_count"] == once[0]["messages_count"] + 1
    assert twice["latency_count"] == once[0]["latency_count"] + 1
    assert message_sender_set(message=message, sender=agent)[1] is False
    assert sender_rollups(agent) == twice
    assert event_kinds(project, kind="message.updated") == ["message.updated"] * 2


def test_message_sender_set_never_replaces_a_sender(project, conversation, agent):
    rival, _ = agent_register(project=project, name="rival")
    message, _ = message_append_one(
        conversation=conversation, role="assistant", sender=agent.pk
    )
    before = table_counts(), sender_rollups(agent), sender_rollups(rival)

    with pytest.raises(Conflict) as exc:
        message_sender_set(message=message, sender=rival)

    assert "sender" in exc.value.message
    message.refresh_from_db()
    assert message.sender == agent
    assert (table_counts(), sender_rollups(agent), sender_rollups(rival)) == before


def test_message_sender_set_many_refusing_one_item_writes_nothing(
    project, conversation, agent
):
    rival, _ = agent_register(project=project, name="rival")
    (free, _), (taken, _) = message_append(
        conversation=conversation,
        messages=[{"role": "assistant"}, {"role": "assistant", "sender": agent.pk}],
    )
    before = table_counts(), sender_rollups(rival)

    with pytest.raises(Conflict) as exc:
        message_sender_set_many(
            project=project,
            senders=[
                {"message": free.pk, "sender": rival.pk},
                {"message": taken.pk, "sender": rival.pk},
            ],
        )

    assert exc.value.message.startswith("senders[1].sender")
    assert (table_counts(), sender_rollups(rival)) == before
    assert Message.objects.get(pk=free.pk).sender is None


@pytest.mark.parametrize(
    "fill, field",
    [
        (lambda m, a, f: {"message": uuid.uuid4(), "sender": a.pk}, "message"),
        (lambda m, a, f: {"message": m.pk, "sender": uuid.uuid4()}, "sender"),
        (lambda m, a, f: {"message": m.pk, "sender": f.pk}, "sender"),
        (lambda m, a, f: {"message": "nope", "sender": a.pk}, "message"),
        (lambda m, a, f: {"message": m.pk, "sender": "nope"}, "sender"),
        (lambda m, a, f: {"message": m.pk}, "sender"),
        (lambda m, a, f: {"sender": a.pk}, "message"),
        (lambda m, a, f: {"message": m.pk, "sender": a.pk, "role": "user"}, "role"),
    ],
    ids=[
        "unknown message",
        "unknown agent",
        "agent of another project",
        "bad message id",
        "bad agent id",
        "no sender",
        "no message",
        "another field",
    ],
)
def test_message_sender_set_refuses_bad_items_by_field(
    project, other_project, conversation, agent, fill, field
):
    message, _ = message_append_one(conversation=conversation, role="assistant")
    foreign, _ = agent_register(project=other_project, name="stranger")
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        message_sender_set_many(
            project=project, senders=[fill(message, agent, foreign)]
        )
    assert list(exc.value.fields) == [field]

    with pytest.raises(ValidationError) as exc:
        message_sender_set_many(
            project=project,
            senders=[
                {"message": message.pk, "sender": agent.pk},
                fill(message, agent, foreign),
            ],
        )
    assert list(exc.value.fields) == [f"senders[1].{field}"]
    assert table_counts() == before


def test_message_sender_set_refuses_a_message_of_another_project(
    project, other_project, agent
):
    theirs, _ = conversation_create(project=other_project)
    message, _ = message_append_one(conversation=theirs, role="assistant")

    with pytest.raises(ValidationError) as exc:
        message_sender_set_many(
            project=project, senders=[{"message": message.pk, "sender": agent.pk}]
        )

    assert list(exc.value.fields) == ["message"]
    assert Message.objects.get(pk=message.pk).sender is None


def test_message_sender_set_rolled_back_leaves_nothing(
    project, conversation, agent, django_capture_on_commit_callbacks
):
    message, _ = message_append_one(conversation=conversation, role="assistant")
    before = table_counts(), sender_rollups(agent), talk(conversation)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Boom),
        journaled(),
    ):
        message_sender_set(message=message, sender=agent)
        raise Boom

    assert callbacks == []
    assert (table_counts(), sender_rollups(agent), talk(conversation)) == before
