"""Model formulas: parsed as patsy (statsmodels' formula engine) parses them, then allowlisted.

patsy evaluates every factor of a formula as Python code, so a formula is code. Only this reaches
it, checked on the factor's syntax tree before anything runs:

- formula operators ``~`` (two-sided only), ``+``, ``-``, ``:``, ``*`` and the intercept literals
  ``0`` / ``1``; no ``/``, ``**`` or other numbers at formula level;
- ``C(column)``: a categorical term (one bare column, no contrast arguments);
- a bare column: numeric if its declared type is numeric, else categorical (as patsy treats it);
- ``Q("name")``: patsy's quoting of a column whose name is not a Python identifier (``Q("yrs.since.phd")``,
  ``Q("纳税额")``), wherever a bare column may stand, ``C(Q("地区"))`` included; its one argument is a
  string literal, looked up as a declared column name and never evaluated as code;
- ``I(...)``, ``np.log``, ``np.log1p``, ``np.sqrt``, ``np.exp`` around arithmetic of columns and
  numeric literals (``+ - * /``, unary minus, ``**`` with a literal exponent of at most 10).

Anything else (other functions, attributes, subscripts, strings, comparisons) is refused as
``function_not_allowed`` before statsmodels sees the formula.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import statsmodels  # type: ignore[import-untyped]  # the package alone: its version, no submodule
from patsy import EvalEnvironment, PatsyError  # type: ignore[import-untyped]
from patsy.desc import ModelDesc  # type: ignore[import-untyped]
from patsy.parse_formula import parse_formula  # type: ignore[import-untyped]

from core.errors import ValidationFailed
from core.schema import DatasetSchema
from jobs.stats.values import StatsRule, violation

NUMPY_FUNCTIONS = frozenset({"log", "log1p", "sqrt", "exp"})
RESERVED_NAMES = frozenset({"np", "C", "I", "Q"})  # a column of one of these names would shadow the function
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
        name = _named(body.args[0]) if len(body.args) == 1 and not body.keywords else None
        if name is None:
            raise violation(StatsRule.FUNCTION_NOT_ALLOWED, 'C() takes exactly one column name (or Q("name"))')
        return Factor(code, (_column(name, schema),), categorical=True)
    columns = tuple(dict.fromkeys(_numeric(body, schema)))
    if _named(body) is not None:
        spec = schema.column(columns[0])
        return Factor(code, columns, categorical=spec is not None and not spec.type.numeric)
    return Factor(code, columns, categorical=False)


def _numeric(node: ast.expr, schema: DatasetSchema) -> list[str]:
    """The columns of an allowed arithmetic expression; refuses every other construct."""
    name = _named(node)
    if name is not None:
        return [_column(name, schema)]
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


_ALLOWED = 'columns, Q("name"), numbers, + - * / and small powers, C(), I(), np.log, np.log1p, np.sqrt, np.exp'


def _named(node: ast.expr) -> str | None:
    """The column a bare name or ``Q("name")`` stands for (None for anything else); a malformed Q() is refused."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Q":
        if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Constant) or not isinstance(node.args[0].value, str):
            raise violation(StatsRule.FUNCTION_NOT_ALLOWED, 'Q() takes exactly one column name as a string: Q("name")')
        return node.args[0].value
    return None


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
        raise ValidationFailed(f"unknown column {name!r} in the formula", details={"field": "formula", "column": name})
    return name


def patsy_evaluates() -> bool:
    """Whether statsmodels evaluates formulas with patsy, whose parse was checked here.

    statsmodels 0.15 can switch to formulaic (``SM_FORMULA_ENGINE``); 0.14 knows patsy only. Asked
    when a model is fitted, which imports statsmodels' formulas anyway (``models._fit_and_tabulate``).
    """
    import statsmodels.formula  # type: ignore[import-untyped]  # noqa: PLC0415 - fitting only: see the docstring

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
