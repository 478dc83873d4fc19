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
