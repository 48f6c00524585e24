"""Who may call what: every /api/v1 endpoint against every kind of caller, as one reviewed table.

``ACCESS`` below is the access contract of API.md made explicit. Each row is one endpoint (method and
rule as the app registers it), each column one caller:

* ``none``          no ``Authorization`` header
* ``bad``           a well-formed but made-up bearer token
* ``admin``         the operator's admin (created by ``init``)
* ``steward``       steward of the bureau that owns the PUMS dataset
* ``other_steward`` steward of another bureau
* ``analyst``       analyst of the enterprise that requested the grant
* ``other_analyst`` analyst of another enterprise
* ``auditor``       auditor of the audit office

Every request is a valid one (real JSON bodies, real multipart uploads, existing ids, the state
the action needs), so that the caller's role and organisation are what decides the status.
Errors must have the API's shape with the code of their status, and a 404 for another
organisation's object must be indistinguishable from a 404 for an id that never existed.

The dataset catalogue (``GET /datasets``, ``GET /datasets/{id}``, ``/mock``) is public metadata to
every authenticated role by design, so a dataset's existence is no secret: a steward of another
bureau who tries to add a version to it is refused with 403 (the role may, the organisation may
not), not 404. Grants are the parties' business: anyone else gets 404, as if they did not exist.

Jobs follow their grant: the submitting analyst, the stewards of the grant's bureau and the audit
office see a job; another enterprise's analyst or another bureau's steward gets 404. Only the
owner reads the result or cancels, so there a role that may never do it gets 403 and another
analyst 404. The review queue is the auditor's alone. Ids that a request names in its JSON body
(the grant of ``POST /jobs``) count like path ids for the 404 check.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from sandbox.worker import Worker
from tests.conftest import PUMS_POLICY, World, auth

API = "/api/v1"

CALLERS = ("none", "bad", "admin", "steward", "other_steward", "analyst", "other_analyst", "auditor")

# fmt: off
# The access contract. One row per endpoint; the columns follow CALLERS.
ACCESS: dict[str, tuple[int, int, int, int, int, int, int, int]] = {
    #                                           none  bad  admin steward other_  analyst other_  auditor
    #                                                                    steward         analyst
    "GET /me":                                  (401, 401, 200,  200,    200,    200,    200,    200),
    "POST /orgs":                               (401, 401, 201,  403,    403,    403,    403,    403),
    "GET /orgs":                                (401, 401, 200,  403,    403,    403,    403,    403),
    "POST /users":                              (401, 401, 201,  403,    403,    403,    403,    403),
    "GET /users":                               (401, 401, 200,  403,    403,    403,    403,    403),
    "POST /users/{user_id}/tokens":             (401, 401, 201,  403,    403,    403,    403,    403),
    "DELETE /users/{user_id}/tokens/{token_id}": (401, 401, 200,  403,    403,    403,    403,    403),
    "POST /datasets":                           (401, 401, 403,  201,    201,    403,    403,    403),
    "POST /datasets/{dataset_id}/versions":     (401, 401, 403,  201,    403,    403,    403,    403),
    "GET /datasets":                            (401, 401, 200,  200,    200,    200,    200,    200),
    "GET /datasets/{dataset_id}":               (401, 401, 200,  200,    200,    200,    200,    200),
    "GET /datasets/{dataset_id}/mock":          (401, 401, 200,  200,    200,    200,    200,    200),
    "POST /datasets/{dataset_id}/epsilon-cap":  (401, 401, 403,  200,    403,    403,    403,    403),
    "POST /grants":                             (401, 401, 403,  403,    403,    201,    201,    403),
    "GET /grants":                              (401, 401, 403,  200,    200,    200,    200,    200),
    "GET /grants/{grant_id}":                   (401, 401, 403,  200,    404,    200,    404,    200),
    "GET /grants/{grant_id}/budget":            (401, 401, 403,  200,    404,    200,    404,    200),
    "POST /grants/{grant_id}/approve":          (401, 401, 403,  200,    404,    403,    403,    403),
    "POST /grants/{grant_id}/reject":           (401, 401, 403,  200,    404,    403,    403,    403),
    "POST /grants/{grant_id}/revoke":           (401, 401, 403,  200,    404,    403,    403,    403),
    "POST /jobs":                               (401, 401, 403,  403,    403,    202,    404,    403),
    "GET /jobs":                                (401, 401, 403,  200,    200,    200,    200,    200),
    "GET /jobs/{job_id}":                       (401, 401, 403,  200,    404,    200,    404,    200),
    "GET /jobs/{job_id}/result":                (401, 401, 403,  403,    403,    200,    404,    403),
    "POST /jobs/{job_id}/cancel":               (401, 401, 403,  403,    403,    200,    404,    403),
    "POST /jobs/dry-run":                       (401, 401, 403,  403,    403,    200,    404,    403),
    "GET /reviews":                             (401, 401, 403,  403,    403,    403,    403,    200),
    "POST /reviews/{job_id}":                   (401, 401, 403,  403,    403,    403,    403,    200),
    "GET /audit/events":                        (401, 401, 403,  403,    403,    403,    403,    200),
    "GET /audit/verify":                        (401, 401, 403,  403,    403,    403,    403,    200),
}
# fmt: on

# Answer anyone, with or without a token; also mounted at the root for load balancers.
PUBLIC = ("GET /healthz", "GET /openapi.json")

ERROR_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}


def expected_status(endpoint: str, caller: str) -> int:
    return dict(zip(CALLERS, ACCESS[endpoint], strict=True))[caller]


# --- requests: how to make a valid call of each endpoint -----------------------------------------

# fmt: off
TINY_CSV = b"id,score\n1,3\n2,5\n3,7\n4,1\n"
PUMS_SHAPED_CSV = (
    b"age,sex,educ,race,income,married,pid\n"
    b"34,0,9,1,21000,1,1\n"
    b"51,1,13,2,64000,0,2\n"
    b"27,1,11,1,15000,0,3\n"
    b"68,0,7,3,9000,1,4\n"
)
# fmt: on
JOB_SQL = "SELECT race, COUNT(*) AS n, AVG(income) AS mean_income FROM pums GROUP BY race ORDER BY race"
REVIEW_POLICY = {**PUMS_POLICY, "release_mode": "always_review"}  # every output is held for an auditor


def tiny_meta() -> dict[str, Any]:
    return {
        "name": f"tiny_{uuid.uuid4().hex[:12]}",  # unique per case
        "title": "Tiny table",
        "level": "一般",
        "privacy_unit": "id",
        "columns": {
            "id": {"role": "identifier", "type": "int"},
            "score": {"role": "attribute", "type": "int", "bounds": [0, 10]},
        },
    }


@dataclass
class Call:
    """One request: the rule's path template, the ids it names, and fresh keyword arguments per send.

    ``params`` are the ids the request names: in its path, or as values of its JSON body (those
    the rule does not mention). Sending with other ``params`` puts those in both places.
    """

    method: str
    rule: str
    params: dict[str, str] = field(default_factory=dict)
    kwargs: Callable[[], dict[str, Any]] = dict

    def url(self, params: dict[str, str] | None = None) -> str:
        return API + self.rule.format(**(self.params if params is None else params))

    def send(self, client: FlaskClient, token: str | None, params: dict[str, str] | None = None) -> TestResponse:
        headers = auth(token) if token is not None else {}
        kwargs = self.kwargs()
        if params is not None and isinstance(kwargs.get("json"), dict):
            swap = {self.params[name]: value for name, value in params.items()}
            kwargs["json"] = {key: swap.get(value, value) if isinstance(value, str) else value for key, value in kwargs["json"].items()}
        return client.open(self.url(params), method=self.method, headers=headers, **kwargs)


class Setup:
    """The state a case needs, made on demand from the fixtures (grant and PUMS only when used)."""

    def __init__(self, world: World, request: pytest.FixtureRequest) -> None:
        self.world, self.request = world, request

    @property
    def client(self) -> FlaskClient:
        return self.world.client

    def pums_id(self) -> str:
        return str(self.request.getfixturevalue("pums")["id"])

    def grant_id(self) -> str:
        """A grant of the analyst's bank on PUMS, in state ``requested``."""
        return str(self.request.getfixturevalue("grant")["id"])

    def approved_grant_id(self, policy: dict[str, Any] | None = None) -> str:
        """The grant, approved by the steward under ``policy`` (by default PUMS_POLICY: query jobs, released at once)."""
        grant_id = self.grant_id()
        response = self.client.post(f"{API}/grants/{grant_id}/approve", headers=auth(self.world.steward), json=approve_body(policy))
        assert response.status_code == 200, response.json
        return grant_id

    def job_id(self, status: str = "queued") -> str:
        """A query job of the analyst on the approved grant: ``queued``, or run by a worker to ``released`` or ``held``."""
        grant_id = self.approved_grant_id(REVIEW_POLICY if status == "held" else None)
        response = self.client.post(f"{API}/jobs", headers=auth(self.world.analyst), json=job_body(grant_id))
        assert response.status_code == 202, response.json
        job_id = str(response.json["id"])
        if status != "queued":
            assert Worker(self.request.getfixturevalue("app")).run(once=True) == 1
        response = self.client.get(f"{API}/jobs/{job_id}", headers=auth(self.world.analyst))
        assert response.status_code == 200, response.json
        assert response.json["status"] == status, response.json
        return job_id

    def analyst_user_id(self) -> str:
        response = self.client.get(f"{API}/users", headers=auth(self.world.admin))
        assert response.status_code == 200, response.json
        (user,) = [u for u in response.json["items"] if u["role"] == "analyst" and u["org_id"] == self.world.analyst_org]
        return str(user["id"])

    def analyst_token_id(self, user_id: str) -> str:
        """A second token of the analyst, so that revoking it leaves the caller's own token alone."""
        response = self.client.post(f"{API}/users/{user_id}/tokens", headers=auth(self.world.admin))
        assert response.status_code == 201, response.json
        return str(response.json["id"])


