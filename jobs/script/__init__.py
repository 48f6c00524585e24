"""Script jobs (kind ``script``): an analyst's Python over the granted columns, run isolated, every output reviewed.

``ScriptSpec`` is the submitted spec; ``plan(spec, policy, schemas)`` checks it against the grant's
policy and returns a ``ScriptPlan``: the code, the datasets it reads with the columns each may show
the script, and the declared outputs. The script sees the columns the policy grants as
``dimension``, ``measure`` or ``plain`` as they are, and those it grants as ``join_key`` (an
identifier or the privacy unit may be one) only as opaque tokens: a keyed hash with a key of the
run, so that rows join within a job but a token means nothing outside it (``tokens``). Denied
columns never reach it. A script can transform the data before any check sees it, so no rule here
can vouch for an output: the sandbox runs it isolated (``sandbox.scripts``) and holds every output
of a real run for review. Outputs are parsed and re-serialised by ``jobs.script.outputs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import BadRequest, PolicyViolation
from core.schema import DatasetSchema
from core.values import ColumnType
from policies.model import ColumnUse, Policy

SHOWN = frozenset({ColumnUse.DIMENSION, ColumnUse.MEASURE, ColumnUse.PLAIN})  # what a script may read of a column
OutputName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class ScriptsUnavailable(BadRequest):
    """This host cannot isolate scripts (no bubblewrap, libseccomp, root or pids cgroup): they are refused, never run unisolated."""

    code = "scripts_unavailable"


class OutputType(StrEnum):
    TABLE = "table"  # a pandas DataFrame
    FIGURE = "figure"  # a matplotlib Figure, re-rendered to PNG
    TEXT = "text"  # a str


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: OutputType


class ScriptSpec(BaseModel):
    """``{"language": "python", "code", "datasets", "outputs": {name: {"type"}}}`` (``timeout_seconds`` is taken out before)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: Literal["python"]
    code: Annotated[str, Field(min_length=1, max_length=200_000)]
    datasets: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(min_length=1, max_length=10)]
    outputs: Annotated[dict[OutputName, OutputSpec], Field(min_length=1, max_length=20)]


@dataclass(frozen=True)
class ScriptPlan:
    """What a script run needs: its code, the columns it may read per dataset, its declared outputs."""

    code: str
    datasets: tuple[str, ...]
    columns: Mapping[str, tuple[str, ...]]  # per dataset, every column the script reads (join keys included)
    outputs: Mapping[str, OutputType]
    tokens: Mapping[str, tuple[str, ...]]  # per dataset, the join keys among ``columns``: replaced by tokens


def plan(spec: ScriptSpec, policy: Policy, schemas: Mapping[str, DatasetSchema]) -> ScriptPlan:
    """The plan of ``spec`` on the grant's datasets; ``PolicyViolation`` (with ``details["rule"]``) when the policy refuses it."""
    if policy.dp is not None:
        raise PolicyViolation(
            "script jobs have no differentially private form; this grant answers query and stats jobs", details={"rule": "dp_unsupported"}
        )
    datasets = tuple(dict.fromkeys(spec.datasets))
    columns: dict[str, tuple[str, ...]] = {}
    tokens: dict[str, tuple[str, ...]] = {}
    for name in datasets:
        schema = schemas.get(name)
        if schema is None:
            raise PolicyViolation(f"{name!r} is not a dataset of this grant", details={"rule": "dataset_not_granted", "dataset": name})
        readable = [column for column, found in schema.columns.items() if found.type is not ColumnType.PAILLIER]
        shown = [c for c in readable if policy.use_of(name, c) in SHOWN and c != schema.privacy_unit]
        keys = [c for c in readable if policy.use_of(name, c) is ColumnUse.JOIN_KEY]
        if not shown:
            raise PolicyViolation(
                f"the policy grants no column of {name!r} a script may read", details={"rule": "no_readable_column", "dataset": name}
            )
        columns[name], tokens[name] = (*shown, *keys), tuple(keys)
    outputs = {name: output.type for name, output in spec.outputs.items()}
    return ScriptPlan(spec.code, datasets, columns, outputs, tokens)
