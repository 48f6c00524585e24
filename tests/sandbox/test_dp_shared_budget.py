"""DP across grants: a dataset used by a DP grant has a finite ε cap, and one organisation's grants share one budget.

The attack: an enterprise asks for a second (third, ...) DP grant on the same dataset, each with its own
ε total, and spends them all on the same people. Without a cap confirmed by the steward and a budget
shared by the organisation's grants, the privacy loss on the dataset would grow with every grant.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from sandbox.db import get_db_of
from sandbox.models import Dataset
from tests.conftest import World, auth, request_grant
from tests.sandbox.jobkit import approve, confirm_cap, submit
from tests.sandbox.test_dp_jobs import COUNT_BY_RACE, budget_of, dp_policy, run_one


def _approve_raw(world: World, grant_id: str, policy: dict[str, Any]) -> Any:
    body = {"policy": policy, "expires_at": "2099-01-01T00:00:00Z"}
    return world.client.post(f"/api/v1/grants/{grant_id}/approve", headers=auth(world.steward), json=body)


def _second_grant(world: World, pums: dict[str, Any], token: str | None = None) -> str:
    response = request_grant(world, [pums["id"]], token=token)
    assert response.status_code == 201, response.json
    return str(response.json["id"])


def test_a_dp_grant_needs_the_datasets_cap_first(world: World, grant: dict[str, Any], pums: dict[str, Any]) -> None:
    response = _approve_raw(world, grant["id"], dp_policy(epsilon_total=1.5, epsilon_per_job=1.0))
    assert response.status_code == 409
    assert response.json["error"]["code"] == "epsilon_cap_required"
    assert response.json["error"]["details"]["datasets"] == [{"dataset_id": pums["id"], "name": "pums", "suggested_epsilon_cap": 1.5}]
    assert world.client.get(f"/api/v1/grants/{grant['id']}", headers=auth(world.steward)).json["status"] == "requested"
    confirm_cap(world, pums["id"], 1.5)
    assert _approve_raw(world, grant["id"], dp_policy(epsilon_total=1.5, epsilon_per_job=1.0)).status_code == 200


def test_a_grant_without_dp_needs_no_cap(world: World, grant: dict[str, Any]) -> None:
    response = _approve_raw(world, grant["id"], {key: value for key, value in dp_policy().items() if key != "dp"})
    assert response.status_code == 200, response.json


def test_the_suggested_cap_counts_the_dp_grants_already_on_the_dataset(
    world: World, app: Flask, grant: dict[str, Any], pums: dict[str, Any]
) -> None:
    """An instance from before the rule has DP grants on a dataset without a cap: the suggestion covers them too."""
    approve(world, grant["id"], dp_policy(epsilon_total=1.0))
    with get_db_of(app).writing() as session:  # as an instance from before the rule left it
        session.execute(update(Dataset).where(Dataset.id == pums["id"]).values(epsilon_cap=None))
    second = _second_grant(world, pums, world.other_analyst)
    response = _approve_raw(world, second, dp_policy(epsilon_total=2.0, epsilon_per_job=1.0))
    assert response.status_code == 409
    assert response.json["error"]["details"]["datasets"][0]["suggested_epsilon_cap"] == pytest.approx(3.0)


def test_one_organisations_grants_share_one_budget_on_a_dataset(
    world: World, app: Flask, grant: dict[str, Any], pums: dict[str, Any]
) -> None:
    approve(world, grant["id"], dp_policy(epsilon_total=1.0))
    second = _second_grant(world, pums)
    approve(world, second, dp_policy(epsilon_total=1.0))
    confirm_cap(world, pums["id"], 10.0)  # the dataset's cap is not what binds here
    assert run_one(world, app, grant["id"], COUNT_BY_RACE, 0.7)["status"] == "released"
    response = submit(world, second, COUNT_BY_RACE, epsilon=0.5)
    assert response.status_code == 429
    assert response.json["error"]["details"]["limit"] == "organisation"
    assert response.json["error"]["details"]["available"] == pytest.approx(0.3)
    assert budget_of(world, second)["epsilon_remaining"] == pytest.approx(0.3)
    assert run_one(world, app, second, COUNT_BY_RACE, 0.3)["status"] == "released"
    assert submit(world, grant["id"], COUNT_BY_RACE, epsilon=0.01).status_code == 429


def test_another_organisations_spend_counts_only_against_the_datasets_cap(
    world: World, app: Flask, grant: dict[str, Any], pums: dict[str, Any]
) -> None:
    approve(world, grant["id"], dp_policy(epsilon_total=1.0))
    confirm_cap(world, pums["id"], 10.0)
    other = _second_grant(world, pums, world.other_analyst)
    approve(world, other, dp_policy(epsilon_total=1.0))
    assert run_one(world, app, grant["id"], COUNT_BY_RACE, 0.9)["status"] == "released"
    assert budget_of(world, other, world.other_analyst)["epsilon_remaining"] == pytest.approx(1.0)
    assert submit(world, other, COUNT_BY_RACE, epsilon=1.0, token=world.other_analyst).status_code == 202
