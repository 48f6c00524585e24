"""A dry run: a checked job run by the same ``Executor`` as real runs, on mock rows, recording nothing.

The definition is marked ``mock``: DP answers say so in their summary and are charged nothing (no
spend is recorded, nothing goes on the ledger), he aggregates count only, score jobs refuse.
"""

from __future__ import annotations

from typing import Any

from core.schema import DatasetSchema
from core.values import JobKind, JobStage
from jobs.engine import Engine
from jobs.mock import mock_table
from jobs.released import Released
from sandbox.runtime.definition import DatasetRef, JobDefinition, Limits
from sandbox.runtime.executor import DRY_RUN, Executor
from sandbox.service.budget import job_epsilon
from sandbox.service.jobs import Checked

DRY_RUN_JOB = "dry-run"


def dry_run(
    org_id: str,
    kind: JobKind,
    checked: Checked,
    schemas: dict[str, DatasetSchema],
    versions: dict[str, dict[str, Any]],
    mock: tuple[int, int | None],
    engine: Engine,
    timeout_seconds: int,
) -> Released:
    """The released form of ``checked`` on ``mock`` = (rows, seed) synthetic rows per dataset.

    An answer with nothing to release (a refused model) answers with its verdict and no rows.
    """
    rows, seed = mock
    refs = tuple(DatasetRef(name, str(versions[name]["version_id"]), schemas[name], False) for name in checked.datasets)
    definition = JobDefinition(
        DRY_RUN_JOB,
        org_id,
        kind,
        checked.spec,
        "",
        checked.plan,
        refs,
        checked.policy,
        Limits(checked.timeout or timeout_seconds),
        job_epsilon(checked.spec),
        mock=True,
    )
    tables = {ref.name: mock_table(ref.schema, rows, seed) for ref in refs}
    outcome = Executor(engine).run(definition, tables, DRY_RUN, _no_stages)
    if outcome.released is not None:
        return outcome.released
    summary = outcome.verdict.as_json() if outcome.verdict is not None else {"status": "block", "reason": outcome.reason}
    return {"columns": [], "rows": [], "notes": [], "summary": summary}


def _no_stages(stage: JobStage, progress: float) -> None:
    """A dry run answers at once: there is no job row to report progress on, nothing can cancel it."""
