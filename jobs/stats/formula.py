"""Model formulas: parsed as patsy (statsmodels' formula engine) parses them, then allowlisted.

patsy evaluates every factor of a formula as Python code, so a formula is code. Only this reaches
it, checked on the factor's syntax tree before anything runs:

- formula operators ``~`` (two-sided only), ``+``, ``-``, ``:``, ``*`` and the intercept literals
  ``0`` / ``1``; no ``/``, ``**`` or other numbers at formula level;
- ``C(column)``: a categorical term (one bare column, no contrast arguments);
- a bare column: numeric if its declared type is numeric, else categorical (as patsy treats it);
- ``I(...)``, ``np.log``, ``np.log1p``, ``np.sqrt``, ``np.exp`` around arithmetic of columns and
  numeric literals (``+ - * /``, unary minus, ``**`` with a literal exponent of at most 10).

Anything else (other functions, attributes, subscripts, strings, comparisons) is refused as
``function_not_allowed`` before statsmodels sees the formula.

A sensitive column enters a model only as itself: ``I(...)`` and ``np.*`` around a sensitive column
are refused. A transform can be a smooth dummy of one value, ``I(1/(1+np.exp(-0.01*(income-400000))))``
is about 1 exactly where income exceeds 400000, so its coefficient or mean says who lies where,
and no check of a fit's leverage exists yet to catch it. Transforms of other columns stay allowed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import statsmodels  # type: ignore[import-untyped]
import statsmodels.formula  # type: ignore[import-untyped]
from patsy import EvalEnvironment, PatsyError  # type: ignore[import-untyped]
from patsy.desc import ModelDesc  # type: ignore[import-untyped]
from patsy.parse_formula import parse_formula  # type: ignore[import-untyped]

from core.errors import ValidationFailed
from core.schema import DatasetSchema
from core.values import ColumnRole
from jobs.stats.values import StatsRule, violation

NUMPY_FUNCTIONS = frozenset({"log", "log1p", "sqrt", "exp"})
RESERVED_NAMES = frozenset({"np", "C", "I"})  # a column of one of these names would shadow the function
_FORMULA_NODES = frozenset({"~", "+", "-", ":", "*", "PYTHON_EXPR", "ONE", "ZERO"})
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
MAX_POWER = 10  # a literal exponent; 2 ** 99999999 would be evaluated by Python at full precision
MAX_FACTOR_NODES = 40


@dataclass(frozen=True)
class Factor:
    """One factor of a term: its code as patsy normalises it, the columns it reads, its kind."""

    code: str
    columns: tuple[str, ...]
    categorical: bool


@dataclass(frozen=True)
class Term:
    name: str  # patsy's term name, as in the fitted model's design info ("Intercept", "age:C(sex)")
    factors: tuple[Factor, ...]


@dataclass(frozen=True)
class Formula:
    text: str
    outcome: Factor
    terms: tuple[Term, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the model reads, outcome first, each once."""
        found = [*self.outcome.columns, *(c for term in self.terms for factor in term.factors for c in factor.columns)]
        return tuple(dict.fromkeys(found))


def parse_model_formula(text: str, schema: DatasetSchema) -> Formula:
    """Parse ``text`` as patsy does and refuse anything outside the allowlist (module docstring)."""
    try:
        tree = parse_formula(text)
        description = ModelDesc.from_formula(text)
    except PatsyError as error:
        raise ValidationFailed(f"the formula does not parse: {error.message}", details={"field": "formula"}) from None
    if tree.type != "~" or len(tree.args) != 2:
        raise ValidationFailed("the formula needs an outcome: 'outcome ~ terms'", details={"field": "formula"})
    _check_operators(tree)
    factors: dict[str, Factor] = {}

    def factor(code: str) -> Factor:
        if code not in factors:
            factors[code] = _factor(code, schema)
        return factors[code]

    if len(description.lhs_termlist) != 1 or len(description.lhs_termlist[0].factors) != 1:
        raise ValidationFailed("the outcome must be one column or expression", details={"field": "formula"})
    outcome = factor(description.lhs_termlist[0].factors[0].code)
    if outcome.categorical:
        raise ValidationFailed("the outcome must be numeric, not categorical", details={"field": "formula"})
    terms = tuple(Term(term.name(), tuple(factor(f.code) for f in term.factors)) for term in description.rhs_termlist)
    return Formula(text, outcome, terms)


