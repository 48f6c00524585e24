"""The console's tests hash passwords with cheap argon2 parameters: dozens of people are given passwords.

Production keeps argon2-cffi's defaults (``test_production_hashes_use_the_default_parameters``); a hash
records its own parameters, so verification works the same with either.
"""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from sandbox.service import people


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(people, "_hasher", lambda: cheap)
    monkeypatch.setattr(people, "_dummy_hash", lambda: cheap.hash("no password matches this"))
