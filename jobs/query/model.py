"""The values the query stage hands on: the validated plan, its output columns, and the rules it enforces.

A refused query raises ``PolicyViolation`` whose ``details`` are ``{"rule": <QueryRule>, "column":
"dataset.column" | None}``; text that is not a usable query raises ``BadSql``. Messages name the rule
and the column, never a value from the data or a literal from the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from core.errors import BadRequest, PolicyViolation
from jobs.dp.plan import DPPlan
from policies.model import Aggregate

if TYPE_CHECKING:
    from jobs.query.keys import KeyPlan


class BadSql(BadRequest):
    """The text is empty, too long, does not parse, or is not a query at all."""

    code = "bad_sql"


class QueryRule(StrEnum):
    """Every reason a query can be refused; the value is the ``rule`` the analyst sees."""

    SINGLE_SELECT = "single_select"  # exactly one plain SELECT statement
    SUBQUERY = "subquery"  # only a filtering derived table or an aggregate IN (...) subquery
    TABLE_NOT_GRANTED = "table_not_granted"  # plain table names of the grant's datasets only
    SELECT_STAR = "select_star"  # no *, t.*, COLUMNS(...)
    ROW_LEVEL_OUTPUT = "row_level_output"  # every output is an aggregate or built from group keys
    RESERVED_NAME = "reserved_name"  # names starting with "__" belong to the sandbox; outputs are unique
    COLUMN_DENIED = "column_denied"  # a deny column is never referenced
    JOIN_KEY_ONLY_IN_JOIN = "join_key_only_in_join"  # join_key columns only in JOIN ... ON equalities
    MEASURE_OUTSIDE_AGGREGATE = "measure_outside_aggregate"  # measure columns only inside aggregates
    DIMENSION_AS_MEASURE = "dimension_as_measure"  # a dimension is grouped, filtered or counted, not summed
    UNKNOWN_COLUMN = "unknown_column"
    AMBIGUOUS_COLUMN = "ambiguous_column"
    AGGREGATE_NOT_ALLOWED = "aggregate_not_allowed"  # outside the policy, nested, misplaced, or not roundable under rounding
    WINDOW_FUNCTION = "window_function"
    FUNCTION_NOT_ALLOWED = "function_not_allowed"  # scalar functions and operators outside the allowlist
    JOIN_TYPE = "join_type"  # INNER JOIN ... ON only
    JOIN_CONDITION = "join_condition"  # ON is an AND of join_key equalities between two table references
    ENCRYPTED_COLUMN = "encrypted_column"  # paillier ciphertexts are aggregated by he jobs only, never in SQL
    # The result's numbers, shape and failure carry no secret (jobs.query.checks.arguments, jobs.query.outputs, jobs.query.safety):
    AGGREGATE_ARGUMENT = "aggregate_argument"  # a measure column or arithmetic of measures; no constants, branches, comparisons
    AGGREGATE_OUTPUT = "aggregate_output"  # an aggregate output is the bare aggregate call, nothing computed on it
    GROUP_KEY = "group_key"  # a key is one dimension column (or a function of one), and it is output
    SENSITIVE_KEY = "sensitive_key"  # a sensitive column is a key only through its declared domain or bins of its bounds
    HAVING = "having"  # no HAVING: which rows appear would depend on a suppressed value
    ORDER_BY = "order_by"  # ORDER BY output group keys only: a row's position would show a suppressed value
    LIMIT = "limit"  # no LIMIT/OFFSET: which rows are cut off depends on the data
    TYPE_MISMATCH = "type_mismatch"  # comparing text with numbers or dates casts row values, which can fail on a value


def violation(rule: QueryRule, message: str, column: str | None = None) -> PolicyViolation:
    """The error for a broken rule; the message ends by naming the rule, as analysts see it."""
    return PolicyViolation(f"{message} (rule {rule.value})", details={"rule": rule.value, "column": column})


class OutputKind(StrEnum):
    GROUP_KEY = "group_key"  # built only from GROUP BY keys (or a constant): labels a cell
    AGGREGATE = "aggregate"  # one allowed aggregate: the cell value that output control checks


@dataclass(frozen=True)
class OutputColumn:
    name: str  # output column name as the analyst will see it: the alias as written, a column as declared
    kind: OutputKind
    aggregate: Aggregate | None  # the aggregate of an AGGREGATE column, None for a group key
    argument: str | None = None  # the aggregate's argument as SQL (None for COUNT(*)): cells over one population


@dataclass(frozen=True)
class QueryPlan:
    """A query that passed validation, and the form of it that runs.

    ``executable_sql`` returns the same rows and columns as ``sql``, plus one column per table
    reference of the outer FROM/JOIN (``unit_columns``, in that order): the number of distinct
    privacy units behind each output row, which output control compares with its threshold.
    Planned with ``top_n``, it also returns the evidence columns of ``policies.evidence``
    (``evidence_columns``, after the unit counts); rows and their order are those of ``sql``.
    """

    sql: str  # the analyst's query, normalised: qualified, quoted, every output named (duckdb dialect)
    datasets: tuple[str, ...]  # dataset names used anywhere in the query, sorted
    outputs: tuple[OutputColumn, ...]
    group_keys: tuple[str, ...]  # output names of the GROUP_KEY columns
    executable_sql: str
    unit_columns: tuple[str, ...]  # "__units_0", "__units_1", ...
    evidence_columns: tuple[str, ...] = ()  # "__top_<c>", "__missing_<c>", ... in result order (policies.evidence)
    keys: KeyPlan | None = None  # the group keys' declared values and order (``jobs.query.keys``)
    dp: DPPlan | None = None  # on a DP grant, the noisy form that runs instead (``jobs.query.dp.plan_dp``)
