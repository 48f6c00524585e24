"""The values the statistics stage hands on: the plan, the raw result, and the rules it enforces.

A refused spec raises ``PolicyViolation`` whose ``details`` are ``{"rule": <StatsRule>, "column":
"dataset.column" | None}``; a spec that is malformed raises ``ValidationFailed``. Messages name the
rule and the column, never a value from the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import pyarrow as pa

from core.errors import PolicyViolation
from core.schema import Scalar
from policies.model import Aggregate

UNITS_COLUMN = "__units_0"  # statistics ops read one table: one unit count per row


class StatsRule(StrEnum):
    """Every reason a statistics spec can be refused; the value is the ``rule`` the analyst sees."""

    DATASET_NOT_GRANTED = "dataset_not_granted"  # the dataset is not one of the grant's
    IDENTIFIER = "identifier"  # identifiers and the privacy-unit column are never analysed
    COLUMN_DENIED = "column_denied"  # deny (or join_key) columns are not used by statistics
    MEASURE_AS_DIMENSION = "measure_as_dimension"  # a measure is only aggregated, never grouped by
    DIMENSION_AS_MEASURE = "dimension_as_measure"  # a dimension is grouped, not summed or modelled
    NOT_NUMERIC = "not_numeric"  # aggregated or modelled columns must be numeric
    AGGREGATE_NOT_ALLOWED = "aggregate_not_allowed"  # the op needs an aggregate the policy does not list
    DATA_DERIVED_BINS = "data_derived_bins"  # histogram edges come from the spec or declared bounds only
    FUNCTION_NOT_ALLOWED = "function_not_allowed"  # formula functions outside the allowlist
    ENCRYPTED_COLUMN = "encrypted_column"  # paillier columns are aggregated by he jobs only
    SENSITIVE_KEY = "sensitive_key"  # a sensitive column groups a table only through its declared domain (or a histogram's bins)


def violation(rule: StatsRule, message: str, column: str | None = None) -> PolicyViolation:
    """The error for a broken rule; the message ends by naming the rule, as analysts see it."""
    return PolicyViolation(f"{message} (rule {rule.value})", details={"rule": rule.value, "column": column})


@dataclass(frozen=True)
class ModelPlan:
    """What a regression needs at run time; everything here was checked against the policy.

    ``groups`` are the sets of categorical (or coded) columns whose every level or cell must hold
    at least k privacy units; ``cells_sql`` returns one row per group, ``(__group, __smallest)``,
    the group's index and its smallest cell's unit count; the last group is ``()``, all units.
    """

    kind: str  # "ols" or "logit"
    formula: str  # the analyst's formula, as checked (patsy parses it deterministically again)
    columns: tuple[str, ...]  # the columns loaded for the fit
    load_sql: str  # complete cases of ``columns`` only: no privacy-unit column, no other column
    cells_sql: str
    groups: tuple[tuple[str, ...], ...]
    term_groups: tuple[tuple[str, int], ...]  # patsy term name -> index of its group in ``groups``


@dataclass(frozen=True)
class StatsPlan:
    """A statistics spec that passed validation, and what runs.

    ``outputs`` are the aggregate output columns of the result and their aggregate; ``dimensions``
    the columns that label each row. ``sql`` is the DuckDB query of a table op (``None`` for models,
    whose queries are in ``model``).
    """

    op: str
    dataset: str
    outputs: tuple[tuple[str, Aggregate], ...]
    dimensions: tuple[str, ...]
    margins: bool
    sql: str | None
    unit_columns: tuple[str, ...] = (UNITS_COLUMN,)
    model: ModelPlan | None = None
    # Per dimension its declared values (``None``: undeclared), for ``jobs.keys``; ``None`` altogether when
    # the rows are the spec's own (describe, histogram, correlation): every row is there whatever the data.
    key_domains: tuple[tuple[Scalar, ...] | None, ...] | None = None
    arguments: tuple[str | None, ...] = ()  # per output, the column it aggregates (None: a count of rows)


@dataclass(frozen=True)
class StatsResult:
    """The raw result: a long-format table WITH evidence columns (output control drops them).

    A model refused as a whole has ``refused`` set to the reason and an empty table. ``summary``
    holds a model's fit statistics, and is empty for table ops.
    """

    table: pa.Table
    outputs: tuple[tuple[str, Aggregate], ...]
    unit_columns: tuple[str, ...]
    dimensions: tuple[str, ...]
    refused: str | None = None
    summary: dict[str, float] = field(default_factory=dict)
    key_domains: tuple[tuple[Scalar, ...] | None, ...] | None = None  # as the plan's
    arguments: tuple[str | None, ...] = ()
