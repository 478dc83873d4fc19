"""OTLP bodies: capped decompression, OTLP/JSON's hex ids, span flattening."""

from __future__ import annotations

import gzip
import json

import pytest

from ingest.otlp.parsing import (
    JSON,
    MAX_GZIP_MEMBERS,
    PROTOBUF,
    BodyError,
    UnsupportedEncoding,
    decompress,
    parse_request,
    response_body,
    spans_of,
)
from tests.ingest.otlp import builder


def test_a_gzip_bomb_stops_one_byte_past_the_limit():
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    assert len(bomb) < 100_000
    with pytest.raises(BodyError) as caught:
        decompress(bomb, "gzip", 1024 * 1024)
    assert caught.value.too_large


def test_gzip_at_the_limit_and_concatenated_members_decompress():
    assert decompress(gzip.compress(b"x" * 1000), "gzip", 1000) == b"x" * 1000
    both = gzip.compress(b"ab") + gzip.compress(b"cd")
    assert decompress(both, "GZIP", 100) == b"abcd"
    assert decompress(b"raw", "identity", 3) == b"raw"


def test_truncated_gzip_and_other_encodings_are_refused():
    with pytest.raises(BodyError) as caught:
        decompress(gzip.compress(b"x" * 1000)[:-12], "gzip", 10_000)
    assert not caught.value.too_large
    with pytest.raises(UnsupportedEncoding):
        decompress(b"", "deflate", 10)


def test_otlp_json_hex_ids_become_the_same_spans_as_protobuf():
    trace, spans = builder.three_agent_trace()
    req = builder.request(*spans)
    from_json = spans_of(parse_request(builder.to_json(req), JSON))
    from_proto = spans_of(parse_request(req.SerializeToString(), PROTOBUF))
    assert from_json == from_proto
    assert from_json[0].trace_id == trace.hex()
    assert from_json[1].parent_span_id == from_json[0].span_id
    assert from_json[0].attributes["gen_ai.agent.name"] == "planner"
    assert from_json[0].resource == {"service.name": "tests"}


@pytest.mark.parametrize("trace_id", ["abc", "zz" * 16, "00" * 15])
def test_json_ids_that_are_not_hex_of_the_right_size_are_malformed(trace_id):
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": trace_id}]}]}]}
    with pytest.raises(BodyError):
        parse_request(json.dumps(body).encode(), JSON)


def test_attribute_values_of_every_type_flatten_to_python():
    span = builder.span(
        builder.new_trace(),
        "x",
        s="a",
        i=3,
        f=1.5,
        b=True,
        l=[1, "two"],
        m={"k": [True]},
    )
    (flat,) = spans_of(builder.request(span))
    assert {k: flat.attributes[k] for k in "sifblm"} == {
        "s": "a",
        "i": 3,
        "f": 1.5,
        "b": True,
        "l": [1, "two"],
        "m": {"k": [True]},
    }
    assert flat.duration_ms == 10.0
    assert flat.is_root


def test_the_response_names_rejected_spans_in_both_encodings():
    assert response_body(PROTOBUF, 0, "") == b""
    assert json.loads(response_body(JSON, 2, "bad ids")) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "bad ids"}
    }


def test_gzip_members_and_slices_join_up_to_the_member_limit():
    # Members that end and start inside and across the inflater's slices.
    text = bytes(range(256)) * 1024  # 256 KiB, four slices
    members = [gzip.compress(text), gzip.compress(b"tail"), gzip.compress(b"")]
    body = b"".join(members)
    assert decompress(body, "gzip", 10**6) == text + b"tail"
    many = gzip.compress(b"x") * MAX_GZIP_MEMBERS
    assert decompress(many, "gzip", 10**6) == b"x" * MAX_GZIP_MEMBERS


def test_a_body_of_more_gzip_members_than_the_limit_is_malformed():
    # Empty members: each costs an inflater and gives nothing.
    with pytest.raises(BodyError) as caught:
        decompress(gzip.compress(b"") * 100_000, "gzip", 16 * 1024 * 1024)
    assert "members" in caught.value.message
    assert not caught.value.too_large
