"""OLS and logit: released fits equal statsmodels' fit on the plaintext; disclosive models are refused.

The policy makes ``age`` a measure (a numeric regressor); ``sex`` and ``race`` stay dimensions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from core.errors import PolicyViolation, ValidationFailed
from jobs.stats import StatsRule, plan
from policies.model import Aggregate, Disclosure
from tests.jobs.conftest import SCHEMAS
from tests.jobs.stats.conftest import as_tables, compute, stats_policy

MODEL_POLICY = stats_policy(age="measure")
TERM_COLUMNS = ["term", "coef", "std_err", "stat", "p_value", "ci_low", "ci_high"]


def fit(kind: str, formula: str, frame: pd.DataFrame) -> Any:
    """The oracle: statsmodels on the plaintext, as an analyst with the raw data would fit it."""
    if kind == "ols":
        return smf.ols(formula, data=frame).fit()
    return smf.logit(formula, data=frame).fit(disp=0)


def test_income_by_race_is_refused_for_a_one_person_level(pums: pd.DataFrame) -> None:
    """race=5 is one person: the intercept plus coef[race=5] would be exactly their income (56000)."""
    assert pums.loc[pums["race"] == 5, "pid"].nunique() == 1
    result = compute({"op": "ols", "formula": "income ~ C(race)"}, as_tables(pums), MODEL_POLICY)
    assert result.refused is not None
    assert "race" in result.refused
    assert "10 privacy units" in result.refused
    assert result.table.num_rows == 0
    assert result.summary == {}


FITS = [
    pytest.param("ols", "income ~ age + C(sex)", id="ols-age-sex"),
    pytest.param("ols", "income ~ C(sex) * C(married)", id="ols-interaction-of-categoricals"),
    pytest.param("ols", "np.log1p(income) ~ age + I(age ** 2) + C(educ)", id="ols-allowlisted-functions"),
    pytest.param("ols", "income ~ age:C(sex) - 1", id="ols-no-intercept-slope-per-sex"),
    pytest.param("ols", 'Q("income") ~ np.log(Q("age")) + C(Q("sex"))', id="ols-patsy-quoted-names"),
    pytest.param("logit", "married ~ age + C(sex)", id="logit-married"),
]


@pytest.mark.parametrize(("kind", "formula"), FITS)
def test_released_fit_equals_statsmodels(pums: pd.DataFrame, kind: str, formula: str) -> None:
    result = compute({"op": kind, "formula": formula}, as_tables(pums), MODEL_POLICY)
    assert result.refused is None
    oracle = fit(kind, formula, pums)
    table = result.table.to_pandas().set_index("term")
    assert list(table.index) == list(oracle.params.index)
    np.testing.assert_allclose(table["coef"], oracle.params, rtol=1e-7)
    np.testing.assert_allclose(table["std_err"], oracle.bse, rtol=1e-6)
    np.testing.assert_allclose(table["stat"], oracle.tvalues, rtol=1e-6)
    np.testing.assert_allclose(table["p_value"], oracle.pvalues, rtol=1e-5, atol=1e-300)
    np.testing.assert_allclose(table[["ci_low", "ci_high"]].to_numpy(), oracle.conf_int().to_numpy(), rtol=1e-6)
    assert result.summary["n"] == oracle.nobs
    assert result.summary["dof"] == oracle.df_resid
    assert result.summary["llf"] == pytest.approx(oracle.llf)
    assert result.summary["units"] == pums["pid"].nunique()
    assert (table["__units_0"] >= 10).all()


def test_released_table_has_coefficients_only(pums: pd.DataFrame) -> None:
    """Never fitted values or residuals: one row per coefficient, the documented columns and the units."""
    result = compute({"op": "ols", "formula": "income ~ age + C(sex)"}, as_tables(pums), MODEL_POLICY)
    assert result.table.column_names == [*TERM_COLUMNS, "__units_0"]
    assert result.table.num_rows == 3
    assert result.dimensions == ("term",)
    assert all(aggregate is Aggregate.AVG for _, aggregate in result.outputs)
    assert set(result.summary) == {"n", "dof", "df_model", "llf", "aic", "bic", "r2", "r2_adj", "f_stat", "f_pvalue", "units"}
    ols = fit("ols", "income ~ age + C(sex)", pums)
    assert result.summary["r2"] == pytest.approx(ols.rsquared)


def test_units_per_term_count_the_level(pums: pd.DataFrame) -> None:
    result = compute({"op": "ols", "formula": "income ~ age + C(sex)"}, as_tables(pums), MODEL_POLICY)
    units = dict(zip(result.table.column("term").to_pylist(), result.table.column("__units_0").to_pylist(), strict=True))
    assert units == {"Intercept": 1000, "C(sex)[T.1]": pums.groupby("sex")["pid"].nunique().min(), "age": 1000}


REFUSED = [
    pytest.param("ols", "income ~ C(sex) * C(educ)", {}, "educ x sex", id="interaction-cell-below-k"),
    pytest.param("ols", "income ~ C(race) + age", {}, "race", id="level-below-k-beside-numeric"),
    pytest.param("ols", "income ~ race", {"race": "measure"}, "race", id="coded-column-used-as-number"),
    pytest.param("ols", "income ~ age + C(sex)", {"dof_threshold": 998}, "degrees of freedom", id="residual-dof-below-threshold"),
    pytest.param("logit", "married ~ C(educ)", {}, "educ x married", id="logit-outcome-class-cell-below-k"),
    pytest.param("ols", "np.log(income) ~ age", {}, "drop or change rows", id="log-of-zero-incomes"),
    # The top earner (420500) alone: a smooth dummy is exactly 0.0 for everyone else.
    pytest.param("ols", "age ~ I(1/(1+np.exp(-0.01*(income-400000))))", {}, "differs from its most common value", id="smooth-dummy"),
    pytest.param(
        "ols", "income ~ I(1/(1+np.exp(-0.01*(income-400000))))", {}, "differs from its most common value", id="smooth-dummy-of-the-outcome"
    ),
    # Not exactly zero for anyone, but one unit carries the regressor: its leverage gives it away.
    pytest.param("ols", "age ~ I(np.exp((income-420500)/5000))", {}, "leverage", id="exponential-spike-of-a-measure"),
    pytest.param("ols", "age ~ income + I(np.exp((income-420500)/20000))", {}, "leverage", id="spline-like-spike-beside-a-measure"),
    pytest.param("ols", "age ~ C(sex):I(np.exp((income-420500)/5000))", {}, "leverage", id="interaction-with-a-spike"),
    pytest.param("logit", "married ~ age + I(np.exp((income-420500)/5000))", {}, "leverage", id="logit-spike"),
    # Terms that are NaN for some rows make patsy drop them: the fitted sample is no longer the checked one.
    pytest.param("ols", "income ~ np.log(age - 84.5)", {}, "drop or change rows", id="nan-term-drops-rows"),
    pytest.param("ols", "income ~ age + np.sqrt(income - 56000)", {}, "drop or change rows", id="sqrt-of-a-shifted-measure"),
]


@pytest.mark.parametrize(("kind", "formula", "overrides", "reason"), REFUSED)
def test_disclosive_models_are_refused(pums: pd.DataFrame, kind: str, formula: str, overrides: dict[str, Any], reason: str) -> None:
    uses = {k: v for k, v in overrides.items() if isinstance(v, str)}
    settings = Disclosure(**{k: v for k, v in overrides.items() if not isinstance(v, str)})
    result = compute({"op": kind, "formula": formula}, as_tables(pums), stats_policy(age="measure", **uses), settings)
    assert result.refused is not None
    assert reason in result.refused
    assert result.table.num_rows == 0


def test_the_educ_levels_pass_alone(pums: pd.DataFrame) -> None:
    """The interaction case above is refused for its cells: each educ level alone has at least 13 people."""
    result = compute({"op": "ols", "formula": "income ~ C(educ)"}, as_tables(pums), MODEL_POLICY)
    assert result.refused is None


def test_perfect_separation_is_refused(pums: pd.DataFrame) -> None:
    """A logit that separates the outcome perfectly would reveal each person's outcome from age."""
    separated = pums.assign(married=(pums["age"] > 50).astype("int64"))
    result = compute({"op": "logit", "formula": "married ~ age"}, as_tables(separated), MODEL_POLICY)
    assert result.refused is not None
    assert "not reliable" in result.refused or "could not be fitted" in result.refused


