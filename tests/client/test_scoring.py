"""The analyst's scoring client (``sandbox.client.scoring``) on its own: the overflow check and the key check on decrypting."""

from __future__ import annotations

import pandas as pd
import pytest

from crypto import paillier
from sandbox.client import scoring

COLUMNS = {"age": {"bounds": {"lower": 0, "upper": 100}}, "income": {"bounds": {"lower": -5_000, "upper": 500_000}}, "code": {}}


@pytest.fixture(scope="module")
def key() -> paillier.KeyPair:
    return paillier.generate()


def test_a_model_within_the_keys_range_passes(key: paillier.KeyPair) -> None:
    scoring.check_range(key.public, COLUMNS, {"age": 0.5, "income": -0.001}, 3, 6, 2)


@pytest.mark.parametrize(
    ("weights", "intercept"),
    [({"income": "1e610"}, 0), ({"age": 1}, "1e620"), ({"code": 1}, 0)],
    ids=["weight", "intercept", "no bounds"],
)
def test_a_model_that_could_overflow_is_refused_before_submitting(key: paillier.KeyPair, weights: dict[str, str], intercept: str) -> None:
    with pytest.raises(ValueError, match=r"overflow|bounds"):
        scoring.check_range(key.public, COLUMNS, weights, intercept, 6, 0)


def test_the_spec_carries_ciphertexts_of_the_model(key: paillier.KeyPair) -> None:
    spec = scoring.spec(key.public, "persons", {"age": 0.25, "income": -2}, 1.5, ["a", 7], 3, None)
    assert spec["features"] == ["age", "income"]
    assert spec["entities"] == ["a", "7"]
    assert "feature_scale" not in spec
    values = [paillier.decode(paillier.decrypt(key.private, int(c)), 3, key.public) for c in [*spec["weights"], spec["intercept"]]]
    assert [float(v) for v in values] == [0.25, -2, 1.5]


def test_scores_under_another_key_are_refused(key: paillier.KeyPair) -> None:
    frame = pd.DataFrame({"entity": ["a"], "score": [str(paillier.encrypt(key.public, 5))]})
    frame.attrs["summary"] = {"key": "0" * 64, "scale": 0}
    with pytest.raises(ValueError, match="not computed under this key"):
        scoring.decrypt(frame, key)
    frame.attrs["summary"] = {"key": key.public.fingerprint, "scale": 0}
    assert scoring.decrypt(frame, key)["score"].tolist() == [5.0]
