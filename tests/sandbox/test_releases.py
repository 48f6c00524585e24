"""Release decisions: review queue, release modes, the two-person rule, and the release audit across releases.

The attacks on the audit (a + b - c, partitions, kinds, organisations, held outputs, races) are in
``tests/attacks/test_release_audit.py``.
"""

from __future__ import annotations

from typing import Any

import pyarrow.csv as pacsv
import pytest
from flask import Flask

from sandbox.db import get_db_of
from sandbox.models import User
from sandbox.service.auth import issue_token
from tests.conftest import PUMS_POLICY, World, auth, data_file, request_grant
from tests.sandbox.jobkit import RACE_SQL, approve, events, job_json, run_worker, submit


def test_always_review_holds_and_an_auditor_decides(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], {**PUMS_POLICY, "release_mode": "always_review"})
    job_id = submit(world, grant["id"], RACE_SQL).json["id"]
    run_worker(app)
    assert job_json(world, job_id)["status"] == "held"
    assert world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).status_code == 409
    queue = world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"]
    assert [item["job"]["id"] for item in queue] == [job_id]
    raw = {row["race"]: row for row in queue[0]["raw"]["rows"]}
    assert raw[5]["__units_0"] == 1  # the auditor sees the evidence
    assert raw[6]["__units_0"] == 5
    assert queue[0]["proposed"]["summary"]["suppressed"] == 4
    assert world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(world.auditor), json={"decision": "release"}).status_code == 400
    decision = world.client.post(
        f"/api/v1/reviews/{job_id}",
        headers=auth(world.auditor),
        json={"decision": "release", "reason": "aggregates at race level are safe"},
    )
    assert decision.status_code == 200, decision.json
    result = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).json
    assert result["decision"] == {"decision": "release", "reason": "aggregates at race level are safe"}
    assert {row["race"]: row["n"] for row in result["rows"]}[5] is None  # suppression stays
    assert (
        world.client.post(
            f"/api/v1/reviews/{job_id}", headers=auth(world.auditor), json={"decision": "reject", "reason": "again"}
        ).status_code
        == 409
    )
    actions = [e["action"] for e in events(world) if e["object_id"] == job_id]
    assert actions[-4:] == ["job.held", "review.view", "review.release", "job.released"]


def test_rejected_review_keeps_the_result_back(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], {**PUMS_POLICY, "release_mode": "always_review"})
    job_id = submit(world, grant["id"], RACE_SQL).json["id"]
    run_worker(app)
    assert (
        world.client.post(
            f"/api/v1/reviews/{job_id}", headers=auth(world.auditor), json={"decision": "reject", "reason": "purpose unclear"}
        ).status_code
        == 200
    )
    job = job_json(world, job_id)
    assert job["status"] == "rejected"
    assert job["reason"] == "purpose unclear"
    assert world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).status_code == 409


def test_two_query_differencing_attack_is_held(world: World, app: Flask, approved: str) -> None:
    """Everyone's total income, then everyone's but race 5: the difference is the one race-5 person's 56000."""
    first = submit(world, approved, "SELECT COUNT(*) AS n, SUM(income) AS total FROM pums").json["id"]
    run_worker(app)
    assert job_json(world, first)["status"] == "released"
    second = submit(world, approved, "SELECT COUNT(*) AS n, SUM(income) AS total FROM pums WHERE race <> 5").json["id"]
    run_worker(app)
    job = job_json(world, second)
    assert job["status"] == "held"
    assert world.client.get(f"/api/v1/jobs/{second}/result", headers=auth(world.analyst)).status_code == 409
    queue = world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"]
    notes = queue[0]["proposed"]["notes"]
    assert {(n["rule"], n["status"]) for n in notes} == {("release_audit", "review")}
    finding = {"row": 0, "rule": "pair", "earlier_job_id": first, "detail": "differs from an earlier cell by 1 units"}
    assert queue[0]["findings"] == [finding]


def test_the_audit_spans_the_analysts_of_an_organisation(world: World, app: Flask, approved: str) -> None:
    from tests.conftest import make_user

    _, colleague = make_user(world.client, world.admin, world.analyst_org, "analyst", "colleague")
    submit(world, approved, "SELECT COUNT(*) AS n FROM pums")
    run_worker(app)
    second = submit(world, approved, "SELECT COUNT(*) AS n FROM pums WHERE race <> 6", token=colleague).json["id"]
    run_worker(app)
    assert job_json(world, second, token=colleague)["status"] == "held"  # race 6 has 5 people: 1 <= 5 <= 9


