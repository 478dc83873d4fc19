"""Search quality: the known best hit comes first, on SQLite and PostgreSQL."""

import pytest

from conversations.models import Memory
from conversations.selectors import memory_list, memory_search
from tests.conversations import search_corpus

pytestmark = pytest.mark.django_db


def _load(project, texts):
    Memory.objects.bulk_create(
        [Memory(project=project, content=text) for text in texts], batch_size=500
    )
    return list(Memory.objects.filter(project=project).order_by("id"))


def _firsts(project, stored, queries, extra: str = "") -> list[bool]:
    memories = memory_list(project=project)
    firsts = []
    for query in queries:
        page = memory_search(memories=memories, text=query.text + extra, limit=5)
        assert page.results, query.text
        firsts.append(page.results[0].pk == stored[query.target].pk)
    return firsts


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("", id="every-word"),
        # A word no entry holds: the search falls back to any of the words.
        pytest.param(" xylophonist", id="any-word"),
    ],
)
def test_the_known_best_hit_comes_first_for_at_least_18_of_20_queries(project, extra):
    texts, queries = search_corpus.build()
    assert len(texts) >= 2000
    stored = _load(project, texts)

    firsts = _firsts(project, stored, queries, extra)

    assert sum(firsts) >= 18, [
        q.text for q, ok in zip(queries, firsts, strict=True) if not ok
    ]


def test_scores_fall_down_the_page(project):
    texts, _ = search_corpus.build()
    _load(project, texts[:300])
    page = memory_search(memories=memory_list(project=project), text="report", limit=20)
    scores = [m.score for m in page.results]
    assert len(scores) > 1
    assert scores == sorted(scores, reverse=True)
