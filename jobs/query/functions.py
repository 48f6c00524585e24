"""The function allowlist: which operators, scalar functions and aggregates a query may use.

Classes are matched exactly (``type(node)``), never by ``isinstance``: sqlglot subclasses can mean a
different function (``ApproxQuantile`` is a ``Quantile``). Each allowed class also lists the arguments
it may carry, so that e.g. DuckDB's ``MIN(x, 3)`` (the three smallest values, as a list) is refused.
Anything not listed is refused: file, network and system functions never reach the engine.
"""

from __future__ import annotations

from sqlglot import exp

from jobs.query.model import QueryRule, violation
from jobs.query.structure import set_args
from policies.model import Aggregate

_SIMPLE_AGGREGATES: dict[type[exp.Expr], Aggregate] = {
    exp.Sum: Aggregate.SUM,
    exp.Avg: Aggregate.AVG,
    exp.Min: Aggregate.MIN,
    exp.Max: Aggregate.MAX,
    exp.Median: Aggregate.MEDIAN,
    exp.Quantile: Aggregate.QUANTILE,  # QUANTILE(x, q)
    exp.PercentileCont: Aggregate.QUANTILE,  # QUANTILE_CONT, PERCENTILE_CONT ... WITHIN GROUP
    exp.PercentileDisc: Aggregate.QUANTILE,
    exp.Stddev: Aggregate.STDDEV,
    exp.StddevSamp: Aggregate.STDDEV,
    exp.StddevPop: Aggregate.STDDEV,
    exp.Variance: Aggregate.VARIANCE,  # VARIANCE, VAR_SAMP
    exp.VariancePop: Aggregate.VARIANCE,
}
_QUANTILE_ARG: dict[type[exp.Expr], str] = {exp.Quantile: "quantile", exp.PercentileCont: "expression", exp.PercentileDisc: "expression"}

# DuckDB aggregates that sqlglot parses as anonymous functions: named so the refusal says "aggregate".
# fmt: off
_ANONYMOUS_AGGREGATES = frozenset({
    "HISTOGRAM", "LIST", "STRING_AGG", "MODE", "ARG_MAX", "ARG_MIN", "MAX_BY", "MIN_BY", "FIRST", "LAST",
    "ANY_VALUE", "ARBITRARY", "BIT_AND", "BIT_OR", "BIT_XOR", "BOOL_AND", "BOOL_OR", "ENTROPY", "KURTOSIS",
    "KURTOSIS_POP", "SKEWNESS", "PRODUCT", "FSUM", "FAVG", "SUMKAHAN", "KAHAN_SUM", "MAD", "RESERVOIR_QUANTILE",
    "APPROX_QUANTILE", "HISTOGRAM_EXACT", "BITSTRING_AGG", "GEOMEAN", "GEOMETRIC_MEAN", "WEIGHTED_AVG", "WAVG",
    "CORR", "COVAR_POP", "COVAR_SAMP", "REGR_SLOPE", "REGR_INTERCEPT", "REGR_R2", "REGR_COUNT", "REGR_AVGX",
    "REGR_AVGY", "REGR_SXX", "REGR_SYY", "REGR_SXY", "SEM",
})
# fmt: on

