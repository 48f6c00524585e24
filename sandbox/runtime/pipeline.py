"""The stages of a job after it is claimed, per job kind: plan -> execute -> output control -> release decision.

A ``Run`` is built by the worker from the job, its pinned policy and versions; ``execute(tables)``
gets the decrypted tables and returns an ``Outcome`` for the queue to store. The worker's ``stage``
callback records progress and raises when the job must stop (cancelled, timed out, lease lost).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from core.errors import BadRequest, InternalError
from core.schema import DatasetSchema
from core.values import JobKind, JobStage, JobStatus
from crypto.paillier import PublicKey
from jobs.engine import Engine
from jobs.he import AggregatePlan, HEPlan, ScorePlan
from jobs.query import OutputKind, QueryPlan
from jobs.stats import StatsPlan, StatsResult
from jobs.stats import run as run_stats
from jobs.stats.dp import DPStats
from policies.budget import Epsilon
from policies.evidence import GROUPING_COLUMN, Output, is_evidence
from policies.model import Policy, ReleaseMode
from policies.output_control import CellStatus, Note, control
from sandbox import keys
from sandbox.db import Database
from sandbox.keys import KeyStore
from sandbox.models import DatasetVersion, Job
from sandbox.runtime import differencing, dp_answers, he_aggregate, he_score, outputs, releases
from sandbox.runtime.custodian import Custodian
from sandbox.service import he_keys
from sandbox.service.budget import job_epsilon
from sandbox.service.jobs import plan_job
from sandbox.service.ledger import Ledger

Stage = Callable[[JobStage, float], None]


@dataclass(frozen=True)
class Outcome:
    status: JobStatus
    reason: str
    verdict: dict[str, Any] | None
    raw: pa.Table | None
    released: dict[str, Any] | None
    cells: list[differencing.Cell] = field(default_factory=list)  # released query cells, for differencing checks
    scored: tuple[str, ...] = ()  # entities a score job scored: their uses are recorded when it is released


@dataclass(frozen=True)
class HEServices:
    """What ``he`` jobs need beyond other kinds: the key custodian, the domain's signing key, the ledger."""

    ledger: Ledger
    keys: KeyStore
    custodian: Custodian | None  # None: SANDBOX_CUSTODIAN_URL is not set; he aggregates fail with that reason
    actor: str


def datasets_of(plan: QueryPlan | StatsPlan | DPStats | HEPlan) -> tuple[str, ...]:
    return plan.datasets if isinstance(plan, QueryPlan | HEPlan) else (plan.dataset,)


