"""What the steward's form pages share: a service's refusal as a page shows it, and dates typed in a form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TypeVar
from zoneinfo import ZoneInfo

from flask import current_app, request

from core.errors import BadRequest, SandboxError
from sandbox.api.routing import has_nul

T = TypeVar("T")


@dataclass
class Refusal:
    """A service's refusal as a page shows it: its status, the API's message, and the fields it names."""

    status: int
    message: str
    problems: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, exc: SandboxError) -> Refusal:
        found = exc.details.get("problems")
        problems = [p for p in found if isinstance(p, dict)] if isinstance(found, list) else []
        if not problems and isinstance(exc.details.get("field"), str):
            problems = [{"field": exc.details["field"], "problem": exc.message}]
        return cls(exc.status if exc.status < 500 else 500, exc.message, problems)

    def fields(self) -> set[str]:
        return {p["field"] for p in self.problems if "field" in p}


def end_of_day(text: str) -> str:
    """The end of the day ``YYYY-MM-DD`` in the console's time zone, as ISO 8601 for the API's models;
    the text as it is when it is no date (the model then names the field)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return text
    zone = ZoneInfo(str(current_app.config.get("BABEL_DEFAULT_TIMEZONE") or "UTC"))
    return datetime.combine(day, time(23, 59, 59), zone).isoformat()


def refuse_nul() -> None:
    """NUL cannot be stored in PostgreSQL text: a form or query with one is refused (400) as the API refuses it."""
    if has_nul(request.form.to_dict(flat=False)) or has_nul(request.args.to_dict(flat=False)):
        raise BadRequest("text may not contain NUL characters")


def attempt(action: Callable[[], T]) -> T | Refusal:
    """``action()``, or the refusal a form explains (400, 409, 413, ...); 403 and 404 go on to the error pages,
    which say no more than the API says about another organisation's object. A NUL anywhere in the form is a 400 page."""
    refuse_nul()
    try:
        return action()
    except SandboxError as exc:
        if exc.status in (403, 404):
            raise
        return Refusal.of(exc)
