"""The console's tests hash passwords with cheap argon2 parameters: dozens of people are given passwords.

``people`` are the world's people with console passwords and ``analyst`` the analyst's signed-in client.

Production keeps argon2-cffi's defaults (``test_production_hashes_use_the_default_parameters``); a hash
records its own parameters, so verification works the same with either.
"""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from sandbox.service import people as people_service
from tests.conftest import World
from tests.sandbox.console.kit import People, give_everyone_passwords, signed_in_client


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(people_service, "_hasher", lambda: cheap)
    monkeypatch.setattr(people_service, "_dummy_hash", lambda: cheap.hash("no password matches this"))


@pytest.fixture
def people(app: Flask, world: World) -> People:
    """Every person of the world with a console password."""
    return give_everyone_passwords(app, world)


@pytest.fixture
def analyst(app: Flask, people: People) -> FlaskClient:
    return signed_in_client(app, people.analyst)
