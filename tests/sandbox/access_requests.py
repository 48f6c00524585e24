"""Valid requests for every endpoint of the access matrix, each with the state it needs (``Setup``).

So that the role and organisation checks, not bad input, decide each case of ``test_access_matrix``.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from sandbox.app import instance_of
from sandbox.runtime.worker import Worker
from tests.conftest import PUMS_POLICY, World, auth

API = "/api/v1"

TINY_CSV = b"id,score\n1,3\n2,5\n3,7\n4,1\n"
PUMS_SHAPED_CSV = b"age,sex,educ,race,income,married,pid\n34,0,9,1,21000,1,1\n51,1,13,2,64000,0,2\n27,1,11,1,15000,0,3\n68,0,7,3,9000,1,4\n"
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
            assert Worker(instance_of(self.request.getfixturevalue("app"))).run(once=True) == 1
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


@builds("GET /me", "GET /orgs", "GET /users", "GET /datasets", "GET /grants", "GET /audit/verify", "GET /he/keys")
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


@builds("POST /users/{user_id}/password-link")
def _password_link(s: Setup) -> tuple[Params, Kwargs]:
    return {"user_id": s.analyst_user_id()}, body(lambda: {"login": "the-analyst"})


@builds("GET /users/{user_id}/tokens")
def _tokens(s: Setup) -> tuple[Params, Kwargs]:
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


def consents_body() -> dict[str, Any]:
    return {"entities": ["91310000MA1FL0001X", "91310000MA1FL0002Y"], "valid_until": (datetime.now(UTC) + timedelta(days=30)).isoformat()}


@builds("POST /grants/{grant_id}/consents")
def _consents(s: Setup) -> tuple[Params, Kwargs]:
    return {"grant_id": s.grant_id()}, body(consents_body)


@builds("GET /grants/{grant_id}/consents")
def _consent_list(s: Setup) -> tuple[Params, Kwargs]:
    return {"grant_id": s.grant_id()}, lambda: {"query_string": {"limit": 10}}


@builds("POST /grants/{grant_id}/consents/revoke")
def _revoke_consents(s: Setup) -> tuple[Params, Kwargs]:
    return {"grant_id": s.grant_id()}, body(lambda: {"entities": consents_body()["entities"]})


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
