"""`manage.py simulate`: a swarm of agents (`ops.simulation`) writing
through the HTTP API of a running server."""

from __future__ import annotations

import random
import time
import urllib.parse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ops.simulation import Swarm
from ops.simulation_http import Api, ApiError, ServerUnreachable, wait_ready
from swarmsite.errors import ValidationError
from swarmsite.models import Project
from swarmsite.services import api_key_create

DEFAULT_URL = "http://127.0.0.1:8000"


class Command(BaseCommand):
    help = (
        "Simulate a swarm of agents (a planner and workers) writing tasks, "
        "runs, conversations, tool calls and failures through the HTTP API of "
        "a running server."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--agents", type=int, default=4, help="Worker agents (default 4)."
        )
        parser.add_argument(
            "--tasks",
            type=int,
            default=0,
            help="Stop once this many goals are finished (default 0: no limit). "
            "Each goal is split into 2-4 subtasks.",
        )
        parser.add_argument(
            "--rate",
            type=float,
            default=10.0,
            help="API calls per second, about (default 10).",
        )
        parser.add_argument(
            "--duration",
            type=float,
            default=60.0,
            help="Stop after this many seconds (default 60; 0: until Ctrl-C "
            "or --tasks).",
        )
        parser.add_argument(
            "--url",
            default=DEFAULT_URL,
            help=f"Base URL of the server (default {DEFAULT_URL}).",
        )
        who = parser.add_mutually_exclusive_group()
        who.add_argument("--api-key", help="An API key with read and write scopes.")
        who.add_argument(
            "--project",
            help="Create a read/write key for this project (default: default).",
        )
        parser.add_argument(
            "--fail-rate",
            type=float,
            default=0.15,
            help="Chance that an attempt at a subtask fails (default 0.15).",
        )
        parser.add_argument(
            "--seed", type=int, default=None, help="Random seed, for a replay."
        )
        parser.add_argument(
            "--report-every",
            type=float,
            default=10,
            help="Print progress every this many seconds (default 10; 0: never).",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            help="Wait up to this many seconds for the server's /readyz first "
            "(default 0: start at once).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._check(options)
        try:
            self._simulate(options)
        except KeyboardInterrupt:
            # Ctrl-C before the swarm started: nothing to sum up.
            self.stdout.write("Interrupted.")
        except ServerUnreachable as exc:
            raise CommandError(str(exc)) from exc

    def _simulate(self, options: dict[str, Any]) -> None:
        if options["wait"]:
            wait_ready(options["url"].rstrip("/"), options["wait"])
        key = options["api_key"] or self._create_key(options["project"] or "default")
        api = Api(options["url"], key)
        swarm = Swarm(
            api,
            workers=options["agents"],
            goals=options["tasks"],
            fail_rate=options["fail_rate"],
            rng=random.Random(options["seed"]),
            out=self.stdout,
        )
        try:
            api.get("/api/v1/agents/?page_size=1")
        except ApiError as exc:
            raise CommandError(
                f"The server refused the API key ({exc.status}): {exc.body}"
            ) from exc
        base = api.base_url
        self.stdout.write(
            f"Simulating {options['agents']} workers and a planner against {base} "
            f"(session {swarm.session}). Watch:\n"
            f"  admin   {base}/admin/tasks/task/\n"
            f"  events  {base}/api/v1/events/?after=0\n"
            f"  stream  {base.replace('http', 'ws', 1)}/ws/v1/events/\n"
            f"  stats   {base}/api/v1/stats/\n"
            "Ctrl-C stops it."
        )
        started = time.monotonic()
        try:
            swarm.register()
            reason = swarm.run(
                rate=options["rate"],
                duration=options["duration"],
                report_every=options["report_every"],
            )
        except KeyboardInterrupt:
            reason = "interrupted"
        except ApiError as exc:
            self._summary(swarm, api, started, "an error")
            raise CommandError(str(exc)) from exc
        self._summary(swarm, api, started, reason)

    def _check(self, options: dict[str, Any]) -> None:
        problems = {
            "--agents": options["agents"] < 1 or options["agents"] > 100,
            "--tasks": options["tasks"] < 0,
            "--rate": options["rate"] <= 0,
            "--duration": options["duration"] < 0,
            "--wait": options["wait"] < 0,
            "--report-every": options["report_every"] < 0,
            "--fail-rate": not 0 <= options["fail_rate"] <= 1,
        }
        limits = {
            "--agents": "from 1 to 100",
            "--tasks": "0 or more",
            "--rate": "above 0",
            "--duration": "0 or more",
            "--wait": "0 or more",
            "--report-every": "0 or more",
            "--fail-rate": "from 0 to 1",
        }
        for name, bad in problems.items():
            if bad:
                raise CommandError(f"{name} must be {limits[name]}.")
        url = urllib.parse.urlsplit(options["url"])
        if url.scheme not in ("http", "https") or not url.netloc:
            raise CommandError(f"--url must be an http(s) URL, not {options['url']!r}.")

    def _create_key(self, slug: str) -> str:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(
                f"No project {slug!r}; create it with "
                f"`manage.py create_project {slug}`."
            )
        name = f"simulate {timezone.now():%Y-%m-%d %H:%M:%S.%f}"
        try:
            key, secret = api_key_create(
                project=project, name=name, scopes=["read", "write"]
            )
        except ValidationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Created API key {key.prefix}... ({name!r}) for {slug}.")
        return secret

    def _summary(self, swarm: Swarm, api: Api, started: float, reason: str) -> None:
        counts = swarm.counts
        elapsed = time.monotonic() - started
        lines = [
            f"Stopped: {reason}, after {elapsed:.1f} s and {api.calls} API calls "
            f"({api.retried} retried).",
            f"  goals: {swarm.goals_started} started, "
            f"{counts['goals_completed']} completed, {counts['goals_failed']} failed",
            f"  tasks: {counts['tasks']} created; "
            f"{counts['transition.completed']} completions, "
            f"{counts['failures']} failures, {counts['retries']} retries",
            f"  runs: {counts['runs']}, conversations: {counts['conversations']}, "
            f"messages: {counts['messages']}, tool calls: {counts['tool_calls']}",
        ]
        self.stdout.write("\n".join(lines))
