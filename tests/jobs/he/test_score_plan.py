"""Planning scoring jobs: the spec's shape and ciphertexts (400), the grant's policy (422), the scales."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import PolicyViolation, ValidationFailed
from core.schema import DatasetMeta, DatasetSchema
from crypto import paillier
from crypto.paillier import KeyPair
from jobs import he
from jobs.he.score import ScoreRule, plan_score
from policies.model import Policy

FIRMS_META: dict[str, Any] = {
    "name": "firms",
    "title": "Enterprise register extract",
    "level": "重要",
    "privacy_unit": "credit_code",
    "columns": {
        "credit_code": {"role": "identifier", "type": "string"},
        "revenue": {"role": "sensitive", "type": "float", "bounds": [0, 1_000_000]},
        "employees": {"role": "sensitive", "type": "int", "bounds": [0, 10_000]},
        "district": {"role": "quasi_identifier", "type": "string"},
        "founded": {"role": "attribute", "type": "int", "bounds": [1949, 2030]},
        "rating": {"role": "attribute", "type": "int"},
        "listed": {"role": "attribute", "type": "bool"},
    },
}
SCHEMAS: dict[str, DatasetSchema] = {"firms": DatasetMeta.model_validate(FIRMS_META).schema_only()}
UNIQUE = frozenset({"firms"})
LIMITS = {"max_entities_per_job": 3, "max_jobs_per_entity": 2, "period_days": 30}
POLICY_DATA: dict[str, Any] = {
    "columns": {
        "firms": {
            "revenue": "measure",
            "employees": "measure",
            "district": "dimension",
            "founded": "plain",
            "rating": "measure",
            "listed": "plain",
            "credit_code": "join_key",
        }
    },
    "aggregates": ["count", "sum"],
    "job_kinds": ["he"],
    "he": {"score": LIMITS},
}
POLICY = Policy.model_validate(POLICY_DATA)


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return paillier.generate()


@pytest.fixture(scope="module")
def foreign(key: KeyPair) -> int:
    """A ciphertext of another key of the same size that lies outside this key's range.

    Those of a larger modulus mostly do; one that happens to lie inside is a valid ciphertext of this
    key as far as anyone without the private key can tell, and only garbles the sender's own scores.
    """
    for _ in range(50):
        other = paillier.generate()
        for _ in range(20):
            c = paillier.encrypt(other.public, 7)
            if c >= key.public.nsquare:
                return c
    raise AssertionError("no foreign ciphertext outside the key's range")


def encrypted(key: KeyPair, value: float) -> str:
    return str(paillier.encrypt(key.public, paillier.encode(value, 6, key.public)))


def spec(key: KeyPair, **changes: Any) -> dict[str, Any]:
    features = changes.pop("features", ["employees", "founded"])
    base: dict[str, Any] = {
        "op": "score",
        "dataset": "firms",
        "features": features,
        "public_key": key.public.as_dict(),
        "scale": 6,
        "weights": [encrypted(key, 0.5) for _ in features],
        "intercept": encrypted(key, -1.25),
        "entities": ["91310000A", "91310000B"],
    }
    return base | changes


def test_a_valid_spec_becomes_a_plan(key: KeyPair) -> None:
    plan = plan_score(spec(key, entities=["b", "a", "b"]), POLICY, SCHEMAS, UNIQUE)
    assert plan.features == ("employees", "founded")
    assert (plan.feature_scale, plan.weights_scale, plan.result_scale) == (0, 6, 6)
    assert plan.entities == ("b", "a")  # distinct, first-asked order
    assert plan.requested == 3
    assert plan.privacy_unit == "credit_code"
    assert plan.public == key.public
    assert plan.limits.max_jobs_per_entity == 2


def test_float_features_take_the_stated_feature_scale(key: KeyPair) -> None:
    plan = plan_score(spec(key, features=["revenue", "employees"], feature_scale=2, scale=4), POLICY, SCHEMAS, UNIQUE)
    assert (plan.feature_scale, plan.weights_scale, plan.result_scale) == (2, 4, 6)


def test_the_he_package_dispatches_on_op(key: KeyPair) -> None:
    assert he.plan(spec(key), POLICY, SCHEMAS, UNIQUE).dataset == "firms"
    with pytest.raises(ValidationFailed, match="aggregate, score"):
        he.plan({"op": "decrypt"}, POLICY, SCHEMAS, UNIQUE)


# --- 400: the spec's shape, the key and the ciphertexts ------------------------------------------


def _shape_cases(key: KeyPair, foreign: int) -> dict[str, dict[str, Any]]:
    n = key.public.n
    p = key.private.p
    return {
        "missing key": {"public_key": {}},
        "key not a number": {"public_key": {"n": "twelve"}},
        "1024-bit key": {"public_key": {"n": str(n >> 1024 | 1)}},
        "even modulus": {"public_key": {"n": str(n + 1)}},
        "fingerprint of another key": {"public_key": {**key.public.as_dict(), "fingerprint": "0" * 64}},
        "weight not a number": {"weights": ["abc", encrypted(key, 1)]},
        "weight a float": {"weights": [1.5, encrypted(key, 1)]},
        "weight zero": {"weights": ["0", encrypted(key, 1)]},
        "weight n squared": {"weights": [str(n * n), encrypted(key, 1)]},
        "weight shares a factor with n": {"weights": [str(p * 12345), encrypted(key, 1)]},
        "weight of a foreign key": {"weights": [str(foreign), encrypted(key, 1)]},
        "intercept negative": {"intercept": "-5"},
        "one weight for two features": {"weights": [encrypted(key, 1)]},
        "feature twice": {"features": ["employees", "employees"]},
        "unknown feature": {"features": ["profit"]},
        "no entities": {"entities": []},
        "empty entity": {"entities": [""]},
        "entity too long": {"entities": ["x" * 201]},
        "scale too large": {"scale": 13},
        "feature scale too large": {"features": ["revenue"], "feature_scale": 7},
        "float feature without a feature scale": {"features": ["revenue"]},
        "feature scale for integers": {"feature_scale": 2},
        "extra field": {"epsilon": 1.0},
        "another dataset name shape": {"dataset": "Firms\n; DROP"},
    }


SHAPE_CASES = (
    "missing key",
    "key not a number",
    "1024-bit key",
    "even modulus",
    "fingerprint of another key",
    "weight not a number",
    "weight a float",
    "weight zero",
    "weight n squared",
    "weight shares a factor with n",
    "weight of a foreign key",
    "intercept negative",
    "one weight for two features",
    "feature twice",
    "unknown feature",
    "no entities",
    "empty entity",
    "entity too long",
    "scale too large",
    "feature scale too large",
    "float feature without a feature scale",
    "feature scale for integers",
    "extra field",
    "another dataset name shape",
)


def test_every_shape_case_is_listed(key: KeyPair) -> None:
    assert tuple(_shape_cases(key, 0)) == SHAPE_CASES


@pytest.mark.parametrize("case", SHAPE_CASES)
def test_malformed_specs_are_400(key: KeyPair, foreign: int, case: str) -> None:
    changes = _shape_cases(key, foreign)[case]
    if "features" in changes and "weights" not in changes:
        changes = {**changes, "weights": [encrypted(key, 1) for _ in changes["features"]]}
    with pytest.raises(ValidationFailed) as caught:
        plan_score(spec(key, **changes), POLICY, SCHEMAS, UNIQUE)
    assert caught.value.status == 400


def test_a_400_never_echoes_the_ciphertext(key: KeyPair) -> None:
    bad = str(key.public.nsquare + 12345)
    with pytest.raises(ValidationFailed) as caught:
        plan_score(spec(key, weights=[bad, encrypted(key, 1)]), POLICY, SCHEMAS, UNIQUE)
    assert bad not in caught.value.message
    assert bad not in str(caught.value.details)
    assert caught.value.details["field"] == "spec.weights[0]"


# --- 422: the policy ------------------------------------------------------------------------------


POLICY_CASES = [
    pytest.param({"features": ["district"]}, POLICY_DATA, ScoreRule.COLUMN_DENIED, id="dimension"),
    pytest.param({"features": ["credit_code"]}, POLICY_DATA, ScoreRule.COLUMN_DENIED, id="privacy unit"),
    pytest.param({"features": ["listed"]}, POLICY_DATA, ScoreRule.NOT_NUMERIC, id="bool"),
    pytest.param({"features": ["rating"]}, POLICY_DATA, ScoreRule.BOUNDS_REQUIRED, id="no bounds"),
    pytest.param(
        {"features": ["employees"]},
        {**POLICY_DATA, "columns": {"firms": {"revenue": "measure"}}},
        ScoreRule.COLUMN_DENIED,
        id="not named by the policy",
    ),
    pytest.param({}, {k: v for k, v in POLICY_DATA.items() if k != "he"}, ScoreRule.SCORE_NOT_ALLOWED, id="no he block"),
    pytest.param({}, {**POLICY_DATA, "he": {}}, ScoreRule.SCORE_NOT_ALLOWED, id="he without score"),
    pytest.param({"dataset": "tax"}, POLICY_DATA, ScoreRule.DATASET_NOT_GRANTED, id="dataset not granted"),
    pytest.param({"entities": ["a", "b", "c", "d"]}, POLICY_DATA, ScoreRule.TOO_MANY_ENTITIES, id="too many entities"),
]


@pytest.mark.parametrize(("changes", "policy", "rule"), POLICY_CASES)
def test_policy_refusals_are_422(key: KeyPair, changes: dict[str, Any], policy: dict[str, Any], rule: ScoreRule) -> None:
    if "features" in changes:
        changes = {**changes, "weights": [encrypted(key, 1) for _ in changes["features"]]}
    with pytest.raises(PolicyViolation) as caught:
        plan_score(spec(key, **changes), Policy.model_validate(policy), SCHEMAS, UNIQUE)
    assert caught.value.status == 422
    assert caught.value.details["rule"] == rule.value


def test_duplicates_count_once_against_the_entity_limit(key: KeyPair) -> None:
    plan = plan_score(spec(key, entities=["a", "b", "c", "a", "c"]), POLICY, SCHEMAS, UNIQUE)
    assert plan.entities == ("a", "b", "c")


def test_the_limit_names_counts_never_entities(key: KeyPair) -> None:
    with pytest.raises(PolicyViolation) as caught:
        plan_score(spec(key, entities=["e1", "e2", "e3", "e4"]), POLICY, SCHEMAS, UNIQUE)
    assert caught.value.details["limit"] == 3
    assert caught.value.details["requested"] == 4
    assert "e1" not in caught.value.message


def test_a_dataset_with_repeated_units_is_refused(key: KeyPair) -> None:
    with pytest.raises(PolicyViolation) as caught:
        plan_score(spec(key), POLICY, SCHEMAS, frozenset())
    assert caught.value.details["rule"] == ScoreRule.UNITS_NOT_UNIQUE.value
