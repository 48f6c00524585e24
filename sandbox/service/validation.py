"""Turning pydantic validation failures into the sandbox's ``ValidationFailed``, without input values."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.errors import ValidationFailed
from core.validation import problems

M = TypeVar("M", bound=BaseModel)


def validation_details(exc: ValidationError, data: Any, what: str = "body") -> dict[str, Any]:
    """Field and problem for each error, in the input's terms (``core.validation``); no input value, no class name."""
    return {"problems": problems(exc, data, whole=what)}


def parse_model(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc, data, what)
        first = details["problems"][0]
        raise ValidationFailed(f"invalid {what}: {first['field']}: {first['problem']}", details=details) from None
