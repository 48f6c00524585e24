"""A DP query job's answer: exact cells over the keys' whole domains, noise by ``policies.dp``, and the release form.

Threshold suppression does not apply to DP outputs: the calibrated noise replaces it, and every cell
of the domain is released (with its noise scale and 95% error bound), including empty ones. A quantile's
bound is in ranks (rows), not in the value's units: see ``policies.dp.NoisyQuantile``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from core.schema import DatasetSchema
from core.values import JobStatus
from jobs.engine import Engine
from jobs.query import QueryPlan
from jobs.query.dp import DPAggregate, DPAnswer, answer, plan_dp
from policies.budget import Epsilon
from policies.dp import NoisyQuantile, NoisyValue
from policies.model import Aggregate, Policy, ReleaseMode
from sandbox import outputs

RULE = "dp"
_EXPONENTIAL = "exponential mechanism over evenly spaced candidates in the bounds, per cell"
MECHANISMS: dict[Aggregate, str] = {  # how each output spends its share of the job's epsilon (policies.dp)
    Aggregate.COUNT: "discrete Laplace on the cells' counts",
    Aggregate.SUM: "Laplace on the cells' sums",
    Aggregate.AVG: "Laplace on each cell's sum of (value - lower) and sum of (upper - value), one release of the whole share;"
    " the count and the mean are computed from the two",
    Aggregate.MEDIAN: _EXPONENTIAL,
    Aggregate.QUANTILE: _EXPONENTIAL,
}


@dataclass(frozen=True)
class DPRelease:
    status: JobStatus
    reason: str
    summary: dict[str, Any]
    raw: pa.Table  # the exact cells present in the data, for reviewers
    released: dict[str, Any]  # {columns, rows, notes, summary}


def run(
    plan: QueryPlan,
    policy: Policy,
    schemas: Mapping[str, DatasetSchema],
    epsilon: Epsilon,
    tables: Mapping[str, pa.Table],
    engine: Engine,
    interrupt: threading.Event | None = None,
    unique_units: frozenset[str] = frozenset(),
) -> DPRelease:
    settings = policy.dp
    assert settings is not None, "a DP answer needs the policy's dp settings"
    dp_plan = plan_dp(plan, schemas, settings.max_rows_per_unit, unique_units)
    exact = engine.run(dp_plan.sql, tables, interrupt)
    noisy = answer(dp_plan, exact, epsilon, settings.max_rows_per_unit)
    summary = _summary(noisy, epsilon, settings.max_rows_per_unit, dp_plan.aggregates)
    held = policy.release_mode is ReleaseMode.ALWAYS_REVIEW
    status = JobStatus.HELD if held else JobStatus.RELEASED
    reason = "the policy holds every output for review" if held else ""
    kinds = dict.fromkeys((name for name, _, _ in dp_plan.keys), "group_key")
    columns = [
        {"name": n, "kind": kinds.get(n, "aggregate"), "type": str(noisy.table.schema.field(n).type)} for n in noisy.table.column_names
    ]
    notes = [
        {
            "row": row,
            "column": column,
            "status": "pass",
            "rule": RULE,
            "reason": _reason(value),
        }
        for column, values in noisy.errors.items()
        for row, value in enumerate(values)
    ]
    released = {"columns": columns, "rows": outputs.rows_of(noisy.table), "notes": notes, "summary": summary}
    return DPRelease(status, reason, summary, exact, released)


def _reason(value: NoisyValue | NoisyQuantile) -> str:
    if isinstance(value, NoisyQuantile):
        return (
            f"exponential mechanism, noise scale {value.scale:.6g} on the rank score; with 95% probability the released"
            f" candidate's rank error is within {value.rank_bound95:.6g} rows of the best candidate's"
        )
    return f"noise scale {value.scale:.6g}; |error| <= {value.bound95:.6g} with 95% probability"


def _error(value: NoisyValue | NoisyQuantile) -> dict[str, float]:
    if isinstance(value, NoisyQuantile):
        return {"scale": value.scale, "rank_bound95": value.rank_bound95}
    return {"scale": value.scale, "bound95": value.bound95}


def _summary(noisy: DPAnswer, epsilon: Epsilon, max_rows: int, plan: tuple[DPAggregate, ...]) -> dict[str, Any]:
    aggregates = list(noisy.errors)
    each = noisy.epsilon_each.value
    return {
        "status": "pass",
        "reason": "",
        "rows": noisy.table.num_rows,
        "suppressed": 0,
        "flagged": 0,
        "dp": {
            "epsilon": epsilon.value,
            "delta": 0.0,
            "epsilon_per_aggregate": each,
            "composition": f"sequential: the job's epsilon is split evenly over its {len(aggregates)} aggregate(s)",
            "outputs": {a.name: {"epsilon": each, "mechanism": MECHANISMS[a.aggregate]} for a in plan},
            "max_rows_per_unit": max_rows,
            "suppression": "none: DP noise replaces threshold suppression; every cell of the declared domains is released",
            "errors": {c: [_error(v) for v in vs] for c, vs in noisy.errors.items()},
        },
    }
