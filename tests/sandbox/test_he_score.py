"""Scoring jobs end to end: the bank's encrypted model over consenting entities, the limits, the refusals.

A bank (the analyst) scores persons of a bureau's table with a key pair of its own; the scores it
decrypts must equal the model computed in the clear on the same rows, and entities that may not be
scored must be dropped and counted without telling why.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from sqlalchemy import func, select, update

from crypto import paillier
from crypto.paillier import KeyPair
from jobs.engine import DuckDBEngine
from sandbox.db import get_db_of
from sandbox.models import Consent, Job, ScoreUse
from sandbox.runtime import he_score
from sandbox.runtime.queue import Queue
from tests.conftest import World, auth
from tests.sandbox.jobkit import events, job_json, run_worker
from tests.sandbox.scorekit import (
    API,
    LIMITS,
    PERSONS_META,
    InProcess,
    decrypted,
    person,
    persons_frame,
    register,
    revoke,
    score_grant,
    score_policy,
    score_spec,
    submit_score,
    upload_persons,
)

CONSENTING = [person(p) for p in range(1, 21)]
SUMMARY_KEYS = {"status", "op", "key", "scale", "weights_scale", "feature_scale", "features"}
COUNT_KEYS = {"requested", "distinct", "scored", "over_quota", "unavailable"}


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return paillier.generate()


@pytest.fixture
def persons(world: World, tmp_path: Path) -> dict[str, Any]:
    return upload_persons(world, tmp_path)


@pytest.fixture
def grant_id(world: World, persons: dict[str, Any]) -> str:
    grant_id = score_grant(world, persons["id"])
    assert register(world, grant_id, CONSENTING).status_code == 201
    return grant_id


def run_score(app: Flask, world: World, grant_id: str, spec: dict[str, Any], in_process: bool = False) -> dict[str, Any]:
    """Submit and run one score job; ``in_process`` runs it in this process, where a test's monkeypatch reaches it."""
    response = submit_score(world, grant_id, spec)
    assert response.status_code == 202, response.json
    assert run_worker(app, DuckDBEngine() if in_process else None) == 1
    return job_json(world, response.json["id"])


def uses(app: Flask, entity: str | None = None) -> int:
    with get_db_of(app).sessions() as session:
        query = select(func.count()).select_from(ScoreUse)
        return int(session.scalar(query if entity is None else query.where(ScoreUse.entity == entity)) or 0)


# --- the scores -----------------------------------------------------------------------------------


def test_scores_match_numpy_on_the_plaintext_features(app: Flask, world: World, grant_id: str, key: KeyPair) -> None:
    weights, intercept = {"age": 0.031, "income": 0.000012}, -2.5
    job = run_score(app, world, grant_id, score_spec(key, CONSENTING, weights, intercept))
    assert job["status"] == "released", job
    result = decrypted(world, job["id"], key)

    frame = persons_frame().set_index("person_id").loc[CONSENTING]
    expected = intercept + frame[["age", "income"]].to_numpy(dtype=float) @ np.array([weights["age"], weights["income"]])
    got = np.array([float(result["scores"][e]) for e in CONSENTING])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    for entity, row in frame.iterrows():  # and exactly, in decimals
        exact = Decimal("-2.5") + Decimal("0.031") * int(row["age"]) + Decimal("0.000012") * int(row["income"])
        assert result["scores"][entity] == exact
    assert [r["entity"] for r in result["rows"]] == CONSENTING
    assert result["summary"]["scale"] == 6
    assert result["summary"]["key"] == key.public.fingerprint