def approve_body(policy: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"policy": policy or PUMS_POLICY, "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()}


def job_body(grant_id: str) -> dict[str, Any]:
    return {"grant_id": grant_id, "kind": "query", "spec": {"sql": JOB_SQL}}


def reason_body() -> dict[str, Any]:
    return {"reason": "the scenario does not justify this data"}


def upload(csv: bytes, meta: dict[str, Any] | None) -> Callable[[], dict[str, Any]]:
    def kwargs() -> dict[str, Any]:
        data: dict[str, Any] = {"file": (io.BytesIO(csv), "table.csv")}
        if meta is not None:
            data["meta"] = json.dumps(meta)
        return {"data": data, "content_type": "multipart/form-data"}

    return kwargs


Params = dict[str, str]
Kwargs = Callable[[], dict[str, Any]]
Builder = Callable[[Setup], tuple[Params, Kwargs]]
BUILDERS: dict[str, Builder] = {}


def builds(*endpoints: str) -> Callable[[Builder], Builder]:
    """Register how to make a valid request of ``endpoints``: its path parameters and request arguments."""

    def register(builder: Builder) -> Builder:
        for endpoint in endpoints:
            BUILDERS[endpoint] = builder
        return builder

    return register


def make_call(endpoint: str, s: Setup) -> Call:
    """A valid request of ``endpoint``, with the state it needs set up."""
    method, rule = endpoint.split(" ", 1)
    params, kwargs = BUILDERS[endpoint](s)
    return Call(method, rule, params, kwargs)


def body(make: Callable[[], dict[str, Any]]) -> Kwargs:
    return lambda: {"json": make()}


@builds("GET /me", "GET /orgs", "GET /users", "GET /datasets", "GET /grants", "GET /audit/verify")
def _no_input(s: Setup) -> tuple[Params, Kwargs]:
    return {}, dict


@builds("POST /orgs")
def _new_org(s: Setup) -> tuple[Params, Kwargs]:
    return {}, body(lambda: {"name": f"Org {uuid.uuid4().hex[:8]}", "kind": "enterprise"})


@builds("POST /users")
def _new_user(s: Setup) -> tuple[Params, Kwargs]:
    return {}, body(lambda: {"name": "new analyst", "org_id": s.world.analyst_org, "role": "analyst"})


@builds("POST /users/{user_id}/tokens")
def _new_token(s: Setup) -> tuple[Params, Kwargs]:
    return {"user_id": s.analyst_user_id()}, dict


@builds("DELETE /users/{user_id}/tokens/{token_id}")
def _revoke_token(s: Setup) -> tuple[Params, Kwargs]:
    user_id = s.analyst_user_id()
    return {"user_id": user_id, "token_id": s.analyst_token_id(user_id)}, dict


@builds("POST /datasets")
def _new_dataset(s: Setup) -> tuple[Params, Kwargs]:
    return {}, upload(TINY_CSV, tiny_meta())


@builds("POST /datasets/{dataset_id}/versions")
def _new_version(s: Setup) -> tuple[Params, Kwargs]:
    return {"dataset_id": s.pums_id()}, upload(PUMS_SHAPED_CSV, None)


@builds("GET /datasets/{dataset_id}")
def _dataset(s: Setup) -> tuple[Params, Kwargs]:
    return {"dataset_id": s.pums_id()}, dict


@builds("GET /datasets/{dataset_id}/mock")
def _mock(s: Setup) -> tuple[Params, Kwargs]:
    return {"dataset_id": s.pums_id()}, lambda: {"query_string": {"rows": 5, "seed": 7}}


@builds("POST /grants")
def _new_grant(s: Setup) -> tuple[Params, Kwargs]:
    dataset_id = s.pums_id()
    scenario = "Income by education for a credit-risk model"
    return {}, body(lambda: {"dataset_ids": [dataset_id], "scenario": scenario, "requested": {"job_kinds": ["query"]}})


@builds("POST /datasets/{dataset_id}/epsilon-cap")
def _epsilon_cap(s: Setup) -> tuple[Params, Kwargs]:
    return {"dataset_id": s.pums_id()}, body(lambda: {"epsilon_cap": 5.0})


@builds("GET /grants/{grant_id}", "GET /grants/{grant_id}/budget")
def _grant(s: Setup) -> tuple[Params, Kwargs]:
    return {"grant_id": s.grant_id()}, dict


@builds("POST /grants/{grant_id}/approve")
def _approve(s: Setup) -> tuple[Params, Kwargs]:
    return {"grant_id": s.grant_id()}, body(approve_body)


@builds("POST /grants/{grant_id}/reject")
def _reject(s: Setup) -> tuple[Params, Kwargs]:
    return {"grant_id": s.grant_id()}, body(reason_body)


@builds("POST /grants/{grant_id}/revoke")
def _revoke(s: Setup) -> tuple[Params, Kwargs]:
    return {"grant_id": s.approved_grant_id()}, body(reason_body)


@builds("POST /jobs")
def _new_job(s: Setup) -> tuple[Params, Kwargs]:
    grant_id = s.approved_grant_id()
    return {"grant_id": grant_id}, body(lambda: job_body(grant_id))


@builds("GET /jobs")
def _jobs(s: Setup) -> tuple[Params, Kwargs]:
    s.job_id()  # a job on the list, for those who may see it
    return {}, dict


@builds("GET /jobs/{job_id}")
def _job(s: Setup) -> tuple[Params, Kwargs]:
    return {"job_id": s.job_id()}, dict


@builds("GET /jobs/{job_id}/result")
def _result(s: Setup) -> tuple[Params, Kwargs]:
    return {"job_id": s.job_id("released")}, dict


@builds("POST /jobs/{job_id}/cancel")
def _cancel(s: Setup) -> tuple[Params, Kwargs]:
    return {"job_id": s.job_id()}, dict


@builds("POST /jobs/dry-run")
def _dry_run(s: Setup) -> tuple[Params, Kwargs]:
    grant_id = s.approved_grant_id()
    return {"grant_id": grant_id}, body(lambda: job_body(grant_id) | {"rows": 200, "seed": 7})


@builds("GET /reviews")
def _reviews(s: Setup) -> tuple[Params, Kwargs]:
    s.job_id("held")  # a held output in the queue
    return {}, dict


@builds("POST /reviews/{job_id}")
def _review(s: Setup) -> tuple[Params, Kwargs]:
    return {"job_id": s.job_id("held")}, body(lambda: {"decision": "release", "reason": "aggregates at race level are safe"})


@builds("GET /audit/events")
def _events(s: Setup) -> tuple[Params, Kwargs]:
    return {}, lambda: {"query_string": {"after": 0, "limit": 50}}


def caller_token(world: World, caller: str) -> str | None:
    if caller == "none":
        return None
    if caller == "bad":
        return "sbx_" + secrets.token_urlsafe(32)
    return world.token(caller)


def assert_error_shape(response: TestResponse, status: int) -> None:
    assert response.mimetype == "application/json", response.data[:200]
    body = response.get_json()
    assert isinstance(body, dict)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert isinstance(error["message"], str), body
    assert error["message"], body
    assert isinstance(error["details"], dict), body
    if status in ERROR_CODES:
        assert error["code"] == ERROR_CODES[status], body


# --- the matrix ----------------------------------------------------------------------------------


CASES = [pytest.param(endpoint, caller, id=f"{endpoint} as {caller}") for endpoint in ACCESS for caller in CALLERS]


@pytest.mark.parametrize(("endpoint", "caller"), CASES)
def test_access(endpoint: str, caller: str, world: World, request: pytest.FixtureRequest) -> None:
    expected = expected_status(endpoint, caller)
    call = make_call(endpoint, Setup(world, request))
    token = caller_token(world, caller)

    response = call.send(world.client, token)

    assert response.status_code == expected, f"{endpoint} as {caller}: {response.status_code} {response.get_json()}"
    if expected >= 400:
        assert_error_shape(response, expected)
    else:
        assert response.mimetype == "application/json"
    if expected == 404:
        # Another organisation's object must look exactly like one that does not exist.
        unknown = call.send(world.client, token, {name: str(uuid.uuid4()) for name in call.params})
        assert unknown.status_code == 404, unknown.get_json()
        assert unknown.get_json() == response.get_json()


# --- the table covers the app, and the public endpoints -----------------------------------------


def registered_endpoints(app: Flask) -> set[str]:
    """``METHOD /rule`` of every route under /api/v1, with Flask's ``<name>`` written as ``{name}``."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API + "/"):
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule[len(API) :])
        found |= {f"{method} {path}" for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    return found


def test_matrix_covers_every_registered_endpoint(app: Flask) -> None:
    registered = registered_endpoints(app)
    assert set(PUBLIC) <= registered
    missing = sorted(registered - set(PUBLIC) - set(ACCESS))
    stale = sorted(set(ACCESS) - registered)
    assert not missing, f"endpoints without a row in ACCESS: {missing}"
    assert not stale, f"rows in ACCESS for endpoints the app does not register: {stale}"


def test_every_row_has_a_request() -> None:
    assert set(BUILDERS) == set(ACCESS)


@pytest.mark.parametrize("endpoint", PUBLIC)
@pytest.mark.parametrize("prefix", [API, ""], ids=["api", "root"])
@pytest.mark.parametrize("caller", ["none", "bad"])
def test_public_endpoints_need_no_token(client: FlaskClient, endpoint: str, prefix: str, caller: str) -> None:
    method, path = endpoint.split(" ", 1)
    headers = auth("sbx_" + secrets.token_urlsafe(32)) if caller == "bad" else {}
    response = client.open(prefix + path, method=method, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"


# --- beyond the status: lists show a grant to its parties only ----------------------------------


@pytest.mark.parametrize(
    ("caller", "sees"),
    [("analyst", True), ("steward", True), ("auditor", True), ("other_analyst", False), ("other_steward", False)],
)
def test_grant_list_shows_a_grant_to_its_parties_only(world: World, grant: dict[str, Any], caller: str, sees: bool) -> None:
    response = world.client.get(f"{API}/grants", headers=auth(world.token(caller)))
    assert response.status_code == 200, response.json
    ids = {g["id"] for g in response.json["items"]}
    assert (grant["id"] in ids) is sees


# --- beyond the status: lists show a job to its parties only ------------------------------------


@pytest.mark.parametrize(
    ("caller", "sees"),
    [("analyst", True), ("steward", True), ("auditor", True), ("other_analyst", False), ("other_steward", False)],
)
def test_job_list_shows_a_job_to_its_parties_only(world: World, request: pytest.FixtureRequest, caller: str, sees: bool) -> None:
    job_id = Setup(world, request).job_id()
    response = world.client.get(f"{API}/jobs", headers=auth(world.token(caller)))
    assert response.status_code == 200, response.json
    assert [job["id"] for job in response.json["items"]] == ([job_id] if sees else [])
