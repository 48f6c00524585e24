"""The console's session-signing key in the instance folder: made once, readable by its owner only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sandbox.console.signin import _instance_secret


def test_the_key_is_made_once_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "instance" / "console-secret.key"
    first = _instance_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 64
    assert _instance_secret(path) == first


def test_a_key_left_readable_by_others_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "console-secret.key"
    path.write_text("k" * 64, encoding="ascii")
    path.chmod(0o644)
    assert _instance_secret(path) == "k" * 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "console-secret.key"
    path.write_text("\n", encoding="ascii")
    with pytest.raises(RuntimeError, match="is empty"):
        _instance_secret(path)
