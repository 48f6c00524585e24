"""The OpenAPI document: public, valid OpenAPI 3.1, complete; and the API holds up against it under fuzzing.

The property test loads the document the app serves into schemathesis, and for every operation
lets hypothesis generate requests (valid ones, and ones that break the schema) sent to the Flask
app in-process. It runs as admin, as analyst, as steward and as auditor, with some requests aimed
at real ids (the PUMS dataset, a requested grant, the analyst and a token of theirs, a released, a
held and a queued job; in job bodies an approved grant), so that role-gated operations are
exercised beyond 403 and 404. It asserts only what must always hold: never a 5xx, every error in
the API's error shape, every answer JSON. Runs are derandomized and bounded.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from jobs.engine import DuckDBEngine
from sandbox.app import instance_of
from sandbox.runtime.worker import Worker
from tests.conftest import PUMS_POLICY, World, auth, request_grant

API = "/api/v1"
DOCUMENT_PATHS = ("/openapi.json", f"{API}/openapi.json")
# The document describes the API, not itself: its own route is the one registered route it leaves out.
UNDOCUMENTED = {f"GET {API}/openapi.json"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

MAX_EXAMPLES = 8  # per operation, per run (valid, invalid, each combination of real ids), per role: bounded time


def registered_routes(app: Flask) -> set[str]:
    """``METHOD /api/v1/rule`` of every route under /api/v1, path parameters written the OpenAPI way."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API + "/"):
            path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
            found |= {f"{method} {path}" for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    return found


def documented_routes(document: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item if method in HTTP_METHODS}


def assert_error_shape(body: Any) -> None:
    assert isinstance(body, dict)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert set(error) == {"code", "message", "details"}, body
    assert isinstance(error["code"], str), body
    assert error["code"], body
    assert isinstance(error["message"], str), body
    assert isinstance(error["details"], dict), body


# --- (a) the document ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCUMENT_PATHS)
def test_document_is_public_and_valid_openapi_3_1(app: Flask, client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"].startswith("3.1.")
    schema = schemathesis.openapi.from_wsgi(path, app)
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises on the first problem
    assert all(result.ok() for result in schema.get_all_operations())


def test_both_documents_are_the_same(client: FlaskClient) -> None:
    first, second = (client.get(path).get_json() for path in DOCUMENT_PATHS)
    assert first == second


def test_document_lists_every_registered_route(app: Flask, client: FlaskClient) -> None:
    document = client.get(f"{API}/openapi.json").get_json()
    registered = registered_routes(app) - UNDOCUMENTED
    documented = documented_routes(document)
    assert not registered - documented, f"routes missing from the document: {sorted(registered - documented)}"
    assert not documented - registered, f"documented but not served: {sorted(documented - registered)}"


def test_document_marks_exactly_the_public_operations_as_needing_no_token(client: FlaskClient) -> None:
    document = client.get(f"{API}/openapi.json").get_json()
    assert document["security"] == [{"bearer": []}]
    public = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and operation.get("security") == []
    }
    assert public == {f"GET {API}/healthz"}


def test_every_body_may_be_refused_as_too_deep_or_too_large(client: FlaskClient) -> None:
    """Any JSON or multipart body can answer 400 ``too_deep`` or 413 ``too_large``; the document says so."""
    document = client.get(f"{API}/openapi.json").get_json()
    missing = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and "requestBody" in operation and not {"400", "413"} <= set(operation["responses"])
    ]
    assert not missing
    assert {"422", "429"} <= set(document["paths"][f"{API}/jobs"]["post"]["responses"])  # too_expensive, budget_exhausted


# --- (b) fuzzing the API against its own document ------------------------------------------------


JOB_SQL = "SELECT race, COUNT(*) AS n, AVG(income) AS mean_income FROM pums GROUP BY race ORDER BY race"