def test_float_features_are_rounded_at_the_stated_feature_scale(app: Flask, world: World, grant_id: str, key: KeyPair) -> None:
    spec = score_spec(key, CONSENTING, {"income_k": 0.25, "age": -0.5}, scale=2, feature_scale=3)
    job = run_score(app, world, grant_id, spec)
    result = decrypted(world, job["id"], key)
    assert (result["summary"]["scale"], result["summary"]["feature_scale"], result["summary"]["weights_scale"]) == (5, 3, 2)
    frame = persons_frame().set_index("person_id").loc[CONSENTING]
    expected = -1 + 0.25 * np.round(frame["income_k"].to_numpy(), 3) - 0.5 * frame["age"].to_numpy()
    np.testing.assert_allclose([float(result["scores"][e]) for e in CONSENTING], expected, rtol=0, atol=1e-9)


def test_scores_are_fresh_ciphertexts(app: Flask, world: World, grant_id: str, key: KeyPair) -> None:
    """Every score is re-randomised: never the analyst's own ciphertext, never the same twice."""
    spec = score_spec(key, CONSENTING[:3], {"age": 0, "income": 0})
    first = decrypted(world, run_score(app, world, grant_id, spec)["id"], key)
    second = decrypted(world, run_score(app, world, grant_id, spec)["id"], key)
    sent = {spec["intercept"], *spec["weights"]}
    released = [r["score"] for r in first["rows"] + second["rows"]]
    assert not sent & set(released)
    assert len(set(released)) == len(released)
    assert set(first["scores"].values()) == {Decimal(-1)}


def test_the_python_client_scores_and_decrypts(app: Flask, world: World, grant_id: str) -> None:
    steward, bank = InProcess(app, world.client, world.steward), InProcess(app, world.client, world.analyst)
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert steward.register_consents(grant_id, [person(999_999), CONSENTING[0]], until)["renewed"] == 1
    assert steward.revoke_consents(grant_id, [person(999_999)])["revoked"] == 1
    assert len(steward.consents(grant_id, limit=5)["items"]) == 5
    assert bank.consents(grant_id)["items"] is None
    frame = bank.score(grant_id, "persons", {"age": 1, "income": 0.001}, 10, [*CONSENTING[:5], person(999_999)])
    table = persons_frame().set_index("person_id").loc[CONSENTING[:5]]
    assert list(frame.columns) == ["entity", "score", "score_exact"]
    assert list(frame["entity"]) == CONSENTING[:5]
    np.testing.assert_allclose(frame["score"], 10 + table["age"] + 0.001 * table["income"], rtol=0, atol=1e-9)
    assert frame.attrs["summary"]["scored"] == 5
    assert frame.attrs["summary"]["unavailable"] == 1


# --- who is scored --------------------------------------------------------------------------------


def test_entities_without_current_consent_are_dropped_and_counted(app: Flask, world: World, grant_id: str, key: KeyPair) -> None:
    revoked, expired = CONSENTING[:3], CONSENTING[3:5]
    assert revoke(world, grant_id, revoked).status_code == 200
    with get_db_of(app).writing() as session:
        session.execute(update(Consent).where(Consent.entity.in_(expired)).values(valid_until=Consent.created_at))
    never = [person(p) for p in range(100, 104)]  # in the data, never consented
    absent = [person(900_001), person(900_002)]  # consenting, not in the data
    assert register(world, grant_id, absent).status_code == 201
    asked = CONSENTING + never + absent + CONSENTING[:2]  # duplicates count once

    job = run_score(app, world, grant_id, score_spec(key, asked))
    result = decrypted(world, job["id"], key)

    assert set(result["scores"]) == set(CONSENTING[5:])
    summary = result["summary"]
    assert set(summary) == SUMMARY_KEYS | COUNT_KEYS  # no count tells one reason from another
    assert {k: summary[k] for k in COUNT_KEYS} == {"requested": 28, "distinct": 26, "scored": 15, "over_quota": 0, "unavailable": 11}
    assert job["verdict"] == summary


