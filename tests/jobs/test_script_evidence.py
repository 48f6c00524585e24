"""A helper's evidence is parsed strictly, checked against its table and judged by the grant's rules."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from jobs.script import evidence
from policies.model import Disclosure

SUMS = pa.table({"sex": [0, 1], "sum": [1000.0, 250.0]})


def crosstab(cells: list[Any], aggregate: str = "sum") -> dict[str, Any]:
    return {"helper": "crosstab", "aggregate": aggregate, "keys": ["sex"], "cells": cells}


def cell(value: float, units: int, top: list[float], total: float, **extra: Any) -> dict[str, Any]:
    return {"value": value, "units": units, "top": top, "total": total, "negative": 0, "missing": 0, **extra}


def test_dominated_and_small_cells_are_flagged_and_the_rest_pass() -> None:
    found = crosstab([cell(1000.0, 20, [950.0, 10.0], 1000.0), cell(250.0, 30, [20.0, 20.0], 250.0)])
    judged = evidence.judge(found, SUMS, Disclosure())
    assert judged["matches_table"] is True
    assert judged["status"] == "suppress"
    assert [(f["row"], f["rule"]) for f in judged["flagged"]] == [(0, "nk_dominance")]
    few = evidence.judge(crosstab([cell(1000.0, 3, [400.0, 300.0], 1000.0), cell(250.0, 30, [20.0, 20.0], 250.0)]), SUMS, Disclosure())
    assert [(f["row"], f["rule"]) for f in few["flagged"]] == [(0, "threshold")]


def test_evidence_of_another_table_does_not_match() -> None:
    found = crosstab([cell(999.0, 20, [20.0, 10.0], 999.0), cell(250.0, 30, [20.0, 20.0], 250.0)])
    assert evidence.judge(found, SUMS, Disclosure())["matches_table"] is False


@pytest.mark.parametrize(
    "found",
    [
        pytest.param([], id="not-an-object"),
        pytest.param({"helper": "other", "aggregate": "sum", "cells": []}, id="unknown-helper"),
        pytest.param(crosstab([], "median"), id="unknown-aggregate"),
        pytest.param(crosstab(["x"]), id="cell-not-an-object"),
        pytest.param(crosstab([cell(1.0, -1, [], 1.0)]), id="negative-count"),
        pytest.param(crosstab([cell(1.0, True, [], 1.0)]), id="boolean-count"),
        pytest.param(crosstab([cell(1.0, 2, [1.0] * 11, 1.0)]), id="too-many-top-values"),
        pytest.param(crosstab([cell(1.0, 2, ["1"], 1.0)]), id="top-not-numbers"),
        pytest.param(crosstab([cell(1.0, 2, [], 1e400)]), id="infinite-total"),
    ],
)
def test_malformed_evidence_is_refused(found: Any) -> None:
    with pytest.raises(evidence.EvidenceRefused):
        evidence.judge(found, SUMS, Disclosure())


COEFS = pa.table({"term": ["const", "age"], "coef": [1.5, 0.25]})


@pytest.mark.parametrize(("dof", "status"), [(8.0, "suppress"), (10.0, "pass")], ids=["below-threshold", "at-threshold"])
def test_a_models_degrees_of_freedom_are_judged_against_the_threshold(dof: float, status: str) -> None:
    judged = evidence.judge({"helper": "ols", "dof": dof, "nobs": 12, "coef": [1.5, 0.25]}, COEFS, Disclosure(dof_threshold=10))
    assert judged["status"] == status
    assert judged["matches_table"] is True
    assert [f["rule"] for f in judged["flagged"]] == (["dof"] if status == "suppress" else [])


def test_a_models_evidence_of_other_coefficients_does_not_match() -> None:
    judged = evidence.judge({"helper": "logit", "dof": 50.0, "nobs": 52, "coef": [1.5, 0.3]}, COEFS, Disclosure())
    assert judged["matches_table"] is False


@pytest.mark.parametrize(
    "found",
    [
        pytest.param({"helper": "ols", "dof": "8", "nobs": 12, "coef": []}, id="dof-not-a-number"),
        pytest.param({"helper": "ols", "dof": 8.0, "nobs": -1, "coef": []}, id="negative-nobs"),
        pytest.param({"helper": "ols", "dof": 8.0, "nobs": 12, "coef": "1.5"}, id="coef-not-a-list"),
    ],
)
def test_malformed_model_evidence_is_refused(found: Any) -> None:
    with pytest.raises(evidence.EvidenceRefused):
        evidence.judge(found, COEFS, Disclosure())
