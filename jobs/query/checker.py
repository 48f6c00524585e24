"""Stage four: the policy's column rules over every SELECT of a qualified query, scope by scope.

The statement is an aggregate query; a derived table in FROM/JOIN only passes columns of one
dataset through (optionally filtered), and its columns are checked where the outer query uses
them. After the column uses, each aggregate's argument is checked (``jobs.query.checks.arguments``).
Column uses are checked before the output shape, so that a refusal names the most specific rule
(``measure_outside_aggregate`` rather than ``row_level_output``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlglot import exp

from core.schema import DatasetSchema
from jobs.query.checks.arguments import check_argument
from jobs.query.checks.joins import check_join
from jobs.query.functions import is_aggregate
from jobs.query.keys import KeyPlan, plan_keys
from jobs.query.model import OutputColumn, QueryRule, violation
from jobs.query.outputs import check_order, classify_outputs, group_keys, is_output_ref
from jobs.query.resolve import ColumnRef, Source, resolve, sources_of
from jobs.query.uses import Occurrence, Place, check_use, effective_use, occurrences
from policies.evidence import NOT_ROUNDABLE
from policies.model import ColumnUse, Policy


@dataclass(frozen=True)
class _Scope:
    """The table references one SELECT sees, and the aliases of the queries around it."""

    policy: Policy
    schemas: Mapping[str, DatasetSchema]
    sources: Mapping[str, Source]
    outer: frozenset[str]

    def ref(self, column: exp.Column) -> ColumnRef:
        return resolve(column, self.sources, self.outer)

    def name(self, column: exp.Column) -> str:
        return self.ref(column).qualified

    def check(self, node: exp.Expr, place: Place) -> None:
        for occurrence in occurrences(node, place):
            check_use(occurrence, self.ref(occurrence.column), self.policy, self.schemas)

    def use_of(self, column: exp.Column) -> ColumnUse:
        return effective_use(self.policy, self.schemas, self.ref(column))

    def check_column(self, column: exp.Column, place: Place) -> ColumnRef:
        ref = self.ref(column)
        check_use(Occurrence(column, place, None), ref, self.policy, self.schemas)
        return ref


@dataclass(frozen=True)
class Checker:
    policy: Policy
    schemas: Mapping[str, DatasetSchema]

    def query(self, select: exp.Select, outer: frozenset[str] = frozenset()) -> tuple[OutputColumn, ...]:
        """An aggregate query (the statement or an IN subquery): joins, filters, group keys, outputs."""
        for source in _derived_tables(select):
            self.derived(source, outer)
        scope = _Scope(self.policy, self.schemas, sources_of(select, self.schemas), outer)
        _refuse_correlation(select, scope)
        aliases = list(scope.sources)
        for position, join in enumerate(select.args.get("joins") or [], start=1):
            check_join(join, aliases[position], aliases[:position], scope.check_column)
        self._where(select, scope)
        for key in group_keys(select):
            scope.check(key, Place.GROUP)
        names = {projection.alias_or_name for projection in select.expressions}
        for projection in select.expressions:
            scope.check(projection.unalias(), Place.GROUP)
        order = select.args.get("order")
        for ordered in order.expressions if order is not None else []:
            if not is_output_ref(ordered.this, names):
                scope.check(ordered.this, Place.GROUP)
        for projection in select.expressions:
            for call in (node for node in projection.walk() if is_aggregate(node)):
                check_argument(call, scope.use_of, scope.name)
        outputs = classify_outputs(select, scope.name)
        check_order(select, outputs, scope.name)
        self._check_rounding(select, outputs)
        return outputs

    def keys(self, select: exp.Select, outputs: tuple[OutputColumn, ...]) -> KeyPlan:
        """The statement's group keys: their declared values and order; a sensitive key must have declared values."""
        scope = _Scope(self.policy, self.schemas, sources_of(select, self.schemas), frozenset())
        return plan_keys(select, outputs, scope.ref, self.schemas)

    def _check_rounding(self, select: exp.Select, outputs: tuple[OutputColumn, ...]) -> None:
        """Under rounding every released number is rounded or derived from rounded counts and sums
        (``policies.output_control``); what cannot be is refused here, before anything runs.

        A median or quantile's position among the sorted values gives exact counts whatever its value;
        population spreads are refused only because output control derives the sample forms.
        """
        if not self.policy.disclosure.rounding:
            return
        if any(output.aggregate in NOT_ROUNDABLE for output in outputs):
            message = "this grant rounds its results: a median or quantile cannot be rounded (its position gives exact counts)"
            raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, message)
        if select.find(exp.StddevPop, exp.VariancePop) is not None:
            message = "this grant rounds its results: spreads are derived from rounded sums as STDDEV_SAMP or VAR_SAMP"
            raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, message)

    def derived(self, select: exp.Select, outer: frozenset[str]) -> None:
        """A derived table: bare columns of its one dataset, optionally filtered."""
        if not all(isinstance(projection.unalias(), exp.Column) for projection in select.expressions):
            raise violation(QueryRule.SUBQUERY, "a derived table selects bare columns (optionally renamed), no expressions")
        scope = _Scope(self.policy, self.schemas, sources_of(select, self.schemas), outer)
        _refuse_correlation(select, scope)
        for projection in select.expressions:
            column = projection.unalias()
            assert isinstance(column, exp.Column)
            ref = scope.ref(column)
            if ref.column != self.schemas[ref.dataset].privacy_unit:  # counted outside: COUNT(DISTINCT s.pid)
                scope.check_column(column, Place.DERIVED)
        self._where(select, scope)

    def _where(self, select: exp.Select, scope: _Scope) -> None:
        where = select.args.get("where")
        if where is None:
            return
        scope.check(where.this, Place.FILTER)


def _derived_tables(select: exp.Select) -> list[exp.Select]:
    from_ = select.args["from_"]
    items = [from_.this, *(join.this for join in select.args.get("joins") or [])]
    return [item.this for item in items if isinstance(item, exp.Subquery) and isinstance(item.this, exp.Select)]


def _refuse_correlation(select: exp.Select, scope: _Scope) -> None:
    """A subquery reads only its own tables: refuse a reference to an enclosing query's table first."""
    for column in select.find_all(exp.Column):
        if column.table in scope.outer and column.table not in scope.sources and column.find_ancestor(exp.Select) is select:
            raise violation(QueryRule.SUBQUERY, "correlated subqueries are not allowed: a subquery reads only its own tables")