class Run:
    def __init__(
        self,
        job: Job,
        policy: Policy,
        versions: Mapping[str, DatasetVersion],
        db: Database,
        engine: Engine,
        stage: Stage,
        interrupt: threading.Event,
        he: HEServices | None = None,
    ) -> None:
        self.job, self.policy, self.db, self.engine, self.stage, self.interrupt = job, policy, db, engine, stage, interrupt
        self.he = he
        self.schemas = {name: DatasetSchema.model_validate(v.schema) for name, v in versions.items()}
        self.unique = frozenset(name for name, v in versions.items() if v.unit_count == v.row_count)
        self.plan = plan_job(JobKind(job.kind), job.spec, policy, self.schemas, self.unique)
        self.datasets = datasets_of(self.plan)

    def execute(self, tables: dict[str, pa.Table]) -> Outcome:
        self.stage(JobStage.EXECUTE, 0.3)
        if isinstance(self.plan, QueryPlan):
            return self._query(self.plan, tables)
        if isinstance(self.plan, DPStats):
            return self._dp_stats(self.plan, tables)
        if isinstance(self.plan, HEPlan):
            return self._he(self.plan, tables)
        return self._stats(self.plan, tables)

    def _he(self, plan: HEPlan, tables: dict[str, pa.Table]) -> Outcome:
        """One runner per he op, by the type of its plan (an op adds its runner to ``HE_RUNNERS``)."""
        runner = HE_RUNNERS.get(type(plan))
        if runner is None:
            raise InternalError(f"no runner for he op {plan.op}")
        return runner(self, plan, tables[plan.dataset])

    def _he_aggregate(self, plan: HEPlan, table: pa.Table) -> Outcome:
        assert isinstance(plan, AggregatePlan)
        if self.he is None:
            raise InternalError("he aggregates need the worker's he services")
        services = self.he
        with self.db.sessions() as session:
            public: PublicKey | None = he_keys.public_keys(session, [plan.key]).get(plan.key)
        decrypt = he_aggregate.with_custodian(services.custodian, self.job.id, self._signing_key, self._record_decryption)
        result = he_aggregate.run(plan, self.policy, table, public, decrypt, self.stage)
        released = form(result.columns, result.table, result.notes, result.summary)
        return Outcome(result.status, result.reason, result.summary, result.raw, released)

    def _signing_key(self) -> bytes:
        assert self.he is not None
        with self.db.sessions() as session:
            return keys.signing_key(session, self.he.keys)[0]

    def _record_decryption(self, public: PublicKey, cells: int, digest: str) -> None:
        """``he.decrypted``: which job, key and decision, how many cells; never a value."""
        assert self.he is not None
        details = {"job_id": self.job.id, "key": public.fingerprint, "cells": cells, "decision_sha256": digest}
        with self.db.writing() as session:
            self.he.ledger.append(
                session, actor=self.he.actor, action="he.decrypted", object_type="job", object_id=self.job.id, details=details
            )

    def _score(self, plan: HEPlan, table: pa.Table) -> Outcome:
        """Encrypted scores of the eligible entities; there is no cell to check, only the release mode to obey."""
        assert isinstance(plan, ScorePlan)
        scored = he_score.score(plan, table, self.db, self.job, self.stage)
        self.stage(JobStage.OUTPUT_CONTROL, 0.8)
        self.stage(JobStage.RELEASE, 0.95)
        held = self.policy.release_mode is ReleaseMode.ALWAYS_REVIEW
        status, reason = (JobStatus.HELD, "the policy holds every output for review") if held else (JobStatus.RELEASED, "")
        released = form(he_score.COLUMNS, scored.table, (), scored.summary)
        return Outcome(status, reason, scored.summary, scored.table, released, scored=scored.entities)

    def _query(self, plan: QueryPlan, tables: dict[str, pa.Table]) -> Outcome:
        if plan.dp is not None:
            return self._dp_query(plan, tables)
        raw = self.engine.run(plan.executable_sql, tables, self.interrupt)
        self.stage(JobStage.OUTPUT_CONTROL, 0.8)
        outs = aggregate_outputs(plan)
        controlled = control(raw, outs, plan.unit_columns, self.policy.disclosure)
        aggregates = [o.name for o in outs]
        keys, units = row_keys(raw, plan.group_keys), row_units(raw, plan.unit_columns)
        candidates = [differencing.Cell(keys[i], units[i]) for i in releases.released_rows(controlled.notes, raw.num_rows, aggregates)]
        checker = releases.Differencing(self.db, self.engine)
        findings = checker.flags(self.job, plan, self.policy, self.schemas, tables, candidates)
        own = checker.own_jobs(self.job, findings)
        extra = [
            Note(keys.index(f.key), column, CellStatus.REVIEW, "differencing", _differencing_reason(f, self.policy, f.job_id in own))
            for f in findings
            for column in aggregates
        ]
        self.stage(JobStage.RELEASE, 0.95)
        release = releases.decide(controlled, extra, aggregates, self.policy, keys, units)
        columns = [{"name": o.name, "kind": o.kind.value, "type": str(raw.schema.field(o.name).type)} for o in plan.outputs]
        return Outcome(
            release.status,
            release.reason,
            release.summary,
            raw,
            form(columns, release.table, release.notes, release.summary),
            release.cells,
        )

    def _dp_query(self, plan: QueryPlan, tables: dict[str, pa.Table]) -> Outcome:
        """Noisy answers; the budget is charged when the output is released (``Queue.finish`` or a review)."""
        assert plan.dp is not None
        self.stage(JobStage.OUTPUT_CONTROL, 0.8)
        result = dp_answers.run(plan.dp, self.policy, self._epsilon(), tables, self.engine, self.interrupt)
        self.stage(JobStage.RELEASE, 0.95)
        return Outcome(result.status, result.reason, result.summary, result.raw, result.released)

    def _dp_stats(self, form: DPStats, tables: dict[str, pa.Table]) -> Outcome:
        """A statistics op's noisy table, charged like a DP query when released."""
        self.stage(JobStage.OUTPUT_CONTROL, 0.8)
        result = dp_answers.run_stats(form, self.policy, self._epsilon(), tables, self.engine, self.interrupt)
        self.stage(JobStage.RELEASE, 0.95)
        return Outcome(result.status, result.reason, result.summary, result.raw, result.released)

    def _epsilon(self) -> Epsilon:
        epsilon = job_epsilon(self.job.spec)
        assert epsilon is not None, "a DP job states its epsilon (checked at submission)"
        return epsilon

    def _stats(self, plan: StatsPlan, tables: dict[str, pa.Table]) -> Outcome:
        result = run_stats(plan, tables, self.engine, self.policy.disclosure)
        self.stage(JobStage.OUTPUT_CONTROL, 0.8)
        if result.refused:
            return Outcome(JobStatus.BLOCKED, result.refused, {"status": "block", "reason": result.refused}, result.table, None)
        if plan.model is not None:
            return self._model(result)
        outs = [Output(name, aggregate) for name, aggregate in result.outputs]
        controlled = control(result.table, outs, result.unit_columns, self.policy.disclosure)
        self.stage(JobStage.RELEASE, 0.95)
        keys, units = row_keys(result.table, result.dimensions), row_units(result.table, result.unit_columns)
        release = releases.decide(controlled, [], [o.name for o in outs], self.policy, keys, units)
        table = with_margins(release.table, result)
        columns = _stats_columns(table, result)
        return Outcome(release.status, release.reason, release.summary, result.table, form(columns, table, release.notes, release.summary))

    def _model(self, result: StatsResult) -> Outcome:
        """Coefficients, standard errors and fit statistics, already refused by the op when unsafe."""
        table = pa.table({n: result.table.column(n) for n in result.table.column_names if not is_evidence(n)})
        summary = {"status": "pass", "reason": "", "rows": table.num_rows, "fit": result.summary}
        columns = [
            {"name": n, "kind": "group_key" if n == "term" else "aggregate", "type": str(table.schema.field(n).type)}
            for n in table.column_names
        ]
        status = JobStatus.HELD if self.policy.release_mode is ReleaseMode.ALWAYS_REVIEW else JobStatus.RELEASED
        reason = "the policy holds every output for review" if status is JobStatus.HELD else ""
        return Outcome(status, reason, summary, result.table, form(columns, table, (), summary))


