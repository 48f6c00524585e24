"""What a plan will cost, known before it runs: an upper bound on its answer's size, from metadata only.

One estimator serves submissions and dry runs. A table's groups are bounded per grouping set (every
subset of the dimensions with margins, the full set without) by the product of its dimensions'
distinct values and by the rows (a group holds at least one row); cells are groups times aggregate
outputs; the suppression programme has one variable per cell of a table with margins. What a
column's distinct values are is the caller's ``Levels``: ``declared_levels`` for real rows (the
declared domain or integer bounds, plus one for a missing value; otherwise as many as there are
rows), ``jobs.mock.mock_levels`` for mock rows. The rows a submission passes are the count the
catalogue shows, plus its rounding: the estimate, which the refusal names, then tells nothing the
catalogue does not.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from core.errors import TooExpensive
from core.schema import ColumnSpec, DatasetSchema
from core.values import ColumnRole, ColumnType
from jobs.he import HEPlan
from jobs.query import OutputKind, QueryPlan
from jobs.script import ScriptPlan
from jobs.stats import StatsPlan
from jobs.stats.cells import DIALECT
from jobs.stats.dp import DPStats
from policies.model import Aggregate, CostLimits

Plan = QueryPlan | StatsPlan | DPStats | HEPlan | ScriptPlan  # scripts and he jobs estimate nothing here
Levels = Callable[[ColumnSpec, int], int]  # how many distinct values ``rows`` rows can hold in a column
ADDITIVE = frozenset({Aggregate.COUNT, Aggregate.SUM})  # the outputs secondary suppression protects


@dataclass(frozen=True)
class Estimate:
    """Upper bounds on a plan's answer: rows (groups), cells, dimensions, cells of its suppression programme."""

    groups: int
    cells: int
    dimensions: int
    suppression_cells: int


NOTHING = Estimate(0, 0, 0, 0)


def declared_levels(spec: ColumnSpec, rows: int) -> int:
    """Distinct values real rows can hold: a declared domain or integer bounds (ingest enforces both),
    two for a boolean, one more for a missing value; any other column as many as there are rows."""
    if spec.role is ColumnRole.IDENTIFIER or spec.type is ColumnType.PAILLIER:
        return rows
    if spec.domain is not None:
        values = len(spec.domain)
    elif spec.type is ColumnType.INT and spec.bounds is not None:
        values = math.floor(spec.bounds.upper) - math.ceil(spec.bounds.lower) + 1
    elif spec.type is ColumnType.BOOL:
        values = 2
    else:
        return rows
    return min(values + 1, rows)


def estimate(plan: Plan, schemas: Mapping[str, DatasetSchema], rows: Mapping[str, int], levels: Levels, suppression: bool) -> Estimate:
    """Upper bounds on what ``plan`` computes over ``rows`` rows per dataset; ``suppression``: the policy protects margins.

    Models, he jobs and scripts are bounded by their own limits (degrees of freedom, entities per job, a script's
    time, memory and output caps) and
    estimate nothing here.
    """
    if isinstance(plan, StatsPlan):
        return NOTHING if plan.model is not None else _stats(plan, schemas[plan.dataset], rows[plan.dataset], levels, suppression)
    if isinstance(plan, DPStats):
        table_rows = rows[plan.dataset]
        # A DP table releases every combination of its keys' declared domains, present in the rows or not.
        found = [levels(spec, table_rows) for d in plan.dimensions if (spec := schemas[plan.dataset].column(d)) is not None]
        groups = math.prod(found)
        return Estimate(groups, groups, len(plan.dimensions), 0)
    if isinstance(plan, QueryPlan):
        return _query(plan, schemas, rows, levels)
    return NOTHING


def check(found: Estimate, limits: CostLimits) -> None:
    """Refuse (``TooExpensive``, 422) a plan whose estimate passes one of the policy's caps, naming it."""
    for name, value, cap in (
        ("max_dimensions", found.dimensions, limits.max_dimensions),
        ("max_cells", found.cells, limits.max_cells),
        ("max_suppression_cells", found.suppression_cells, limits.max_suppression_cells),
    ):
        if value > cap:
            what = name.removeprefix("max_").replace("_", " ")
            raise TooExpensive(
                f"the job could compute about {value} {what}, more than the grant's policy allows ({name} = {cap}); "
                "use fewer or coarser dimensions, fewer aggregates, or no margins",
                details={"limit": name, "estimate": value, "max": cap},
            )


def _stats(plan: StatsPlan, schema: DatasetSchema, rows: int, levels: Levels, suppression: bool) -> Estimate:
    """A table op: dimensions that are not columns (describe's variable, a histogram's bin edges) are bounded by the spec."""
    found = [levels(spec, rows) if (spec := schema.column(d)) is not None else 1 for d in plan.dimensions]
    sets = itertools.chain.from_iterable(itertools.combinations(found, r) for r in range(len(found) + 1)) if plan.margins else [found]
    groups = sum(min(math.prod(chosen), rows) if chosen else 1 for chosen in sets)
    protected = plan.margins and suppression and any(aggregate in ADDITIVE for _, aggregate in plan.outputs)
    return Estimate(groups, groups * max(len(plan.outputs), 1), len(plan.dimensions), groups if protected else 0)


def _query(plan: QueryPlan, schemas: Mapping[str, DatasetSchema], rows: Mapping[str, int], levels: Levels) -> Estimate:
    """GROUP BY keys, each one column or a function of one (``jobs.query.outputs``): at most that column's levels.

    A key whose column cannot be traced to a dataset counts as many values as the largest dataset
    has rows; a single table's groups are also at most its rows (a join can have more rows than
    either), unless the answer is DP, which has a row for every combination of the keys' domains.
    """
    select = sqlglot.parse_one(plan.sql, dialect=DIALECT)
    assert isinstance(select, exp.Select)
    group = select.args.get("group")
    keys = list(group.expressions) if group is not None else []
    most = max((rows[name] for name in plan.datasets), default=1)
    found = []
    for key in keys:
        column = key.find(exp.Column)
        source = _source(select, column) if column is not None else None
        spec = schemas[source[0]].column(source[1]) if source is not None and source[0] in schemas else None
        found.append(levels(spec, rows[source[0]]) if spec is not None and source is not None else most)
    groups = math.prod(found)
    if len(plan.datasets) == 1 and plan.dp is None:  # a DP answer has every combination of the keys' domains
        groups = min(groups, most)
    aggregates = sum(1 for output in plan.outputs if output.kind is OutputKind.AGGREGATE)
    return Estimate(groups, groups * max(aggregates, 1), len(keys), 0)


def _source(select: exp.Select, column: exp.Column) -> tuple[str, str] | None:
    """The (dataset, column) a qualified column reads, through derived tables; None when it is computed."""
    for source in [select.args.get("from_") or select.args.get("from"), *(select.args.get("joins") or [])]:
        node = source.this if source is not None else None
        if node is None or node.alias_or_name != column.table:
            continue
        if isinstance(node, exp.Table):
            return node.name, column.name
        inner = node.this if isinstance(node, exp.Subquery) else None
        if isinstance(inner, exp.Select):
            for projection in inner.expressions:
                if projection.alias_or_name == column.name and isinstance(projection.unalias(), exp.Column):
                    return _source(inner, projection.unalias())
        return None
    return None
