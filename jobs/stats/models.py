"""OLS and logit models: planned against the policy, refused as a whole when disclosive, else fitted.

A regression is refused (``StatsResult.refused``, no table) when

- fewer than k privacy units are in the model's complete cases;
- a level of a categorical term, or a cell of an interaction between categorical terms, holds
  fewer than k units: with ``income ~ C(race)`` a level of one person makes intercept + its
  coefficient that person's income. Columns with a declared domain (coded categories) count as
  categorical here even when used as numbers, and a logit's outcome (or a coded OLS outcome) is
  crossed with every such group, since a cell of one outcome class is a small count;
- the residual degrees of freedom are below ``dof_threshold``;
- the fit fails, does not converge, or separates the outcome perfectly;
- the design matrix (what patsy built from the formula: every regressor however transformed) drops
  or changes rows: the rows fitted must be exactly the complete cases whose units were counted, and
  every value finite;
- a regressor (a column of the design matrix other than the intercept) differs from its most common
  value for fewer than k units: a smooth one-person dummy such as ``I(1/(1+np.exp(-0.01*(income-400000))))``
  is zero (to the last bit) for everyone else, and with the intercept its coefficient is that person;
- a unit's leverage (its hat value, summed over its rows; weighted for logit) exceeds ``max_leverage``:
  a unit of leverage near 1 is fitted almost exactly, so the coefficients and its regressors give its
  outcome back.

Unit counts are computed in DuckDB before any data is loaded for the fit. Only coefficients, their
standard errors, test statistics, p-values and confidence intervals come out, with fit statistics;
never fitted values or residuals. A policy must allow ``avg``: a coefficient is a conditional mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from sqlglot import exp

from core.errors import InternalError, ValidationFailed
from core.text import a
from jobs.engine import Engine
from jobs.stats.cells import DIALECT, UNIT, col, lit, named, table, units
from jobs.stats.columns import Scope
from jobs.stats.formula import Formula, Term, formula_namespace, parse_model_formula, patsy_evaluates
from jobs.stats.specs import LogitSpec, OlsSpec
from jobs.stats.values import UNITS_COLUMN, ModelPlan, StatsPlan, StatsResult
from policies.model import Aggregate, Disclosure

MODEL_OUTPUTS: tuple[tuple[str, Aggregate], ...] = tuple(
    (name, Aggregate.AVG) for name in ("coef", "std_err", "stat", "p_value", "ci_low", "ci_high")
)


def plan_model(spec: OlsSpec | LogitSpec, scope: Scope) -> StatsPlan:
    """Check every variable of the formula against the policy and plan the unit counts and the load."""
    formula = parse_model_formula(spec.formula, scope.schema)
    for column in formula.outcome.columns:
        scope.measure(column)
    for term in formula.terms:
        for factor in term.factors:
            for column in factor.columns:
                (scope.dimension if factor.categorical else scope.measure)(column)
    scope.aggregates([Aggregate.AVG])
    scope.not_rounded(f"{a(spec.op)} model")
    outcome = _coded_outcome(spec, formula, scope)
    groups: list[tuple[str, ...]] = []
    term_groups: list[tuple[str, tuple[str, ...]]] = []
    for term in formula.terms:
        group = _group(term, scope, outcome)
        term_groups.append((term.name, group))
        if group and group not in groups:
            groups.append(group)
    groups.append(())
    base = _load(scope, formula.columns)
    model = ModelPlan(
        kind=spec.op,
        formula=spec.formula,
        columns=formula.columns,
        load_sql=base.sql(dialect=DIALECT),
        cells_sql=_cells_sql(scope, formula.columns, groups),
        groups=tuple(groups),
        term_groups=tuple((name, groups.index(group)) for name, group in term_groups),
    )
    return StatsPlan(spec.op, scope.dataset, MODEL_OUTPUTS, ("term",), False, None, model=model)


def _coded_outcome(spec: OlsSpec | LogitSpec, formula: Formula, scope: Scope) -> str | None:
    """The outcome column when its classes are cells to count: always for logit, for OLS if it is coded."""
    bare = formula.outcome.columns[0] if formula.outcome.code.strip() == formula.outcome.columns[0] else None
    if spec.op == "logit":
        if bare is None:
            raise ValidationFailed("a logit outcome must be one 0/1 column", details={"field": "formula"})
        return bare
    return bare if bare is not None and scope.schema.columns[bare].domain is not None else None


def _group(term: Term, scope: Scope, outcome: str | None) -> tuple[str, ...]:
    """The columns whose cells a term's coefficients describe: categorical and coded columns (+ a class outcome)."""
    found: set[str] = set()
    for factor in term.factors:
        if factor.categorical:
            found.update(factor.columns)
        else:
            found.update(c for c in factor.columns if scope.schema.columns[c].domain is not None)
    if outcome is not None:
        found.add(outcome)
    return tuple(sorted(found))


