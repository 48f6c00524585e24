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

Consent lists are the bureau's: only its steward registers or revokes (another bureau's steward
gets 404, like any other grant business); the grant's enterprise reads counts only, auditors the
list.

Jobs follow their grant: the submitting analyst, the stewards of the grant's bureau and the audit
office see a job; another enterprise's analyst or another bureau's steward gets 404. Only the
owner reads the result or cancels, so there a role that may never do it gets 403 and another
analyst 404. The review queue is the auditor's alone. Ids that a request names in its JSON body
(the grant of ``POST /jobs``) count like path ids for the 404 check.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import World, auth
from tests.sandbox.access_requests import (
    API,
    BUILDERS,
    Setup,
    make_call,
)
from tests.sandbox.console.conftest import cheap_argon2  # noqa: F401 - the console's cases give people passwords cheaply
from tests.sandbox.console.kit import csrf_of, give_password, signed_in_client, user_id_of

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
    "GET /users/{user_id}/tokens":              (401, 401, 200,  403,    403,    403,    403,    403),
    "DELETE /users/{user_id}/tokens/{token_id}": (401, 401, 200,  403,    403,    403,    403,    403),
    "POST /users/{user_id}/password-link":      (401, 401, 201,  403,    403,    403,    403,    403),
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
    "POST /grants/{grant_id}/consents":         (401, 401, 403,  201,    404,    403,    403,    403),
    "GET /grants/{grant_id}/consents":          (401, 401, 403,  200,    404,    200,    404,    200),
    "POST /grants/{grant_id}/consents/revoke":  (401, 401, 403,  200,    404,    403,    403,    403),
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
    "GET /he/keys":                             (401, 401, 200,  200,    200,    200,    200,    200),
}
# fmt: on

# Answer anyone, with or without a token; also mounted at the root for load balancers.
PUBLIC = ("GET /healthz", "GET /openapi.json")

ERROR_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}


def expected_status(endpoint: str, caller: str) -> int:
    return dict(zip(CALLERS, ACCESS[endpoint], strict=True))[caller]


# --- requests: how to make a valid call of each endpoint -----------------------------------------


# fmt: off
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


# --- who may be what: a role belongs to organisations of given kinds -----------------------------

# The contract, stated here rather than read from core.values, so that loosening it fails a test.
MEMBERSHIP = {
    "admin": {"operator"},
    "steward": {"bureau"},
    "analyst": {"enterprise"},
    "auditor": {"audit", "bureau"},
}
ORG_KINDS = ("bureau", "enterprise", "audit", "operator")


def _org_of_kind(world: World, kind: str) -> str:
    if kind == "operator":
        return str(world.client.get(f"{API}/me", headers=auth(world.admin)).json["org_id"])
    return world.ids[{"bureau": "bureau", "enterprise": "bank", "audit": "audit"}[kind]]


@pytest.mark.parametrize("kind", ORG_KINDS)
@pytest.mark.parametrize("role", sorted(MEMBERSHIP))
def test_a_role_belongs_only_to_its_kinds_of_organisation(world: World, role: str, kind: str) -> None:
    """An analyst of a bureau, a steward of an enterprise, an auditor of an enterprise... are refused."""
    org_id = _org_of_kind(world, kind)
    body = {"name": f"{role} of a {kind}", "org_id": org_id, "role": role}
    response = world.client.post(f"{API}/users", headers=auth(world.admin), json=body)
    if kind in MEMBERSHIP[role]:
        assert response.status_code == 201, response.json
        me = world.client.get(f"{API}/me", headers=auth(response.json["token"])).json
        assert (me["role"], me["org_kind"]) == (role, kind)
    else:
        assert response.status_code == 400, response.json
        assert response.json["error"]["code"] == "validation_error"
        assert response.json["error"]["details"] == {"field": "role"}
        assert response.json["error"]["message"].startswith(f"{'an' if role[0] in 'aeiou' else 'a'} {role} must belong to")


# --- the console: every page of a role refuses the other roles ---------------------------------

