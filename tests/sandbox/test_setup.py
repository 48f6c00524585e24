"""Creating an instance: migrations build the schema, and `init` is safe to run again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from sandbox.cli import main
from sandbox.db import get_db_of
from sandbox.models import Base, Dataset, Grant, LedgerEvent, Org, User


def test_migrations_build_exactly_the_models(app: Flask) -> None:
    with get_db_of(app).engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {"SANDBOX_INSTANCE_PATH": str(tmp_path / "instance"), "SANDBOX_DATABASE_URL": database_url}


def _tokens(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+(\w+)\s+(sbx_\S+)$", output, flags=re.MULTILINE))


def test_init_demo_twice_does_not_duplicate(tmp_path: Path, database_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["init", "--demo"], env=_env(tmp_path, database_url), catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "admin token" in first.output
    second = runner.invoke(main, ["init", "--demo"], env=_env(tmp_path, database_url), catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert set(_tokens(second.output)) == {"admin", "steward", "analyst", "auditor"}
    from sandbox import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url})
    with get_db_of(app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(Org)) == 4
        assert session.scalar(select(func.count()).select_from(User)) == 4
        assert session.scalar(select(func.count()).select_from(Dataset)) == 3  # pums, teacher_survey, 企业纳税
        assert session.scalar(select(func.count()).select_from(Grant)) == 2  # on pums and on 企业纳税
        assert session.scalar(select(func.count()).select_from(LedgerEvent)) > 0
    client = app.test_client()
    old, new = _tokens(first.output), _tokens(second.output)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new['analyst']}"}).status_code == 200
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {old['analyst']}"}).status_code == 401
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