def approved_grant(world: World, dataset_id: str, policy: dict[str, Any]) -> str:
    grant_id = str(request_grant(world, [dataset_id]).json["id"])
    response = world.client.post(
        f"{API}/grants/{grant_id}/approve", headers=auth(world.steward), json={"policy": policy, "expires_at": "2099-01-01T00:00:00Z"}
    )
    assert response.status_code == 200, response.json
    return grant_id


def submit(world: World, grant_id: str) -> str:
    response = world.client.post(
        f"{API}/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": "query", "spec": {"sql": JOB_SQL}}
    )
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def known_ids(app: Flask, world: World, grant: dict[str, Any]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Real ids, each under what it is: for path parameters, and for ids in request bodies.

    In paths: the PUMS dataset, the requested grant, the analyst and a spare token of theirs, and
    the analyst's jobs in three states (released, held for review, queued). In bodies: a grant
    approved for query jobs, so that submissions and dry runs get past the grant's visibility.
    """
    user_id = world.ids["analyst_user"]
    response = world.client.post(f"{API}/users/{user_id}/tokens", headers=auth(world.admin))
    assert response.status_code == 201, response.json
    dataset_id = grant["dataset_ids"][0]
    approved = approved_grant(world, dataset_id, PUMS_POLICY)
    released = submit(world, approved)
    held = submit(world, approved_grant(world, dataset_id, {**PUMS_POLICY, "release_mode": "always_review"}))
    assert Worker(instance_of(app), engine=DuckDBEngine()).run(once=True) == 2  # in process: no child to start
    queued = submit(world, approved)
    for job_id, status in ((released, "released"), (held, "held"), (queued, "queued")):
        assert world.client.get(f"{API}/jobs/{job_id}", headers=auth(world.analyst)).json["status"] == status
    in_paths = {
        "dataset_id": {"PUMS": dataset_id},
        "grant_id": {"requested grant": grant["id"]},
        "user_id": {"analyst": user_id},
        "token_id": {"spare token": response.json["id"]},
        "job_id": {"released job": released, "held job": held, "queued job": queued},
    }
    return in_paths, {"grant_id": approved}


def body_id_names(document: dict[str, Any], path: str, method: str, names: set[str]) -> set[str]:
    """Which of ``names`` are properties of the operation's JSON request body."""
    content = document["paths"][path][method.lower()].get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return names & set(schema.get("properties", {}))


def with_body_ids(strategy: st.SearchStrategy[schemathesis.Case], ids: dict[str, str]) -> st.SearchStrategy[schemathesis.Case]:
    """Generated cases whose JSON body names ``ids`` (where it has such a property) by their real values."""

    def put(case: schemathesis.Case) -> schemathesis.Case:
        if isinstance(case.body, dict):
            case.body = {**case.body, **{name: value for name, value in ids.items() if name in case.body}}
        return case

    return strategy.map(put)


def has_input(document: dict[str, Any], path: str, method: str) -> bool:
    """Whether an operation takes a body or query parameters, which invalid requests can break.

    Its path parameters are free strings: no value breaks them, so they leave nothing to negate.
    """
    operation = document["paths"][path][method.lower()]
    return "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", []))


