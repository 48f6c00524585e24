"""The release audit's stored records and its per-process cache: what a release is audited against is what is committed.

Each test releases through ``release_audit.check`` and ``store`` in a writing transaction, as both
releasing paths do. "Another process" is this one with its cache set aside: its releases are stored
in the database, and this process's cache does not hold them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from pyroaring import BitMap
from sqlalchemy.orm import Session

from core.values import JobStatus
from crypto import envelope, keywrap
from policies import audit
from sandbox.db import get_db_of
from sandbox.keys import get_keys_of
from sandbox.models import CellPopulation, Grant, Job
from sandbox.runtime import release_audit

K = 5
BASE = BitMap(range(100, 200))


class Rollback(Exception):
    pass


def new_job(session: Session, grant_id: str) -> Job:
    grant = session.get(Grant, grant_id)
    assert grant is not None
    job = Job(
        grant_id=grant.id,
        org_id=grant.org_id,
        submitted_by=grant.requested_by,
        kind="query",
        spec={},
        spec_sha256="0" * 64,
        policy_version=1,
        dataset_versions={},
        status=JobStatus.CHECKING.value,
        stage="release",
        max_attempts=1,
        timeout_seconds=60,
    )
    session.add(job)
    session.flush()
    return job


def release(app: Flask, grant_id: str, version_id: str, cells: list[BitMap], *, roll_back: bool = False) -> audit.Decision:
    """One release on the real path: lock, audit, store the kept rows; ``roll_back``: the transaction fails after the store."""
    keys = get_keys_of(app)
    try:
        with get_db_of(app).writing() as session:
            job = new_job(session, grant_id)
            decision = release_audit.check(session, keys, job, version_id, dict(enumerate(cells)), K)
            kept = {row: cells[row] for row in decision.kept}
            release_audit.store(session, keys, job, version_id, kept, released=True, span=decision.span)
            if roll_back:
                raise Rollback
    except Rollback:
        pass
    return decision


@contextmanager
def another_process() -> Iterator[None]:
    """Releases inside happen as in another process: this process's cache neither sees nor holds them."""
    saved = dict(release_audit._CACHE)
    release_audit._CACHE.clear()
    try:
        yield
    finally:
        release_audit._CACHE.clear()
        release_audit._CACHE.update(saved)


@pytest.fixture
def version(app: Flask, pums: dict[str, Any]) -> str:
    found: str = app.extensions["sandbox.datasets"].get(pums["id"]).current.id
    return found


def without_one(population: BitMap) -> BitMap:
    return population - BitMap([population.min()])


def cold_history(app: Flask, version_id: str) -> set[bytes]:
    """The populations a fresh process reads for the version."""
    with another_process(), get_db_of(app).writing() as session:
        history = release_audit._history(session, get_keys_of(app), version_id)
        return {cell.population.serialize() for cell in history.cells}


def test_a_rolled_back_release_is_not_audited_against(app: Flask, grant: dict[str, Any], version: str) -> None:
    assert release(app, grant["id"], version, [BASE], roll_back=True).kept == (0,)
    assert release(app, grant["id"], version, [without_one(BASE)]).kept == (0,)  # BASE was never released
    assert release(app, grant["id"], version, [BASE]).kept == ()  # one unit from what was


def test_a_number_taken_again_by_another_process_after_a_rollback(app: Flask, grant: dict[str, Any], version: str) -> None:
    """This process's rolled-back record 1 and another process's record 1: the cache is rebuilt, not trusted."""
    other = BitMap(range(300, 400))
    assert release(app, grant["id"], version, [BASE], roll_back=True).kept == (0,)
    with another_process():
        assert release(app, grant["id"], version, [other]).kept == (0,)
    assert release(app, grant["id"], version, [without_one(other)]).kept == ()
    assert release(app, grant["id"], version, [without_one(BASE)]).kept == (0,)


def test_the_cache_reads_only_the_records_another_process_stored(
    app: Flask, grant: dict[str, Any], version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = BASE, BitMap(range(300, 400)), BitMap(range(500, 600))
    release(app, grant["id"], version, [first])
    with another_process():
        release(app, grant["id"], version, [second, BitMap(range(300, 350))])
        release(app, grant["id"], version, [third])
    unwrapped: list[int] = []
    unwrap_many = type(get_keys_of(app)).unwrap_many
    monkeypatch.setattr(type(get_keys_of(app)), "unwrap_many", lambda self, items: unwrapped.append(len(items)) or unwrap_many(self, items))
    assert release(app, grant["id"], version, [without_one(third)]).kept == ()
    assert unwrapped == [2]  # the two records stored since, not the first
    monkeypatch.undo()
    warm = {cell.population.serialize() for cell in release_audit._CACHE[version].history.cells}
    assert warm == cold_history(app, version) == {p.serialize() for p in (first, second, BitMap(range(300, 350)), third)}


def test_records_stored_one_row_each_before_revision_0008_are_read(app: Flask, grant: dict[str, Any], version: str) -> None:
    keys = get_keys_of(app)
    with get_db_of(app).writing() as session:
        job = new_job(session, grant["id"])
        data_key = keywrap.generate_key()
        wrapped, master_key_id = keys.wrap(data_key, context=f"cell-populations:{job.id}")
        for seq, (row, population) in enumerate([(0, BASE), (3, BitMap(range(300, 400)))], start=1):
            sealed = envelope.encrypt(data_key, population.serialize(), key_id=f"{job.id}:population:{row}")
            session.add(
                CellPopulation(
                    job_id=job.id,
                    dataset_version_id=version,
                    row_index=row,
                    released=True,
                    seq=seq,
                    population=sealed,
                    wrapped_key=wrapped,
                    master_key_id=master_key_id,
                )
            )
    assert cold_history(app, version) == {BASE.serialize(), BitMap(range(300, 400)).serialize()}
    assert release(app, grant["id"], version, [without_one(BitMap(range(300, 400)))]).kept == ()


def test_a_held_jobs_rows_come_back_as_stored(app: Flask, grant: dict[str, Any], version: str) -> None:
    cells = {0: BASE, 2: BitMap(), 7: BitMap(range(300, 400))}
    with get_db_of(app).writing() as session:
        job = new_job(session, grant["id"])
        release_audit.store(session, get_keys_of(app), job, version, cells, released=False)
    with get_db_of(app).writing() as session:
        assert release_audit.held(session, get_keys_of(app), job.id) == {version: cells}
    assert cold_history(app, version) == set()  # held rows are no earlier release


def test_a_record_stored_while_the_cache_lags_is_read_back_with_the_ones_before_it(app: Flask, grant: dict[str, Any], version: str) -> None:
    """A store without an audit first (the cache not caught up) does not skip the records stored in between."""
    other = BitMap(range(300, 400))
    release(app, grant["id"], version, [BASE])
    with another_process():
        release(app, grant["id"], version, [other])
    with get_db_of(app).writing() as session:
        job = new_job(session, grant["id"])
        release_audit.store(session, get_keys_of(app), job, version, {0: BitMap(range(500, 600))}, released=True)
    assert release(app, grant["id"], version, [without_one(other)]).kept == ()
