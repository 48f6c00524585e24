"""A dry run: a checked job run by the same pipeline as real runs, on mock rows, recording nothing.

It runs in a child process (``ChildExecutor``) under the dry-run limits, never in the web worker
that serves the request: a heavy dry run answers 422 quickly (``too_expensive`` before it runs,
when its answer could have more cells than the cap, estimated by ``jobs.cost`` on the mock rows; ``timeout`` when it passes its time limit;
``memory_limit``), any engine error 422 with a fixed message, and the web worker stays healthy.

The definition is marked ``mock``: DP answers say so in their summary and are charged nothing (no
spend is recorded, nothing goes on the ledger), he aggregates count only, score jobs refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import TooExpensive
from core.schema import DatasetSchema
from core.values import JobKind, JobStage
from jobs.cost import estimate
from jobs.mock import mock_levels
from jobs.released import Released
from sandbox.runtime.child import ChildExecutor
from sandbox.runtime.definition import DatasetRef, JobDefinition, Limits
from sandbox.runtime.executor import DRY_RUN
from sandbox.runtime.sources import MockTable
from sandbox.service.budget import job_epsilon
from sandbox.service.jobs import Checked

DRY_RUN_JOB = "dry-run"


@dataclass(frozen=True)
class DryRunLimits:
    """DRY_RUN_TIMEOUT_SECONDS, DRY_RUN_MEMORY_BYTES, DRY_RUN_MAX_CELLS."""

    timeout_seconds: int
    memory_bytes: int
    max_cells: int


def dry_run(
    org_id: str,
    kind: JobKind,
    checked: Checked,
    schemas: dict[str, DatasetSchema],
    versions: dict[str, dict[str, Any]],
    mock: tuple[int, int | None],
    limits: DryRunLimits,
) -> Released:
    """The released form of ``checked`` on ``mock`` = (rows, seed) synthetic rows per dataset.

    An answer with nothing to release (a refused model) answers with its verdict and no rows. The
    time limit is the dry-run limit, or the job's own ``timeout_seconds`` if that is shorter.
    """
    rows, seed = mock
    protects = checked.policy.disclosure.secondary_suppression
    cells = estimate(checked.plan, schemas, dict.fromkeys(schemas, rows), mock_levels, protects).cells
    if cells > limits.max_cells:
        raise TooExpensive(
            f"the answer could have about {cells} cells, more than the {limits.max_cells} a dry run may compute; "
            "use fewer or coarser dimensions, or fewer mock rows",
            details={"limit": "dry_run_max_cells", "estimate": cells, "max": limits.max_cells},
        )
    refs = tuple(DatasetRef(name, str(versions[name]["version_id"]), schemas[name], False) for name in checked.datasets)
    timeout = min(checked.timeout or limits.timeout_seconds, limits.timeout_seconds)
    definition = JobDefinition(
        DRY_RUN_JOB,
        org_id,
        kind,
        checked.spec,
        "",
        checked.plan,
        refs,
        checked.policy,
        Limits(timeout, limits.memory_bytes),
        job_epsilon(checked.spec),
        mock=True,
    )
    sources = {ref.name: MockTable(ref.schema, rows, seed) for ref in refs}
    outcome = ChildExecutor(limits.memory_bytes).run(definition, sources, DRY_RUN, _no_stages)
    if outcome.released is not None:
        return outcome.released
    summary = outcome.verdict.as_json() if outcome.verdict is not None else {"status": "block", "reason": outcome.reason}
    return {"columns": [], "rows": [], "notes": [], "summary": summary}


def _no_stages(stage: JobStage, progress: float) -> None:
    """A dry run answers at once: there is no job row to report progress on, nothing can cancel it."""
