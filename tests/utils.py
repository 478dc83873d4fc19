"""Helpers shared by tests that are not fixtures."""

import threading

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from rest_framework.test import APIClient

ON_POSTGRES = connection.vendor == "postgresql"
ON_SQLITE = connection.vendor == "sqlite"

postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")
# Heavy tests of things the database does not change (a browser, the client's
# outbox, a channel layer's outage) run once, in the SQLite pass: CI time.
sqlite_only = pytest.mark.skipif(
    not ON_SQLITE, reason="does not depend on the database: runs on SQLite only"
)


# Racing clients -------------------------------------------------------------


def at_once(calls: list, *, wait: float = 120) -> list:
    """Run `calls` in threads released together, each on its own database
    connection; what each returned, or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(index: int) -> None:
        try:
            barrier.wait(wait)
            outcomes[index] = calls[index]()
        except BaseException as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(wait)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def post_at_once(secret: str, url: str, body, n: int, *, wait: float = 120) -> list:
    """POST `body` from `n` threads released together, each on its own
    database connection; every response, or the exception a thread hit."""

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client.post(url, body, format="json")

    return at_once([post] * n, wait=wait)


# Admin forms ----------------------------------------------------------------


def _widget_value(value):
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)


def _add_form(data: dict, form) -> None:
    for bound in form:
        value = bound.value()
        if bound.widget_type == "checkbox":
            if value:
                data[bound.html_name] = "on"
            continue
        widget = getattr(bound.field.widget, "widget", bound.field.widget)
        if not value and getattr(widget, "allow_multiple_selected", False):
            continue
        data[bound.html_name] = _widget_value(value)


def changeform_data(response, **overrides) -> dict:
    """The POST body a browser sends back for a rendered admin change form."""
    data: dict = {}
    _add_form(data, response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        _add_form(data, formset.management_form)
        for form in formset.forms:
            _add_form(data, form)
    data.update(overrides)
    return data


def inline_prefix(response, model) -> str:
    """The form prefix of the inline of `model` on a rendered change form."""
    for inline in response.context["inline_admin_formsets"]:
        if inline.formset.model is model:
            return inline.formset.prefix
    raise AssertionError(f"No inline for {model.__name__}.")


def add_inline_row(data: dict, prefix: str, **fields) -> None:
    """Append one new row to an inline formset in a POST body."""
    index = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-TOTAL_FORMS"] = str(index + 1)
    for name, value in fields.items():
        data[f"{prefix}-{index}-{name}"] = value


def messages_of(response) -> list[str]:
    """The messages the admin showed with `response`."""
    return [str(m) for m in get_messages(response.wsgi_request)]
