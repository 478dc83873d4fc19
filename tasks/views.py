"""HTTP API of agents, tasks and runs: validate, call a service, render."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.selectors import event_list_after
from audit.serializers import EventPageSerializer, EventSerializer
from swarmsite.authentication import request_id
from swarmsite.errors import NotFound
from swarmsite.filters import wants_full
from swarmsite.pagination import PositionPagination
from swarmsite.permissions import ProjectScopedMixin
from swarmsite.serializers import created_status, validated
from tasks.filters import AgentFilterSet, RunFilterSet, TaskFilterSet, WorkflowFilterSet
from tasks.models import Agent, AgentRun, Task, Workflow
from tasks.selectors import (
    agent_get,
    agent_heartbeat_list,
    agent_list,
    run_list,
    task_get,
    task_list,
    workflow_get,
    workflow_list,
)
from tasks.serializers import (
    AgentCreateInputSerializer,
    AgentHeartbeatInputSerializer,
    AgentHeartbeatSerializer,
    AgentSerializer,
    AgentUpdateInputSerializer,
    RunCreateInputSerializer,
    RunSerializer,
    RunUpdateInputSerializer,
    TaskClaimInputSerializer,
    TaskCreateInputSerializer,
    TaskDependenciesInputSerializer,
    TaskHeartbeatInputSerializer,
    TaskListSerializer,
    TaskProgressInputSerializer,
    TaskRetryInputSerializer,
    TaskSerializer,
    TaskTransitionInputSerializer,
    TaskUpdateInputSerializer,
    WorkflowCancelInputSerializer,
    WorkflowCreateInputSerializer,
    WorkflowSerializer,
    WorkflowUpdateInputSerializer,
)
from tasks.services import (
    agent_actor,
    agent_heartbeat,
    agent_register,
    agent_update,
    run_create,
    run_update,
    task_claim,
    task_create,
    task_dependencies_add,
    task_dependency_remove,
    task_lease_extend,
    task_progress_set,
    task_retry,
    task_transition,
    task_update,
    workflow_cancel,
    workflow_create,
    workflow_update,
)


def _schema_only(view) -> bool:
    """True while drf-spectacular inspects the view, with no request user."""
    return getattr(view, "swagger_fake_view", False)


def _writes(request, response, summary: str):
    return extend_schema(summary=summary, request=request, responses=response)


def _creates(request, response, summary: str):
    return extend_schema(
        summary=summary,
        request=request,
        responses={200: response, 201: response},
        description="201 when created; 200 when the id (or agent name) exists "
        "with the same values.",
    )


@extend_schema_view(
    create=_creates(AgentCreateInputSerializer, AgentSerializer, "Register an agent"),
    partial_update=_writes(AgentUpdateInputSerializer, AgentSerializer, "Update"),
    heartbeat=_writes(AgentHeartbeatInputSerializer, AgentSerializer, "Heartbeat"),
    heartbeats=extend_schema(
        summary="The agent's heartbeat history, newest first",
        responses=AgentHeartbeatSerializer(many=True),
    ),
)
class AgentViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Agents of the caller's project; register, update, heartbeat."""

    serializer_class = AgentSerializer
    filterset_class = AgentFilterSet

    def get_queryset(self):
        if _schema_only(self):
            return Agent.objects.none()
        return agent_list(project=self.project)

    def get_object(self):
        return agent_get(project=self.project, agent_id=self.kwargs["pk"])

    def create(self, request):
        data = validated(AgentCreateInputSerializer, request.data)
        if "id" in data:
            data["agent_id"] = data.pop("id")
        agent, created = agent_register(project=self.project, actor=self.actor, **data)
        return Response(AgentSerializer(agent).data, status=created_status(created))

    def partial_update(self, request, pk=None):
        data = validated(AgentUpdateInputSerializer, request.data)
        agent = agent_update(agent=self.get_object(), actor=self.actor, **data)
        return Response(AgentSerializer(agent).data)

    @action(detail=True, methods=["post"])
    def heartbeat(self, request, pk=None):
        data = validated(AgentHeartbeatInputSerializer, request.data)
        agent = self.get_object()
        agent_heartbeat(
            agent=agent,
            operation_id=data.pop("id", None),
            actor=agent_actor(agent, correlation_id=request_id(request)),
            **data,
        )
        return Response(AgentSerializer(self.get_object()).data)

    # The agent filters are the list's, not the history's.
    @action(detail=True, methods=["get"], filterset_class=None)
    def heartbeats(self, request, pk=None):
        beats = agent_heartbeat_list(agent=self.get_object())
        page = self.paginate_queryset(beats)
        return self.get_paginated_response(
            AgentHeartbeatSerializer(page, many=True).data
        )


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "fields",
                OpenApiTypes.STR,
                enum=["full"],
                description="`full` adds description, input, result, depends_on.",
            )
        ]
    ),
    create=_creates(TaskCreateInputSerializer, TaskSerializer, "Create a task"),
    partial_update=_writes(
        TaskUpdateInputSerializer, TaskSerializer, "Update descriptive fields"
    ),
    transition=_writes(
        TaskTransitionInputSerializer, TaskSerializer, "Change the status"
    ),
    retry=_writes(
        TaskRetryInputSerializer, TaskSerializer, "Queue a failed task again"
    ),
    progress=_writes(TaskProgressInputSerializer, TaskSerializer, "Set progress"),
    claim=extend_schema(
        summary="Claim the best claimable task",
        description="Atomically takes the queued task with the highest priority, "
        "then the oldest, whose dependencies are all completed: it becomes "
        "running, assigned to `agent`, with a lease. 204 when nothing is "
        "claimable.",
        request=TaskClaimInputSerializer,
        responses={200: TaskSerializer, 204: None},
    ),
    heartbeat=_writes(
        TaskHeartbeatInputSerializer, TaskSerializer, "Extend a running task's lease"
    ),
    dependencies=_writes(
        TaskDependenciesInputSerializer, TaskSerializer, "Add dependencies"
    ),
    dependency_remove=extend_schema(
        summary="Remove one dependency",
        parameters=[
            OpenApiParameter(
                "other_id",
                OpenApiTypes.UUID,
                OpenApiParameter.PATH,
                description="The task it no longer depends on.",
            )
        ],
        request=None,
        responses={204: None},
    ),
    events=extend_schema(
        summary="Events of the task after a position",
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="A position."),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="At most 500."),
        ],
        responses=EventPageSerializer,
    ),
)
class TaskViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Tasks of the caller's project: create, update, transition, progress.

    Lists leave out `description`, `input`, `result` and `depends_on` unless
    `?fields=full` asks for them.
    """

    filterset_class = TaskFilterSet

    def _full(self) -> bool:
        return wants_full(self.request.query_params)

    def get_queryset(self):
        if _schema_only(self):
            return Task.objects.none()
        tasks = task_list(project=self.project)
        if self.action == "list" and self._full():
            tasks = tasks.defer(None).prefetch_related("depends_on")
        return tasks

    def get_serializer_class(self):
        if _schema_only(self):
            return TaskListSerializer if self.action == "list" else TaskSerializer
        if self.action == "list" and not self._full():
            return TaskListSerializer
        return TaskSerializer

    def get_object(self) -> Task:
        return task_get(project=self.project, task_id=self.kwargs["pk"])

    def _render(self, task: Task, status: int = 200) -> Response:
        # Re-read through the selector so the answer is what was stored.
        stored = task_get(project=self.project, task_id=task.pk)
        return Response(TaskSerializer(stored).data, status=status)

    def create(self, request):
        data = validated(TaskCreateInputSerializer, request.data)
        if "id" in data:
            data["task_id"] = data.pop("id")
        task, created = task_create(project=self.project, actor=self.actor, **data)
        return self._render(task, status=created_status(created))

    def partial_update(self, request, pk=None):
        data = validated(TaskUpdateInputSerializer, request.data)
        task = task_update(
            task=self.get_object(),
            operation_id=data.pop("id", None),
            actor=self.actor,
            **data,
        )
        return self._render(task)

    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        data = validated(TaskTransitionInputSerializer, request.data)
        task = task_transition(
            task=self.get_object(),
            operation_id=data.pop("id", None),
            actor=self.actor,
            **data,
        )
        return self._render(task)

    @action(detail=True, methods=["post"])
    def progress(self, request, pk=None):
        data = validated(TaskProgressInputSerializer, request.data)
        task = task_progress_set(
            task=self.get_object(),
            operation_id=data.pop("id", None),
            actor=self.actor,
            **data,
        )
        return self._render(task)

    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        data = validated(TaskRetryInputSerializer, request.data)
        task = task_retry(
            task=self.get_object(),
            operation_id=data.pop("id", None),
            actor=self.actor,
            **data,
        )
        return self._render(task)

    @action(detail=False, methods=["post"])
    def claim(self, request):
        data = validated(TaskClaimInputSerializer, request.data)
        task = task_claim(
            project=self.project,
            operation_id=data.pop("id", None),
            actor=self.actor,
            **data,
        )
        if task is None:
            return Response(status=204)
        return self._render(task)

    @action(detail=True, methods=["post"])
    def heartbeat(self, request, pk=None):
        data = validated(TaskHeartbeatInputSerializer, request.data)
        task = task_lease_extend(
            task=self.get_object(),
            operation_id=data.pop("id", None),
            actor=self.actor,
            **data,
        )
        return self._render(task)

    @action(detail=True, methods=["post"])
    def dependencies(self, request, pk=None):
        data = validated(TaskDependenciesInputSerializer, request.data)
        task = self.get_object()
        task_dependencies_add(
            task=task, depends_on=data["depends_on"], actor=self.actor
        )
        return self._render(task)

    @action(
        detail=True,
        methods=["delete"],
        url_path=r"dependencies/(?P<other_id>[^/.]+)",
    )
    def dependency_remove(self, request, pk=None, other_id=None):
        task = self.get_object()
        other = task_get(project=self.project, task_id=other_id)
        task_dependency_remove(task=task, depends_on=other, actor=self.actor)
        return Response(status=204)

    @action(detail=True, methods=["get"])
    def events(self, request, pk=None):
        task = self.get_object()
        return PositionPagination().respond(
            request,
            fetch=lambda after, limit: event_list_after(
                project_id=task.project_id,
                after=after,
                limit=limit,
                task_ids=[task.pk],
            ),
            serializer_class=EventSerializer,
        )


@extend_schema_view(
    create=_creates(RunCreateInputSerializer, RunSerializer, "Start a run"),
    partial_update=_writes(RunUpdateInputSerializer, RunSerializer, "Report"),
)
class RunViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Agent runs of the caller's project: start one, then report on it."""

    serializer_class = RunSerializer
    filterset_class = RunFilterSet

    def get_queryset(self):
        if _schema_only(self):
            return AgentRun.objects.none()
        return run_list(project=self.project)

    def get_object(self) -> AgentRun:
        try:
            return self.get_queryset().get(pk=self.kwargs["pk"])
        except (AgentRun.DoesNotExist, ValueError, DjangoValidationError) as exc:
            raise NotFound(f"No run {self.kwargs['pk']}.") from exc

    def create(self, request):
        data = validated(RunCreateInputSerializer, request.data)
        if "id" in data:
            data["run_id"] = data.pop("id")
        run, created = run_create(project=self.project, actor=self.actor, **data)
        return Response(RunSerializer(run).data, status=created_status(created))

    def partial_update(self, request, pk=None):
        data = validated(RunUpdateInputSerializer, request.data)
        run = run_update(
            run=self.get_object(),
            operation_id=data.pop("id", None),
            actor=self.actor,
            **data,
        )
        return Response(RunSerializer(run).data)


