"""Fixtures of the service tests that build on the root fixtures."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import World
from tests.sandbox.jobkit import approve


@pytest.fixture
def approved(world: World, grant: dict[str, Any]) -> str:
    approve(world, grant["id"])
    return str(grant["id"])
