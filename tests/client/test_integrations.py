"""The framework adapters against a real daphne, through a real Recorder:
a LangChain chain on langchain_core's fake chat model with the callback
handler, and an OpenAI Agents SDK run driven by a fake model with the
tracing processor, both end up as runs, messages and tool audit records."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.slow


def test_importing_the_adapters_package_imports_no_framework():
    code = (
        "import sys, swarmsite_client.integrations; "
        "print(any(m.split('.')[0] in ('langchain_core', 'agents') "
        "for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def _messages(client, conversation: str) -> list[dict]:
    return list(
        client.conversations.messages(conversation, fields="full", page_size=500)
    )


def test_langchain_chain_with_the_callback_handler(live, client, tmp_path):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool

    from swarmsite_client import Recorder
    from swarmsite_client.integrations.langchain import SwarmsiteCallbackHandler

    @tool
    def shout(text: str) -> str:
        """Upper-cases the text."""
        return text.upper()

    agent = f"lc-{uuid.uuid4().hex[:8]}"
    recorder = Recorder(live.url, live.key, outbox=tmp_path / "outbox.sqlite3")
    handler = SwarmsiteCallbackHandler(recorder, title="Capital quiz", agent=agent)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer in one word."), ("human", "Capital of {country}?")]
    )
    chain = (
        prompt
        | FakeListChatModel(responses=["Paris"])
        | RunnableLambda(lambda message, config: shout.invoke(message.content, config))
    )
    root = uuid.uuid4()
    assert (
        chain.invoke(
            {"country": "France"}, config={"callbacks": [handler], "run_id": root}
        )
        == "PARIS"
    )
    assert recorder.flush(30)
    assert recorder.stats()["dead"] == 0
    recorder.close()

    run = client.runs.get(str(root))
    assert run["status"] == "completed"
    assert run["output_summary"] == "PARIS"
    task = client.tasks.get(run["task"])
    assert (task["title"], task["status"]) == ("Capital quiz", "completed")
    agents = {a["id"]: a["name"] for a in client.agents.list(page_size=500)}
    assert agents[run["agent"]] == agent
    (conversation,) = client.conversations.list(task=task["id"])
    messages = _messages(client, conversation["id"])
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", "Answer in one word."),
        ("user", "Capital of France?"),
        ("assistant", "Paris"),
    ]
    assert messages[-1]["sender"] == run["agent"]
    audits = [
        a
        for a in client.audit_logs.list(
            action="tool.invoke", page_size=500, fields="full"
        )
        if a["target"] == "shout" and a["details"]["arguments"] == "Paris"
    ]
    assert [(a["success"], a["details"]["result"]) for a in audits] == [(True, "PARIS")]


class FakeModel:
    """Stands in for an OpenAI model: a tool call first, then an answer.

    Like the SDK's own models it opens a generation span for each call."""

    def __new__(cls, *args, **kwargs):
        from agents.models.interface import Model

        class _Fake(Model):
            def __init__(self) -> None:
                self.calls = 0

            async def get_response(self, system_instructions, input, *args, **kw):
                from agents.items import ModelResponse
                from agents.tracing import generation_span
                from agents.usage import Usage
                from openai.types.responses import (
                    ResponseFunctionToolCall,
                    ResponseOutputMessage,
                    ResponseOutputText,
                )

                self.calls += 1
                messages = [{"role": "system", "content": system_instructions}]
                if isinstance(input, str):
                    input = [{"role": "user", "content": input}]
                messages += [
                    {"role": item["role"], "content": item.get("content")}
                    for item in input
                    if isinstance(item, dict) and item.get("role") == "user"
                ]
                if self.calls == 1:
                    output = [
                        ResponseFunctionToolCall(
                            type="function_call",
                            id="fc_1",
                            call_id="call_1",
                            name="lookup",
                            arguments='{"city": "Rome"}',
                        )
                    ]
                    answer = {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {
                                    "name": "lookup",
                                    "arguments": '{"city": "Rome"}',
                                },
                            }
                        ],
                    }
                else:
                    output = [
                        ResponseOutputMessage(
                            id="msg_1",
                            type="message",
                            role="assistant",
                            status="completed",
                            content=[
                                ResponseOutputText(
                                    type="output_text", text="Sunny.", annotations=[]
                                )
                            ],
                        )
                    ]
                    answer = {"role": "assistant", "content": "Sunny."}
                usage = {"input_tokens": 20 * self.calls, "output_tokens": 5}
                with generation_span(
                    input=messages, output=[answer], model="fake-model", usage=usage
                ):
                    pass
                return ModelResponse(
                    output=output,
                    usage=Usage(
                        requests=1,
                        input_tokens=usage["input_tokens"],
                        output_tokens=5,
                        total_tokens=usage["input_tokens"] + 5,
                    ),
                    response_id=None,
                )

            def stream_response(self, *args, **kwargs):
                raise NotImplementedError

        return _Fake()