@extend_schema_view(
    create=_creates(
        WorkflowCreateInputSerializer, WorkflowSerializer, "Create a workflow"
    ),
    partial_update=_writes(
        WorkflowUpdateInputSerializer, WorkflowSerializer, "Update a workflow"
    ),
    cancel=_writes(
        WorkflowCancelInputSerializer,
        WorkflowSerializer,
        "Cancel every unfinished task of the workflow",
    ),
)
class WorkflowViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Workflows of the caller's project with their roll-ups; tasks of one
    workflow are `GET /api/v1/tasks/?workflow=<id>`."""

    serializer_class = WorkflowSerializer
    filterset_class = WorkflowFilterSet

    def get_queryset(self):
        if _schema_only(self):
            return Workflow.objects.none()
        return workflow_list(project=self.project)

    def get_object(self) -> Workflow:
        return workflow_get(project=self.project, workflow_id=self.kwargs["pk"])

    def create(self, request):
        data = validated(WorkflowCreateInputSerializer, request.data)
        if "id" in data:
            data["workflow_id"] = data.pop("id")
        workflow, created = workflow_create(
            project=self.project, actor=self.actor, **data
        )
        return Response(
            WorkflowSerializer(workflow).data, status=created_status(created)
        )

    def partial_update(self, request, pk=None):
        data = validated(WorkflowUpdateInputSerializer, request.data)
        workflow = workflow_update(
            workflow=self.get_object(),
            operation_id=data.pop("id", None),
            actor=self.actor,
            **data,
        )
        return Response(WorkflowSerializer(workflow).data)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        data = validated(WorkflowCancelInputSerializer, request.data)
        workflow = workflow_cancel(
            workflow=self.get_object(),
            operation_id=data.pop("id", None),
            actor=self.actor,
        )
        return Response(WorkflowSerializer(workflow).data)
