import json
from datetime import timedelta

import pytest

from swarmsite.validation import Resolver, json_clean, parse_age
from tasks.models import Agent


@pytest.mark.parametrize(
    ("value", "age"),
    [
        ("90d", timedelta(days=90)),
        ("12W", timedelta(weeks=12)),
        (" 36h ", timedelta(hours=36)),
        ("0d", timedelta(0)),
    ],
)
def test_ages_read_hours_days_and_weeks(value, age):
    assert parse_age(value) == age


@pytest.mark.parametrize("value", ["90", "-1d", "3y", "ninety days", "", "1.5d"])
def test_an_age_without_a_known_unit_is_refused_by_name(value):
    with pytest.raises(ValueError, match="is not an age such as 90d"):
        parse_age(value)


@pytest.mark.django_db
def test_a_resolver_fetches_each_named_row_once_however_often_it_is_resolved(
    project, agent, django_assert_num_queries
):
    resolver = Resolver(Agent, project=project)
    for _ in range(50):
        resolver.want(agent.pk)
    with django_assert_num_queries(1):
        for _ in range(50):
            assert resolver.one(field="agent", value=agent.pk) == agent
            assert resolver.many(field="agents", values=[agent.pk]) == [agent]


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [
        (
            {"big": 1e20, "n": [1.5, -0.0]},
            {"big": 100000000000000000000, "n": [1.5, 0.0]},
        ),
        ({"small": 1e-05, "t": ("a",)}, {"small": 1e-05, "t": ["a"]}),
        ({"text": "e+ -0.0"}, {"text": "e+ -0.0"}),
    ],
)
def test_json_clean_gives_what_jsonb_returns(value, cleaned):
    result = json_clean(value, field="payload")
    assert result == cleaned
    assert json.dumps(result) == json.dumps(cleaned)
