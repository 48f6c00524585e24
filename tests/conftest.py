"""Fixtures: a fresh instance (database, master key, files) per test, on SQLite or PostgreSQL.

SQLite by default. With ``SANDBOX_TEST_DATABASE_URL`` pointing at a PostgreSQL server (``make test``
starts one), every test gets its own database cloned from a migrated template.

A test that uses ``world`` gets a copy of an instance initialised once per test process, with the
world's organisations and users already made through the API (``world_snapshot``): its instance folder
copied, its database copied (SQLite) or cloned from it (PostgreSQL). Each test still has an instance of
its own; only the identical set-up is done once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from sandbox import bootstrap as setup
from sandbox import create_app, migrate
from sandbox.db import get_db_of, make_engine
from sandbox.demo.seed import PUMS_META as DEMO_PUMS_META
from tests.datafiles import data_file

__all__ = ["data_file"]  # re-exported: the service tests import it from here

# No example database in the working tree: tests never write outside their temporary folders.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "sandbox-hypothesis")
settings.register_profile("sandbox", database=None, deadline=None)
settings.load_profile("sandbox")

PG_URL = os.environ.get("SANDBOX_TEST_DATABASE_URL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL run keeps only the tests that use the test database (``database_url``, through ``app``
    or ``world``): the others never touch it, so they ran exactly as they would here in the SQLite run."""
    if PG_URL is None:
        return
    uses = ["database_url" in getattr(item, "fixturenames", ()) for item in items]
    if not all(uses):
        config.hook.pytest_deselected(items=[item for item, used in zip(items, uses, strict=True) if not used])
        items[:] = [item for item, used in zip(items, uses, strict=True) if used]


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty database to copy from: a file for SQLite, a template database for PostgreSQL."""
    if PG_URL is None:
        path = tmp_path_factory.mktemp("template") / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        migrate.upgrade(engine)
        engine.dispose()
        yield str(path)
        return
    name = f"sandbox_tmpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    migrate.upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def pg_database_url(name: str) -> str:
    assert PG_URL is not None
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


@contextmanager
def pg_clone(template: str, prefix: str) -> Iterator[str]:
    """A new PostgreSQL database copied from ``template`` (nobody may be connected to it), dropped afterwards."""
    assert PG_URL is not None
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def app_config(tmp_path: Path, database_url: str, **overrides: Any) -> dict[str, Any]:
    return {"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url, "TESTING": True, **overrides}


@dataclass(frozen=True)
class WorldSnapshot:
    """An initialised instance holding the world, to copy from: its folder, its database, the world made in it.

    ``database`` is the SQLite file inside ``instance`` or the PostgreSQL database to clone (a template
    nobody stays connected to). ``world.client`` belongs to the snapshot's app: ``world`` swaps in the test's.
    """

    instance: Path
    database: str
    world: World


@pytest.fixture(scope="session")
def world_snapshot(database_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorldSnapshot]:
    """The ``app`` and ``world`` fixtures' work, done once per test process: ``initialise`` then ``make_world``."""
    root = tmp_path_factory.mktemp("world")
    instance = root / "instance"
    instance.mkdir()
    with ExitStack() as stack:
        if PG_URL is None:
            database = str(instance / "sandbox.db")
            shutil.copy(database_template, database)
            url = f"sqlite:///{database}"
        else:
            database = stack.enter_context(pg_clone(database_template, "sandbox_world"))
            url = pg_database_url(database)
        app = create_app(app_config(root, url))
        app.config["ADMIN_TOKEN"] = setup.initialise(app).admin_token
        world = make_world(app, app.test_client())
        get_db_of(app).engine.dispose()  # SQLite: the file is complete (WAL checkpointed); PostgreSQL: clonable
        yield WorldSnapshot(instance, database, world)


def uses_world(request: pytest.FixtureRequest) -> bool:
    """Whether the test uses ``world`` (directly or through another fixture): its instance is then the snapshot's copy."""
    return "world" in request.fixturenames


@pytest.fixture
def database_url(request: pytest.FixtureRequest, database_template: str, tmp_path: Path) -> Iterator[str]:
    instance = tmp_path / "instance"
    snapshot: WorldSnapshot | None = request.getfixturevalue("world_snapshot") if uses_world(request) else None
    if snapshot is not None:
        shutil.copytree(snapshot.instance, instance)  # SQLite: the database file with it
    else:
        instance.mkdir(parents=True, exist_ok=True)
    if PG_URL is None:
        target = instance / "sandbox.db"
        if snapshot is None:
            shutil.copy(database_template, target)
        yield f"sqlite:///{target}"
        return
    with pg_clone(database_template if snapshot is None else snapshot.database, "sandbox_test") as name:
        yield pg_database_url(name)