def test_missing_values_are_dropped_as_statsmodels_does(pums_null: pd.DataFrame) -> None:
    result = compute({"op": "ols", "formula": "income ~ age + C(sex)"}, as_tables(pums_null), MODEL_POLICY)
    frame = pums_null[["income", "age", "sex"]].dropna().astype("int64")
    oracle = fit("ols", "income ~ age + C(sex)", frame)
    assert result.refused is None
    np.testing.assert_allclose(result.table.column("coef").to_numpy(), oracle.params.to_numpy(), rtol=1e-7)
    assert result.summary["n"] == len(frame)


FORMULA_REFUSALS = [
    pytest.param("income ~ __import__('os').system('true')", PolicyViolation, id="python-call"),
    pytest.param("income ~ np.random.rand(3)", PolicyViolation, id="numpy-outside-allowlist"),
    pytest.param("income ~ np.log", PolicyViolation, id="bare-attribute"),
    pytest.param("income ~ Q(age)", PolicyViolation, id="patsy-quote-of-a-name"),
    pytest.param("income ~ Q('age', 1)", PolicyViolation, id="patsy-quote-two-arguments"),
    pytest.param("income ~ Q('a' + 'ge')", PolicyViolation, id="patsy-quote-of-an-expression"),
    pytest.param("income ~ Q('salary')", ValidationFailed, id="patsy-quote-unknown-column"),
    pytest.param("income ~ Q('C')", ValidationFailed, id="patsy-quote-reserved-name"),
    pytest.param("income ~ C(sex, Treatment(1))", PolicyViolation, id="contrast-arguments"),
    pytest.param("income ~ I(age ** 99999999)", PolicyViolation, id="huge-power"),
    pytest.param("income ~ I(age ** age)", PolicyViolation, id="power-of-a-column"),
    pytest.param("income ~ age[0]", PolicyViolation, id="subscript"),
    pytest.param("income ~ I(age > 50)", PolicyViolation, id="comparison"),
    pytest.param("income ~ I('a')", PolicyViolation, id="string-literal"),
    pytest.param("income ~ age / C(sex)", ValidationFailed, id="nesting-operator"),
    pytest.param("income ~ (age + C(sex)) ** 2", ValidationFailed, id="term-power-operator"),
    pytest.param("income ~ age + 3", ValidationFailed, id="number-as-term"),
    pytest.param("~ age", ValidationFailed, id="one-sided"),
    pytest.param("income ~ age +", ValidationFailed, id="does-not-parse"),
    pytest.param("income ~ salary", ValidationFailed, id="unknown-column"),
    pytest.param("C(sex) ~ age", ValidationFailed, id="categorical-outcome"),
]


