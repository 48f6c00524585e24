"""Job specs that get past the schema, fuzzed through dry runs: refused or answered, never a 500.

schemathesis (``test_openapi``) sends bodies the OpenAPI document describes, but a job's ``spec`` is a
free object there, so few of its specs reach the planners and the engine. Here hypothesis builds
specs of every stats op over PUMS' real column names (and a few wrong ones), and grouped queries
whose keys and aggregate arguments are built from functions that fail on some values at run time
(``YEAR(CAST(age AS VARCHAR))``, division, casts, logarithms): each dry run answers 200 or a 4xx in
the API's error shape. Bounded: a fixed number of derandomized examples on a small mock table.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import PUMS_POLICY, World, auth
from tests.sandbox.jobkit import approve
from tests.sandbox.test_openapi import assert_error_shape

NAMES = ["age", "sex", "educ", "race", "married", "income", "pid", "nope"]
POLICY: dict[str, Any] = {
    **PUMS_POLICY,
    "columns": {"pums": {**PUMS_POLICY["columns"]["pums"], "married": "dimension", "pid": "join_key"}},
    "aggregates": ["count", "sum", "avg", "min", "max", "median", "quantile", "stddev", "variance"],
    "job_kinds": ["query", "stats"],
}
FUZZ = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)

# Mostly what the policy allows where it is asked for, so that most specs reach the engine; sometimes any name.
dimensions = st.one_of(st.sampled_from(["age", "sex", "educ", "race", "married"]), st.sampled_from(NAMES))
measures = st.one_of(st.just("income"), st.just("income"), st.sampled_from(NAMES))
names = st.sampled_from(NAMES)
dimension_lists = st.lists(dimensions, min_size=1, max_size=2, unique=True)
name_lists = st.lists(measures, min_size=1, max_size=2)
aggfuncs = st.lists(st.sampled_from(["count", "sum", "mean", "median", "std", "var", "min", "max"]), min_size=1, max_size=3)
terms = st.sampled_from(["age", "educ", "C(race)", "C(sex)", "np.log(income)", "I(age ** 2)", "age:educ", "C(married)", "income"])


def op_specs() -> st.SearchStrategy[dict[str, Any]]:
    table = {"dataset": st.just("pums"), "margins": st.booleans()}
    return st.one_of(
        st.fixed_dictionaries(
            {"op": st.just("crosstab"), "index": dimension_lists, "columns": st.lists(dimensions, max_size=2), **table},
            optional={"values": measures, "aggfunc": aggfuncs},
        ),
        st.fixed_dictionaries({"op": st.just("pivot"), "index": dimension_lists, "values": name_lists, "aggfunc": aggfuncs, **table}),
        st.fixed_dictionaries(
            {"op": st.just("quantiles"), "column": measures, "q": st.lists(st.floats(0.01, 0.99), min_size=1, max_size=3), **table},
            optional={"by": st.lists(dimensions, max_size=2, unique=True)},
        ),
        st.fixed_dictionaries({"op": st.just("describe"), "dataset": st.just("pums"), "columns": name_lists}),
        st.fixed_dictionaries(
            {
                "op": st.just("histogram"),
                "dataset": st.just("pums"),
                "column": measures,
                "bins": st.one_of(st.integers(1, 200), st.lists(st.floats(-1e9, 1e9), min_size=2, max_size=6)),
            }
        ),
        st.fixed_dictionaries(
            {"op": st.just("correlation"), "dataset": st.just("pums"), "columns": st.lists(names, min_size=2, max_size=4)}
        ),
        st.fixed_dictionaries(
            {
                "op": st.sampled_from(["ols", "logit"]),
                "dataset": st.just("pums"),
                "formula": st.builds(
                    lambda y, xs: f"{y} ~ {' + '.join(xs)}",
                    st.sampled_from(["income", "married", "sex"]),
                    st.lists(terms, min_size=1, max_size=3),
                ),
            }
        ),
    )


# Group keys and aggregate arguments, several of which fail on some values when the engine runs them.
KEYS = [
    "race",
    "educ",
    "age // 10",
    "CAST(age AS VARCHAR)",
    "YEAR(CAST(age AS VARCHAR))",
    "CAST(CAST(sex AS VARCHAR) AS DATE)",
    "age / 0",
    "race % 0",
    "CAST(educ AS TINYINT)",
    "LN(age - 50)",
    "SQRT(age - 50)",
    "CAST(age * 1000000000 AS INTEGER)",
]
AGGREGATES = [
    "COUNT(*)",
    "SUM(income)",
    "AVG(income)",
    "SUM(income * income * income * income)",
    "AVG(income / 0)",
    "SUM(CAST(income AS TINYINT))",
    "MAX(LN(income - 100000))",
    "MEDIAN(income)",
]


@st.composite
def grouped_queries(draw: st.DrawFn) -> str:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=0, max_size=2, unique=True))
    aggregates = draw(st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=2, unique=True))
    where = draw(st.sampled_from(["", " WHERE sex = 1", " WHERE CAST(CAST(race AS VARCHAR) AS INTEGER) > 2", " WHERE age / 0 > 1"]))
    columns = [f"{key} AS k{i}" for i, key in enumerate(keys)] + [f"{agg} AS a{i}" for i, agg in enumerate(aggregates)]
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    return f"SELECT {', '.join(columns)} FROM pums{where}{group}"  # noqa: S608 - the fuzzed query is the point


@pytest.fixture
def fuzz_grant(world: World, pums: dict[str, Any]) -> str:
    body = {"dataset_ids": [pums["id"]], "scenario": "Fuzzing specs", "requested": {"job_kinds": ["query", "stats"]}}
    grant_id = str(world.client.post("/api/v1/grants", headers=auth(world.analyst), json=body).json["id"])
    approve(world, grant_id, POLICY)
    return grant_id


def dry_run(world: World, grant_id: str, kind: str, spec: dict[str, Any], seen: Counter[str]) -> None:
    body = {"grant_id": grant_id, "kind": kind, "spec": spec, "rows": 60, "seed": 5}
    response = world.client.post("/api/v1/jobs/dry-run", headers=auth(world.analyst), json=body)
    assert response.status_code < 500, (spec, response.status_code, response.get_json())
    assert response.mimetype == "application/json", spec
    if response.status_code >= 400:
        assert_error_shape(response.get_json())
        seen[response.get_json()["error"]["code"]] += 1
    else:
        seen["answered"] += 1


@pytest.mark.slow
def test_stats_specs_are_answered_or_refused_never_a_500(world: World, fuzz_grant: str) -> None:
    seen: Counter[str] = Counter()

    @FUZZ
    @given(spec=op_specs())
    def check(spec: dict[str, Any]) -> None:
        dry_run(world, fuzz_grant, "stats", spec, seen)

    check()
    assert seen["answered"] >= 3, seen  # the specs reach the engine, not only the validators


@pytest.mark.slow
def test_grouped_queries_that_fail_at_run_time_are_answered_or_refused_never_a_500(world: World, fuzz_grant: str) -> None:
    seen: Counter[str] = Counter()

    @FUZZ
    @given(sql=grouped_queries())
    def check(sql: str) -> None:
        dry_run(world, fuzz_grant, "query", {"sql": sql}, seen)

    check()
    assert seen["answered"] >= 3, seen  # the specs reach the engine, not only the validators