def _the_race_5_person() -> dict[str, Any]:
    """The one person of race 5 in the demo PUMS (the differencing attacks' target), read from the data."""
    people = [row for row in pacsv.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv")).to_pylist() if row["race"] == 5]
    assert len(people) == 1
    return people[0]


def _result(world: World, job_id: str, token: str) -> dict[str, Any]:
    response = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(token))
    assert response.status_code == 200, response.json
    return dict(response.json)


def test_the_audit_spans_organisations(world: World, app: Flask, pums: dict[str, Any], grant: dict[str, Any]) -> None:
    """Enterprise A asks income by sex, enterprise B the same but race 5: B's cell that differs by one person is withheld."""
    auto = {**PUMS_POLICY, "release_mode": "auto"}
    approve(world, grant["id"], auto)
    rival_grant = request_grant(world, [pums["id"]], token=world.other_analyst).json["id"]
    approve(world, rival_grant, auto)
    sql = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums {where} GROUP BY sex ORDER BY sex"
    first = submit(world, grant["id"], sql.format(where="")).json["id"]
    run_worker(app)
    second = submit(world, rival_grant, sql.format(where="WHERE race <> 5"), token=world.other_analyst).json["id"]
    run_worker(app)
    assert job_json(world, second, token=world.other_analyst)["status"] == "released"  # the other sex is released
    a, b = _result(world, first, world.analyst), _result(world, second, world.other_analyst)
    target = _the_race_5_person()
    b_rows = {row["sex"]: row for row in b["rows"]}
    assert (b_rows[target["sex"]]["n"], b_rows[target["sex"]]["total"]) == (None, None)
    assert {row["sex"]: row for row in a["rows"]}[1 - target["sex"]] == b_rows[1 - target["sex"]]
    flagged = [n for n in b["notes"] if n["row"] == [r["sex"] for r in b["rows"]].index(target["sex"])]
    assert flagged
    assert all(n["status"] == "withheld" and first[:8] not in n["reason"] for n in flagged)  # another organisation's job is never named
    totals = [row["total"] for result in (a, b) for row in result["rows"] if row["total"] is not None]
    assert target["income"] not in {abs(x - y) for x in totals for y in totals}, "the race-5 income is derivable"


def test_auto_mode_withholds_flagged_cells_and_releases_the_rest(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], {**PUMS_POLICY, "release_mode": "auto"})
    submit(world, grant["id"], "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex")
    run_worker(app)
    job_id = submit(world, grant["id"], "SELECT sex, COUNT(*) AS n FROM pums WHERE race <> 5 GROUP BY sex").json["id"]
    run_worker(app)
    job = job_json(world, job_id)
    assert job["status"] == "released"
    result = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).json
    flagged = [n for n in result["notes"] if n["status"] == "withheld"]
    assert len(flagged) == 1  # the race-5 person's sex; the other sex's count is released
    assert all(result["rows"][n["row"]][n["column"]] is None for n in flagged)
    assert sum(1 for row in result["rows"] if row["n"] is not None) == 1


def test_repeating_the_same_query_is_not_a_difference(world: World, app: Flask, approved: str) -> None:
    ids = [submit(world, approved, RACE_SQL).json["id"] for _ in range(2)]
    run_worker(app)
    assert [job_json(world, i)["status"] for i in ids] == ["released", "released"]


def test_two_person_rule(world: World, app: Flask, grant: dict[str, Any]) -> None:
    from tests.conftest import make_user

    approve(world, grant["id"], {**PUMS_POLICY, "release_mode": "always_review", "reviewers": 2})
    job_id = submit(world, grant["id"], RACE_SQL).json["id"]
    run_worker(app)
    _, second_auditor = make_user(world.client, world.admin, world.ids["audit"], "auditor", "second auditor")
    path = f"/api/v1/reviews/{job_id}"
    first = world.client.post(path, headers=auth(world.auditor), json={"decision": "release", "reason": "looks safe"})
    assert first.status_code == 200
    assert first.json["status"] == "held"  # one of two
    again = world.client.post(path, headers=auth(world.auditor), json={"decision": "release", "reason": "still safe"})
    assert again.status_code == 409
    second = world.client.post(path, headers=auth(second_auditor), json={"decision": "release", "reason": "agreed"})
    assert second.json["status"] == "released"
    assert world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).status_code == 200