HE_RUNNERS: dict[type[HEPlan], Callable[[Run, HEPlan, pa.Table], Outcome]] = {AggregatePlan: Run._he_aggregate, ScorePlan: Run._score}


def with_margins(table: pa.Table, result: StatsResult) -> pa.Table:
    """Add ``total_over``: the dimensions a margin row totals over ("" for an inner cell)."""
    if GROUPING_COLUMN not in result.table.column_names:
        return table
    dims = list(result.dimensions)
    masks = result.table.column(GROUPING_COLUMN).to_pylist()
    labels = [",".join(d for j, d in enumerate(dims) if (mask or 0) >> (len(dims) - 1 - j) & 1) for mask in masks]
    return table.append_column("total_over", pa.array(labels, pa.string()))


def _stats_columns(table: pa.Table, result: StatsResult) -> list[dict[str, str]]:
    kinds = dict.fromkeys(result.dimensions, "group_key") | {"total_over": "margin"} | {name: "aggregate" for name, _ in result.outputs}
    return [{"name": n, "kind": kinds.get(n, "aggregate"), "type": str(table.schema.field(n).type)} for n in table.column_names]


def aggregate_outputs(plan: QueryPlan) -> list[Output]:
    return [Output(o.name, o.aggregate) for o in plan.outputs if o.kind is OutputKind.AGGREGATE and o.aggregate is not None]


def row_keys(table: pa.Table, group_keys: Sequence[str]) -> list[differencing.Key]:
    columns = [table.column(k).to_pylist() for k in group_keys]
    return [tuple(col[i] for col in columns) for i in range(table.num_rows)]


def row_units(table: pa.Table, unit_columns: Sequence[str]) -> list[int]:
    columns = [table.column(c).to_pylist() for c in unit_columns]
    return [min((int(col[i] or 0) for col in columns), default=0) for i in range(table.num_rows)]


