"""The typed boundary between the worker and the work: definitions and outcomes, one pipeline, no Flask."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from typing import Any

import pytest
from flask import Flask
from pyroaring import BitMap

import jobs.population
import sandbox.runtime.executor
from core.values import JobStage, JobStatus
from jobs.engine import DuckDBEngine
from jobs.population import PopulationRun
from jobs.query import QueryPlan
from policies.model import Policy
from policies.rules import CellStatus
from sandbox.app import instance_of
from sandbox.models import DatasetVersion, Grant, GrantPolicy, Job
from sandbox.runtime.definition import JobDefinition, Outcome, Populations, Verdict
from sandbox.runtime.executor import DRY_RUN, Executor
from sandbox.runtime.services import DatabaseServices
from sandbox.runtime.worker import definition_of
from sandbox.service.jobs import plan_job
from tests.conftest import World
from tests.sandbox.jobkit import RACE_SQL, submit


def _definition(app: Flask, world: World, grant_id: str, sql: str = RACE_SQL) -> tuple[JobDefinition, dict[str, DatasetVersion], str]:
    job_id = submit(world, grant_id, sql).json["id"]
    with instance_of(app).db.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        grant = session.get(Grant, job.grant_id)
        assert grant is not None
        pinned = session.query(GrantPolicy).filter_by(grant_id=grant.id, version=job.policy_version).one()
        versions = {name: session.get(DatasetVersion, ref["version_id"]) for name, ref in job.dataset_versions.items()}
        found = {k: v for k, v in versions.items() if v is not None}
        return definition_of(job, Policy.model_validate(pinned.policy), found, 60), found, grant.id


def _no_stages(stage: JobStage, progress: float) -> None:
    pass


def test_definition_and_outcome_survive_a_pickle_round_trip(app: Flask, world: World, approved: str) -> None:
    definition, versions, grant_id = _definition(app, world, approved)
    copy = pickle.loads(pickle.dumps(definition))  # noqa: S301 - our own bytes: the child-process hand-over
    assert copy == definition
    instance = instance_of(app)
    tables = {name: instance.datasets.read(v) for name, v in versions.items()}
    outcome = Executor(DuckDBEngine()).run(copy, tables, DatabaseServices(instance, copy, grant_id, "test"), _no_stages)
    back: Outcome = pickle.loads(pickle.dumps(outcome))  # noqa: S301 - as above
    assert (back.status, back.reason, back.verdict, back.released, back.populations) == (
        outcome.status,
        outcome.reason,
        outcome.verdict,
        outcome.released,
        outcome.populations,
    )
    assert back.raw is not None
    assert outcome.raw is not None
    assert back.raw.equals(outcome.raw)
    assert isinstance(back.verdict, Verdict)
    assert back.verdict.status is CellStatus.SUPPRESS  # races 5 and 6 are too small


def test_a_dry_run_and_a_real_run_of_one_plan_release_the_same_form(app: Flask, world: World, approved: str) -> None:
    definition, versions, grant_id = _definition(app, world, approved)
    instance = instance_of(app)
    tables = {name: instance.datasets.read(v) for name, v in versions.items()}
    executor = Executor(DuckDBEngine())
    real = executor.run(definition, tables, DatabaseServices(instance, definition, grant_id, "test"), _no_stages)
    dry = executor.run(dataclasses.replace(definition, mock=True), tables, DRY_RUN, _no_stages)
    assert real.status is JobStatus.RELEASED
    assert real.released is not None
    assert real.released["rows"]
    assert dry.released == real.released
    assert dry.verdict == real.verdict


@pytest.mark.parametrize(
    ("sql", "bitstrings"),
    [
        pytest.param(RACE_SQL, True, id="declared_keys_bitstrings"),  # race's six declared values bound the rows
        pytest.param("SELECT age, COUNT(*) AS n FROM pums GROUP BY age ORDER BY age", False, id="undeclared_key_lists"),
    ],
)
def test_a_query_over_rows_of_distinct_units_audits_the_populations_distinct_counting_gives(
    app: Flask, world: World, approved: str, sql: str, bitstrings: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PUMS has one row per person: the worker's plan counts rows, its population run lists row positions
    (or sets them in bitstrings, where the keys' declared values bound the rows), and each released row's
    population is the one the plan counting units distinctly names."""
    forms: list[frozenset[str]] = []

    def population_sql(*args: Any) -> PopulationRun:
        run = jobs.population.population_sql(*args)
        forms.append(run.bitstrings)
        return run

    monkeypatch.setattr(sandbox.runtime.executor, "population_sql", population_sql)
    definition, versions, grant_id = _definition(app, world, approved, sql)
    assert all(ref.unique_units for ref in definition.datasets)
    assert isinstance(definition.plan, QueryPlan)
    assert "COUNT(DISTINCT" not in definition.plan.executable_sql
    distinct = dataclasses.replace(
        definition,
        plan=plan_job(definition.kind, dict(definition.spec), definition.policy, definition.schemas),
        datasets=tuple(dataclasses.replace(ref, unique_units=False) for ref in definition.datasets),
    )
    instance = instance_of(app)
    tables = {name: instance.datasets.read(v) for name, v in versions.items()}
    runs = [
        Executor(DuckDBEngine()).run(d, tables, DatabaseServices(instance, d, grant_id, "test"), _no_stages) for d in (definition, distinct)
    ]
    assert runs[0].populations
    assert [_contents(p) for p in runs[0].populations] == [_contents(p) for p in runs[1].populations]
    assert runs[0].released == runs[1].released
    assert [bool(form) for form in forms] == [bitstrings, False]  # the distinct plan lists units either way


def _contents(populations: Populations) -> tuple[str, dict[int, BitMap]]:
    """Populations by their members (a bitmap's bytes depend on how it was built: arrays, bitsets or runs)."""
    return populations.version_id, {row: BitMap.deserialize(bitmap) for row, bitmap in populations.bitmaps.items()}


def test_a_verdict_becomes_json_in_one_place() -> None:
    summary: dict[str, Any] = {"status": "review", "reason": "cells flagged for review", "rows": 3, "flagged": 1}
    verdict = Verdict.of(summary)
    assert verdict.status is CellStatus.REVIEW
    assert verdict.as_json() == summary
    assert list(verdict.as_json()) == list(summary)


def test_the_worker_module_imports_no_flask() -> None:
    code = "import sandbox.runtime.worker, sandbox.runtime.executor, sys; assert 'flask' not in sys.modules, 'flask imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_worker_starts_without_the_fitting_and_workbook_libraries_its_job_children_have_preloaded() -> None:
    """statsmodels' formulas (with scipy.stats and formulaic) and openpyxl cost a worker seconds of CPU at each start:
    they are imported where a model is fitted or a workbook read, and the job children's forkserver preloads the former."""
    heavy = ["statsmodels.formula.api", "statsmodels.tools.sm_exceptions", "scipy.stats", "formulaic", "openpyxl"]
    code = (
        "import importlib, sys, sandbox.runtime.worker\n"
        f"heavy = {heavy!r}\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "from sandbox.runtime.child import PRELOAD\n"
        "for name in PRELOAD: importlib.import_module(name)\n"
        "assert not [m for m in heavy[:4] if m not in sys.modules], [m for m in heavy[:4] if m not in sys.modules]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
