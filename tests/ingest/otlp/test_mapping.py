"""The mapping as pure functions: spans in, ingest items out (no database)."""

from __future__ import annotations

import json
import random
import uuid

from ingest.otlp import mapping
from ingest.otlp.parsing import spans_of
from tests.ingest.otlp import builder

IDS = mapping.Ids("tests")


def flat(*spans):
    return spans_of(builder.request(*spans))


def items_of(spans, **kwargs):
    plan = mapping.map_spans(spans, ids=IDS, agents={}, **kwargs)
    return plan, [(i["type"], i["data"]) for i in plan.items]


def of_type(plan, type_):
    return [i["data"] for i in plan.items if i["type"] == type_]


def test_span_types_come_from_genai_operations_or_openinference_kinds():
    trace = builder.new_trace()
    spans = flat(
        builder.span(trace, "a", gen_ai__operation__name="invoke_agent"),
        builder.span(trace, "b", gen_ai__operation__name="generate_content"),
        builder.span(trace, "c", gen_ai__operation__name="execute_tool"),
        builder.span(trace, "d", openinference__span__kind="AGENT"),
        builder.span(trace, "e", openinference__span__kind="llm"),
        builder.span(trace, "f", openinference__span__kind="TOOL"),
        builder.span(trace, "g", openinference__span__kind="CHAIN"),
        builder.span(trace, "h", gen_ai__operation__name="embeddings"),
    )
    assert [mapping.classify(s) for s in spans] == [
        "agent",
        "llm",
        "tool",
        "agent",
        "llm",
        "tool",
        "span",
        "span",
    ]


def test_ids_are_the_same_whatever_the_span_order():
    _, spans = builder.three_agent_trace()
    spans = flat(*spans)
    _, first = items_of(spans)
    shuffled = spans[:]
    random.Random(7).shuffle(shuffled)
    _, second = items_of(shuffled)
    key = lambda pair: json.dumps(pair, sort_keys=True)  # noqa: E731
    assert sorted(first, key=key) == sorted(second, key=key)
    other = mapping.map_spans(spans, ids=mapping.Ids("other"), agents={})
    assert {i["data"].get("id") for i in other.items} & {
        d.get("id") for _, d in first
    } == set()


def test_the_delegating_agent_is_found_through_spans_that_are_not_agents():
    trace = builder.new_trace()
    boss, step, tool = (builder.new_span_id() for _ in range(3))
    spans = flat(
        builder.span(
            trace, "boss", span_id=boss, gen_ai__operation__name="invoke_agent"
        ),
        builder.span(trace, "step", span_id=step, parent=boss),
        builder.span(
            trace,
            "ask_helper",
            span_id=tool,
            parent=step,
            gen_ai__operation__name="execute_tool",
        ),
        builder.span(
            trace,
            "helper",
            parent=tool,
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="helper",
        ),
    )
    plan, _ = items_of(spans)
    agents = {a["name"]: a for a in of_type(plan, "agent")}
    assert agents["helper"]["parent"] == agents["boss"]["id"]
    assert "parent" not in agents["boss"]
    helper_run = [r for r in of_type(plan, "run") if r["agent"] == IDS.agent("helper")]
    assert helper_run[0]["metadata"]["otel"]["delegated_by"] == "boss"


def test_a_stored_agent_keeps_its_id_and_is_not_registered_again():
    span = builder.span(
        builder.new_trace(),
        "x",
        gen_ai__operation__name="invoke_agent",
        gen_ai__agent__name="old",
    )
    plan = mapping.map_spans(flat(span), ids=IDS, agents={"old": "stored-id"})
    assert of_type(plan, "agent") == []
    assert of_type(plan, "run")[0]["agent"] == "stored-id"