@pytest.fixture
def app(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[Flask]:
    app = create_app(app_config(tmp_path, database_url))
    if uses_world(request):  # a copy of the snapshot: initialised, its admin token known
        app.config["ADMIN_TOKEN"] = request.getfixturevalue("world_snapshot").world.admin
    else:
        app.config["ADMIN_TOKEN"] = setup.initialise(app).admin_token
    yield app
    get_db_of(app).engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    """Organisations and users of every role, including a second of each party for 404 checks."""

    client: FlaskClient
    admin: str
    steward: str
    steward_org: str
    other_steward: str
    analyst: str
    analyst_org: str
    other_analyst: str
    auditor: str
    ids: dict[str, str]

    def token(self, role: str) -> str:
        return str(getattr(self, role))

    def upload(self, token: str, meta: dict[str, Any], path: Path, filename: str | None = None) -> Any:
        with open(path, "rb") as handle:
            return self.client.post(
                "/api/v1/datasets",
                headers=auth(token),
                data={"meta": json.dumps(meta), "file": (handle, filename or path.name)},
                content_type="multipart/form-data",
            )


def make_org(client: FlaskClient, admin: str, name: str, kind: str) -> str:
    response = client.post("/api/v1/orgs", headers=auth(admin), json={"name": name, "kind": kind})
    assert response.status_code == 201, response.json
    return str(response.json["id"])


def make_user(client: FlaskClient, admin: str, org_id: str, role: str, name: str | None = None) -> tuple[str, str]:
    response = client.post("/api/v1/users", headers=auth(admin), json={"name": name or role, "org_id": org_id, "role": role})
    assert response.status_code == 201, response.json
    return str(response.json["id"]), str(response.json["token"])


@pytest.fixture
def world(world_snapshot: WorldSnapshot, app: Flask, client: FlaskClient) -> World:
    """The organisations and users of ``make_world``, made once in ``world_snapshot``: ``app`` is a copy of it."""
    assert app.config["ADMIN_TOKEN"] == world_snapshot.world.admin, "request `world` statically: `app` copies the snapshot only then"
    return replace(world_snapshot.world, client=client)


def make_world(app: Flask, client: FlaskClient) -> World:
    """The organisations and users of ``World`` on an initialised app."""
    admin = app.config["ADMIN_TOKEN"]
    bureau = make_org(client, admin, "City Data Bureau", "bureau")
    bureau2 = make_org(client, admin, "Province Data Bureau", "bureau")
    bank = make_org(client, admin, "Example Bank", "enterprise")
    rival = make_org(client, admin, "Rival Bank", "enterprise")
    audit = make_org(client, admin, "Audit Office", "audit")
    ids: dict[str, str] = {"bureau": bureau, "bureau2": bureau2, "bank": bank, "rival": rival, "audit": audit}
    steward_id, steward = make_user(client, admin, bureau, "steward")
    _, other_steward = make_user(client, admin, bureau2, "steward", "other steward")
    analyst_id, analyst = make_user(client, admin, bank, "analyst")
    _, other_analyst = make_user(client, admin, rival, "analyst", "other analyst")
    _, auditor = make_user(client, admin, audit, "auditor")
    ids |= {"steward_user": steward_id, "analyst_user": analyst_id}
    return World(client, admin, steward, bureau, other_steward, analyst, bank, other_analyst, auditor, ids)


# The demo's declaration of PUMS_pid: the same metadata a steward would send.
PUMS_META: dict[str, Any] = DEMO_PUMS_META


@pytest.fixture
def pums(world: World) -> dict[str, Any]:
    """PUMS_pid uploaded by the steward; returns the dataset as the API shows it."""
    response = world.upload(world.steward, PUMS_META, data_file("smartnoise-sdk/PUMS_pid.csv"))
    assert response.status_code == 201, response.json
    return dict(response.json)


PUMS_POLICY: dict[str, Any] = {
    "columns": {"pums": {"age": "dimension", "sex": "dimension", "educ": "dimension", "race": "dimension", "income": "measure"}},
    "aggregates": ["count", "sum", "avg"],
    "job_kinds": ["query"],
}


def request_grant(world: World, dataset_ids: list[str], kinds: list[str] | None = None, token: str | None = None) -> Any:
    return world.client.post(
        "/api/v1/grants",
        headers=auth(token or world.analyst),
        json={
            "dataset_ids": dataset_ids,
            "scenario": "Income by education for a credit-risk model",
            "requested": {"job_kinds": kinds or ["query"]},
        },
    )


@pytest.fixture
def grant(world: World, pums: dict[str, Any]) -> dict[str, Any]:
    """A requested (not yet decided) grant of the analyst's bank on PUMS."""
    response = request_grant(world, [pums["id"]])
    assert response.status_code == 201, response.json
    return dict(response.json)
