"""``he`` op ``aggregate``: counts, sums and averages of provider-encrypted columns per group of plain dimensions.

Spec::

    {"op": "aggregate", "dataset": "pums_he", "group_by": ["race"],
     "aggregates": [{"fn": "count", "name": "n"}, {"fn": "sum", "column": "income", "name": "total"},
                    {"fn": "avg", "column": "income", "name": "mean_income"}]}

``count`` without a column counts rows; with a column, the rows where it has a value (a ciphertext).
``sum`` and ``avg`` read paillier columns only, used as ``measure`` by the policy; ``avg`` is the
decrypted sum divided by the plain count of values. Group keys are ``dimension`` (or ``plain``)
columns, never encrypted ones nor identifiers. All encrypted columns of one job share one key: one
release decision goes to one custodian.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core import validation
from core.errors import ValidationFailed
from core.schema import ColumnSpec, DatasetSchema, Name, PaillierColumn
from core.values import ColumnRole, ColumnType
from jobs.he.values import HEPlan, HERule, violation
from policies.model import Aggregate, ColumnUse, Policy

MAX_GROUP_BY = 5
MAX_AGGREGATES = 20

FUNCTIONS: dict[str, Aggregate] = {"count": Aggregate.COUNT, "sum": Aggregate.SUM, "avg": Aggregate.AVG}


class AggregateItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fn: Literal["count", "sum", "avg"]
    column: Name | None = None
    name: Name

    @model_validator(mode="after")
    def _column_needed(self) -> AggregateItem:
        if self.fn != "count" and self.column is None:
            raise ValueError(f"{self.fn} needs a column")
        return self


class AggregateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["aggregate"]
    dataset: Name
    group_by: Annotated[list[Name], Field(max_length=MAX_GROUP_BY)] = []
    aggregates: Annotated[list[AggregateItem], Field(min_length=1, max_length=MAX_AGGREGATES)]

    @model_validator(mode="after")
    def _distinct_names(self) -> AggregateSpec:
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError("group_by columns must be distinct")
        names = [a.name for a in self.aggregates]
        if len(set(names)) != len(names) or set(names) & set(self.group_by):
            raise ValueError("aggregate names must be distinct and differ from the group_by columns")
        if all(a.column is None for a in self.aggregates):
            raise ValueError("an he aggregate reads at least one encrypted column (counts alone are query jobs)")
        return self


@dataclass(frozen=True)
class AggregateOutput:
    name: str
    aggregate: Aggregate
    column: str | None  # the encrypted column read (None: count of rows)


@dataclass(frozen=True)
class AggregatePlan(HEPlan):
    """A checked aggregate: what the worker groups by, what it sums, under which key and scales."""

    group_by: tuple[str, ...]
    outputs: tuple[AggregateOutput, ...]
    key: str  # fingerprint of the Paillier key of every encrypted column read
    scales: tuple[tuple[str, int], ...]  # (encrypted column, its scale), in first-use order
    privacy_unit: str

    @property
    def encrypted(self) -> tuple[str, ...]:
        return tuple(column for column, _ in self.scales)

    @property
    def summed(self) -> tuple[str, ...]:
        """Encrypted columns whose sums must be decrypted (those of a sum or avg output)."""
        wanted = {o.column for o in self.outputs if o.aggregate is not Aggregate.COUNT}
        return tuple(c for c in self.encrypted if c in wanted)

    def scale(self, column: str) -> int:
        return dict(self.scales)[column]


def parse(spec: Mapping[str, Any]) -> AggregateSpec:
    try:
        return AggregateSpec.model_validate(dict(spec))
    except ValidationError as exc:
        problems = validation.problems(exc, spec, whole="spec")
        first = problems[0]
        raise ValidationFailed(f"invalid spec: {first['field']}: {first['problem']}", details={"problems": problems}) from None


def plan_aggregate(spec: Mapping[str, Any], policy: Policy, schemas: Mapping[str, DatasetSchema]) -> AggregatePlan:
    parsed = parse(spec)
    if policy.dp is not None:
        raise violation(HERule.DP_UNSUPPORTED, "he aggregates have no differentially private form; this grant answers query jobs only")
    schema = schemas.get(parsed.dataset)
    if schema is None:
        raise violation(HERule.DATASET_NOT_GRANTED, f"dataset {parsed.dataset} is not one of this grant's datasets")
    for column in parsed.group_by:
        _dimension(parsed.dataset, column, schema, policy)
    outputs: list[AggregateOutput] = []
    scales: dict[str, int] = {}
    keys: set[str] = set()
    for item in parsed.aggregates:
        aggregate = FUNCTIONS[item.fn]
        if aggregate not in policy.aggregates:
            raise violation(HERule.AGGREGATE_NOT_ALLOWED, f"the policy does not allow the aggregate {aggregate.value}")
        if item.column is not None:
            encrypted = _measure(parsed.dataset, item.column, schema, policy)
            scales.setdefault(item.column, encrypted.scale)
            keys.add(encrypted.key)
        outputs.append(AggregateOutput(item.name, aggregate, item.column))
    if len(keys) != 1:
        raise violation(HERule.KEYS_DIFFER, "the encrypted columns of one he job must share one Paillier key")
    return AggregatePlan(
        op="aggregate",
        dataset=parsed.dataset,
        group_by=tuple(parsed.group_by),
        outputs=tuple(outputs),
        key=keys.pop(),
        scales=tuple(scales.items()),
        privacy_unit=schema.privacy_unit,
    )


def _column(dataset: str, column: str, schema: DatasetSchema, policy: Policy) -> tuple[ColumnSpec, ColumnUse]:
    spec = schema.column(column)
    name = f"{dataset}.{column}"
    if spec is None:
        raise ValidationFailed(f"unknown column {name}", details={"field": "spec", "column": name})
    if spec.role is ColumnRole.IDENTIFIER or column == schema.privacy_unit:
        raise violation(HERule.IDENTIFIER, f"column {name} is an identifier: he jobs never group or aggregate it", name)
    use = policy.use_of(dataset, column)
    if use in (ColumnUse.DENY, ColumnUse.JOIN_KEY):
        raise violation(HERule.COLUMN_DENIED, f"the policy does not allow column {name} in he jobs", name)
    return spec, use


def _dimension(dataset: str, column: str, schema: DatasetSchema, policy: Policy) -> None:
    spec, use = _column(dataset, column, schema, policy)
    name = f"{dataset}.{column}"
    if spec.type is ColumnType.PAILLIER or use not in (ColumnUse.DIMENSION, ColumnUse.PLAIN):
        raise violation(HERule.MEASURE_AS_DIMENSION, f"column {name} may only be aggregated, not grouped by", name)


def _measure(dataset: str, column: str, schema: DatasetSchema, policy: Policy) -> PaillierColumn:
    """The column's ``PaillierColumn`` (key and scale), once it is an encrypted measure under the policy."""
    spec, use = _column(dataset, column, schema, policy)
    name = f"{dataset}.{column}"
    if spec.type is not ColumnType.PAILLIER or spec.paillier is None:
        raise violation(
            HERule.NOT_ENCRYPTED, f"column {name} is not encrypted (paillier): aggregate it with a query or stats job instead", name
        )
    if use is not ColumnUse.MEASURE:
        raise violation(HERule.COLUMN_DENIED, f"the policy does not allow column {name} as a measure", name)
    return spec.paillier
