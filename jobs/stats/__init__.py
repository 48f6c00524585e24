"""Statistics jobs: crosstab, pivot, describe, quantiles, histogram, correlation, OLS and logit.

``plan(spec, policy, schemas)`` validates a spec (``ValidationFailed``) and checks it against the
grant's policy (``PolicyViolation``, ``details["rule"]`` a ``StatsRule`` value), returning a
``StatsPlan``; ``run(plan, tables, engine, settings)`` computes it in DuckDB over the Arrow tables
and returns a ``StatsResult``: a long-format table with the evidence columns of
``policies.evidence`` for output control, or, for a model refused as a whole, the reason.
Whether the grant allows the ``stats`` job kind at all is the caller's check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from core.errors import InternalError
from core.schema import DatasetSchema
from jobs.engine import Engine
from jobs.stats.columns import Scope
from jobs.stats.distribution import plan_correlation, plan_histogram
from jobs.stats.models import plan_model, run_model
from jobs.stats.specs import (
    CorrelationSpec,
    CrosstabSpec,
    DescribeSpec,
    HistogramSpec,
    LogitSpec,
    OlsSpec,
    PivotSpec,
    QuantilesSpec,
    StatsSpec,
    parse_spec,
)
from jobs.stats.tables import plan_crosstab, plan_describe, plan_pivot, plan_quantiles
from jobs.stats.values import ModelPlan, StatsPlan, StatsResult, StatsRule
from policies.model import Disclosure, Policy

__all__ = ["ModelPlan", "StatsPlan", "StatsResult", "StatsRule", "StatsSpec", "parse_spec", "plan", "run"]


_PLANNERS: dict[type[Any], Callable[[Any, Scope], StatsPlan]] = {
    CrosstabSpec: plan_crosstab,
    PivotSpec: plan_pivot,
    DescribeSpec: plan_describe,
    QuantilesSpec: plan_quantiles,
    HistogramSpec: plan_histogram,
    CorrelationSpec: plan_correlation,
    OlsSpec: plan_model,
    LogitSpec: plan_model,
}


def plan(
    spec: Mapping[str, Any], policy: Policy, schemas: Mapping[str, DatasetSchema], unique_units: frozenset[str] = frozenset()
) -> StatsPlan:
    """Validate ``spec`` and check it against ``policy`` over the grant's datasets (``schemas`` by name).

    ``unique_units`` names datasets whose every row is a distinct privacy unit; it only lets the SQL
    count rows instead of distinct units, with the same numbers.
    """
    parsed = parse_spec(spec)
    planner = _PLANNERS.get(type(parsed))
    if planner is None:
        raise InternalError(f"no planner for op {parsed.op}")
    return planner(parsed, Scope.of(parsed.dataset, policy, schemas, unique_units))


def run(plan: StatsPlan, tables: Mapping[str, pa.Table], engine: Engine, settings: Disclosure) -> StatsResult:
    """Compute a plan over the in-memory tables; only the plan's dataset is handed to the engine."""
    if plan.dataset not in tables:
        raise InternalError(f"dataset {plan.dataset} was planned but not loaded")
    inputs = {plan.dataset: tables[plan.dataset]}
    if plan.model is not None:
        return run_model(plan, inputs, engine, settings)
    if plan.sql is None:
        raise InternalError("a table op without SQL")
    table = engine.run(plan.sql, inputs)
    return StatsResult(
        table, plan.outputs, plan.unit_columns, plan.dimensions, None, {}, key_domains=plan.key_domains, arguments=plan.arguments
    )
