"""The analyst's statistics specs, one pydantic model per op, told apart by ``op``.

These models check shape only (names, sizes, orders); what the policy allows is checked by the
planners. Column and dataset names must look like the names stewards declare, so nothing else
can reach SQL, and they are quoted there all the same.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from core.errors import ValidationFailed
from core.schema import Name
from core.validation import problems
from policies.model import Aggregate

MAX_DIMENSIONS = 5  # with margins, 2**5 grouping sets: enough for tables, bounded in cost
MAX_BINS = 200

AggFunc = Literal["count", "sum", "mean", "median", "std", "var", "min", "max"]

AGGREGATE_OF: dict[str, Aggregate] = {
    "count": Aggregate.COUNT,
    "sum": Aggregate.SUM,
    "mean": Aggregate.AVG,
    "median": Aggregate.MEDIAN,
    "std": Aggregate.STDDEV,
    "var": Aggregate.VARIANCE,
    "min": Aggregate.MIN,
    "max": Aggregate.MAX,
    "quantile": Aggregate.QUANTILE,
}

DescribeStatistic = Literal["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
DESCRIBE_ALL: tuple[DescribeStatistic, ...] = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")


def _listify(value: Any) -> Any:
    """Accept one name where a list is expected, as pandas does."""
    return [value] if isinstance(value, str) else value


def _distinct(values: list[Any], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be distinct")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Name


class _Grouped(_Spec):
    """Shared by crosstab and pivot: row and column dimensions, optional margins."""

    index: Annotated[list[Name], Field(min_length=1, max_length=MAX_DIMENSIONS)]
    columns: Annotated[list[Name], Field(max_length=MAX_DIMENSIONS)] = []
    margins: bool = False

    @field_validator("index", "columns", "aggfunc", mode="before", check_fields=False)
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _listify(value)

    @model_validator(mode="after")
    def _dimensions(self) -> _Grouped:
        dims = [*self.index, *self.columns]
        _distinct(dims, "index and columns")
        if len(dims) > MAX_DIMENSIONS:
            raise ValueError(f"at most {MAX_DIMENSIONS} dimensions")
        return self


class CrosstabSpec(_Grouped):
    """Counts by default; with ``values``, each ``aggfunc`` of that column per cell."""

    op: Literal["crosstab"]
    values: Name | None = None
    aggfunc: Annotated[list[AggFunc], Field(min_length=1, max_length=8)] = ["count"]

    @model_validator(mode="after")
    def _values(self) -> CrosstabSpec:
        _distinct(list(self.aggfunc), "aggfunc")
        if self.values is None and self.aggfunc != ["count"]:
            raise ValueError("aggfunc other than count needs values")
        return self


class PivotSpec(_Grouped):
    """Several value columns times several aggregate functions; outputs named ``<func>_<value>``."""

    op: Literal["pivot"]
    values: Annotated[list[Name], Field(min_length=1, max_length=20)]
    aggfunc: Annotated[list[AggFunc], Field(min_length=1, max_length=8)] = ["mean"]

    @field_validator("values", mode="before")
    @classmethod
    def _one_value(cls, value: Any) -> Any:
        return _listify(value)

    @model_validator(mode="after")
    def _unique(self) -> PivotSpec:
        _distinct(list(self.values), "values")
        _distinct(list(self.aggfunc), "aggfunc")
        return self


class DescribeSpec(_Spec):
    """pandas' ``describe()`` per measure: one row per column."""

    op: Literal["describe"]
    columns: Annotated[list[Name], Field(min_length=1, max_length=50)]
    statistics: Annotated[list[DescribeStatistic], Field(min_length=1)] = list(DESCRIBE_ALL)

    @model_validator(mode="after")
    def _unique(self) -> DescribeSpec:
        _distinct(list(self.columns), "columns")
        _distinct(list(self.statistics), "statistics")
        return self


class QuantilesSpec(_Spec):
    op: Literal["quantiles"]
    column: Name
    q: Annotated[list[Annotated[float, Field(gt=0, lt=1)]], Field(min_length=1, max_length=20)]
    by: Annotated[list[Name], Field(max_length=MAX_DIMENSIONS)] = []
    margins: bool = False

    @model_validator(mode="after")
    def _unique(self) -> QuantilesSpec:
        _distinct([f"{q:g}" for q in self.q], "q")
        _distinct(list(self.by), "by")
        return self


class HistogramSpec(_Spec):
    """``bins``: the edges (ascending, 2 to 201 of them), or a number of equal-width bins over the
    column's declared bounds. Never edges from the data: its own min and max would be disclosed."""

    op: Literal["histogram"]
    column: Name
    bins: Annotated[list[float], Field(min_length=2, max_length=MAX_BINS + 1)] | Annotated[int, Field(ge=1, le=MAX_BINS, strict=True)]

    @field_validator("bins", mode="after")
    @classmethod
    def _ascending(cls, value: list[float] | int) -> list[float] | int:
        if isinstance(value, list):
            if not all(math.isfinite(edge) for edge in value):
                raise ValueError("bin edges must be finite")
            if any(b <= a for a, b in pairwise(value)):
                raise ValueError("bin edges must be strictly ascending")
        return value


class CorrelationSpec(_Spec):
    op: Literal["correlation"]
    columns: Annotated[list[Name], Field(min_length=2, max_length=20)]

    @model_validator(mode="after")
    def _unique(self) -> CorrelationSpec:
        _distinct(list(self.columns), "columns")
        return self


class OlsSpec(_Spec):
    op: Literal["ols"]
    formula: Annotated[str, Field(min_length=3, max_length=500)]


class LogitSpec(_Spec):
    op: Literal["logit"]
    formula: Annotated[str, Field(min_length=3, max_length=500)]


StatsSpec = Annotated[
    CrosstabSpec | PivotSpec | DescribeSpec | QuantilesSpec | HistogramSpec | CorrelationSpec | OlsSpec | LogitSpec,
    Field(discriminator="op"),
]
_ADAPTER: TypeAdapter[StatsSpec] = TypeAdapter(StatsSpec)


def parse_spec(spec: Any) -> StatsSpec:
    """The validated spec, or ``ValidationFailed`` listing every problem (field and message, no input echo)."""
    try:
        return _ADAPTER.validate_python(spec)
    except ValidationError as error:
        found = problems(error, spec, whole="spec")
        first = found[0]
        raise ValidationFailed(f"invalid stats spec: {first['field']}: {first['problem']}", details={"problems": found}) from None
