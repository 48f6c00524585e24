"""One exception root for the whole sandbox, mapped to HTTP in one place (``sandbox.api.errors``).

Each subclass carries a stable machine-readable ``code`` and the HTTP status the API answers with.
Messages must never contain a secret or a raw data value: they are shown to callers and written
to logs.
"""

from __future__ import annotations

from typing import Any


class SandboxError(Exception):
    """Root of every error the sandbox raises on purpose."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by state, not by constructor arguments: a job's child process sends its errors to the
        worker, and subclasses have constructors of their own (``MemoryLimitExceeded()`` takes none)."""
        return (_rebuilt, (type(self), self.message, self.details, self.__dict__))


def _rebuilt(cls: type[SandboxError], message: str, details: dict[str, Any], state: dict[str, Any]) -> SandboxError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    error.message, error.details = message, details
    return error


class BadRequest(SandboxError):
    """The input is malformed or fails validation."""

    code = "bad_request"
    status = 400


class ValidationFailed(BadRequest):
    """Input parsed but failed validation; ``details`` names the field or column and the problem."""

    code = "validation_error"


class Unauthenticated(SandboxError):
    code = "unauthenticated"
    status = 401


class Forbidden(SandboxError):
    """The caller's role or grant does not allow the action."""

    code = "forbidden"
    status = 403


class NotFound(SandboxError):
    """Unknown, or not visible to this caller: never reveals that another organisation's object exists."""

    code = "not_found"
    status = 404


class Conflict(SandboxError):
    """The object is in the wrong state for the action, or a unique name is taken."""

    code = "conflict"
    status = 409


class EpsilonCapRequired(Conflict):
    """A DP grant is approved only on datasets whose global ε cap the steward has set (a finite total for all grants)."""

    code = "epsilon_cap_required"


class TooLarge(SandboxError):
    code = "too_large"
    status = 413


class UploadTooLarge(TooLarge):
    """An uploaded table decodes to more rows, columns, cells or bytes than the domain accepts; ``details`` names the limit."""

    code = "upload_too_large"


class PolicyViolation(SandboxError):
    code = "policy_violation"
    status = 422


class TooExpensive(SandboxError):
    """The computation would exceed a stated cost limit (size, time) or was interrupted; ``details`` names the limit."""

    code = "too_expensive"
    status = 422


class BudgetExhausted(SandboxError):
    code = "budget_exhausted"
    status = 429


class IntegrityError(SandboxError):
    """Stored ciphertext, a wrapped key or a signature failed authentication.

    Raised by ``crypto``; it means tampering or the wrong key, never bad user input.
    """

    code = "integrity_error"
    status = 500


class InternalError(AssertionError):
    """Something that cannot happen happened. Not a ``SandboxError``: it is a bug, answered as 500."""