def test_agents_above_come_from_stored_spans_through_spans_that_are_not_agents():
    trace = builder.new_trace()
    boss, step = builder.new_span_id(), builder.new_span_id()
    chat, worker = flat(
        builder.span(trace, "chat m", parent=step, gen_ai__operation__name="chat"),
        builder.agent_span(trace, "worker", parent=step),
    )
    tid = builder.hexid(trace)
    stored = [
        mapping.Stored(tid, builder.hexid(step), builder.hexid(boss), mapping.OTHER),
        mapping.Stored(tid, builder.hexid(boss), "", mapping.AGENT, "boss"),
    ]
    plan = mapping.map_spans(
        [chat, worker], ids=IDS, agents={"boss": "boss-id"}, stored=stored
    )
    (registered,) = of_type(plan, "agent")
    assert (registered["name"], registered["parent"]) == ("worker", "boss-id")
    assert of_type(plan, "run")[0]["metadata"]["otel"]["delegated_by"] == "boss"
    assert {m["sender"] for m in of_type(plan, "message")} == {"boss-id"}
    assert of_type(plan, "agent_update") == []


def test_a_stored_agent_without_a_parent_gets_the_one_a_later_span_shows():
    trace = builder.new_trace()
    boss, worker = builder.new_span_id(), builder.new_span_id()
    (root,) = flat(builder.agent_span(trace, "boss", span_id=boss))
    tid = builder.hexid(trace)
    stored = [
        mapping.Stored(
            tid, builder.hexid(worker), root.span_id, mapping.AGENT, "worker"
        )
    ]
    agents = {"worker": "worker-id", "boss": "boss-id"}
    plan = mapping.map_spans(
        [root], ids=IDS, agents=agents, stored=stored, orphans={"worker", "boss"}
    )
    assert of_type(plan, "agent_update") == [
        {"agent": "worker-id", "parent": "boss-id"}
    ]
    assert plan.owners[[i["type"] for i in plan.items].index("agent_update")] == ()
    # An agent with a parent is not an orphan: nothing to fill in.
    plan = mapping.map_spans([root], ids=IDS, agents=agents, stored=stored)
    assert of_type(plan, "agent_update") == []


def test_create_agent_registers_without_a_run():
    span = builder.span(
        builder.new_trace(),
        "create_agent x",
        gen_ai__operation__name="create_agent",
        gen_ai__agent__name="maker",
        gen_ai__agent__description="Makes things.",
    )
    plan, _ = items_of(flat(span))
    (agent,) = of_type(plan, "agent")
    assert agent["metadata"] == {"description": "Makes things."}
    assert of_type(plan, "run") == []


def test_cached_tokens_are_part_of_the_prompt_in_both_conventions():
    trace = builder.new_trace()
    genai, openinference, fresh_only = flat(
        builder.span(
            trace,
            "a",
            gen_ai__usage__input_tokens=100,
            gen_ai__usage__cache_read__input_tokens=60,
            gen_ai__usage__output_tokens=7,
        ),
        builder.span(
            trace,
            "b",
            llm__token_count__prompt=100,
            llm__token_count__prompt_details__cache_read=60,
            llm__token_count__completion=7,
        ),
        builder.span(
            trace,
            "c",
            gen_ai__usage__input_tokens=40,
            gen_ai__usage__cache_read__input_tokens=60,
        ),
    )
    expected = {"prompt_tokens": 100, "cached_tokens": 60, "completion_tokens": 7}
    assert mapping.usage(genai) == expected
    assert mapping.usage(openinference) == expected
    assert mapping.usage(fresh_only) == {"prompt_tokens": 100, "cached_tokens": 60}


def test_cost_prefers_the_total_then_adds_prompt_and_completion():
    trace = builder.new_trace()
    total, parts, none, negative = flat(
        builder.span(trace, "a", llm__cost__total=0.5, llm__cost__prompt=9.0),
        builder.span(trace, "b", llm__cost__prompt=0.25, llm__cost__completion=0.5),
        builder.span(trace, "c"),
        builder.span(trace, "d", llm__cost__total=-1.0),
    )
    assert mapping.cost(total) == "0.500000"
    assert mapping.cost(parts) == "0.750000"
    assert mapping.cost(none) is None
    assert mapping.cost(negative) is None


