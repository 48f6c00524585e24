"""Creating an instance: migrations build the schema, and `init` is safe to run again."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from sandbox.cli import main
from sandbox.db import get_db_of
from sandbox.demo import tokens as demo_tokens
from sandbox.models import Base, Dataset, Grant, LedgerEvent, Org, User


def test_migrations_build_exactly_the_models(app: Flask) -> None:
    with get_db_of(app).engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {"SANDBOX_INSTANCE_PATH": str(tmp_path / "instance"), "SANDBOX_DATABASE_URL": database_url}


def _tokens_file(tmp_path: Path) -> dict[str, str]:
    """The demo tokens as a shell that sources the file sees them."""
    path = tmp_path / "instance" / "demo-tokens.env"
    script = f'set -eu; source {shlex.quote(str(path))}; printf \'%s\\n\' "$ADMIN" "$STEWARD" "$ANALYST" "$AUDITOR" "$AUDITOR2"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]})
    return dict(zip(["admin", "steward", "analyst", "auditor", "auditor2"], done.stdout.split(), strict=True))


def _me(app: Flask, token: str) -> int:
    return app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_init_demo_twice_does_not_duplicate(tmp_path: Path, database_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["init", "--demo"], env=_env(tmp_path, database_url), catch_exceptions=False)
    assert first.exit_code == 0, first.output
    second = runner.invoke(main, ["init", "--demo"], env=_env(tmp_path, database_url), catch_exceptions=False)
    assert second.exit_code == 0, second.output
    from sandbox import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url})
    with get_db_of(app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(Org)) == 4
        assert session.scalar(select(func.count()).select_from(User)) == 5  # the admin, a steward, an analyst, two auditors
        assert session.scalar(select(func.count()).select_from(Dataset)) == 4  # pums, teacher_survey, persons, 企业纳税
        assert session.scalar(select(func.count()).select_from(Grant)) == 3  # on pums, persons (scoring) and 企业纳税
        assert session.scalar(select(func.count()).select_from(LedgerEvent)) > 0
    get_db_of(app).engine.dispose()


def test_init_demo_writes_a_private_tokens_file_that_stays_valid(tmp_path: Path, database_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["init", "--demo"], env=_env(tmp_path, database_url), catch_exceptions=False)
    assert first.exit_code == 0, first.output
    path = tmp_path / "instance" / "demo-tokens.env"
    assert f"source {path}" in first.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tokens = _tokens_file(tmp_path)
    assert not any(token in first.output for token in tokens.values())  # the file is the place, not the terminal
    second = runner.invoke(main, ["init", "--demo"], env=_env(tmp_path, database_url), catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "new: none, all kept valid" in second.output
    assert _tokens_file(tmp_path) == tokens
    from sandbox import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url})
    roles = {}
    for name, token in tokens.items():
        response = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, name
        roles[name] = response.json["role"]
    assert roles == {"admin": "admin", "steward": "steward", "analyst": "analyst", "auditor": "auditor", "auditor2": "auditor"}
    get_db_of(app).engine.dispose()


def test_a_lost_or_revoked_demo_token_is_replaced_and_the_file_rewritten(tmp_path: Path, database_url: str) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init", "--demo"], env=_env(tmp_path, database_url), catch_exceptions=False).exit_code == 0
    path = tmp_path / "instance" / "demo-tokens.env"
    old = _tokens_file(tmp_path)
    path.write_text("\n".join(line for line in path.read_text().splitlines() if "ANALYST" not in line) + "\n")
    path.chmod(0o644)
    again = runner.invoke(main, ["init", "--demo"], env=_env(tmp_path, database_url), catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "new: ANALYST" in again.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    new = _tokens_file(tmp_path)
    assert {name for name in new if new[name] != old[name]} == {"analyst"}
    from sandbox import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url})
    assert (_me(app, new["analyst"]), _me(app, old["analyst"]), _me(app, new["admin"])) == (200, 401, 200)
    get_db_of(app).engine.dispose()


def test_the_tokens_file_is_never_readable_by_others_while_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file the writer creates is 0600 from its creation, whatever the umask."""
    created: list[int] = []
    real = tempfile.mkstemp

    def watched(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real(*args, **kwargs)
        created.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", watched)
    old = os.umask(0)
    try:
        demo_tokens.write(tmp_path / "demo-tokens.env", {"admin": "sbx_a", "analyst": "sbx_b"})
    finally:
        os.umask(old)
    assert created == [0o600]
    assert stat.S_IMODE((tmp_path / "demo-tokens.env").stat().st_mode) == 0o600
    assert demo_tokens.read(tmp_path / "demo-tokens.env") == {"admin": "sbx_a", "analyst": "sbx_b"}
    assert [p.name for p in tmp_path.iterdir()] == ["demo-tokens.env"]


def test_init_demo_keeps_the_admin_token_of_the_environment(tmp_path: Path, database_url: str) -> None:
    token = "sbx_" + "b" * 43
    env = {**_env(tmp_path, database_url), "SANDBOX_ADMIN_TOKEN": token}
    for _ in range(2):
        assert CliRunner().invoke(main, ["init", "--demo"], env=env, catch_exceptions=False).exit_code == 0
    assert _tokens_file(tmp_path)["admin"] == token
    from sandbox import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url})
    assert _me(app, token) == 200
    get_db_of(app).engine.dispose()


def test_admin_token_from_environment(tmp_path: Path, database_url: str) -> None:
    token = "sbx_" + "a" * 43
    result = CliRunner().invoke(main, ["init"], env={**_env(tmp_path, database_url), "SANDBOX_ADMIN_TOKEN": token}, catch_exceptions=False)
    assert result.exit_code == 0
    from sandbox import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url})
    me = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json["role"] == "admin"
    get_db_of(app).engine.dispose()


@pytest.mark.sqlite_only
def test_master_key_file_is_private(app: Flask) -> None:
    assert Path(app.config["MASTER_KEY_FILE"]).stat().st_mode & 0o077 == 0
