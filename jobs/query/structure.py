"""Stage two: the shape of the statement, checked on the parsed tree before any column is resolved.

Deny by default: every clause, source and join form is refused unless listed here. What passes is a
tree of plain SELECTs over granted dataset names, where a nested SELECT is only a derived table in
FROM/JOIN that filters one dataset's columns (no aggregate, GROUP BY, HAVING, ORDER BY or LIMIT).

Every aggregate anywhere in a query is a release: an aggregate, a HAVING or a LIMIT inside a
subquery (``x IN (SELECT ... GROUP BY ... HAVING SUM(income) > t)``) decides what the outer query
counts, so one person's value could decide whether a large released count appears. Such subqueries
are refused, as are HAVING (which rows appear would depend on an aggregate that may be suppressed)
and LIMIT/OFFSET (which rows are cut off depends on the data) in the statement itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from sqlglot import exp

from core.names import invisible_character, name_problem
from core.schema import DatasetSchema
from jobs.query.model import QueryRule, violation

RESERVED_PREFIX = "__"  # the sandbox's own columns (__units_0, __pu_0) use it


class Role(StrEnum):
    ROOT = "root"  # the statement itself: an aggregate query
    DERIVED = "derived"  # FROM (SELECT ...): columns of one dataset, optionally filtered


_QUERY_CLAUSES = frozenset({"expressions", "from_", "joins", "where", "group", "order"})
_REFUSED_IN_DERIVED = _QUERY_CLAUSES | {"having", "limit", "offset"}  # refused with the derived table's own reason
_DERIVED_CLAUSES = frozenset({"expressions", "from_", "where"})
_ORDERED = frozenset({"this", "desc", "nulls_first"})
_GROUPINGS = (exp.Rollup, exp.Cube, exp.GroupingSets)


def set_args(node: exp.Expr) -> set[str]:
    """The argument keys a node actually uses (flags that are off and empty lists do not count)."""
    return {key for key, value in node.args.items() if value is not None and value is not False and value != []}


def check_structure(root: exp.Select, schemas: Mapping[str, DatasetSchema]) -> None:
    """Refuse anything but plain SELECTs over granted tables, nested only where a role allows it."""
    for node in root.walk():
        _check_node(node)
        if isinstance(node, exp.Select):
            role = Role.ROOT if node is root else role_of(node)
            _check_clauses(node, role)
            _check_sources(node, role, schemas)


def role_of(select: exp.Select) -> Role:
    """Where a nested SELECT sits decides what it may be; anywhere else it is refused."""
    holder = select.parent
    if isinstance(holder, exp.Subquery):
        place = holder.parent
        if isinstance(place, exp.From | exp.Join) and holder.arg_key == "this":
            return Role.DERIVED
    raise violation(
        QueryRule.SUBQUERY,
        "a nested SELECT may only be a derived table in FROM/JOIN; x IN (SELECT ...), scalar subqueries and "
        "subqueries in SELECT, ON or ORDER BY are not allowed: every aggregate anywhere in a query is a release",
    )


def _check_node(node: exp.Expr) -> None:
    if isinstance(node, exp.Window):
        raise violation(QueryRule.WINDOW_FUNCTION, "window functions (OVER ...) are not allowed: they return one value per row")
    if isinstance(node, exp.Star) and not (isinstance(node.parent, exp.Count) and node.arg_key == "this"):
        raise violation(QueryRule.SELECT_STAR, "* is not allowed (except in COUNT(*)): name the columns")
    if isinstance(node, exp.Columns):
        raise violation(QueryRule.SELECT_STAR, "COLUMNS(...) is not allowed: name the columns")
    if isinstance(node, exp.SetOperation):
        raise violation(QueryRule.SINGLE_SELECT, "UNION, INTERSECT and EXCEPT are not allowed")
    if isinstance(node, exp.SubqueryPredicate):
        raise violation(QueryRule.SUBQUERY, "EXISTS, ANY and ALL subqueries are not allowed: use x IN (SELECT ... GROUP BY ...)")
    if isinstance(node, exp.Lateral):
        raise violation(QueryRule.SUBQUERY, "LATERAL is not allowed")
    if isinstance(node, exp.Table) and not (isinstance(node.parent, exp.From | exp.Join) and node.arg_key == "this"):
        raise violation(QueryRule.TABLE_NOT_GRANTED, "tables are read in FROM and JOIN only")
    if isinstance(node, exp.Alias | exp.TableAlias):
        name = node.alias if isinstance(node, exp.Alias) else node.name
        if name.startswith(RESERVED_PREFIX):
            raise violation(QueryRule.RESERVED_NAME, f"names starting with {RESERVED_PREFIX} are reserved for the sandbox")
        hidden = invisible_character(name)
        if hidden:  # a released column name is shown and logged as it is
            raise violation(QueryRule.RESERVED_NAME, f"an alias {hidden}")


def _check_clauses(select: exp.Select, role: Role) -> None:
    used = set_args(select)
    if "with_" in used:
        raise violation(QueryRule.SUBQUERY, "WITH (common table expressions) is not allowed: use a subquery in FROM")
    if "distinct" in used:
        if role is Role.DERIVED:
            raise violation(QueryRule.SUBQUERY, "a derived table cannot be SELECT DISTINCT")
        raise violation(QueryRule.ROW_LEVEL_OUTPUT, "SELECT DISTINCT lists row values: use GROUP BY with an aggregate such as COUNT(*)")
    if used & {"windows", "qualify"}:
        raise violation(QueryRule.WINDOW_FUNCTION, "WINDOW and QUALIFY are not allowed")
    if "laterals" in used:
        raise violation(QueryRule.SUBQUERY, "LATERAL is not allowed")
    if role is Role.ROOT and "having" in used:
        raise violation(QueryRule.HAVING, "HAVING is not allowed: filter dimensions in WHERE; output control decides which cells show")
    if role is Role.ROOT and used & {"limit", "offset"}:
        raise violation(QueryRule.LIMIT, "LIMIT and OFFSET are not allowed: which rows are cut off would depend on the data")
    allowed = _DERIVED_CLAUSES if role is Role.DERIVED else _QUERY_CLAUSES
    extra = sorted(used - allowed)
    if extra and role is Role.DERIVED and set(extra) <= _REFUSED_IN_DERIVED:
        raise violation(QueryRule.SUBQUERY, "a derived table may only select columns of one dataset and filter them with WHERE")
    if extra:
        clauses = ", ".join(key.rstrip("_").upper() for key in extra)
        raise violation(QueryRule.SINGLE_SELECT, f"only a plain SELECT is allowed; not supported here: {clauses}")
    if "from_" not in used:
        raise violation(QueryRule.TABLE_NOT_GRANTED, "the query must read FROM a dataset of the grant")
    _check_modifiers(select)


def _check_modifiers(select: exp.Select) -> None:
    group = select.args.get("group")
    if group is not None and (set_args(group) - {"expressions"} or any(isinstance(key, _GROUPINGS) for key in group.expressions)):
        raise violation(QueryRule.SINGLE_SELECT, "only a plain GROUP BY list is allowed (no ROLLUP, CUBE, GROUPING SETS or ALL)")
    order = select.args.get("order")
    if order is not None and (set_args(order) - {"expressions"} or any(set_args(o) - _ORDERED for o in order.expressions)):
        raise violation(QueryRule.SINGLE_SELECT, "only a plain ORDER BY list is allowed")
    if order is not None and any(isinstance(ordered.this, exp.Var) for ordered in order.expressions):
        raise violation(QueryRule.SINGLE_SELECT, "ORDER BY ALL is not supported: name the outputs to sort by")


def _check_sources(select: exp.Select, role: Role, schemas: Mapping[str, DatasetSchema]) -> None:
    from_ = select.args.get("from_")
    if from_ is None:
        return
    joins: list[exp.Join] = select.args.get("joins") or []
    if role is Role.DERIVED and joins:
        raise violation(QueryRule.SUBQUERY, "a derived table reads one dataset, without joins")
    for source in [from_.this, *(join.this for join in joins)]:
        _check_source(source, role, schemas)
    for join in joins:
        _check_join_type(join)


def _check_source(source: exp.Expr, role: Role, schemas: Mapping[str, DatasetSchema]) -> None:
    if isinstance(source, exp.Table):
        _check_table(source, schemas)
    elif isinstance(source, exp.Subquery):
        alias = source.args.get("alias")
        if role is Role.DERIVED or set_args(source) - {"this", "alias"} or not isinstance(source.this, exp.Select):
            raise violation(QueryRule.SUBQUERY, "a derived table is one plain SELECT reading one dataset directly")
        if alias is not None and alias.args.get("columns"):
            raise violation(QueryRule.SUBQUERY, "a derived table alias cannot rename columns: alias them inside the SELECT")
    elif isinstance(source, exp.Lateral):
        raise violation(QueryRule.SUBQUERY, "LATERAL is not allowed")
    else:
        raise violation(QueryRule.TABLE_NOT_GRANTED, "only datasets of the grant can be read: no VALUES, UNNEST or table functions")


def _check_table(table: exp.Table, schemas: Mapping[str, DatasetSchema]) -> None:
    used = set_args(table)
    if used & {"db", "catalog"}:
        raise violation(QueryRule.TABLE_NOT_GRANTED, "schema- or catalog-qualified table names are not allowed: use the dataset name")
    if not isinstance(table.this, exp.Identifier):
        raise violation(QueryRule.TABLE_NOT_GRANTED, "table functions (read_csv, read_parquet, glob, ...) are not allowed: name a dataset")
    alias = table.args.get("alias")
    if used - {"this", "alias"} or (alias is not None and alias.args.get("columns")):
        raise violation(QueryRule.TABLE_NOT_GRANTED, "a dataset is read as a plain name, optionally with an alias")
    if table.name not in schemas:
        # FROM 'file.csv' parses as a quoted name: one that could be a path is not repeated
        plain = name_problem(table.name) is None and not set(table.name) & set("./\\:")
        shown = f"table {table.name}" if plain else "a file path or unknown table"
        raise violation(QueryRule.TABLE_NOT_GRANTED, f"{shown} is not a dataset of this grant")


def _check_join_type(join: exp.Join) -> None:
    words = [str(join.args.get(key) or "") for key in ("method", "side", "kind")]
    if any(words[:2]) or words[2].upper() not in ("", "INNER"):
        kind = " ".join(word for word in words if word).upper()
        raise violation(QueryRule.JOIN_TYPE, f"{kind} JOIN is not allowed: only [INNER] JOIN ... ON")
    if join.args.get("using"):
        raise violation(QueryRule.JOIN_TYPE, "JOIN ... USING is not allowed: write ON a.key = b.key")
    if not join.args.get("on"):
        raise violation(QueryRule.JOIN_TYPE, "comma and cross joins are not allowed: use JOIN ... ON")
    if set_args(join) - {"this", "on", "kind"}:
        raise violation(QueryRule.JOIN_TYPE, "only [INNER] JOIN ... ON is allowed")