def test_history_resent_by_each_call_maps_to_the_same_input_ids():
    trace = builder.new_trace()
    first = [{"role": "user", "parts": [builder.text("Hi")]}]
    second = [
        *first,
        {"role": "assistant", "parts": [builder.text("Hello")]},
        {"role": "user", "parts": [builder.text("Bye")]},
    ]
    calls = flat(
        *[
            builder.span(
                trace,
                "chat",
                start_ms=n,
                gen_ai__operation__name="chat",
                gen_ai__input__messages=json.dumps(inputs),
                gen_ai__output__messages=json.dumps(
                    [{"role": "assistant", "parts": [builder.text(f"out {n}")]}]
                ),
            )
            for n, inputs in enumerate((first, second))
        ]
    )
    plan, _ = items_of(calls)
    messages = of_type(plan, "message")
    contents = [(m["role"], m["content"]) for m in messages]
    # "Hi" once, for both calls: a repeated id would make ingest write the
    # messages one at a time.
    assert contents == [
        ("user", "Hi"),
        ("assistant", "out 0"),
        ("user", "Bye"),
        ("assistant", "out 1"),
    ]
    assert len({m["id"] for m in messages}) == 4
    owners = [
        plan.owners[k] for k, item in enumerate(plan.items) if item["type"] == "message"
    ]
    assert owners == [(0, 1), (0,), (1,), (1,)]
    # Apart, each call plans the same "Hi".
    one, _ = items_of(calls[:1])
    two, _ = items_of(calls[1:])
    assert of_type(one, "message")[0] == of_type(two, "message")[0] == messages[0]


def test_legacy_genai_events_and_system_instructions_give_messages():
    trace = builder.new_trace()
    legacy, modern = flat(
        builder.span(
            trace,
            "chat",
            gen_ai__operation__name="chat",
            events=[
                ("gen_ai.system.message", {"content": "Rules."}),
                ("gen_ai.user.message", {"content": "Question?"}),
                (
                    "gen_ai.choice",
                    {"message": json.dumps({"content": "Answer."}), "index": 0},
                ),
            ],
        ),
        builder.span(
            trace,
            "chat",
            gen_ai__operation__name="chat",
            events=[
                (
                    "gen_ai.client.inference.operation.details",
                    {
                        "gen_ai.system_instructions": json.dumps(
                            [builder.text("Rules.")]
                        ),
                        "gen_ai.input.messages": json.dumps(
                            [{"role": "user", "parts": [builder.text("Question?")]}]
                        ),
                    },
                )
            ],
        ),
    )
    inputs, outputs = mapping.messages(legacy)
    assert [(m.role, m.content) for m in inputs] == [
        ("system", "Rules."),
        ("user", "Question?"),
    ]
    assert [m.content for m in outputs] == ["Answer."]
    inputs, outputs = mapping.messages(modern)
    assert [(m.role, m.content) for m in inputs] == [
        ("system", "Rules."),
        ("user", "Question?"),
    ]
    assert outputs == []


def test_openinference_tool_calls_and_tool_results_keep_their_ids():
    span = builder.span(
        builder.new_trace(),
        "llm",
        openinference__span__kind="LLM",
        **{
            "llm.input_messages.0.message.role": "tool",
            "llm.input_messages.0.message.content": "42",
            "llm.input_messages.0.message.tool_call_id": "call_9",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_10",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "f",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": (
                '{"x": 1}'
            ),
        },
    )
    (inputs, outputs) = mapping.messages(flat(span)[0])
    assert (inputs[0].role, inputs[0].tool_call_id) == ("tool", "call_9")
    assert outputs[0].tool_calls == [
        {
            "id": "call_10",
            "type": "function",
            "function": {"name": "f", "arguments": '{"x": 1}'},
        }
    ]


def test_a_failed_tool_takes_its_error_from_the_exception_event():
    span = builder.span(
        builder.new_trace(),
        "execute_tool fetch",
        gen_ai__operation__name="execute_tool",
        error="",
        events=[
            ("exception", {"exception.type": "TimeoutError", "exception.message": "5s"})
        ],
    )
    plan, _ = items_of(flat(span))
    (audit,) = of_type(plan, "audit")
    assert (audit["target"], audit["success"], audit["error"]) == (
        "fetch",
        False,
        "TimeoutError: 5s",
    )


