"""Factories of agents, workflows, tasks and runs, created through the services
(see tests/swarmsite/factories.py for why); defaults are the services'."""

import factory
from factory.django import DjangoModelFactory

from tasks.models import Agent, AgentRun, Task, Workflow
from tasks.services import agent_register, run_create, task_create, workflow_create
from tests.swarmsite.factories import ProjectFactory


class AgentFactory(DjangoModelFactory[Agent]):
    class Meta:
        model = Agent

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"agent-{n}")

    @classmethod
    def _create(cls, model_class, **kwargs) -> Agent:
        return agent_register(**kwargs)[0]


class WorkflowFactory(DjangoModelFactory[Workflow]):
    class Meta:
        model = Workflow

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"workflow-{n}")

    @classmethod
    def _create(cls, model_class, **kwargs) -> Workflow:
        return workflow_create(**kwargs)[0]


class TaskFactory(DjangoModelFactory[Task]):
    """A pending task; other fields are task_create's (parent, depends_on, ...)."""

    class Meta:
        model = Task

    project = factory.SubFactory(ProjectFactory)
    title = factory.Sequence(lambda n: f"Task {n}")

    @classmethod
    def _create(cls, model_class, **kwargs) -> Task:
        return task_create(**kwargs)[0]


class AgentRunFactory(DjangoModelFactory[AgentRun]):
    """A run of a new task of its project; by no agent unless given one."""

    class Meta:
        model = AgentRun

    project = factory.SubFactory(ProjectFactory)
    task = factory.SubFactory(TaskFactory, project=factory.SelfAttribute("..project"))

    @classmethod
    def _create(cls, model_class, **kwargs) -> AgentRun:
        return run_create(**kwargs)[0]
