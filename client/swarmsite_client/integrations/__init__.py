"""Framework adapters that record into Swarmsite through a `Recorder`.

- `swarmsite_client.integrations.langchain.SwarmsiteCallbackHandler`:
  a LangChain callback handler;
- `swarmsite_client.integrations.openai_agents.SwarmsiteTracingProcessor`:
  an OpenAI Agents SDK tracing processor.

Each writes ingest items through the Recorder's outbox, so the framework's
thread never waits for the network. Importing this package imports neither
framework: each module imports its framework when it is imported itself.
"""