def test_only_otel_span_events_and_tool_invoke_audits_are_written():
    _, spans = builder.three_agent_trace()
    plan, _ = items_of(flat(*spans))
    assert {e["kind"] for e in of_type(plan, "event")} == {"otel.span"}
    assert {a["action"] for a in of_type(plan, "audit")} == {"tool.invoke"}


def test_nul_characters_are_removed_from_text_and_payloads():
    span = builder.span(
        builder.new_trace(),
        "chat\x00",
        gen_ai__operation__name="chat",
        gen_ai__output__messages=json.dumps(
            [{"role": "assistant", "parts": [builder.text("a\x00b")]}]
        ),
    )
    plan, _ = items_of(flat(span))
    assert "\x00" not in json.dumps(plan.items)
    assert of_type(plan, "message")[0]["content"] == "ab"


def test_a_deep_chain_of_delegations_maps_without_recursion():
    trace = builder.new_trace()
    parent = b""
    chain = []
    for n in range(3000):
        span_id = builder.new_span_id()
        chain.append(
            builder.span(
                trace,
                f"agent {n}",
                span_id=span_id,
                parent=parent,
                start_ms=3000 - n,  # children first, as exporters send them
                gen_ai__operation__name="invoke_agent",
                gen_ai__agent__name=f"a{n}",
            )
        )
        parent = span_id
    plan, _ = items_of(flat(*chain))
    agents = of_type(plan, "agent")
    assert [a["name"] for a in agents[:3]] == ["a0", "a1", "a2"]
    by_name = {a["name"]: a for a in agents}
    assert by_name["a2999"]["parent"] == by_name["a2998"]["id"]
    assert "parent" not in by_name["a0"]


def test_a_parent_cycle_in_a_malformed_export_ends_the_walk():
    trace = builder.new_trace()
    first, second = builder.new_span_id(), builder.new_span_id()
    spans = flat(
        builder.span(
            trace,
            "x",
            span_id=first,
            parent=second,
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="x",
        ),
        builder.span(
            trace,
            "y",
            span_id=second,
            parent=first,
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="y",
        ),
    )
    plan, _ = items_of(spans)
    assert sorted(a["name"] for a in of_type(plan, "agent")) == ["x", "y"]
    assert len(of_type(plan, "run")) == 2


def test_ids_are_uuid5_of_the_project_namespace_and_the_joined_parts():
    parts = ("message", "ab" * 16, "cd" * 8, "out", 3, "é")
    expected = uuid.uuid5(IDS.namespace, ":".join(str(p) for p in parts))
    assert IDS.of(*parts) == str(expected)
    assert IDS.of(*parts) == str(expected)


def _boss_and_below():
    """A boss agent span, a step under it, a worker agent span and a call
    under the step: parsed spans, and the trace's hex id."""
    trace = builder.new_trace()
    boss, step, worker, chat = (builder.new_span_id() for _ in range(4))
    spans = flat(
        builder.agent_span(trace, "boss", span_id=boss),
        builder.span(trace, "step", span_id=step, parent=boss),
        builder.agent_span(trace, "worker", span_id=worker, parent=step),
        builder.span(
            trace,
            "chat",
            span_id=chat,
            parent=step,
            gen_ai__operation__name="chat",
            gen_ai__output__messages=json.dumps(
                [{"role": "assistant", "parts": [builder.text(t)]} for t in "ab"]
            ),
        ),
    )
    return spans, trace


def _as_stored(spans, **kwargs):
    """What the events of `spans`, mapped in one export, tell a later one."""
    plan = mapping.map_spans(spans, ids=IDS, agents={}, **kwargs)
    return [mapping.Stored.from_payload(e["payload"]) for e in of_type(plan, "event")]


