"""The policy model: deny by default, ACRO's defaults, and validation against dataset schemas."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from core.errors import ValidationFailed
from core.schema import DatasetMeta
from core.values import JobKind
from policies.model import ColumnUse, Disclosure, Policy, check_against
from tests.conftest import PUMS_META, PUMS_POLICY, data_file

SCHEMAS = {"pums": DatasetMeta.model_validate(PUMS_META).schema_only()}
QUERY = frozenset({JobKind.QUERY})


def test_disclosure_defaults_are_acros() -> None:
    acro = yaml.safe_load(data_file("acro/default.yaml").read_text())
    defaults = Disclosure()
    assert defaults.threshold == acro["safe_threshold"]
    assert defaults.dof_threshold == acro["safe_dof_threshold"]
    assert defaults.nk_n == acro["safe_nk_n"]
    assert defaults.nk_k == acro["safe_nk_k"]
    assert defaults.p_ratio == acro["safe_pratio_p"]
    assert defaults.zeros_disclosive == acro["zeros_are_disclosive"]
    assert defaults.check_missing == acro["check_missing_values"]
    assert defaults.round_base == acro["safe_round_base"]


def test_unnamed_columns_are_denied() -> None:
    policy = Policy.model_validate(PUMS_POLICY)
    assert policy.use_of("pums", "income") is ColumnUse.MEASURE
    assert policy.use_of("pums", "married") is ColumnUse.DENY
    assert policy.use_of("pums", "pid") is ColumnUse.DENY
    assert policy.use_of("other", "age") is ColumnUse.DENY


def test_valid_policy_passes() -> None:
    check_against(Policy.model_validate(PUMS_POLICY), SCHEMAS, QUERY)


def _with(dataset: str, column: str, use: str, **extra: Any) -> dict[str, Any]:
    return {**PUMS_POLICY, "columns": {dataset: {**PUMS_POLICY["columns"].get(dataset, {}), column: use}}, **extra}


BAD = [
    ("identifier-plain", _with("pums", "pid", "plain"), "an identifier column cannot be plain"),
    ("identifier-dimension", _with("pums", "pid", "dimension"), "an identifier column cannot be dimension"),
    ("identifier-measure", _with("pums", "pid", "measure"), "an identifier column cannot be measure"),
    ("sensitive-plain", _with("pums", "income", "plain"), "a sensitive column cannot be plain"),
    ("unknown-column", _with("pums", "salary", "measure"), "unknown column"),
    ("unknown-dataset", _with("taxes", "amount", "measure"), "not a dataset of this grant"),
    ("kind-not-requested", {**PUMS_POLICY, "job_kinds": ["query", "script"]}, "not requested by the analyst: script"),
]


@pytest.mark.parametrize(("policy", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_policy_refused_against_schema(policy: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        check_against(Policy.model_validate(policy), SCHEMAS, QUERY)
    assert message in str(err.value.details)


MALFORMED = [
    ("unknown-use", _with("pums", "age", "show")),
    ("unknown-aggregate", {**PUMS_POLICY, "aggregates": ["count", "median_of_medians"]}),
    ("no-aggregates", {**PUMS_POLICY, "aggregates": []}),
    ("no-kinds", {**PUMS_POLICY, "job_kinds": []}),
    ("everything-denied", {**PUMS_POLICY, "columns": {"pums": {"age": "deny"}}}),
    ("threshold-zero", {**PUMS_POLICY, "disclosure": {"threshold": 0}}),
    ("nk-k-above-one", {**PUMS_POLICY, "disclosure": {"nk_k": 1.5}}),
    ("unknown-setting", {**PUMS_POLICY, "disclosure": {"epsilon": 1.0}}),
    ("unknown-release-mode", {**PUMS_POLICY, "release_mode": "yolo"}),
    ("unknown-field", {**PUMS_POLICY, "budget": 3}),
]


@pytest.mark.parametrize("policy", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_policy_is_rejected_by_the_model(policy: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate(policy)