def test_not_consenting_and_not_in_the_data_look_the_same(app: Flask, world: World, grant_id: str, key: KeyPair) -> None:
    assert register(world, grant_id, [person(900_001)]).status_code == 201
    in_data_no_consent = run_score(app, world, grant_id, score_spec(key, [CONSENTING[0], person(150)]))
    consent_not_in_data = run_score(app, world, grant_id, score_spec(key, [CONSENTING[1], person(900_001)]))
    first, second = (decrypted(world, j["id"], key) for j in (in_data_no_consent, consent_not_in_data))
    assert {k: first["summary"][k] for k in COUNT_KEYS} == {k: second["summary"][k] for k in COUNT_KEYS}
    assert (first["columns"], len(first["rows"]), in_data_no_consent["status"]) == (second["columns"], len(second["rows"]), "released")


def test_int_privacy_units_match_their_decimal_text(app: Flask, world: World, pums: dict[str, Any], key: KeyPair) -> None:
    policy = score_policy(columns={"pums": {"age": "measure", "income": "measure"}})
    grant_id = score_grant(world, pums["id"], policy)
    assert register(world, grant_id, ["1", "2", "3"]).status_code == 201
    spec = score_spec(key, ["1", "2", "3", "01"], dataset="pums")
    result = decrypted(world, run_score(app, world, grant_id, spec)["id"], key)
    assert sorted(result["scores"]) == ["1", "2", "3"]
    assert result["summary"]["unavailable"] == 1


def test_over_quota_entities_are_dropped_on_the_n_plus_first_job(app: Flask, world: World, grant_id: str, key: KeyPair) -> None:
    assert LIMITS["max_jobs_per_entity"] == 2
    first = CONSENTING[:4]
    for _ in range(2):
        assert decrypted(world, run_score(app, world, grant_id, score_spec(key, first))["id"], key)["summary"]["scored"] == 4
    third = decrypted(world, run_score(app, world, grant_id, score_spec(key, [*first, CONSENTING[4]]))["id"], key)
    assert set(third["scores"]) == {CONSENTING[4]}
    assert (third["summary"]["over_quota"], third["summary"]["scored"], third["summary"]["unavailable"]) == (4, 1, 0)
    assert [uses(app, e) for e in first] == [2, 2, 2, 2]
    assert uses(app, CONSENTING[4]) == 1


def test_uses_outside_the_period_do_not_count(app: Flask, world: World, grant_id: str, key: KeyPair) -> None:
    for _ in range(2):
        run_score(app, world, grant_id, score_spec(key, CONSENTING[:1]))
    with get_db_of(app).writing() as session:
        session.execute(update(ScoreUse).values(created_at=datetime.now(UTC) - timedelta(days=LIMITS["period_days"], minutes=1)))
    result = decrypted(world, run_score(app, world, grant_id, score_spec(key, CONSENTING[:1]))["id"], key)
    assert result["summary"]["scored"] == 1


def test_a_retried_job_is_counted_once(app: Flask, world: World, grant_id: str, key: KeyPair) -> None:
    response = submit_score(world, grant_id, score_spec(key, CONSENTING[:3]))
    job_id = response.json["id"]
    db = get_db_of(app)
    dead = Queue(db, app.extensions["sandbox.ledger"], "dead-worker", 30)
    assert dead.claim() is not None  # a worker claims the job, then dies
    with db.writing() as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=Job.created_at))
    assert run_worker(app) == 1
    job = job_json(world, job_id)
    assert (job["status"], job["attempts"]) == ("released", 2)
    assert [uses(app, e) for e in CONSENTING[:3]] == [1, 1, 1]
    with db.writing() as session:  # releasing the same job again records nothing more
        job_row = session.get(Job, job_id)
        assert job_row is not None
        assert he_score.record_uses(session, app.extensions["sandbox.ledger"], job_row, CONSENTING[:3], "test") is None
    assert uses(app) == 3