def test_event_payloads_keep_the_sender_outputs_and_delegation_rows_got():
    spans, trace = _boss_and_below()
    tid = builder.hexid(trace)
    boss, step, worker, chat = _as_stored(spans)
    assert (boss.agent, boss.delegated_by) == ("boss", "")
    assert (worker.agent, worker.delegated_by) == ("worker", "boss")
    assert (chat.kind, chat.agent, chat.outputs) == ("llm", "boss", 2)
    assert step == mapping.Stored(tid, step.span_id, boss.span_id, "span")
    # Written alone, the call and the worker knew no agent above them.
    (alone,) = _as_stored([spans[3]])
    assert (alone.agent, alone.outputs) == ("", 2)
    (alone,) = _as_stored([spans[2]])
    assert alone.delegated_by == ""
    assert mapping.Stored.from_payload({"trace_id": 1, "span_id": "x"}) is None
    assert mapping.Stored.from_payload(None) is None
    # Read back key by key: text on PostgreSQL, a number on SQLite.
    row = [chat.trace_id, chat.span_id, "", "llm", "boss", None]
    for outputs in ("2", 2):
        assert mapping.Stored.from_keys([*row, outputs, "chat"]).outputs == 2
    # A client can write otel.span events too: what they say is bounded.
    for outputs, read in (("²", 0), ("-3", 0), (True, 0), (10**9, 100)):
        assert mapping.Stored.from_keys([*row, outputs, "chat"]).outputs == read


def test_rows_stored_without_their_agent_get_it_from_the_export_bringing_it():
    spans, _ = _boss_and_below()
    boss, step, worker, chat = spans
    stored = _as_stored([worker]) + _as_stored([chat])
    plan = mapping.map_spans(
        [boss, step], ids=IDS, agents={"worker": "worker-id"}, stored=stored
    )
    boss_id = IDS.agent("boss")
    assert of_type(plan, "message_sender_fill") == [
        {"message": IDS.output(chat, 0), "sender": boss_id},
        {"message": IDS.output(chat, 1), "sender": boss_id},
    ]
    assert of_type(plan, "run_metadata_fill") == [
        {"run": IDS.run(worker), "metadata": {"otel": {"delegated_by": "boss"}}}
    ]
    fills = [i for i, item in enumerate(plan.items) if item["type"].endswith("_fill")]
    assert [plan.owners[i] for i in fills] == [()] * 3
    # After the agent they name (the service reports a missing one).
    types = [item["type"] for item in plan.items]
    assert types.index("agent") < min(fills)


def test_a_link_found_through_a_span_of_this_export_fills_rows_once():
    spans, trace = _boss_and_below()
    boss, step, worker, chat = spans
    # The agents came first, the step last: the step links them.
    stored = _as_stored([boss]) + _as_stored([worker]) + _as_stored([chat])
    agents = {"boss": "boss-id", "worker": "worker-id"}
    plan = mapping.map_spans([step], ids=IDS, agents=agents, stored=stored)
    assert len(of_type(plan, "message_sender_fill")) == 2
    assert len(of_type(plan, "run_metadata_fill")) == 1
    # A later export of another span of the trace finds that link known.
    (later,) = flat(builder.span(trace, "later"))
    stored += _as_stored([step], stored=stored)
    plan = mapping.map_spans([later], ids=IDS, agents=agents, stored=stored)
    assert of_type(plan, "message_sender_fill") == []
    assert of_type(plan, "run_metadata_fill") == []


def test_rows_written_with_their_agent_or_without_a_run_get_no_fill():
    spans, _ = _boss_and_below()
    boss, step, worker, chat = spans
    agents = {"boss": "boss-id", "worker": "worker-id"}
    # The whole trace in one export, the root re-sent: nothing was missing.
    plan = mapping.map_spans([boss], ids=IDS, agents=agents, stored=_as_stored(spans))
    assert of_type(plan, "message_sender_fill") == []
    assert of_type(plan, "run_metadata_fill") == []
    # A call naming its own agent was written with it.
    (own,) = flat(
        builder.span(
            builder.new_trace(), "chat", gen_ai__operation__name="chat",
            gen_ai__agent__name="solo",
        )
    )  # fmt: skip
    assert _as_stored([own])[0].agent == "solo"
    # create_agent registers without a run: nothing to fill.
    maker = mapping.Stored(
        boss.trace_id, "ff" * 8, step.span_id, "agent", "maker", "", 0,
        "create_agent",
    )  # fmt: skip
    plan = mapping.map_spans([boss, step], ids=IDS, agents=agents, stored=[maker])
    assert of_type(plan, "run_metadata_fill") == []