# Who may open each console endpoint (any method it accepts). The endpoints of ``CONSOLE_OPEN`` need
# no sign-in or serve any visitor (signing in, setting a password through a link, the language,
# signing out, static files); every other endpoint needs a row here, so that a new page joins the matrix.
CONSOLE_ROLES = ("analyst", "steward", "auditor", "admin")
ANY_PERSON = frozenset(CONSOLE_ROLES)
CONSOLE_OPEN = frozenset({"console.sign_in", "console.set_password", "console.language", "console.sign_out", "console.static"})
CONSOLE_ACCESS: dict[str, frozenset[str]] = {
    "console.home": ANY_PERSON,
    "console.sign_out_everywhere": ANY_PERSON,
    "console.catalogue": ANY_PERSON,
    "console.dataset": ANY_PERSON,
    "console.my_jobs": frozenset({"analyst"}),
    "console.job": frozenset({"analyst"}),
    "console.my_grants": frozenset({"analyst"}),
    "console.query_editor": frozenset({"analyst"}),
    "console.query_check": frozenset({"analyst"}),
    "console.stats_form": frozenset({"analyst"}),
    "console.result_download": frozenset({"analyst"}),
    "console.steward_datasets": frozenset({"steward"}),
    "console.new_dataset": frozenset({"steward"}),
    "console.suggest_roles": frozenset({"steward"}),
    "console.steward_dataset": frozenset({"steward"}),
    "console.new_version": frozenset({"steward"}),
    "console.epsilon_cap": frozenset({"steward"}),
    "console.grant_queue": frozenset({"steward"}),
    "console.steward_grant": frozenset({"steward"}),
    "console.approve_grant": frozenset({"steward"}),
    "console.reject_grant": frozenset({"steward"}),
    "console.revoke_grant": frozenset({"steward"}),
    "console.grant_consents": frozenset({"steward"}),
    "console.register_consents": frozenset({"steward"}),
    "console.revoke_consents": frozenset({"steward"}),
    "console.review_queue": frozenset({"auditor"}),
    "console.review": frozenset({"auditor"}),
    "console.ledger": frozenset({"auditor"}),
    "console.ledger_export": frozenset({"auditor"}),
    "console.admin_orgs": frozenset({"admin"}),
    "console.admin_users": frozenset({"admin"}),
    "console.admin_user": frozenset({"admin"}),
    "console.admin_new_token": frozenset({"admin"}),
    "console.admin_revoke_token": frozenset({"admin"}),
    "console.admin_password_link": frozenset({"admin"}),
}


def console_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) of every console route that needs a signed-in person."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console.") and rule.endpoint not in CONSOLE_OPEN:
            found += [(rule.endpoint, method, rule.rule) for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})]
    return sorted(found)


def test_the_console_matrix_covers_every_console_route(app: Flask) -> None:
    endpoints = {endpoint for endpoint, _, _ in console_routes(app)}
    missing, stale = sorted(endpoints - set(CONSOLE_ACCESS)), sorted(set(CONSOLE_ACCESS) - endpoints)
    assert not missing, f"console endpoints without a row in CONSOLE_ACCESS: {missing}"
    assert not stale, f"rows in CONSOLE_ACCESS for endpoints the console does not register: {stale}"


@pytest.mark.parametrize(("endpoint", "role"), [pytest.param(e, r, id=f"{e} as {r}") for e in CONSOLE_ACCESS for r in CONSOLE_ROLES])
def test_console_access(app: Flask, world: World, endpoint: str, role: str) -> None:
    """A role a page is not for gets 403 at any id, for every method (before anything is looked up); a role it is for never does."""
    user_ids = {
        "analyst": world.ids["analyst_user"],
        "steward": world.ids["steward_user"],
        "auditor": user_id_of(world, "auditor", world.ids["audit"]),
        "admin": world.client.get(f"{API}/me", headers=auth(world.admin)).json["id"],
    }
    give_password(app, world, user_ids[role], role)
    routes = [(method, rule) for e, method, rule in console_routes(app) if e == endpoint]
    assert routes, endpoint
    for method, rule in routes:
        client = signed_in_client(app, role)  # afresh for each method: a POST may sign out
        path = re.sub(r"<any\(([^,)]+)[^>]*>", r"\1", rule)  # a choice of words (a download's format): its first
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", lambda _: str(uuid.uuid4()), path)
        data = {"csrf_token": csrf_of(client)} if method == "POST" else None
        response = client.open(path, method=method, data=data)
        if role in CONSOLE_ACCESS[endpoint]:
            assert response.status_code != 403, (method, path, role, response.status_code)
        else:
            assert response.status_code == 403, (method, path, role, response.status_code)
            assert "您的角色无权打开此页面" in response.get_data(as_text=True)