def form(columns: list[dict[str, str]], table: pa.Table, notes: Sequence[Note], summary: dict[str, Any]) -> dict[str, Any]:
    """The released form: what the analyst receives when the job is released."""
    return {"columns": columns, "rows": outputs.rows_of(table), "notes": [n.as_dict() for n in notes], "summary": summary}


def _differencing_reason(finding: differencing.Finding, policy: Policy, own: bool) -> str:
    """The note's reason; it names the earlier job only if it is the caller's organisation's (``own``).

    Another organisation's job is never named: its id would tell the analyst that it exists.
    """
    earlier = f" (job {finding.job_id[:8]})" if own else ""
    return (
        f"its population differs from a cell released earlier{earlier} by {finding.difference} "
        f"privacy units, fewer than {policy.disclosure.threshold}: subtracting the two would disclose them"
    )


def preview(
    plan: QueryPlan | StatsPlan | DPStats | HEPlan, policy: Policy, tables: dict[str, pa.Table], engine: Engine, epsilon: Epsilon | None
) -> dict[str, Any]:
    """A dry run's answer: the plan on (mock) tables with output control applied, nothing recorded.

    On a DP grant (``epsilon`` is the job's): the DP answer at that ε, marked ``mock`` in ``summary.dp``.
    Nothing is charged: a dry run records no spend and writes nothing to the ledger.
    """
    if isinstance(plan, DPStats) or (isinstance(plan, QueryPlan) and plan.dp is not None):
        assert epsilon is not None, "a DP job states its epsilon (checked before the dry run)"
        return _preview_dp(plan, policy, tables, engine, epsilon)
    if isinstance(plan, HEPlan):
        return _preview_he(plan, policy, tables)
    if isinstance(plan, QueryPlan):
        raw = engine.run(plan.executable_sql, tables)
        controlled = control(raw, aggregate_outputs(plan), plan.unit_columns, policy.disclosure)
        columns = [{"name": o.name, "kind": o.kind.value, "type": str(raw.schema.field(o.name).type)} for o in plan.outputs]
        return form(columns, controlled.released, controlled.notes, controlled.summary())
    return _preview_stats(plan, policy, tables, engine)


def _preview_dp(plan: QueryPlan | DPStats, policy: Policy, tables: dict[str, pa.Table], engine: Engine, epsilon: Epsilon) -> dict[str, Any]:
    if isinstance(plan, DPStats):
        return dp_answers.run_stats(plan, policy, epsilon, tables, engine, mock=True).released
    assert plan.dp is not None
    return dp_answers.run(plan.dp, policy, epsilon, tables, engine, mock=True).released


def _preview_he(plan: HEPlan, policy: Policy, tables: dict[str, pa.Table]) -> dict[str, Any]:
    if isinstance(plan, ScorePlan):
        raise BadRequest("score jobs have no dry run: mock rows have no consents and no scores", details={"field": "kind"})
    if not isinstance(plan, AggregatePlan):
        raise BadRequest(f"he jobs of op {plan.op} have no dry run", details={"field": "spec.op"})
    he = he_aggregate.preview(plan, policy, tables[plan.dataset])
    return form(he.columns, he.table, he.notes, he.summary)


def _preview_stats(plan: StatsPlan, policy: Policy, tables: dict[str, pa.Table], engine: Engine) -> dict[str, Any]:
    result = run_stats(plan, tables, engine, policy.disclosure)
    if result.refused:
        return form([], pa.table({}), (), {"status": "block", "reason": result.refused})
    if plan.model is not None:
        table = pa.table({n: result.table.column(n) for n in result.table.column_names if not is_evidence(n)})
        columns = [
            {"name": n, "kind": "group_key" if n == "term" else "aggregate", "type": str(table.schema.field(n).type)}
            for n in table.column_names
        ]
        return form(columns, table, (), {"status": "pass", "fit": result.summary})
    controlled = control(result.table, [Output(n, a) for n, a in result.outputs], result.unit_columns, policy.disclosure)
    table = with_margins(controlled.released, result)
    return form(_stats_columns(table, result), table, controlled.notes, controlled.summary())
