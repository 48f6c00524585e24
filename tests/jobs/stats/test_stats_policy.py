"""Policy refusals and spec validation for every table op, before anything runs.

The default test policy: ``age``, ``sex``, ``educ``, ``race`` are dimensions, ``income`` a measure,
``married`` plain, ``pid`` (the privacy unit, an identifier) a join key; every aggregate allowed.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import PolicyViolation, ValidationFailed
from jobs.stats import StatsRule, plan
from policies.model import Aggregate
from tests.jobs.conftest import SCHEMAS
from tests.jobs.stats.conftest import stats_policy

ALL = frozenset(Aggregate)

REFUSALS = [
    # crosstab
    pytest.param({"op": "crosstab", "index": ["educ"]}, {"educ": "deny"}, ALL, StatsRule.COLUMN_DENIED, id="crosstab-denied-column"),
    pytest.param({"op": "crosstab", "index": ["income"]}, {}, ALL, StatsRule.MEASURE_AS_DIMENSION, id="crosstab-measure-as-dimension"),
    pytest.param({"op": "crosstab", "index": ["pid"]}, {}, ALL, StatsRule.IDENTIFIER, id="crosstab-identifier"),
    pytest.param(
        {"op": "crosstab", "index": ["sex"], "columns": ["pid"]},
        {"pid": "dimension"},
        ALL,
        StatsRule.IDENTIFIER,
        id="crosstab-identifier-even-if-granted",
    ),
    pytest.param(
        {"op": "crosstab", "index": ["sex"], "values": "income", "aggfunc": ["sum"]},
        {},
        ALL - {Aggregate.SUM},
        StatsRule.AGGREGATE_NOT_ALLOWED,
        id="crosstab-aggregate-not-allowed",
    ),
    pytest.param(
        {"op": "crosstab", "index": ["sex"]}, {}, ALL - {Aggregate.COUNT}, StatsRule.AGGREGATE_NOT_ALLOWED, id="crosstab-count-not-allowed"
    ),
    pytest.param(
        {"op": "crosstab", "index": ["sex"], "values": "age", "aggfunc": ["mean"]},
        {},
        ALL,
        StatsRule.DIMENSION_AS_MEASURE,
        id="crosstab-dimension-as-value",
    ),
    pytest.param(
        {"op": "crosstab", "index": ["sex"], "values": "income"},
        {"income": "deny"},
        ALL,
        StatsRule.COLUMN_DENIED,
        id="crosstab-denied-value",
    ),
    # pivot
    pytest.param(
        {"op": "pivot", "index": ["sex"], "values": ["income", "educ"]},
        {},
        ALL,
        StatsRule.DIMENSION_AS_MEASURE,
        id="pivot-dimension-as-value",
    ),
    pytest.param(
        {"op": "pivot", "index": ["income"], "values": ["age"]},
        {"age": "measure"},
        ALL,
        StatsRule.MEASURE_AS_DIMENSION,
        id="pivot-measure-as-dimension",
    ),
    pytest.param(
        {"op": "pivot", "index": ["sex"], "values": ["income"], "aggfunc": ["std"]},
        {},
        ALL - {Aggregate.STDDEV},
        StatsRule.AGGREGATE_NOT_ALLOWED,
        id="pivot-std-not-allowed",
    ),
    pytest.param({"op": "pivot", "index": ["sex"], "values": ["pid"]}, {}, ALL, StatsRule.IDENTIFIER, id="pivot-identifier-value"),
    pytest.param(
        {"op": "pivot", "index": ["race"], "values": ["income"]},
        {"race": "deny"},
        ALL,
        StatsRule.COLUMN_DENIED,
        id="pivot-denied-dimension",
    ),
    # describe
    pytest.param({"op": "describe", "columns": ["income", "age"]}, {}, ALL, StatsRule.DIMENSION_AS_MEASURE, id="describe-dimension"),
    pytest.param(
        {"op": "describe", "columns": ["income"]},
        {},
        ALL - {Aggregate.QUANTILE},
        StatsRule.AGGREGATE_NOT_ALLOWED,
        id="describe-quartiles-not-allowed",
    ),
    pytest.param({"op": "describe", "columns": ["income"]}, {"income": "deny"}, ALL, StatsRule.COLUMN_DENIED, id="describe-denied"),
    pytest.param({"op": "describe", "columns": ["pid"]}, {}, ALL, StatsRule.IDENTIFIER, id="describe-identifier"),
    # quantiles
    pytest.param(
        {"op": "quantiles", "column": "income", "q": [0.5], "by": ["income"]},
        {},
        ALL,
        StatsRule.MEASURE_AS_DIMENSION,
        id="quantiles-by-measure",
    ),
    pytest.param(
        {"op": "quantiles", "column": "income", "q": [0.5]},
        {},
        ALL - {Aggregate.QUANTILE},
        StatsRule.AGGREGATE_NOT_ALLOWED,
        id="quantiles-not-allowed",
    ),
    pytest.param({"op": "quantiles", "column": "educ", "q": [0.5]}, {}, ALL, StatsRule.DIMENSION_AS_MEASURE, id="quantiles-of-dimension"),
    pytest.param(
        {"op": "quantiles", "column": "income", "q": [0.5], "by": ["sex"]},
        {"sex": "deny"},
        ALL,
        StatsRule.COLUMN_DENIED,
        id="quantiles-by-denied",
    ),
    # histogram
    pytest.param(
        {"op": "histogram", "column": "income", "bins": [0, 1000, 5000]}, {}, ALL, StatsRule.MEASURE_AS_DIMENSION, id="histogram-of-measure"
    ),
    pytest.param(
        {"op": "histogram", "column": "educ", "bins": 4}, {}, ALL, StatsRule.DATA_DERIVED_BINS, id="histogram-bins-without-bounds"
    ),
    pytest.param(
        {"op": "histogram", "column": "age", "bins": 4},
        {},
        ALL - {Aggregate.COUNT},
        StatsRule.AGGREGATE_NOT_ALLOWED,
        id="histogram-count-not-allowed",
    ),
    pytest.param({"op": "histogram", "column": "pid", "bins": [0, 10]}, {}, ALL, StatsRule.IDENTIFIER, id="histogram-identifier"),
    pytest.param(
        {"op": "histogram", "column": "age", "bins": [0, 50, 100]}, {"age": "deny"}, ALL, StatsRule.COLUMN_DENIED, id="histogram-denied"
    ),
    # correlation
    pytest.param({"op": "correlation", "columns": ["income", "age"]}, {}, ALL, StatsRule.DIMENSION_AS_MEASURE, id="correlation-dimension"),
    pytest.param(
        {"op": "correlation", "columns": ["income", "married"]},
        {},
        ALL - {Aggregate.STDDEV},
        StatsRule.AGGREGATE_NOT_ALLOWED,
        id="correlation-std-not-allowed",
    ),
    pytest.param({"op": "correlation", "columns": ["income", "pid"]}, {}, ALL, StatsRule.IDENTIFIER, id="correlation-identifier"),
    pytest.param(
        {"op": "correlation", "columns": ["income", "married"]}, {"married": "deny"}, ALL, StatsRule.COLUMN_DENIED, id="correlation-denied"
    ),
    # any op
    pytest.param(
        {"op": "crosstab", "dataset": "census", "index": ["sex"]}, {}, ALL, StatsRule.DATASET_NOT_GRANTED, id="dataset-not-granted"
    ),
]


@pytest.mark.parametrize(("spec", "uses", "aggregates", "rule"), REFUSALS)
def test_policy_refusals(spec: dict[str, Any], uses: dict[str, str], aggregates: frozenset[Aggregate], rule: StatsRule) -> None:
    with pytest.raises(PolicyViolation) as raised:
        plan({"dataset": "pums", **spec}, stats_policy(aggregates, **uses), SCHEMAS)
    assert raised.value.details["rule"] == rule.value
    assert raised.value.message.endswith(f"(rule {rule.value})")


INVALID = [
    pytest.param({"op": "regress", "index": ["sex"]}, id="unknown-op"),
    pytest.param({"index": ["sex"]}, id="no-op"),
    pytest.param({"op": "crosstab", "index": ["sex"], "where": "1=1"}, id="extra-field"),
    pytest.param({"op": "crosstab", "index": ['sex" FROM pums; DROP TABLE pums; --']}, id="injection-in-a-name"),
    pytest.param({"op": "crosstab", "dataset": "pums\x00; --", "index": ["sex"]}, id="injection-in-the-dataset"),
    pytest.param({"op": "crosstab", "index": []}, id="no-dimension"),
    pytest.param({"op": "crosstab", "index": ["sex", "sex"]}, id="repeated-dimension"),
    pytest.param({"op": "crosstab", "index": ["sex", "race", "educ"], "columns": ["married", "age", "income"]}, id="too-many-dimensions"),
    pytest.param({"op": "crosstab", "index": ["sex"], "aggfunc": ["mean"]}, id="aggfunc-without-values"),
    pytest.param({"op": "crosstab", "index": ["sex"], "values": "income", "aggfunc": ["mode"]}, id="unknown-aggfunc"),
    pytest.param({"op": "crosstab", "index": ["salary"]}, id="unknown-column"),
    pytest.param({"op": "pivot", "index": ["sex"]}, id="pivot-without-values"),
    pytest.param({"op": "pivot", "index": ["sex"], "values": ["income"], "aggfunc": ["sum", "sum"]}, id="pivot-repeated-aggfunc"),
    pytest.param({"op": "describe", "columns": []}, id="describe-nothing"),
    pytest.param({"op": "describe", "columns": ["income"], "statistics": ["mode"]}, id="describe-unknown-statistic"),
    pytest.param({"op": "quantiles", "column": "income", "q": [0.0]}, id="quantile-zero-is-the-minimum"),
    pytest.param({"op": "quantiles", "column": "income", "q": [1.5]}, id="quantile-above-one"),
    pytest.param({"op": "quantiles", "column": "income", "q": []}, id="no-quantile"),
    pytest.param({"op": "histogram", "column": "age"}, id="histogram-without-bins"),
    pytest.param({"op": "histogram", "column": "age", "bins": "auto"}, id="histogram-auto-bins-from-data"),
    pytest.param({"op": "histogram", "column": "age", "bins": [10, 0, 20]}, id="histogram-edges-not-ascending"),
    pytest.param({"op": "histogram", "column": "age", "bins": [5]}, id="histogram-one-edge"),
    pytest.param({"op": "histogram", "column": "age", "bins": list(range(202))}, id="histogram-201-bins"),
    pytest.param({"op": "histogram", "column": "age", "bins": 0}, id="histogram-zero-bins"),
    pytest.param({"op": "histogram", "column": "age", "bins": [0, float("inf")]}, id="histogram-infinite-edge"),
    pytest.param({"op": "correlation", "columns": ["income"]}, id="correlation-one-column"),
    pytest.param({"op": "ols", "formula": "x" * 501}, id="formula-too-long"),
]


@pytest.mark.parametrize("spec", INVALID)
def test_malformed_specs_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as raised:
        plan({"dataset": "pums", **spec}, stats_policy(), SCHEMAS)
    assert raised.value.details


def test_output_name_clashing_with_a_dimension_is_refused() -> None:
    """An output must not hide a dimension column of the same name."""
    schemas = {"pums": SCHEMAS["pums"].model_copy(update={"columns": {**SCHEMAS["pums"].columns, "count": SCHEMAS["pums"].columns["sex"]}})}
    with pytest.raises(ValidationFailed, match="count"):
        plan({"op": "crosstab", "dataset": "pums", "index": ["count"]}, stats_policy(count="dimension"), schemas)


def test_plan_quotes_every_name_and_reads_only_the_needed_columns() -> None:
    planned = plan({"op": "pivot", "dataset": "pums", "index": ["sex"], "values": ["income"], "aggfunc": ["mean"]}, stats_policy(), SCHEMAS)
    assert planned.sql is not None
    assert '"sex"' in planned.sql
    assert '"income"' in planned.sql
    assert '"pid"' in planned.sql
    for other in ("educ", "race", "married", "age"):
        assert other not in planned.sql
    assert planned.outputs == (("mean_income", Aggregate.AVG),)
    assert planned.dimensions == ("sex",)


def test_model_plans_have_no_table_sql() -> None:
    planned = plan({"op": "ols", "dataset": "pums", "formula": "income ~ age + C(sex)"}, stats_policy(age="measure"), SCHEMAS)
    assert planned.sql is None
    assert planned.model is not None
    assert set(planned.model.columns) == {"income", "age", "sex"}
    # The privacy unit is counted in SQL; the fit sees it only as an opaque hash (leverage adds up per unit).
    assert planned.model.load_sql.count("pid") == 1
    assert 'HASH("pid")' in planned.model.load_sql
