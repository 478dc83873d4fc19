"""The admin's transcript of a conversation and its memory search."""

import pytest
from django.urls import reverse

from conversations.services import (
    conversation_create,
    memory_put,
    message_append,
    message_revise,
    participant_leave,
)
from tasks.services import agent_register
from tests.conftest import count_queries

pytestmark = pytest.mark.django_db


def test_transcript_shows_who_to_whom_threads_and_revisions(staff_client, project):
    planner, coder = (
        agent_register(project=project, name=name)[0] for name in ("planner", "coder")
    )
    conversation = conversation_create(project=project, participants=[planner])[0]
    first = message_append(
        conversation=conversation,
        messages=[
            {
                "role": "assistant",
                "sender": str(planner.pk),
                "recipients": [str(coder.pk)],
                "content": "Take the parser.",
            }
        ],
    )[0][0]
    second = message_append(
        conversation=conversation,
        messages=[
            {"role": "assistant", "sender": str(coder.pk), "reply_to": str(first.pk)},
            {"role": "user", "content": "aside"},
        ],
    )[0][0]
    message_append(
        conversation=conversation,
        messages=[{"role": "assistant", "reply_to": str(second.pk)}],
    )
    message_revise(message=first, content="Take the lexer.")
    participant_leave(conversation=conversation, agent=coder)
    url = reverse("admin:conversations_conversation_change", args=[conversation.pk])

    page = staff_client.get(url).content.decode()

    assert "#1 assistant</b> planner → coder" in page
    assert "(revised, revision 2)" in page
    assert "Take the lexer." in page
    assert "↳ #1" in page
    assert "↳ #2 thread #1" in page
    assert "coder <em>no role</em>: left" in page
    few = count_queries(staff_client, url)
    message_append(
        conversation=conversation,
        messages=[
            {"role": "user", "sender": str(planner.pk), "recipients": [str(coder.pk)]}
            for _ in range(10)
        ],
    )
    assert count_queries(staff_client, url) <= few


def test_memory_search_in_the_admin_uses_the_full_text_index(staff_client, project):
    wanted = memory_put(project=project, content="The walrus prefers herring.")[0]
    memory_put(project=project, content="Unrelated note about deploys.")
    url = reverse("admin:conversations_memory_changelist")

    found = staff_client.get(url, {"q": "walruses herring"}).content.decode()
    everything = staff_client.get(url).content.decode()
    by_id = staff_client.get(url, {"q": str(wanted.uuid)}).content.decode()

    assert "walrus prefers" in found and "deploys" not in found
    assert "walrus prefers" in everything and "deploys" in everything
    assert "walrus prefers" in by_id and "deploys" not in by_id
    detail = reverse("admin:conversations_memory_change", args=[wanted.pk])
    assert staff_client.get(detail).status_code == 200
