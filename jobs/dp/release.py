"""A DP job's answer: exact cells, noise by ``policies.dp`` (through ``jobs.dp``), and the release form.

Threshold suppression does not apply to DP outputs: the calibrated noise replaces it, and every cell
of the declared domains is released (with its noise scale and 95% error bound), including empty ones;
keys without a declared domain are released only where DP key selection chose them. A quantile's
bound is in ranks (rows), not in the value's units: see ``policies.dp.NoisyQuantile``. The same code
answers a dry run on mock rows, marked as such; it is charged nothing because nothing records it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from core.values import JobStatus
from jobs.dp.answer import DPAnswer, answer
from jobs.dp.plan import DPAggregate, DPPlan
from jobs.engine import Engine
from jobs.released import Released, rows_of
from jobs.stats.dp import DPStats, shape
from policies.budget import Delta, Epsilon, selection_delta
from policies.dp import NoisyQuantile, NoisyValue
from policies.model import Aggregate, Policy, ReleaseMode

RULE = "dp"
_EXPONENTIAL = "exponential mechanism over evenly spaced candidates in the bounds, per cell"
MECHANISMS: dict[Aggregate, str] = {  # how each output spends its share of the job's epsilon (policies.dp)
    Aggregate.COUNT: "discrete Laplace on the cells' counts",
    Aggregate.COUNT_DISTINCT: "discrete Laplace on the cells' distinct units, sensitivity the cells one unit can reach",
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
    released: Released


def run(
    plan: DPPlan,
    policy: Policy,
    epsilon: Epsilon,
    tables: Mapping[str, pa.Table],
    engine: Engine,
    interrupt: threading.Event | None = None,
    *,
    mock: bool = False,
) -> DPRelease:
    """A DP query's release (``QueryPlan.dp``); ``mock`` marks a dry run's answer on mock rows."""
    exact, noisy, delta = _noisy(plan, policy, epsilon, tables, engine, interrupt)
    keys = [key.name for key in plan.keys]
    return _release(noisy, plan.aggregates, keys, policy, (epsilon, delta), exact, {"mock": mock} if mock else {})


def run_stats(
    form: DPStats,
    policy: Policy,
    epsilon: Epsilon,
    tables: Mapping[str, pa.Table],
    engine: Engine,
    interrupt: threading.Event | None = None,
    *,
    mock: bool = False,
) -> DPRelease:
    """A DP statistics job's release, laid out as its op (``jobs.stats.dp``)."""
    exact, noisy, delta = _noisy(form.plan, policy, epsilon, {form.dataset: tables[form.dataset]}, engine, interrupt)
    extra: dict[str, Any] = {"op": form.op}
    if form.margins_omitted:
        extra["margins"] = "omitted: margins are not released on DP grants; summing the released noisy cells costs no budget"
    if mock:
        extra["mock"] = True
    return _release(shape(form, noisy), form.plan.aggregates, list(form.dimensions), policy, (epsilon, delta), exact, extra)


def _noisy(
    plan: DPPlan, policy: Policy, epsilon: Epsilon, tables: Mapping[str, pa.Table], engine: Engine, interrupt: threading.Event | None
) -> tuple[pa.Table, DPAnswer, Delta]:
    settings = policy.dp
    assert settings is not None, "a DP answer needs the policy's dp settings"
    delta = selection_delta(settings, epsilon) if plan.selects_keys else Delta(0.0)
    exact = engine.run(plan.sql, dict(tables), interrupt)
    return exact, answer(plan, exact, epsilon, settings.max_rows_per_unit, delta if plan.selects_keys else None), delta


def _release(
    noisy: DPAnswer,
    aggregates: Sequence[DPAggregate],
    keys: Sequence[str],
    policy: Policy,
    spent: tuple[Epsilon, Delta],
    exact: pa.Table,
    extra: dict[str, Any],
) -> DPRelease:
    """The release form; ``aggregates`` are the releases that shared the job's ε (describe lays several out per column)."""
    settings = policy.dp
    assert settings is not None
    summary = _summary(noisy, aggregates, spent, settings.max_rows_per_unit)
    summary["dp"] |= extra
    held = policy.release_mode is ReleaseMode.ALWAYS_REVIEW
    status = JobStatus.HELD if held else JobStatus.RELEASED
    reason = "the policy holds every output for review" if held else ""
    kinds = dict.fromkeys(keys, "group_key")
    columns = [
        {"name": n, "kind": kinds.get(n, "aggregate"), "type": str(noisy.table.schema.field(n).type)} for n in noisy.table.column_names
    ]
    notes = [
        {"row": row, "column": column, "status": "pass", "rule": RULE, "reason": _reason(value)}
        for column, values in noisy.errors.items()
        for row, value in enumerate(values)
    ]
    released: Released = {"columns": columns, "rows": rows_of(noisy.table), "notes": notes, "summary": summary}
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


def _summary(noisy: DPAnswer, aggregates: Sequence[DPAggregate], spent: tuple[Epsilon, Delta], max_rows: int) -> dict[str, Any]:
    epsilon, delta = spent
    each = noisy.epsilon_each.value
    split = f"sequential: the job's epsilon is split evenly over its {len(aggregates)} aggregate(s)"
    if noisy.selection is not None:
        split = f"{split} and its key selection ({len(aggregates) + 1} equal shares)"
    return {
        "status": "pass",
        "reason": "",
        "rows": noisy.table.num_rows,
        "suppressed": 0,
        "flagged": 0,
        "dp": {
            "epsilon": epsilon.value,
            "delta": delta.value,
            "epsilon_per_aggregate": each,
            "composition": split,
            "outputs": {a.name: {"epsilon": each, "mechanism": MECHANISMS[a.aggregate]} for a in aggregates},
            "key_selection": None if noisy.selection is None else noisy.selection.as_dict(),
            "max_rows_per_unit": max_rows,
            "suppression": "none: DP noise replaces threshold suppression; every cell of the declared domains is released",
            "errors": {c: [_error(v) for v in vs] for c, vs in noisy.errors.items()},
        },
    }