# Hostile or broken attribute values: bounded, never an error ----------------


def llm_span(trace=None, **attributes):
    return builder.span(
        trace or builder.new_trace(),
        "chat",
        gen_ai__operation__name="chat",
        **attributes,
    )


def test_message_json_nested_past_the_stack_is_no_message_and_deep_arguments_are_cut():
    call = {"type": "tool_call", "id": "c1", "name": "f", "arguments": {}}
    deep = call["arguments"]
    for _ in range(900):  # json.loads reads it; a recursive copy would not
        deep["a"] = {}
        deep = deep["a"]
    answer = {"role": "assistant", "parts": [call]}
    (span,) = flat(
        llm_span(
            gen_ai__input__messages="[" * 5000 + "]" * 5000,
            gen_ai__output__messages=json.dumps([answer]),
        )
    )
    plan, _ = items_of([span])
    (message,) = of_type(plan, "message")
    kept = json.loads(message["tool_calls"][0]["function"]["arguments"])
    for _ in range(mapping.spans.MAX_DEPTH - 1):
        kept = kept["a"]
    assert kept == {"a": "…"}


def test_openinference_indices_that_are_not_short_ascii_numbers_are_skipped():
    (span,) = flat(
        builder.span(
            builder.new_trace(),
            "llm",
            openinference__span__kind="LLM",
            **{
                "llm__input_messages__0__message__role": "user",
                "llm__input_messages__0__message__content": "kept",
                "llm__input_messages__²__message__content": "superscript",
                "llm__input_messages__1٣__message__content": "arabic-indic",
                f"llm__input_messages__{'9' * 5000}__message__content": "long",
            },
        )
    )
    plan, _ = items_of([span])
    contents = [m["content"] for m in of_type(plan, "message") if m["role"] == "user"]
    assert contents == ["kept"]


def test_a_call_writes_its_last_inputs_under_their_own_positions_and_first_outputs(
    monkeypatch,
):
    trace = builder.new_trace()
    inputs = [{"role": "user", "parts": [builder.text(f"q{n}")]} for n in range(5)]
    outputs = [
        {"role": "assistant", "parts": [builder.text(f"a{n}")]}
        for n in range(mapping.plan.MAX_OUTPUTS + 20)
    ]
    (span,) = flat(
        llm_span(
            trace,
            gen_ai__conversation__id="talk",
            gen_ai__input__messages=json.dumps(inputs),
            gen_ai__output__messages=json.dumps(outputs),
        )
    )
    plan, _ = items_of([span])
    every = {m["content"]: m["id"] for m in of_type(plan, "message")}
    monkeypatch.setattr(mapping.plan, "MAX_INPUTS", 3)
    plan, _ = items_of([span])
    kept = of_type(plan, "message")
    questions = {m["content"]: m["id"] for m in kept if m["role"] == "user"}
    # The same ids as untrimmed: the history re-sent later is not doubled.
    assert questions == {q: every[q] for q in ("q2", "q3", "q4")}
    answers = [m["content"] for m in kept if m["role"] == "assistant"]
    assert answers == [f"a{n}" for n in range(mapping.plan.MAX_OUTPUTS)]


def test_blank_or_nul_names_fall_back_to_the_trace_id_and_the_span_name():
    trace = builder.new_trace()
    root = builder.new_span_id()
    spans = flat(
        builder.span(trace, " \x00 ", span_id=root),
        builder.span(
            trace,
            "invoke_agent scout",
            parent=root,
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="\x00",
        ),
    )
    plan, _ = items_of(spans)
    (task,) = of_type(plan, "task")
    assert task["title"] == f"Trace {trace.hex()}"
    assert [a["name"] for a in of_type(plan, "agent")] == ["scout"]


def test_a_cost_that_rounds_up_to_ten_digits_or_is_huge_is_dropped():
    def priced(value):
        (span,) = flat(llm_span(llm__cost__total=value))
        return mapping.cost(span)

    assert priced("9999999999.9999994") == "9999999999.999999"
    assert priced("9999999999.9999999") is None
    assert priced("1e30") is None
    assert priced("0.1234567") == "0.123457"