@pytest.mark.parametrize(("formula", "error"), FORMULA_REFUSALS)
def test_formula_outside_the_allowlist_is_refused(formula: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        plan({"op": "ols", "dataset": "pums", "formula": formula}, MODEL_POLICY, SCHEMAS)


def test_logit_outcome_must_be_a_column() -> None:
    with pytest.raises(ValidationFailed, match="logit outcome"):
        plan({"op": "logit", "dataset": "pums", "formula": "np.log1p(married) ~ age"}, MODEL_POLICY, SCHEMAS)


MODEL_POLICY_REFUSALS = [
    pytest.param("income ~ age", {"age": "dimension"}, StatsRule.DIMENSION_AS_MEASURE, id="dimension-as-numeric-regressor"),
    pytest.param("age ~ C(sex)", {"age": "dimension"}, StatsRule.DIMENSION_AS_MEASURE, id="dimension-as-outcome"),
    pytest.param("age ~ C(income)", {}, StatsRule.MEASURE_AS_DIMENSION, id="measure-as-categorical"),
    pytest.param("income ~ age + C(educ)", {"educ": "deny"}, StatsRule.COLUMN_DENIED, id="denied-column"),
    pytest.param("income ~ pid", {}, StatsRule.IDENTIFIER, id="identifier"),
    pytest.param("income ~ np.log(pid)", {}, StatsRule.IDENTIFIER, id="identifier-inside-function"),
]


@pytest.mark.parametrize(("formula", "uses", "rule"), MODEL_POLICY_REFUSALS)
def test_model_variables_follow_the_policy(formula: str, uses: dict[str, str], rule: StatsRule) -> None:
    policy = stats_policy(**{"age": "measure", **uses})
    with pytest.raises(PolicyViolation) as raised:
        plan({"op": "ols", "dataset": "pums", "formula": formula}, policy, SCHEMAS)
    assert raised.value.details["rule"] == rule.value


def test_models_need_means_in_the_policy() -> None:
    policy = stats_policy(frozenset({Aggregate.COUNT}), age="measure")
    with pytest.raises(PolicyViolation) as raised:
        plan({"op": "logit", "dataset": "pums", "formula": "married ~ age"}, policy, SCHEMAS)
    assert raised.value.details["rule"] == StatsRule.AGGREGATE_NOT_ALLOWED.value
