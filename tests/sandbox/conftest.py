"""Fixtures of the service tests that build on the root fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import World
from tests.sandbox.hekit import CustodianFixture, encrypted_pums, he_grant, he_meta, start_custodian, upload_bytes
from tests.sandbox.jobkit import approve


@pytest.fixture
def approved(world: World, grant: dict[str, Any]) -> str:
    approve(world, grant["id"])
    return str(grant["id"])


@pytest.fixture
def custodian(app: Flask, tmp_path: Path) -> CustodianFixture:
    """A key custodian with its own directory, knowing the domain's key; its key registered; workers reach it in-process."""
    return start_custodian(app, tmp_path / "custodian")


@pytest.fixture
def pums_he(world: World, custodian: CustodianFixture) -> dict[str, Any]:
    """PUMS with income encrypted under the custodian's key (scale 0), uploaded by the steward."""
    response = upload_bytes(world, he_meta(custodian.public), encrypted_pums(custodian.public))
    assert response.status_code == 201, response.json
    return dict(response.json)


@pytest.fixture
def he_grant_id(world: World, pums_he: dict[str, Any]) -> str:
    return he_grant(world, pums_he["id"])