def test_openai_agents_run_with_the_tracing_processor(live, client, tmp_path):
    from agents import Agent, Runner, function_tool, set_trace_processors, trace

    from swarmsite_client import Recorder
    from swarmsite_client.integrations.openai_agents import (
        SwarmsiteTracingProcessor,
    )

    @function_tool
    def lookup(city: str) -> str:
        """The weather in a city."""
        return f"{city}: sunny"

    name = f"oa-{uuid.uuid4().hex[:8]}"
    recorder = Recorder(live.url, live.key, outbox=tmp_path / "outbox.sqlite3")
    set_trace_processors([SwarmsiteTracingProcessor(recorder)])
    try:
        agent = Agent(
            name=name, instructions="Be brief.", model=FakeModel(), tools=[lookup]
        )
        with trace(f"Weather {name}"):
            result = Runner.run_sync(agent, "Weather in Rome?")
        assert result.final_output == "Sunny."
    finally:
        set_trace_processors([])
    assert recorder.flush(30)
    assert recorder.stats()["dead"] == 0
    recorder.close()

    (task,) = client.tasks.list(search=f"Weather {name}")
    assert task["status"] == "completed"
    (run,) = client.runs.list(task=task["id"])
    assert run["status"] == "completed"
    agents = {a["id"]: a["name"] for a in client.agents.list(page_size=500)}
    assert agents[run["agent"]] == name
    (conversation,) = client.conversations.list(task=task["id"])
    messages = _messages(client, conversation["id"])
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", "Be brief."),
        ("user", "Weather in Rome?"),
        ("assistant", ""),
        ("assistant", "Sunny."),
    ]
    assert messages[2]["tool_calls"][0]["function"]["name"] == "lookup"
    assert [m["prompt_tokens"] for m in messages[2:]] == [20, 40]
    assert {m["sender"] for m in messages[2:]} == {run["agent"]}
    audits = [
        a
        for a in client.audit_logs.list(
            action="tool.invoke", page_size=500, fields="full"
        )
        if a["target"] == "lookup"
        and a["details"]["openai_agents"]["trace_id"]
        and a["details"].get("result") == "Rome: sunny"
    ]
    assert len(audits) >= 1 and audits[0]["success"] is True


def test_content_parts_give_their_text_and_nothing_of_other_parts():
    from swarmsite_client.integrations._common import text

    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    tool_use = {"type": "tool_use", "id": "toolu_1", "input": {"q": 1}}
    assert text([image, tool_use]) == ""
    assert text([{"type": "text", "text": "look"}, image]) == "look"
    # A list that is not content parts keeps its JSON.
    assert text([{"score": 1}]) == '[{"score": 1}]'


def test_langchain_handler_forgets_finished_calls_and_clips_long_names(
    live, client, tmp_path
):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool

    from swarmsite_client import Recorder
    from swarmsite_client.integrations.langchain import SwarmsiteCallbackHandler

    @tool
    def shout(text: str) -> str:
        """Upper-cases the text."""
        return text.upper()

    recorder = Recorder(live.url, live.key, outbox=tmp_path / "outbox.sqlite3")
    title = "T" * 600
    handler = SwarmsiteCallbackHandler(recorder, title=title, agent="a" * 300)
    chain = FakeListChatModel(responses=["ok"]) | RunnableLambda(
        lambda message, config: shout.invoke(message.content, config)
    )
    roots = [uuid.uuid4() for _ in range(3)]
    for root in roots:
        chain.invoke("go", config={"callbacks": [handler], "run_id": root})
    # Every model and tool call is forgotten once it ends: no growth.
    assert (handler._owner, handler._roots, handler._calls) == ({}, {}, {})
    assert recorder.flush(30)
    assert recorder.stats()["dead"] == 0
    recorder.close()
    task = client.tasks.get(client.runs.get(str(roots[0]))["task"])
    assert task["title"] == title[:499] + "…"
    assert task["status"] == "completed"


def _agents_run(recorder, run):
    """`run()` with the tracing processor installed; the processor."""
    from agents import set_trace_processors

    from swarmsite_client.integrations.openai_agents import (
        SwarmsiteTracingProcessor,
    )

    processor = SwarmsiteTracingProcessor(recorder)
    set_trace_processors([processor])
    try:
        run()
    finally:
        set_trace_processors([])
    assert recorder.flush(30)
    assert recorder.stats()["dead"] == 0
    recorder.close()
    return processor


def _trace_task(client, trace_id: str) -> dict:
    from swarmsite_client.integrations._common import derived

    return client.tasks.get(derived("agents-task", trace_id))


