"""The shared real data files of the tests, with the project's demo copies as fallback.

Imports nothing of the server: the client's tests (tests/client/) use it where only the client is installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEMO_DATA = Path(__file__).resolve().parents[1] / "sandbox" / "demo" / "data"


def data_file(relative: str) -> Path:
    """A file of the shared real data; falls back to the project's demo copy where there is one."""
    path = SHARED_DATA / relative
    if path.exists():
        return path
    fallback = {"smartnoise-sdk/PUMS_pid.csv": DEMO_DATA / "pums.csv"}.get(relative)
    if fallback is None:
        pytest.fail(f"shared data file missing: {path}")
    return fallback