def _complete_cases(scope: Scope, columns: Sequence[str], unit: bool = False) -> exp.Select:
    """The rows statsmodels will use (it drops rows with a missing value): the model's columns only."""
    items: list[exp.Expr] = [col(c) for c in columns] + ([named(col(scope.privacy_unit), UNIT)] if unit else [])
    present = [exp.Not(this=exp.Is(this=col(c), expression=exp.Null())) for c in columns]
    return exp.select(*items).from_(table(scope.dataset)).where(exp.and_(*present))


def _load(scope: Scope, columns: Sequence[str]) -> exp.Select:
    """The complete cases to fit, with each row's unit as an opaque hash: leverage is added up per unit,
    and the identifier itself never reaches the fitting code."""
    base = _complete_cases(scope, columns)
    return base.select(named(exp.func("hash", col(scope.privacy_unit)), UNIT))


def _cells_sql(scope: Scope, columns: Sequence[str], groups: Sequence[tuple[str, ...]]) -> str:
    """One row per group: its index and the distinct units of its smallest cell (all units for ``()``)."""
    union: exp.Query | None = None
    for index, group in enumerate(groups):
        counts = exp.select(named(units(col(UNIT)), "__n")).from_(table("__base"))
        if group:
            counts = counts.group_by(*[col(c) for c in group])
        branch = exp.select(named(lit(index), "__group"), named(exp.Min(this=col("__n")), "__smallest")).from_(
            counts.subquery(f"__g{index}")
        )
        union = branch if union is None else exp.union(union, branch, distinct=False)
    assert union is not None
    select = exp.select(col("__group"), col("__smallest")).from_(union.subquery("__groups")).order_by(col("__group"))
    return select.with_("__base", as_=_complete_cases(scope, columns, unit=True)).sql(dialect=DIALECT)


def run_model(plan: StatsPlan, tables: Mapping[str, pa.Table], engine: Engine, settings: Disclosure) -> StatsResult:
    """Count units per cell, refuse or fit, and return the coefficient table with each term's units."""
    model = plan.model
    assert model is not None
    smallest = {int(row["__group"]): int(row["__smallest"] or 0) for row in engine.run(model.cells_sql, tables).to_pylist()}
    reason = _cell_refusal(model, smallest, settings)
    if reason is not None:
        return _refused(plan, reason)
    frame = engine.run(model.load_sql, tables).to_pandas()
    term_units = {name: smallest[index] for name, index in model.term_groups}
    if not patsy_evaluates():
        raise InternalError("statsmodels must use patsy: formulas are checked with patsy's parser")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        released = _fit_and_tabulate(model, frame, term_units, settings)
    if isinstance(released, str):
        return _refused(plan, released)
    for warning in caught:
        if issubclass(warning.category, _disclosive_warnings()):
            return _refused(plan, f"the fit is not reliable ({warning.category.__name__}): it may reveal individual outcomes")
    table, summary = released
    summary["units"] = float(smallest[len(model.groups) - 1])
    return StatsResult(table, plan.outputs, plan.unit_columns, plan.dimensions, None, summary)


def _disclosive_warnings() -> tuple[type[Warning], ...]:
    """statsmodels' warnings that a fit may reveal individual outcomes (imported with the fitting, see ``_fit_and_tabulate``)."""
    from statsmodels.tools.sm_exceptions import (  # type: ignore[import-untyped]  # noqa: PLC0415 - fitting only: see the docstring
        ConvergenceWarning,
        HessianInversionWarning,
        PerfectSeparationWarning,
    )

    return ConvergenceWarning, PerfectSeparationWarning, HessianInversionWarning


def _cell_refusal(model: ModelPlan, smallest: Mapping[int, int], settings: Disclosure) -> str | None:
    if smallest.get(len(model.groups) - 1, 0) < settings.threshold:
        return f"fewer than {settings.threshold} privacy units in the model's complete cases"
    for index, group in enumerate(model.groups[:-1]):
        if smallest.get(index, 0) < settings.threshold:
            return f"a level or cell of {' x '.join(group)} has fewer than {settings.threshold} privacy units"
    return None


def _refused(plan: StatsPlan, reason: str) -> StatsResult:
    empty = pa.table({"term": pa.array([], pa.string())} | {name: pa.array([], pa.float64()) for name, _ in plan.outputs})
    return StatsResult(empty, plan.outputs, plan.unit_columns, plan.dimensions, reason, {})


