"""Turning pydantic validation failures into the sandbox's ``ValidationFailed``, without input values."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.errors import ValidationFailed

M = TypeVar("M", bound=BaseModel)


def validation_details(exc: ValidationError) -> dict[str, Any]:
    """Field and problem for each error; the offending input is left out (it may be sensitive)."""
    problems = [
        {"field": ".".join(str(part) for part in err["loc"]) or "body", "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    return {"problems": problems}


def parse_model(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        first = details["problems"][0]
        raise ValidationFailed(f"invalid {what}: {first['field']}: {first['problem']}", details=details) from None