def fuzz(app: Flask, label: str, strategy: st.SearchStrategy[schemathesis.Case], seen: Counter[tuple[str, int]]) -> None:
    """Send up to MAX_EXAMPLES generated requests of one operation; check only what must hold for every answer."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases on every run
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time, and the failing case is reported as sent
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        response = case.call(app=app)
        seen[label, response.status_code] += 1
        assert response.status_code < 500, f"{response.status_code} {response.text[:300]}"
        documented = case.operation.definition.raw["responses"]
        assert str(response.status_code) in documented, f"{response.status_code} is not documented: {response.text[:300]}"
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/json"), f"{response.status_code} with content type {content_type!r}"
        if response.status_code >= 400:
            assert_error_shape(response.json())

    check()


# With the real ids, each role gets past its gate somewhere: (operation, status) it must have reached.
REACHES = {
    "admin": [(f"POST {API}/users/{{user_id}}/tokens", 201)],
    "analyst": [
        (f"GET {API}/grants/{{grant_id}}", 200),
        (f"GET {API}/jobs/{{job_id}}/result", 200),
        (f"POST {API}/jobs/{{job_id}}/cancel", 200),
    ],
    "steward": [(f"GET {API}/grants/{{grant_id}}", 200), (f"GET {API}/jobs/{{job_id}}", 200)],
    "auditor": [(f"GET {API}/reviews", 200), (f"POST {API}/reviews/{{job_id}}", 200)],
}


@pytest.mark.parametrize("role", sorted(REACHES))
def test_api_holds_up_against_its_document(app: Flask, world: World, grant: dict[str, Any], role: str) -> None:
    schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", app)
    headers = auth(world.token(role))
    path_ids, body_ids = known_ids(app, world, grant)
    seen: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        runs = {"valid": operation.as_strategy(GenerationMode.POSITIVE, headers=headers)}
        if has_input(schema.raw_schema, operation.path, operation.method):
            runs["invalid"] = operation.as_strategy(GenerationMode.NEGATIVE, headers=headers)
        names = re.findall(r"{([^{}]+)}", operation.path)
        in_body = {name: body_ids[name] for name in body_id_names(schema.raw_schema, operation.path, operation.method, set(body_ids))}
        # One run per combination of real path ids (each job state gets its own), real ids in the body too.
        for combination in itertools.product(*(path_ids[name].items() for name in names)):
            if not combination and not in_body:
                continue
            real = {name: value for name, (_, value) in zip(names, combination, strict=True)}
            described = ", ".join([what for what, _ in combination] + [f"{name} in the body" for name in in_body])
            strategy = operation.as_strategy(GenerationMode.POSITIVE, headers=headers, path_parameters=real)
            runs[f"valid, real ids: {described}"] = with_body_ids(strategy, in_body) if in_body else strategy
        for kind, strategy in runs.items():
            try:
                fuzz(app, label, strategy, seen)
            except Exception as exc:  # collect every operation's failure, then fail once with all of them
                failures.append(f"{label} ({kind} requests): {type(exc).__name__}: {exc}")

    assert not failures, "\n\n".join(failures)
    exercised = {label for label, _ in seen}
    documented = documented_routes(schema.raw_schema)
    assert exercised == documented, f"operations without a single generated case: {sorted(documented - exercised)}"
    assert seen.total() >= len(documented) * MAX_EXAMPLES // 2, seen
    unreached = [reach for reach in REACHES[role] if not seen[reach]]
    assert not unreached, f"as {role}, never reached {unreached}: {sorted(seen.items())}"


# --- (c) what no generator sends: JSON that Python parses but that is no JSON data ---------------

# Python's parser takes NaN and infinities, and decodes "\ud800" to a lone surrogate; a request
# carrying one is bad input (400), as for any other value the schema refuses, never a 500.
OUTSIDE_JSON = {"NaN": "NaN", "Infinity": "Infinity", "overflow": "1e999", "lone surrogate": '"SELECT race FROM pums \\ud800"'}


@pytest.mark.parametrize("value", OUTSIDE_JSON.values(), ids=OUTSIDE_JSON.keys())
@pytest.mark.parametrize("path", ["/jobs", "/jobs/dry-run"])
def test_values_outside_json_in_a_job_spec_are_bad_input(world: World, grant: dict[str, Any], path: str, value: str) -> None:
    grant_id = approved_grant(world, grant["dataset_ids"][0], PUMS_POLICY)
    data = json.dumps({"grant_id": grant_id, "kind": "query", "spec": {"sql": "VALUE"}}).replace('"VALUE"', value)
    response = world.client.post(API + path, headers=auth(world.analyst), data=data, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    assert_error_shape(response.get_json())