def test_the_bureaus_own_auditor_may_review(world: World, app: Flask, grant: dict[str, Any]) -> None:
    """The job is the enterprise's, not the bureau's: a supervisor inside the data bureau may decide."""
    from tests.conftest import make_user

    approve(world, grant["id"], {**PUMS_POLICY, "release_mode": "always_review"})
    job_id = submit(world, grant["id"], RACE_SQL).json["id"]
    run_worker(app)
    _, supervisor = make_user(world.client, world.admin, world.steward_org, "auditor", "bureau supervisor")
    decision = {"decision": "reject", "reason": "not in scope"}
    response = world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(supervisor), json=decision)
    assert response.status_code == 200
    assert response.json["status"] == "rejected"


def _insider(app: Flask, org_id: str, role: str) -> str:
    """A user written straight into the database, bypassing the API's rule of who may be what.

    The API never makes an analyst of a bureau or of an audit office, so a job and its reviewer
    cannot share an organisation through it; a legacy row or a loosened membership rule could
    still produce one, and the review guard must hold anyway. Returns the user's token.
    """
    with get_db_of(app).writing() as session:
        user = User(name=f"insider {role}", org_id=org_id, role=role)
        session.add(user)
        session.flush()
        return issue_token(session, user)[1]


@pytest.mark.parametrize("decision", ["release", "reject"])
@pytest.mark.parametrize("org", ["bureau", "audit"])
def test_nobody_reviews_a_job_of_their_own_organisation(world: World, app: Flask, pums: dict[str, Any], org: str, decision: str) -> None:
    """An analyst inside the bureau (or the audit office) runs a job: that organisation's auditor may not decide on it."""
    from tests.conftest import make_user

    analyst = _insider(app, world.ids[org], "analyst")
    grant_id = request_grant(world, [pums["id"]], token=analyst).json["id"]
    approve(world, grant_id, {**PUMS_POLICY, "release_mode": "always_review"})
    job_id = submit(world, grant_id, RACE_SQL, token=analyst).json["id"]
    run_worker(app)
    assert job_json(world, job_id, token=analyst)["status"] == "held"
    auditor = world.auditor if org == "audit" else make_user(world.client, world.admin, world.ids[org], "auditor")[1]
    response = world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(auditor), json={"decision": decision, "reason": "ours"})
    assert response.status_code == 403, response.json
    assert response.json["error"]["code"] == "forbidden"
    assert job_json(world, job_id, token=analyst)["status"] == "held"
    assert world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(analyst)).status_code == 409


def test_review_release_records_cells_for_the_audit(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], {**PUMS_POLICY, "release_mode": "always_review"})
    first = submit(world, grant["id"], "SELECT COUNT(*) AS n FROM pums").json["id"]
    run_worker(app)
    world.client.post(f"/api/v1/reviews/{first}", headers=auth(world.auditor), json={"decision": "release", "reason": "fine"})
    second = submit(world, grant["id"], "SELECT COUNT(*) AS n FROM pums WHERE race <> 5").json["id"]
    run_worker(app)
    item = next(i for i in world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"] if i["job"]["id"] == second)
    assert [(f["rule"], f["earlier_job_id"]) for f in item["findings"]] == [("pair", first)]


def test_four_query_tracker_is_caught(world: World, app: Flask, approved: str) -> None:
    """Tracker T = (sex = 1): Q(C or T) + Q(C or not T) - Q(T) - Q(not T) is the race-5 person's income."""
    queries = {
        "c_or_t": "SELECT COUNT(*) AS n, SUM(income) AS total FROM pums WHERE race = 5 OR sex = 1",
        "c_or_not_t": "SELECT COUNT(*) AS n, SUM(income) AS total FROM pums WHERE race = 5 OR sex = 0",
        "t": "SELECT COUNT(*) AS n, SUM(income) AS total FROM pums WHERE sex = 1",
        "not_t": "SELECT COUNT(*) AS n, SUM(income) AS total FROM pums WHERE sex = 0",
    }
    answers: dict[str, int | None] = {}
    for name, sql in queries.items():
        job_id = submit(world, approved, sql).json["id"]
        run_worker(app)
        if job_json(world, job_id)["status"] == "released":
            rows = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).json["rows"]
            answers[name] = rows[0]["total"]
        else:
            answers[name] = None
    assert None in answers.values(), "every tracker query was released: the race-5 income could be computed"