def _fit_and_tabulate(
    model: ModelPlan, frame: Any, term_units: Mapping[str, int], settings: Disclosure
) -> tuple[pa.Table, dict[str, float]] | str:
    """The coefficient table and fit statistics, or the reason the model cannot be released.

    The formula runs in a namespace holding numpy and nothing else (patsy adds its C() and I()).
    A failure's reason names its type only, never its message (which may quote data); estimates
    that are not finite (a perfect fit, log of zero) are refused too.

    statsmodels is imported here, by the process that fits: planning needs none of it, and importing
    it (with scipy.stats and formulaic) costs seconds of CPU that a worker or web process would
    otherwise pay at every start. The job children's forkserver preloads it (``sandbox.runtime.child``).
    """
    import statsmodels.formula.api as smf  # type: ignore[import-untyped]  # noqa: PLC0415 - fitting only: see the docstring

    try:
        if model.kind == "ols":
            fitted = smf.ols(model.formula, data=frame, eval_env=formula_namespace()).fit()
        else:
            fitted = smf.logit(model.formula, data=frame, eval_env=formula_namespace()).fit(disp=0)
        if fitted.df_resid < settings.dof_threshold:
            return f"residual degrees of freedom {fitted.df_resid:g} are below the threshold {settings.dof_threshold}"
        problem = design_refusal(fitted, frame, settings)
        if problem is not None:
            return problem
        table, summary = _coefficients(fitted, term_units), _summary(model.kind, fitted)
    except Exception as error:  # any failure of the library on analyst input refuses the model
        return f"the model could not be fitted ({type(error).__name__})"
    estimates = np.concatenate([table.column("coef").to_numpy(), table.column("std_err").to_numpy()])
    if not np.isfinite(estimates).all():
        return "the fit produced estimates that are not finite"
    return table, summary


def design_refusal(fitted: Any, frame: Any, settings: Disclosure) -> str | None:
    """Check the design matrix the model was really fitted on (see the module's docstring), or None when it passes."""
    design = np.asarray(fitted.model.exog, dtype=float)
    if design.shape[0] != len(frame) or not np.isfinite(design).all() or not np.isfinite(np.asarray(fitted.model.endog, dtype=float)).all():
        return "the model's terms drop or change rows: the rows fitted must be the complete cases that were checked"
    unit_codes = frame[UNIT].factorize()[0]
    names = [str(name) for name in fitted.model.exog_names]
    for j, name in enumerate(names):
        column = design[:, j]
        values, counts = np.unique(column, return_counts=True)
        if len(values) == 1:
            continue  # a constant (the intercept): it describes every unit alike
        mode = values[np.argmax(counts)]
        if len(np.unique(unit_codes[column != mode])) < settings.threshold:
            return f"a regressor of the model ({name}) differs from its most common value for fewer than {settings.threshold} privacy units"
    if unit_leverage(fitted, design, unit_codes).max(initial=0.0) > settings.max_leverage:
        return f"a privacy unit's leverage exceeds {settings.max_leverage:g}: the fit would nearly give its outcome back"
    return None


def unit_leverage(fitted: Any, design: np.ndarray[Any, np.dtype[np.float64]], unit_codes: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each unit's hat values added up: diag(W^½ X (XᵀWX)⁻¹ Xᵀ W^½), W = 1 for OLS and p(1-p) for logit."""
    weights = np.ones(design.shape[0])
    if hasattr(fitted, "predict") and fitted.model.__class__.__name__ == "Logit":
        p = np.asarray(fitted.predict(), dtype=float)
        weights = p * (1.0 - p)
    root = np.sqrt(weights)[:, None] * design
    q, _ = np.linalg.qr(root)  # hat values are the squared row norms of an orthonormal basis of W^½X
    rank = np.linalg.matrix_rank(root)
    hat = np.sum(q[:, :rank] ** 2, axis=1)
    return np.bincount(unit_codes, weights=hat)


def _coefficients(fitted: Any, term_units: Mapping[str, int]) -> pa.Table:
    names = [str(name) for name in fitted.params.index]
    column_units = [0] * len(names)
    for term, columns in fitted.model.data.model_spec.term_name_slices.items():
        for i in range(len(names))[columns]:
            column_units[i] = term_units[term]
    interval = np.asarray(fitted.conf_int(alpha=0.05))
    return pa.table(
        {
            "term": pa.array(names, pa.string()),
            "coef": pa.array(np.asarray(fitted.params, dtype=float)),
            "std_err": pa.array(np.asarray(fitted.bse, dtype=float)),
            "stat": pa.array(np.asarray(fitted.tvalues, dtype=float)),
            "p_value": pa.array(np.asarray(fitted.pvalues, dtype=float)),
            "ci_low": pa.array(interval[:, 0]),
            "ci_high": pa.array(interval[:, 1]),
            UNITS_COLUMN: pa.array(column_units, pa.int64()),
        }
    )


def _summary(kind: str, fitted: Any) -> dict[str, float]:
    common = {
        "n": fitted.nobs,
        "dof": fitted.df_resid,
        "df_model": fitted.df_model,
        "llf": fitted.llf,
        "aic": fitted.aic,
        "bic": fitted.bic,
    }
    if kind == "ols":
        extra = {"r2": fitted.rsquared, "r2_adj": fitted.rsquared_adj, "f_stat": fitted.fvalue, "f_pvalue": fitted.f_pvalue}
    else:
        extra = {"pseudo_r2": fitted.prsquared, "llnull": fitted.llnull, "llr": fitted.llr, "llr_pvalue": fitted.llr_pvalue}
    return {name: float(value) for name, value in (common | extra).items()}
