"""A generated memory corpus where the best hit of each query is known.

Twenty topics, each with two rare terms of its own. For each topic:

- one target that holds every word of the query, the rare ones twice, in
  a short text;
- forty near misses that hold one query word (a rare one or the common
  one), once or twice, in longer texts;
- noise texts that hold none of the query words, or the common ones once.

So the target has more query words, more often, in less text than any
other entry: the best hit under any reasonable ranking (with or without
inverse document frequency). Filler words follow a Zipf-like frequency.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_FILLER_TEXT = """
agent task plan result step note value check file data model user answer
prompt tool call output input status update list item record draft review
summary report context memory message thread detail source target config
option limit error retry queue worker batch metric chart table column field
index cache store fetch parse render export import schedule deadline owner
budget team meeting project release version branch commit patch test build
deploy server client request response token cost latency window cursor page
filter sort
"""
FILLER = tuple(_FILLER_TEXT.split())
# Query words that many other entries share (at most once each).
COMMON = ("report", "meeting", "deploy", "budget", "summary")
RARE = (
    "zirconium quasar",
    "marmalade sextant",
    "obsidian walrus",
    "tangerine gyroscope",
    "basilisk lantern",
    "cobalt origami",
    "ptarmigan vellum",
    "juniper catapult",
    "halibut nebula",
    "saffron turbine",
    "kestrel mosaic",
    "fennel aqueduct",
    "narwhal sonnet",
    "quince bellows",
    "yttrium lagoon",
    "wombat trellis",
    "gargoyle pemmican",
    "axolotl viaduct",
    "tamarind zeppelin",
    "mandolin glacier",
)
NEAR_MISSES = 40
NOISE = 1600


@dataclass(frozen=True)
class Query:
    text: str
    target: int  # index into the corpus texts


def _filler(rng: random.Random, n: int) -> list[str]:
    # Zipf-like: earlier words are much more frequent.
    weights = [1 / (rank + 1) for rank in range(len(FILLER))]
    words = [w for w in FILLER if w not in COMMON]
    return rng.choices(words, weights=weights[: len(words)], k=n)


def _text(rng: random.Random, planted: list[str], length: int) -> str:
    words = _filler(rng, length)
    for word in planted:
        words.insert(rng.randrange(len(words) + 1), word)
    return " ".join(words)


def build(seed: int = 14) -> tuple[list[str], list[Query]]:
    """The corpus texts (more than 2,000) and the 20 queries with their target."""
    rng = random.Random(seed)
    texts: list[str] = []
    queries: list[Query] = []
    for number, pair in enumerate(RARE):
        first, second = pair.split()
        common = COMMON[number % len(COMMON)]
        query_words = [first, second] + ([common] if number % 2 else [])
        texts.append(
            _text(rng, [first, first, second, second, *query_words[2:]], length=12)
        )
        queries.append(Query(" ".join(query_words), len(texts) - 1))
        for _ in range(NEAR_MISSES):
            word = rng.choice(query_words)
            times = rng.choice((1, 2)) if word != common else 1
            texts.append(_text(rng, [word] * times, length=rng.randint(20, 60)))
    for _ in range(NOISE):
        planted = [rng.choice(COMMON)] if rng.random() < 0.3 else []
        texts.append(_text(rng, planted, length=rng.randint(10, 80)))
    return texts, queries
