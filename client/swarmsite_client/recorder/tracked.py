"""`Tracked`: a task or run recorded around a block or a function call."""

from __future__ import annotations

import contextlib
import functools
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from swarmsite_client._core import dumps

if TYPE_CHECKING:
    from swarmsite_client.recorder.recorder import Recorder


class Tracked(contextlib.ContextDecorator):
    """What `Recorder.track_task` / `track_run` return: a context manager,
    or a decorator recording one task or run per call."""

    def __init__(
        self,
        recorder: Recorder,
        what: str,
        *,
        title: str | None = None,
        task: Any = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.recorder = recorder
        self.what = what
        self.title = title
        self.task = task
        self.fields = fields or {}
        self.id: str | None = None
        self.result: Any = None
        self.summary: str | None = None

    def _recreate_cm(self) -> Tracked:
        return Tracked(
            self.recorder, self.what, title=self.title, task=self.task,
            fields=self.fields,
        )  # fmt: skip

    def __call__(self, func: Callable) -> Callable:
        if self.what == "task" and self.title is None:
            self.title = func.__qualname__

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with self._recreate_cm() as handle:
                handle.result = func(*args, **kwargs)
                return handle.result

        return inner

    def progress(self, value: int) -> None:
        if self.what == "task" and self.id:
            self.recorder.progress(self.id, value)

    def __enter__(self) -> Tracked:
        r = self.recorder
        if self.what == "task":
            if self.task is None and self.title is None:
                raise ValueError("track_task needs a title or an existing task id")
            self.id = str(self.task) if self.task else r.task(self.title, **self.fields)
            r.transition(self.id, "running")
        else:
            self.id = r.run(task=self.task, status="running", **self.fields)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        r = self.recorder
        assert self.id is not None
        if exc is None:
            if self.what == "task":
                r.transition(
                    self.id,
                    "completed",
                    result=_jsonable(self.result),
                    result_summary=self.summary,
                )
            else:
                r.run_update(self.id, status="completed", output_summary=self.summary)
            return False
        message = "".join(traceback.format_exception_only(exc_type, exc)).strip()
        if self.what == "task":
            r.transition(self.id, "failed", error=message)
        else:
            r.run_update(self.id, status="failed", error=message)
        return False


def _jsonable(value: Any) -> Any:
    try:
        dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
