"""Validation errors name fields in the request's own terms: no internal class name, no union member, no input value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from core.errors import ValidationFailed
from core.schema import ColumnSpec, DatasetMeta
from jobs.stats.specs import parse_spec
from policies.model import Policy
from sandbox.api.schemas import JobIn
from sandbox.service.validation import parse_model
from tests.conftest import World, auth

META = {"name": "x", "title": "t", "level": "一般", "privacy_unit": "p"}
CASES = [
    # (model, input, expected problems)
    ("body-not-an-object", JobIn, [1], [{"field": "request body", "problem": "Input should be an object"}]),
    ("nested-not-an-object", Policy, {"columns": {}, "aggregates": ["count"], "job_kinds": ["query"], "he": 3}, None),
    ("column-spec-not-an-object", DatasetMeta, META | {"columns": {"p": 3}}, None),
    ("scalar-union-member", ColumnSpec, {"role": "sensitive", "type": "int", "domain": [{"a": 1}]}, None),
    ("missing-nested-field", Policy, {"columns": {}, "aggregates": ["count"], "job_kinds": ["query"], "dp": {"epsilon_total": 1}}, None),
]
CLASS_NAMES = ["JobIn", "HESettings", "ColumnSpec", "DPSettings", "Policy", "Bounds", "CrosstabSpec", "OlsSpec"]


def _problems(model: Any, data: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse_model(model, data, "request body")
    return list(caught.value.details["problems"])


@pytest.mark.parametrize(("model", "data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_problems_name_fields_not_classes(model: Any, data: Any, expected: list[dict[str, str]] | None) -> None:
    problems = _problems(model, data)
    text = json.dumps(problems)
    assert not [name for name in CLASS_NAMES if name in text]
    assert not [p for p in problems if {".int", ".str", ".float", ".bool"} & {"." + p["field"].rsplit(".", 1)[-1]}]
    if expected is not None:
        assert problems == expected


def test_paths_follow_the_input() -> None:
    assert [p["field"] for p in _problems(Policy, {"columns": {}, "aggregates": ["count"], "job_kinds": ["query"], "he": 3})] == ["he"]
    missing = _problems(Policy, {"columns": {}, "aggregates": ["count"], "job_kinds": ["query"], "dp": {"epsilon_total": 1}})
    assert [p["field"] for p in missing] == ["dp.epsilon_per_job", "dp.delta_total", "dp.max_rows_per_unit"]
    assert {p["field"] for p in _problems(ColumnSpec, {"role": "sensitive", "type": "int", "domain": [{"a": 1}]})} == {"domain.0"}


def test_a_stats_spec_names_its_own_fields_and_never_echoes_the_op() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_spec({"op": "crosstab", "dataset": 3, "index": ["educ"]})
    assert caught.value.details["problems"] == [{"field": "dataset", "problem": "Input should be a valid string"}]
    with pytest.raises(ValidationFailed) as caught:
        parse_spec({"op": "secret-op-xyz"})
    assert caught.value.details["problems"][0]["field"] == "op"
    assert "secret-op-xyz" not in json.dumps(caught.value.details) + caught.value.message
    assert "crosstab" in caught.value.message  # what is expected


def test_the_api_answers_a_list_body_without_the_models_name(client: FlaskClient, world: World) -> None:
    response = client.post("/api/v1/jobs", headers=auth(world.analyst), json=[1])
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "JobIn" not in body
    assert response.json["error"]["details"]["problems"] == [{"field": "request body", "problem": "Input should be an object"}]