_BINARY = frozenset({"this", "expression"})
_UNARY = frozenset({"this"})
_SCALARS: dict[type[exp.Expr], frozenset[str]] = {
    exp.Literal: frozenset({"this", "is_string"}),
    exp.Boolean: _UNARY,
    exp.Null: frozenset(),
    exp.Paren: _UNARY,
    exp.Neg: _UNARY,
    **dict.fromkeys((exp.Add, exp.Sub, exp.Mul), _BINARY),  # % and // raise on a zero divisor: not allowed
    exp.Div: frozenset({"this", "expression", "typed", "safe"}),
    **dict.fromkeys((exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.And, exp.Or, exp.Is, exp.Nullif), _BINARY),
    exp.Not: _UNARY,
    exp.Between: frozenset({"this", "low", "high"}),
    exp.In: frozenset({"this", "expressions", "query"}),
    exp.Case: frozenset({"this", "ifs", "default"}),
    exp.If: frozenset({"this", "true", "false"}),
    exp.Cast: frozenset({"this", "to", "safe"}),
    exp.TryCast: frozenset({"this", "to", "safe"}),
    exp.DataType: frozenset({"this", "expressions"}),
    exp.DataTypeParam: _UNARY,
    **dict.fromkeys((exp.Floor, exp.Ceil, exp.Abs, exp.Lower, exp.Upper, exp.Year, exp.Month), _UNARY),
    exp.Round: frozenset({"this", "decimals"}),
    **dict.fromkeys((exp.Least, exp.Greatest), frozenset({"this", "expressions", "ignore_nulls"})),
    exp.Coalesce: frozenset({"this", "expressions"}),
    exp.Extract: _BINARY,
    exp.Var: _UNARY,  # the unit of EXTRACT(YEAR FROM d)
}
# Clauses and names, checked by the structure stage; their expressions are checked here.
_STRUCTURAL = (exp.Select, exp.From, exp.Join, exp.Table, exp.TableAlias, exp.Subquery, exp.Where, exp.Group, exp.Having,
               exp.Order, exp.Ordered, exp.Limit, exp.Offset, exp.Alias, exp.Identifier, exp.Column, exp.Star)  # fmt: skip
# Integers, FLOAT/DOUBLE, text, DATE. Not DECIMAL: a fixed-width value that DuckDB unifies with an
# integer (in a comparison, COALESCE, CASE...) is cast to the decimal's width, which raises on a large
# value (jobs.query.safety).
_CAST_TYPES = frozenset(
    (exp.DataType.INTEGER_TYPES - {exp.DataType.Type.BIT})
    | {exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE}
    | exp.DataType.TEXT_TYPES
    | {exp.DataType.Type.DATE}
)
_LITERALS = (exp.Literal, exp.Null, exp.Boolean)


def is_aggregate(node: exp.Expr) -> bool:
    """Any aggregate function, allowed or not."""
    return isinstance(node, exp.AggFunc) or (isinstance(node, exp.Anonymous) and node.name.upper() in _ANONYMOUS_AGGREGATES)


def aggregate_of(node: exp.Expr) -> Aggregate | None:
    """The policy aggregate an aggregate node computes, or None if it is not one the sandbox knows."""
    if type(node) is exp.Count:
        return Aggregate.COUNT_DISTINCT if isinstance(node.this, exp.Distinct) else Aggregate.COUNT
    return _SIMPLE_AGGREGATES.get(type(node))


_SHOWN: dict[type[exp.Expr], str] = {
    exp.DPipe: "||",
    exp.Placeholder: "a query parameter",
    exp.Parameter: "a query parameter",
    exp.Rand: "RANDOM",
    exp.Dot: "field access (a.b.c)",
}


def name_of(node: exp.Expr) -> str:
    """How a refusal names a function or operator: by its SQL name, never by its arguments."""
    if type(node) in _SHOWN:
        return _SHOWN[type(node)]
    if isinstance(node, exp.Anonymous):
        return node.name.upper()
    if isinstance(node, exp.Func):
        return node.sql_name()
    return node.key.upper()


def normalise_functions(root: exp.Select) -> None:
    """Rewrite synonyms sqlglot keeps apart into the allowed forms: MEAN(x), PERCENTILE_*(q) WITHIN GROUP (ORDER BY x)."""
    for anonymous in list(root.find_all(exp.Anonymous)):
        if anonymous.name.upper() == "MEAN" and len(anonymous.expressions) == 1:
            anonymous.replace(exp.Avg(this=anonymous.expressions[0]))
    for within in list(root.find_all(exp.WithinGroup)):
        function, order = within.this, within.expression
        if type(function) not in (exp.PercentileCont, exp.PercentileDisc) or function.args.get("expression") is not None:
            continue
        if isinstance(order, exp.Order) and len(order.expressions) == 1 and set_args(order.expressions[0]) <= {"this", "nulls_first"}:
            within.replace(type(function)(this=order.expressions[0].this, expression=function.this))


