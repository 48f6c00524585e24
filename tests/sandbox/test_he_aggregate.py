"""he aggregates end to end in-process: PUMS income encrypted by its provider, summed as ciphertexts, decrypted by the custodian."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from flask import Flask

from core.schema import DatasetSchema
from core.values import JobStage
from crypto import ledger as ledger_crypto
from crypto import paillier
from jobs import he as he_jobs
from jobs.he import AggregatePlan
from jobs.he import run_aggregate as he_aggregate
from policies.model import Policy
from sandbox.db import get_db_of
from sandbox.keys import get_keys_of
from sandbox.models import JobOutput
from sandbox.runtime import outputs
from sandbox.runtime.custodian import Custodian
from tests.conftest import World, auth
from tests.sandbox.hekit import HE_POLICY, RACE_SPEC, CustodianFixture, he_grant, he_meta, pums_frame, quick_encrypt, submit_he
from tests.sandbox.jobkit import events, job_json, run_worker


def run_he(world: World, app: Flask, grant_id: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    response = submit_he(world, grant_id, spec)
    assert response.status_code == 202, response.json
    assert run_worker(app) == 1
    return job_json(world, response.json["id"])


def result_of(world: World, job_id: str) -> dict[str, Any]:
    response = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst))
    assert response.status_code == 200, response.json
    return dict(response.json)


def test_race_aggregate_equals_the_plaintext_computation(world: World, app: Flask, he_grant_id: str, custodian: CustodianFixture) -> None:
    job = run_he(world, app, he_grant_id)
    assert job["status"] == "released", job
    result = result_of(world, job["id"])
    pums = pums_frame()
    expected = pums.groupby("race").agg(n=("pid", "size"), total=("income", "sum"), mean_income=("income", "mean"))
    rows = {row["race"]: row for row in result["rows"]}
    assert [c["name"] for c in result["columns"]] == ["race", "n", "total", "mean_income"]
    for race in (1, 2, 3, 4):
        assert rows[race]["n"] == expected.loc[race, "n"]
        assert rows[race]["total"] == expected.loc[race, "total"]  # scale 0: exact
        assert rows[race]["mean_income"] == pytest.approx(expected.loc[race, "mean_income"], rel=1e-12)
    # Fewer than 10 persons: keys are outputs, and a group the data made and output control withheld is left out.
    assert set(rows) == {1, 2, 3, 4}
    assert result["notes"] == []
    he = result["summary"]["he"]
    assert he["decrypted"] == 4  # one sum per released race: total and mean_income share it
    assert set(he["rules_not_evaluated"]) == {"nk_dominance", "p_ratio", "negative"}


def test_suppressed_cells_are_never_sent_nor_decrypted(world: World, app: Flask, he_grant_id: str, custodian: CustodianFixture) -> None:
    job = run_he(world, app, he_grant_id)
    (body,) = custodian.sent.bodies
    assert sorted({c["row"] for c in body["decision"]["cells"]}) == [0, 1, 2, 3]
    assert sorted((c["row"], c["column"]) for c in body["ciphertexts"]) == [(0, "income"), (1, "income"), (2, "income"), (3, "income")]
    (line,) = custodian.log()
    assert line["outcome"] == "decrypted"
    assert line["job_id"] == job["id"]
    assert line["cells"] == 4
    assert set(line) == {"ts", "outcome", "job_id", "key", "decision_sha256", "cells"}


def test_raw_output_for_auditors_holds_no_plaintext_of_suppressed_cells(world: World, app: Flask, he_grant_id: str) -> None:
    job = run_he(world, app, he_grant_id)
    with get_db_of(app).sessions() as session:
        output = session.get(JobOutput, job["id"])
        assert output is not None
        raw = outputs.open_raw(get_keys_of(app), output)
    rows = {row["race"]: row for row in raw.to_pylist()}
    assert rows[5]["total"] is None
    assert rows[6]["mean_income"] is None
    assert rows[5]["__units_0"] < 10  # counts and evidence stay for the auditor
    assert rows[1]["total"] == pums_frame().query("race == 1")["income"].sum()


def test_ledger_records_the_decryption_without_values(world: World, app: Flask, he_grant_id: str, custodian: CustodianFixture) -> None:
    job = run_he(world, app, he_grant_id)
    (event,) = [e for e in events(world) if e["action"] == "he.decrypted"]
    assert event["object_id"] == job["id"]
    assert event["details"]["key"] == custodian.public.fingerprint
    assert event["details"]["cells"] == 4
    assert event["details"]["decision_sha256"] == custodian.log()[0]["decision_sha256"] == job["verdict"]["he"]["decision_sha256"]
    assert set(event["details"]) == {"job_id", "key", "cells", "decision_sha256"}
    totals = pums_frame().groupby("race")["income"].sum()
    text = json.dumps([e["details"] for e in events(world)])
    assert not any(str(int(t)) in text for t in totals), "a decrypted total is on the ledger"


def test_two_dimensions_and_a_count_of_values(world: World, app: Flask, he_grant_id: str) -> None:
    spec = {
        "op": "aggregate",
        "dataset": "pums_he",
        "group_by": ["sex", "educ"],
        "aggregates": [{"fn": "count", "column": "income", "name": "with_income"}, {"fn": "sum", "column": "income", "name": "total"}],
    }
    job = run_he(world, app, he_grant_id, spec)
    assert job["status"] == "released", job
    result = result_of(world, job["id"])
    pums = pums_frame()
    grouped = pums.groupby(["sex", "educ"]).agg(units=("pid", "nunique"), total=("income", "sum"), with_income=("income", "count"))
    shown = grouped[grouped.units >= 10]  # the groups withheld whole are left out: their keys would show who is there
    assert [(r["sex"], r["educ"]) for r in result["rows"]] == sorted(shown.index.tolist())  # ordered by the group keys
    for row in result["rows"]:
        cell = grouped.loc[(row["sex"], row["educ"])]
        assert (row["with_income"], row["total"]) == (cell["with_income"], cell["total"])


def test_without_group_by_the_whole_table_is_one_cell(world: World, app: Flask, he_grant_id: str) -> None:
    job = run_he(world, app, he_grant_id, {**RACE_SPEC, "group_by": []})
    (row,) = result_of(world, job["id"])["rows"]
    pums = pums_frame()
    assert row == {"n": len(pums), "total": pums["income"].sum(), "mean_income": pytest.approx(pums["income"].mean())}


def test_always_review_holds_the_decrypted_output_for_an_auditor(world: World, app: Flask, pums_he: dict[str, Any]) -> None:
    grant_id = he_grant(world, pums_he["id"], {**HE_POLICY, "release_mode": "always_review"})
    job = run_he(world, app, grant_id)
    assert job["status"] == "held"
    (item,) = world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"]
    assert item["proposed"]["summary"]["he"]["decrypted"] == 4
    decision = {"decision": "release", "reason": "totals by race are safe to publish"}
    assert world.client.post(f"/api/v1/reviews/{job['id']}", headers=auth(world.auditor), json=decision).status_code == 200
    assert result_of(world, job["id"])["rows"][0]["total"] == pums_frame().query("race == 1")["income"].sum()


def test_a_fine_table_decrypts_only_its_few_large_cells(world: World, app: Flask, he_grant_id: str, custodian: CustodianFixture) -> None:
    job = run_he(world, app, he_grant_id, {**RACE_SPEC, "group_by": ["age", "race"]})
    units = pums_frame().groupby(["age", "race"])["pid"].nunique()
    (body,) = custodian.sent.bodies
    assert len(body["ciphertexts"]) == job["verdict"]["he"]["decrypted"] == int((units >= 10).sum()) < len(units) / 3


def test_a_table_with_nothing_releasable_is_blocked_before_any_decryption(
    world: World, app: Flask, pums_he: dict[str, Any], custodian: CustodianFixture
) -> None:
    grant_id = he_grant(world, pums_he["id"], {**HE_POLICY, "disclosure": {"threshold": 1001}})  # more than all persons
    job = run_he(world, app, grant_id)
    assert job["status"] == "blocked"
    assert not custodian.sent.bodies
    assert not custodian.log()
    assert not [e for e in events(world) if e["action"] == "he.decrypted"]


def test_an_unreachable_custodian_fails_the_job_with_a_clear_reason(world: World, app: Flask, he_grant_id: str) -> None:
    app.extensions["sandbox.custodian"] = Custodian("http://127.0.0.1:9", timeout=5)  # discard port: nothing listens
    job = run_he(world, app, he_grant_id)
    assert job["status"] == "failed"
    assert "key custodian is unreachable" in job["reason"]
    assert not [e for e in events(world) if e["action"] == "he.decrypted"]


def test_a_worker_without_a_custodian_fails_the_job_with_a_clear_reason(world: World, app: Flask, he_grant_id: str) -> None:
    app.extensions["sandbox.custodian"] = None
    job = run_he(world, app, he_grant_id)
    assert job["status"] == "failed"
    assert "SANDBOX_CUSTODIAN_URL" in job["reason"]


def test_a_custodian_that_refuses_fails_the_job(world: World, app: Flask, he_grant_id: str, custodian: CustodianFixture) -> None:
    _, other = ledger_crypto.generate_signing_key()
    custodian.settings.domain_key_file.write_text(ledger_crypto.public_to_pem(other))  # the custodian trusts another domain
    job = run_he(world, app, he_grant_id)
    assert job["status"] == "failed"
    assert "refused" in job["reason"]
    assert "signature" in job["reason"]
    assert custodian.log()[-1] == {**custodian.log()[-1], "outcome": "refused", "reason": "bad_signature"}


def test_dry_run_computes_groups_and_counts_on_mock_rows_never_sums(world: World, he_grant_id: str, custodian: CustodianFixture) -> None:
    body = {"grant_id": he_grant_id, "kind": "he", "spec": {**RACE_SPEC, "group_by": ["sex"]}, "rows": 500, "seed": 3}
    response = world.client.post("/api/v1/jobs/dry-run", headers=auth(world.analyst), json=body)
    assert response.status_code == 200, response.json
    assert response.json["synthetic"] is True
    assert sum(row["n"] for row in response.json["rows"]) == 500
    assert all(row["total"] is None and row["mean_income"] is None for row in response.json["rows"])
    assert "he_dry_run" in {n["rule"] for n in response.json["notes"]}
    assert not custodian.sent.bodies


def test_mock_rows_show_encrypted_placeholders(world: World, pums_he: dict[str, Any]) -> None:
    response = world.client.get(f"/api/v1/datasets/{pums_he['id']}/mock?rows=5", headers=auth(world.analyst))
    assert response.status_code == 200, response.json
    assert {row["income"] for row in response.json["rows"]} == {"<encrypted>"}


class Stopped(Exception):
    pass


def test_a_job_stopped_before_the_release_stage_decrypts_nothing() -> None:
    pair = paillier.generate(2048)
    meta = he_meta(pair.public)
    schema = DatasetSchema(privacy_unit=meta["privacy_unit"], columns=meta["columns"])
    plan = he_jobs.plan(RACE_SPEC, Policy.model_validate(HE_POLICY), {"pums_he": schema})
    assert isinstance(plan, AggregatePlan)
    frame = pums_frame()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(table.schema.get_field_index("income"), "income", quick_encrypt(pair.public, frame["income"].tolist(), 0))
    asked: list[Any] = []

    def stage(stage: JobStage, progress: float) -> None:
        if stage is JobStage.RELEASE:
            raise Stopped  # cancelled, timed out, or the lease was lost

    with pytest.raises(Stopped):
        he_aggregate.run(plan, Policy.model_validate(HE_POLICY), table, pair.public, lambda *args: asked.append(args) or ({}, ""), stage)
    assert asked == []


def test_under_rounding_a_mean_comes_from_the_rounded_total_and_count(world: World, app: Flask, pums_he: dict[str, Any]) -> None:
    """An exact mean beside a rounded count gives the count back: under rounding it is R(total) / R(count)."""
    grant_id = he_grant(world, pums_he["id"], {**HE_POLICY, "disclosure": {"rounding": True, "round_base": 5}})
    job = run_he(world, app, grant_id)
    assert job["status"] == "released", job
    rows = {row["race"]: row for row in result_of(world, job["id"])["rows"]}
    expected = pums_frame().groupby("race").agg(n=("pid", "size"), values=("income", "count"), total=("income", "sum"))

    def rounded(value: float) -> float:
        return float(round(value / 5) * 5)

    for race in (1, 2, 3, 4):
        assert (rows[race]["n"], rows[race]["total"]) == (rounded(expected.loc[race, "n"]), rounded(expected.loc[race, "total"]))
        mean = rounded(expected.loc[race, "total"]) / rounded(expected.loc[race, "values"])
        assert rows[race]["mean_income"] == pytest.approx(mean, rel=1e-12)


def test_he_aggregates_join_the_release_audit(world: World, app: Flask, he_grant_id: str, custodian: CustodianFixture) -> None:
    """The total, then income by race: race 5 (one person) is suppressed, and the released races would give it away.

    Their populations are compared like a query's (every kind on the version): under the he policy's
    ``review_on_flag`` the second job is held, and the auditor sees the audit's finding.
    """
    total = run_he(world, app, he_grant_id, {**RACE_SPEC, "group_by": []})
    assert total["status"] == "released", total
    by_race = run_he(world, app, he_grant_id)
    assert by_race["status"] == "held", by_race
    assert world.client.get(f"/api/v1/jobs/{by_race['id']}/result", headers=auth(world.analyst)).status_code == 409
    queue = world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"]
    item = next(i for i in queue if i["job"]["id"] == by_race["id"])
    assert {(f["rule"], f["earlier_job_id"]) for f in item["findings"]} == {("union", total["id"])}