def test_a_consent_revoked_while_the_job_runs_fails_the_release(
    app: Flask, world: World, grant_id: str, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = he_score.score

    def score_then_revoke(*args: Any, **kwargs: Any) -> he_score.Scored:
        scored = original(*args, **kwargs)
        assert revoke(world, grant_id, CONSENTING[:1]).status_code == 200
        return scored

    monkeypatch.setattr(he_score, "score", score_then_revoke)
    job = run_score(app, world, grant_id, score_spec(key, CONSENTING[:3]), in_process=True)
    assert (job["status"], job["reason"]) == ("failed", he_score.CHANGED)
    assert uses(app) == 0
    assert world.client.get(f"{API}/jobs/{job['id']}/result", headers=auth(world.analyst)).status_code == 409


def test_a_quota_used_up_by_a_concurrent_job_fails_the_later_release(
    app: Flask, world: World, persons: dict[str, Any], key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs score the same entity under a limit of one job: the one released second fails, nothing of it leaves."""
    grant_id = score_grant(world, persons["id"], score_policy(he={"score": {**LIMITS, "max_jobs_per_entity": 1}}))
    assert register(world, grant_id, CONSENTING[:2]).status_code == 201
    original = he_score.score
    second: list[str] = []

    def score_while_another_job_runs(*args: Any, **kwargs: Any) -> he_score.Scored:
        scored = original(*args, **kwargs)
        if not second:  # the first job has computed its scores; a second worker runs the second job to the end
            second.append(submit_score(world, grant_id, score_spec(key, CONSENTING[:1])).json["id"])
            assert run_worker(app, DuckDBEngine()) == 1
        return scored

    monkeypatch.setattr(he_score, "score", score_while_another_job_runs)
    first = run_score(app, world, grant_id, score_spec(key, CONSENTING[:2]), in_process=True)
    assert job_json(world, second[0])["status"] == "released"
    assert (first["status"], first["reason"]) == ("failed", he_score.CHANGED)
    assert (uses(app, CONSENTING[0]), uses(app, CONSENTING[1])) == (1, 0)


def test_a_held_score_is_counted_when_an_auditor_releases_it(app: Flask, world: World, persons: dict[str, Any], key: KeyPair) -> None:
    grant_id = score_grant(world, persons["id"], score_policy(release_mode="always_review"))
    assert register(world, grant_id, CONSENTING[:2]).status_code == 201
    job = run_score(app, world, grant_id, score_spec(key, CONSENTING[:2]))
    assert job["status"] == "held"
    assert uses(app) == 0
    response = world.client.post(
        f"{API}/reviews/{job['id']}", headers=auth(world.auditor), json={"decision": "release", "reason": "counts only"}
    )
    assert response.status_code == 200, response.json
    assert response.json["status"] == "released"
    assert uses(app) == 2
    assert set(decrypted(world, job["id"], key)["scores"]) == set(CONSENTING[:2])


# --- refusals -------------------------------------------------------------------------------------


def test_too_many_entities_is_422(world: World, grant_id: str, key: KeyPair) -> None:
    entities = [person(p) for p in range(1, LIMITS["max_entities_per_job"] + 2)]
    response = submit_score(world, grant_id, score_spec(key, entities))
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == "max_entities_per_job"
    refused = [e for e in events(world) if e["action"] == "job.refused"]
    assert refused[-1]["details"]["rule"] == "max_entities_per_job"


@pytest.mark.parametrize(
    ("feature", "rule"),
    [("educ", "column_denied"), ("married", "column_denied"), ("person_id", "column_denied")],
    ids=["dimension", "not in the policy", "the identifier"],
)
def test_features_not_allowed_by_the_policy_are_422(world: World, grant_id: str, key: KeyPair, feature: str, rule: str) -> None:
    response = submit_score(world, grant_id, score_spec(key, CONSENTING, {feature: 1}))
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == rule


def _bad(key: KeyPair, case: str) -> dict[str, Any]:
    spec = score_spec(key, CONSENTING)
    n = key.public.n
    changes: dict[str, Any] = {
        "weight not a number": {"weights": ["abc", spec["weights"][1]]},
        "weight out of range": {"weights": [str(n * n + 1), spec["weights"][1]]},
        "weight shares a factor with n": {"weights": [str(key.private.q * 3), spec["weights"][1]]},
        "intercept zero": {"intercept": "0"},
        "key of 1024 bits": {"public_key": {"n": str(n >> 1024 | 1)}},
        "key with a wrong fingerprint": {"public_key": {**spec["public_key"], "fingerprint": "f" * 64}},
        "weights missing": {"weights": []},
    }[case]
    return spec | changes


@pytest.mark.parametrize(
    "case",
    [
        "weight not a number",
        "weight out of range",
        "weight shares a factor with n",
        "intercept zero",
        "key of 1024 bits",
        "key with a wrong fingerprint",
        "weights missing",
    ],
)
def test_malformed_ciphertexts_and_keys_are_400(world: World, grant_id: str, key: KeyPair, case: str) -> None:
    response = submit_score(world, grant_id, _bad(key, case))
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "validation_error"


def test_a_ciphertext_under_another_key_is_400(world: World, grant_id: str, key: KeyPair) -> None:
    other = paillier.generate(3072)
    spec = score_spec(key, CONSENTING)
    spec["weights"][0] = str(paillier.encrypt(other.public, 5))  # far above n²
    response = submit_score(world, grant_id, spec)
    assert response.status_code == 400, response.json
    assert response.json["error"]["details"]["field"] == "spec.weights[0]"


def test_a_policy_without_scoring_refuses_score_jobs(world: World, persons: dict[str, Any], key: KeyPair) -> None:
    grant_id = score_grant(world, persons["id"], {k: v for k, v in score_policy().items() if k != "he"})
    response = submit_score(world, grant_id, score_spec(key, CONSENTING))
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == "score_not_allowed"


def test_a_dataset_with_several_rows_per_unit_is_refused(world: World, tmp_path: Path, key: KeyPair) -> None:
    frame = persons_frame()
    path = tmp_path / "persons_dup.csv"
    frame.assign(person_id=[person(1 + i // 2) for i in range(len(frame))]).to_csv(path, index=False)
    response = world.upload(world.steward, {**PERSONS_META, "name": "persons_dup", "title": "Persons, two rows each"}, path)
    assert response.status_code == 201, response.json
    grant_id = score_grant(world, response.json["id"], score_policy(columns={"persons_dup": {"age": "measure", "income": "measure"}}))
    response = submit_score(world, grant_id, score_spec(key, CONSENTING, dataset="persons_dup"))
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == "units_not_unique"


def test_score_jobs_have_no_dry_run(world: World, grant_id: str, key: KeyPair) -> None:
    body = {"grant_id": grant_id, "kind": "he", "spec": score_spec(key, CONSENTING)}
    response = world.client.post(f"{API}/jobs/dry-run", headers=auth(world.analyst), json=body)
    assert response.status_code == 400, response.json


# --- the ledger -----------------------------------------------------------------------------------


def test_the_ledger_records_no_identifiers(app: Flask, world: World, grant_id: str, key: KeyPair) -> None:
    assert revoke(world, grant_id, CONSENTING[:2]).status_code == 200
    run_score(app, world, grant_id, score_spec(key, [*CONSENTING, person(250), person(999_999)]))
    submit_score(world, grant_id, score_spec(key, [person(p) for p in range(1, 60)]))  # refused: too many
    assert world.client.get(f"{API}/grants/{grant_id}/consents", headers=auth(world.steward)).status_code == 200
    found = events(world)
    text = json.dumps(found)
    assert re.search(r"ID\d{6}", text) is None
    actions = {e["action"] for e in found}
    assert {"consent.register", "consent.revoke", "consent.view", "score.use", "job.refused"} <= actions
    use = next(e for e in found if e["action"] == "score.use")
    assert use["details"]["entities"] == 18
    assert use["details"]["entities_sha256"] == he_score.consents.entities_digest(CONSENTING[2:])