def check_functions(root: exp.Select, allowed: frozenset[Aggregate]) -> None:
    """Refuse every operator, function or aggregate not on the allowlist, or used with arguments it does not allow."""
    for node in root.walk():
        if isinstance(node, _STRUCTURAL):
            continue
        if isinstance(node, exp.IgnoreNulls | exp.RespectNulls) and is_aggregate(node.this):
            _check_aggregate(node.this, allowed)  # refuses ANY_VALUE, FIRST, ... with their own name
            raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, "IGNORE NULLS and RESPECT NULLS are not allowed")
        if is_aggregate(node):
            _check_aggregate(node, allowed)
        elif type(node) is exp.Distinct:
            _check_distinct(node)
        else:
            _check_scalar(node)


def _check_scalar(node: exp.Expr) -> None:
    keys = _SCALARS.get(type(node))
    if keys is None:
        raise violation(QueryRule.FUNCTION_NOT_ALLOWED, f"{name_of(node)} is not an allowed function or operator")
    if set_args(node) - keys:
        raise violation(QueryRule.FUNCTION_NOT_ALLOWED, f"{name_of(node)} is not allowed in this form")
    if isinstance(node, exp.In) and node.args.get("query") is None and not all(_is_literal(e) for e in node.expressions):
        raise violation(QueryRule.FUNCTION_NOT_ALLOWED, "IN takes a list of literals or a subquery")
    if isinstance(node, exp.Cast) and (not isinstance(node.to, exp.DataType) or node.to.this not in _CAST_TYPES):
        raise violation(QueryRule.FUNCTION_NOT_ALLOWED, "CAST is allowed to integer, FLOAT, DOUBLE, text and DATE types only (not DECIMAL)")
    if isinstance(node, exp.Round) and node.args.get("decimals") is not None and not node.args["decimals"].is_int:
        raise violation(QueryRule.FUNCTION_NOT_ALLOWED, "ROUND takes a whole number of decimals")
    if isinstance(node, exp.Var) and not (isinstance(node.parent, exp.Extract) and node.arg_key == "this"):
        raise violation(QueryRule.FUNCTION_NOT_ALLOWED, "unknown name in an expression")
    if isinstance(node, exp.DataTypeParam) and not _is_literal(node.this):
        raise violation(QueryRule.FUNCTION_NOT_ALLOWED, "type parameters must be literals")


def _check_aggregate(node: exp.Expr, allowed: frozenset[Aggregate]) -> None:
    kind = aggregate_of(node)
    if kind is None:
        raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, f"{name_of(node)} is not an allowed aggregate: it can output row values")
    if kind not in allowed:
        raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, f"the {kind.value} aggregate is not allowed by this grant's policy")
    if _inside_aggregate(node):
        raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, "nested aggregates are not allowed")
    keys = frozenset({"this", "big_int"}) if type(node) is exp.Count else frozenset({"this", _QUANTILE_ARG.get(type(node), "this")})
    if set_args(node) - keys:
        raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, f"{name_of(node)} is allowed with one argument only")
    argument = node.args.get(_QUANTILE_ARG.get(type(node), ""))
    if type(node) in _QUANTILE_ARG and not (argument is not None and argument.is_number and 0 <= float(argument.to_py()) <= 1):
        raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, "a quantile takes one literal fraction between 0 and 1")


def _check_distinct(node: exp.Distinct) -> None:
    if not (isinstance(node.parent, exp.Count) and set_args(node) == {"expressions"} and len(node.expressions) == 1):
        raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, "DISTINCT is allowed only as COUNT(DISTINCT one_column_or_expression)")


def _inside_aggregate(node: exp.Expr) -> bool:
    parent = node.parent
    while parent is not None and not isinstance(parent, exp.Select):
        if is_aggregate(parent):
            return True
        parent = parent.parent
    return False


def _is_literal(node: exp.Expr) -> bool:
    return isinstance(node, _LITERALS) or (isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal))
