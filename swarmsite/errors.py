"""Typed errors raised by services; the API maps them to HTTP answers."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error a service raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(ServiceError):
    """Bad input; nothing was written. `fields` maps field names to messages."""

    code = "validation_error"

    def __init__(self, fields: dict[str, list[str] | str], message: str = "") -> None:
        self.fields = {
            name: [msgs] if isinstance(msgs, str) else list(msgs)
            for name, msgs in fields.items()
        }
        if not message:
            message = "; ".join(
                f"{name}: {' '.join(msgs)}" for name, msgs in self.fields.items()
            )
        super().__init__(message)

    @classmethod
    def from_django(cls, exc) -> ValidationError:
        """Wrap django.core.exceptions.ValidationError, keeping field names."""
        if hasattr(exc, "error_dict"):
            return cls(
                {k: [str(m) for e in v for m in e] for k, v in exc.error_dict.items()}
            )
        return cls({"non_field_errors": [str(m) for m in exc.messages]})


class NotFound(ServiceError):
    """The object does not exist in the caller's project."""

    code = "not_found"


class Conflict(ServiceError):
    """The request conflicts with the stored state."""

    code = "conflict"


class IdempotencyConflict(Conflict):
    """A create reused an existing id with a different body."""

    code = "idempotency_conflict"


class IllegalTransition(Conflict):
    """The requested status cannot follow the current one."""

    code = "illegal_transition"

    def __init__(self, *, current: str, requested: str) -> None:
        self.current = current
        self.requested = requested
        super().__init__(f"Cannot transition from '{current}' to '{requested}'.")


class VersionConflict(Conflict):
    """The caller's expected version is not the stored one."""

    code = "version_conflict"

    def __init__(self, *, expected: int, actual: int | None) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"Expected version {expected}, but the stored version is {actual}."
        )


class DependencyCycle(Conflict):
    """A dependency edge would close a cycle; `fields` names the field."""

    code = "dependency_cycle"

    def __init__(self, message: str, *, field: str = "depends_on") -> None:
        self.fields = {field: [message]}
        super().__init__(message)