def _check_operators(node: object) -> None:
    kind = getattr(node, "type", None)
    if kind not in _FORMULA_NODES:
        raise ValidationFailed(f"formula syntax {kind!s} is not supported: use + - : * C() and 0/1", details={"field": "formula"})
    for child in getattr(node, "args", []):
        _check_operators(child)


def _factor(code: str, schema: DatasetSchema) -> Factor:
    try:
        body = ast.parse(code.strip(), mode="eval").body
    except SyntaxError:
        raise ValidationFailed("a formula term is not a valid expression", details={"field": "formula"}) from None
    if sum(1 for _ in ast.walk(body)) > MAX_FACTOR_NODES:
        raise ValidationFailed("a formula term is too long", details={"field": "formula"})
    if isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id == "C":
        if len(body.args) != 1 or body.keywords or not isinstance(body.args[0], ast.Name):
            raise violation(StatsRule.FUNCTION_NOT_ALLOWED, "C() takes exactly one column name")
        return Factor(code, (_column(body.args[0].id, schema),), categorical=True)
    columns = tuple(dict.fromkeys(_numeric(body, schema)))
    if not isinstance(body, ast.Name):
        _refuse_transformed_sensitive(columns, schema)
    if isinstance(body, ast.Name):
        spec = schema.column(columns[0])
        return Factor(code, columns, categorical=spec is not None and not spec.type.numeric)
    return Factor(code, columns, categorical=False)


def _refuse_transformed_sensitive(columns: tuple[str, ...], schema: DatasetSchema) -> None:
    for name in columns:
        spec = schema.column(name)
        if spec is not None and spec.role is ColumnRole.SENSITIVE:
            message = f"column {name} is sensitive: it enters a formula as itself, not inside I() or np.* (no leverage check yet)"
            raise violation(StatsRule.FUNCTION_NOT_ALLOWED, message)


def _numeric(node: ast.expr, schema: DatasetSchema) -> list[str]:
    """The columns of an allowed arithmetic expression; refuses every other construct."""
    if isinstance(node, ast.Name):
        return [_column(node.id, schema)]
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return []
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return _numeric(node.operand, schema)
    if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
        if isinstance(node.op, ast.Pow) and not _small_exponent(node.right):
            raise violation(StatsRule.FUNCTION_NOT_ALLOWED, f"** needs a literal exponent of at most {MAX_POWER}")
        return _numeric(node.left, schema) + _numeric(node.right, schema)
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords and _allowed_function(node.func):
        return _numeric(node.args[0], schema)
    raise violation(StatsRule.FUNCTION_NOT_ALLOWED, f"'{ast.unparse(node)[:60]}' is not allowed in a formula: {_ALLOWED}")


_ALLOWED = "columns, numbers, + - * / and small powers, C(), I(), np.log, np.log1p, np.sqrt, np.exp"


def _allowed_function(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id == "I"
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "np" and func.attr in NUMPY_FUNCTIONS


def _small_exponent(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
        and abs(node.value) <= MAX_POWER
    )


def _column(name: str, schema: DatasetSchema) -> str:
    if name in RESERVED_NAMES or schema.column(name) is None:
        raise ValidationFailed(f"unknown column {name} in the formula", details={"field": "formula", "column": name})
    return name


def patsy_evaluates() -> bool:
    """Whether statsmodels evaluates formulas with patsy, whose parse was checked here.

    statsmodels 0.15 can switch to formulaic (``SM_FORMULA_ENGINE``); 0.14 knows patsy only.
    """
    options = getattr(statsmodels.formula, "options", None)
    return options is None or options.formula_engine == "patsy"


def formula_namespace() -> Any:
    """All a formula may name besides its columns: numpy (patsy adds its own C() and I()).

    statsmodels 0.15 takes a dict; 0.14 hands ``eval_env`` to patsy, which needs an EvalEnvironment.
    """
    version = tuple(int(part) for part in re.findall(r"\d+", statsmodels.__version__)[:2])
    if version >= (0, 15):
        return {"np": np}
    return EvalEnvironment([{"np": np}])
