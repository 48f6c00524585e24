"""The policy editor's presets by level, as the values of its form (the form is the one representation the page shows).

A preset is a starting point the steward edits, never a policy by itself: it is validated like any
form, by ``Policy``, when the steward approves. Stricter for 核心 (core data): more units per cell, a
tighter dominance share, a larger p, rounding, every output reviewed, by two auditors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from werkzeug.datastructures import MultiDict

from core.schema import ColumnSpec, DatasetSchema
from core.values import ColumnRole, ColumnType, JobKind, Level
from policies.model import Aggregate, ColumnUse, Disclosure, ReleaseMode
from sandbox.models import Grant

DISCLOSURE_FIELDS = tuple(Disclosure.model_fields)
BOOLEAN_FIELDS = frozenset(name for name, info in Disclosure.model_fields.items() if info.annotation is bool)


@dataclass(frozen=True)
class Preset:
    disclosure: Disclosure
    release_mode: ReleaseMode
    reviewers: int
    aggregates: tuple[Aggregate, ...]
    days: int  # until the grant expires


PRESETS: dict[Level, Preset] = {
    Level.GENERAL: Preset(
        Disclosure(),
        ReleaseMode.REVIEW_ON_FLAG,
        1,
        (Aggregate.COUNT, Aggregate.COUNT_DISTINCT, Aggregate.SUM, Aggregate.AVG, Aggregate.MEDIAN),
        365,
    ),
    Level.IMPORTANT: Preset(Disclosure(rounding=True), ReleaseMode.REVIEW_ON_FLAG, 1, (Aggregate.COUNT, Aggregate.SUM, Aggregate.AVG), 180),
    Level.CORE: Preset(
        Disclosure(threshold=20, nk_k=0.8, p_ratio=0.2, rounding=True, round_base=10),
        ReleaseMode.ALWAYS_REVIEW,
        2,
        (Aggregate.COUNT, Aggregate.SUM, Aggregate.AVG),
        90,
    ),
}


def preset_use(name: str, spec: ColumnSpec, schema: DatasetSchema, requested: list[str] | None) -> ColumnUse:
    """A column's use in a preset: what its role allows for statistics, and nothing the analyst did not ask for."""
    if (requested is not None and name not in requested) or name == schema.privacy_unit or spec.type is ColumnType.PAILLIER:
        return ColumnUse.DENY
    if spec.role is ColumnRole.IDENTIFIER:
        return ColumnUse.DENY
    if spec.role is ColumnRole.SENSITIVE:
        return ColumnUse.MEASURE if spec.type.numeric else ColumnUse.DENY
    return ColumnUse.DIMENSION


def preset_form(level: Level, grant: Grant, today: date) -> MultiDict[str, str]:
    """The editor's form filled with ``level``'s preset for ``grant``'s datasets, its requested job kinds and columns."""
    preset = PRESETS[level]
    requested_columns = (grant.requested or {}).get("columns") or {}
    form: MultiDict[str, str] = MultiDict({"preset": level.value})
    for i, link in enumerate(grant.datasets):
        schema = DatasetSchema.model_validate(link.dataset.current.schema)
        wanted = requested_columns.get(link.dataset.name)
        for j, (name, spec) in enumerate(schema.columns.items()):
            form[f"use:{i}:{j}"] = preset_use(name, spec, schema, wanted).value
    for aggregate in preset.aggregates:
        form.add("aggregates", aggregate.value)
    for kind in (grant.requested or {}).get("job_kinds", []):
        form.add("job_kinds", JobKind(kind).value)
    for name, value in preset.disclosure.model_dump().items():
        if name in BOOLEAN_FIELDS:
            if value:
                form[f"disclosure.{name}"] = "on"
        else:
            form[f"disclosure.{name}"] = str(value)
    form["release_mode"] = preset.release_mode.value
    form["reviewers"] = str(preset.reviewers)
    form["expires_on"] = (today + timedelta(days=preset.days)).isoformat()
    return form