def test_openai_agents_a_model_call_that_fails_fails_the_run_and_task(
    live, client, tmp_path
):
    """The SDK raises the model's error to the caller and records it on the
    response span only; the run and the task fail with it."""
    from agents import Agent, OpenAIResponsesModel, Runner, trace

    from swarmsite_client import Recorder
    from tests.client import fake_openai

    model = OpenAIResponsesModel("gpt-fake", fake_openai.client([500]))
    agent = Agent(name=f"oa-{uuid.uuid4().hex[:8]}", instructions="x", model=model)
    traced = {}

    def run():
        with trace("Fails") as current, pytest.raises(Exception):  # noqa: B017
            Runner.run_sync(agent, "hi")
        traced["id"] = current.trace_id

    recorder = Recorder(live.url, live.key, outbox=tmp_path / "outbox.sqlite3")
    _agents_run(recorder, run)
    task = _trace_task(client, traced["id"])
    (run_row,) = client.runs.list(task=task["id"])
    assert run_row["status"] == "failed" and run_row["error"]
    assert task["status"] == "failed"


def test_openai_agents_streamed_chat_completions_keep_answers_and_tool_calls(
    live, client, tmp_path
):
    import asyncio

    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, trace

    from swarmsite_client import Recorder
    from tests.client import fake_openai

    @function_tool
    def lookup(city: str) -> str:
        """The weather in a city."""
        return f"{city}: sunny"

    tool_call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"city": "Rome"}'},
    }
    script = [
        fake_openai.chat_stream(
            {"role": "assistant", "tool_calls": [tool_call]}, finish="tool_calls"
        ),
        fake_openai.chat_stream(
            {"role": "assistant", "content": "Sunny "}, {"content": "in Rome."}
        ),
    ]
    model = OpenAIChatCompletionsModel("gpt-fake", fake_openai.client(script))
    agent = Agent(name="streamer", instructions="Brief.", model=model, tools=[lookup])
    traced = {}

    async def streamed():
        with trace("Streamed") as current:
            result = Runner.run_streamed(agent, "Weather in Rome?")
            async for _ in result.stream_events():
                pass
        traced["id"] = current.trace_id
        return result.final_output

    recorder = Recorder(live.url, live.key, outbox=tmp_path / "outbox.sqlite3")
    _agents_run(recorder, lambda: asyncio.run(streamed()))
    task = _trace_task(client, traced["id"])
    (conversation,) = client.conversations.list(task=task["id"])
    answers = [
        (m["content"], (m["tool_calls"] or [{}])[0].get("function", {}).get("name"))
        for m in _messages(client, conversation["id"])
        if m["role"] == "assistant"
    ]
    assert answers == [("", "lookup"), ("Sunny in Rome.", None)]


def test_openai_agents_handoff_parent_system_prompt_and_a_run_outliving_its_trace(
    live, client, tmp_path
):
    """A handed-off agent's parent is the agent that handed off (the SDK
    names it only when the handoff resolves); the Responses API's system
    prompt is recorded; a run awaited after its `with trace()` block and a
    trace name past 500 characters land under the trace's one task."""
    import asyncio

    from agents import Agent, OpenAIResponsesModel, Runner, trace

    from swarmsite_client import Recorder
    from tests.client import fake_openai

    tag = uuid.uuid4().hex[:8]
    script = [
        fake_openai.response(fake_openai.call(f"transfer_to_specialist_{tag}", {})),
        fake_openai.response(fake_openai.answer("Sunny in Rome.")),
    ]
    model = OpenAIResponsesModel("gpt-fake", fake_openai.client(script))
    specialist = Agent(
        name=f"specialist_{tag}", instructions="Specialist.", model=model
    )
    triage = Agent(
        name=f"triage_{tag}", instructions="Triage.", model=model, handoffs=[specialist]
    )
    name = "N" * 600
    traced = {}

    async def late():
        with trace(name) as current:
            running = asyncio.create_task(Runner.run(triage, "Weather in Rome?"))
        traced["id"] = current.trace_id
        return await running

    recorder = Recorder(live.url, live.key, outbox=tmp_path / "outbox.sqlite3")
    processor = _agents_run(recorder, lambda: asyncio.run(late()))
    assert (processor._traces, processor._spans) == ({}, {})
    agents = {a["name"]: a for a in client.agents.list(page_size=500)}
    assert agents[specialist.name]["parent"] == agents[triage.name]["id"]
    task = _trace_task(client, traced["id"])
    assert task["title"] == name[:499] + "…"
    (conversation,) = client.conversations.list(task=task["id"])
    messages = _messages(client, conversation["id"])
    assert ("system", "Triage.") in [(m["role"], m["content"]) for m in messages]
    assert [m["content"] for m in messages if m["role"] == "assistant"][-1] == (
        "Sunny in Rome."
    )
