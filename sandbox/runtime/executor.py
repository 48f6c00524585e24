"""The one pipeline of real and dry runs: plan -> execute -> output control -> release decision.

``Executor.run(definition, tables, services, stage)`` dispatches once on the plan's type and returns
a typed ``Outcome``. The worker calls it with the decrypted tables and database-backed ``Services``;
a dry run with mock tables and ``DRY_RUN`` services, which record nothing and find nothing earlier.
A real run of a query, a table statistic or an he aggregate also returns, per dataset version, the
population of each row it would release (``jobs.population``): the queue audits them against every
earlier release of the version (``sandbox.runtime.audited``) before anything leaves.
``stage`` reports progress and raises when the job must stop (cancelled, timed out, lease lost).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import pyarrow as pa
from pyroaring import BitMap

from core.errors import BadRequest, InternalError, TooExpensive
from core.values import JobStage, JobStatus
from crypto.paillier import PublicKey
from jobs.dp import release as dp_release
from jobs.engine import Engine, QueryInterrupted
from jobs.he import AggregatePlan, HEPlan, ScorePlan
from jobs.he import run_aggregate as he_aggregate
from jobs.keys import KeyLayout, complete, hide
from jobs.population import bitstring_datasets, by_version, population_sql, query_unit_datasets, split, unit_dictionary, with_unit_index
from jobs.query import OutputKind, QueryPlan
from jobs.query.keys import layout as query_layout
from jobs.released import Released, form
from jobs.script import ScriptPlan
from jobs.stats import StatsPlan, StatsResult
from jobs.stats import run as run_stats
from jobs.stats.dp import DPStats
from policies.budget import Epsilon
from policies.evidence import GROUPING_COLUMN, Output, is_evidence
from policies.model import ReleaseMode
from policies.output_control import CellStatus, Note, control
from policies.release import Release, decide
from policies.secondary import Limits as SuppressionLimits
from sandbox.runtime import he_score, script_run
from sandbox.runtime.definition import JobDefinition, Outcome, Populations, Verdict

Stage = Callable[[JobStage, float], None]
HELD_BY_POLICY = "the policy holds every output for review"


class Services(Protocol):
    """What a run needs of the instance while it runs: lookups and the recorded decryption of he sums."""

    def public_key(self, fingerprint: str) -> PublicKey | None:
        """A registered Paillier key of the domain."""
        ...

    def decrypt(self, public: PublicKey, ciphertexts: dict[he_aggregate.Cell, int]) -> tuple[dict[he_aggregate.Cell, int], str]:
        """The key custodian's decryption of exactly ``ciphertexts``, recorded on the ledger: (mantissas, decision digest)."""
        ...

    def eligibility(self, plan: ScorePlan) -> he_score.Eligibility:
        """Which of a score job's entities are over quota, and which of the rest consent now."""
        ...


class DryRunServices:
    """A dry run's services: nothing is decrypted, nothing is recorded."""

    def public_key(self, fingerprint: str) -> PublicKey | None:
        return None

    def decrypt(self, public: PublicKey, ciphertexts: dict[he_aggregate.Cell, int]) -> tuple[dict[he_aggregate.Cell, int], str]:
        raise InternalError("a dry run decrypts nothing")

    def eligibility(self, plan: ScorePlan) -> he_score.Eligibility:
        raise InternalError("score jobs have no dry run")


DRY_RUN = DryRunServices()


class Executor:
    """Runs job definitions on an engine; ``interrupt`` stops the engine's current query."""

    def __init__(self, engine: Engine, interrupt: threading.Event | None = None) -> None:
        self.engine, self.interrupt = engine, interrupt

    def run(self, definition: JobDefinition, tables: Mapping[str, pa.Table], services: Services, stage: Stage) -> Outcome:
        return _Run(self, definition, dict(tables), services, stage).execute()


class _Run:
    def __init__(
        self, executor: Executor, definition: JobDefinition, tables: dict[str, pa.Table], services: Services, stage: Stage
    ) -> None:
        self.engine, self.interrupt = executor.engine, executor.interrupt
        self.definition, self.tables, self.services, self.stage = definition, tables, services, stage
        self.policy = definition.policy

    def execute(self) -> Outcome:
        plan = self.definition.plan
        self.stage(JobStage.EXECUTE, 0.3)
        if isinstance(plan, QueryPlan):
            return self._dp_query(plan) if plan.dp is not None else self._query(plan)
        if isinstance(plan, DPStats):
            return self._dp_stats(plan)
        if isinstance(plan, AggregatePlan):
            return self._he_aggregate(plan)
        if isinstance(plan, ScorePlan):
            return self._score(plan)
        if isinstance(plan, ScriptPlan):
            return script_run.run(self.definition, plan, self.tables, self.stage)
        if isinstance(plan, HEPlan):
            raise InternalError(f"no runner for he op {plan.op}")
        return self._stats(plan)

    def _query(self, plan: QueryPlan) -> Outcome:
        datasets = query_unit_datasets(plan.sql)
        layout = query_layout(plan, self.engine, self.tables)
        counted = dict(zip(plan.unit_columns, datasets, strict=True))
        raw, populations = self._counted(plan.executable_sql, counted, _row_bound(layout.domains))
        self.stage(JobStage.OUTPUT_CONTROL, 0.8)
        outs = [Output(o.name, o.aggregate, o.argument) for o in plan.outputs if o.kind is OutputKind.AGGREGATE and o.aggregate is not None]
        raw, layout, populations = _completed(raw, layout, outs, populations)
        controlled = control(raw, outs, plan.unit_columns, self.policy.disclosure)
        self.stage(JobStage.RELEASE, 0.95)
        release = decide(controlled, [], [o.name for o in outs], self.policy)
        columns = [{"name": o.name, "kind": o.kind.value, "type": str(raw.schema.field(o.name).type)} for o in plan.outputs]
        released, position = _shown(columns, release, layout, [o.name for o in outs])
        return Outcome(
            release.status, release.reason, Verdict.of(release.summary), raw, released, _kept(populations, release.rows, position)
        )

    def _counted(self, sql: str, datasets: Mapping[str, str], bound: int | None) -> tuple[pa.Table, dict[str, list[Any]]]:
        """The plan's table and, on real data, each row's population per dataset version (one run computes both).

        ``datasets`` maps each ``__units_<i>`` column to the dataset it counts. A dry run's mock rows
        are nobody: it runs the plan as it is and audits nothing. Where the plan counts rows of a
        version whose every row is a different unit, the run lists the rows' positions, which are
        their units' indices (``jobs.population``), as bitstrings where at most ``bound`` rows of them
        fit the budget; elsewhere it lists distinct units.
        """
        if self.definition.mock:
            return self.engine.run(sql, self.tables, self.interrupt), {}
        rows_are_units = frozenset(name for name in datasets.values() if self.definition.dataset(name).unique_units)
        run = population_sql(sql, rows_are_units, bitstring_datasets({name: self.tables[name].num_rows for name in rows_are_units}, bound))
        dictionaries = {
            column: None if column in run.indexed else unit_dictionary(self.tables[name], self.definition.dataset(name).schema.privacy_unit)
            for column, name in datasets.items()
        }
        tables = {name: with_unit_index(table) if name in run.indexed_datasets else table for name, table in self.tables.items()}
        raw, populations = split(self.engine.run(run.sql, tables, self.interrupt), dictionaries)
        versions = [(column, self.definition.dataset(name).version_id) for column, name in datasets.items()]
        return raw, by_version(versions, populations, raw.num_rows)

    def _dp_query(self, plan: QueryPlan) -> Outcome:
        """Noisy answers; the budget is charged when the output is released (``Queue.finish`` or a review)."""
        assert plan.dp is not None
        self.stage(JobStage.OUTPUT_CONTROL, 0.8)
        result = dp_release.run(plan.dp, self.policy, self._epsilon(), self.tables, self.engine, self.interrupt, mock=self.definition.mock)
        self.stage(JobStage.RELEASE, 0.95)
        return Outcome(result.status, result.reason, Verdict.of(result.summary), result.raw, result.released)

    def _dp_stats(self, plan: DPStats) -> Outcome:
        """A statistics op's noisy table, charged like a DP query when released."""
        self.stage(JobStage.OUTPUT_CONTROL, 0.8)
        epsilon = self._epsilon()
        result = dp_release.run_stats(plan, self.policy, epsilon, self.tables, self.engine, self.interrupt, mock=self.definition.mock)
        self.stage(JobStage.RELEASE, 0.95)
        return Outcome(result.status, result.reason, Verdict.of(result.summary), result.raw, result.released)

    def _epsilon(self) -> Epsilon:
        epsilon = self.definition.epsilon
        assert epsilon is not None, "a DP job states its epsilon (checked at submission)"
        return epsilon

    def _stats(self, plan: StatsPlan) -> Outcome:
        populations: dict[str, list[Any]] = {}
        if plan.model is None and plan.sql is not None:  # a table: its cells are audited like a query's
            bound = None if plan.key_domains is None else _row_bound(plan.key_domains)
            raw, populations = self._counted(plan.sql, dict.fromkeys(plan.unit_columns, plan.dataset), bound)
            result = StatsResult(
                raw, plan.outputs, plan.unit_columns, plan.dimensions, None, {}, key_domains=plan.key_domains, arguments=plan.arguments
            )
        else:
            result = run_stats(plan, self.tables, self.engine, self.policy.disclosure)
        self.stage(JobStage.OUTPUT_CONTROL, 0.8)
        if result.refused:
            return Outcome(JobStatus.BLOCKED, result.refused, Verdict(CellStatus.BLOCK, result.refused), result.table)
        if plan.model is not None:
            return self._model(result)
        arguments = result.arguments or (None,) * len(result.outputs)
        outs = [Output(name, aggregate, argument) for (name, aggregate), argument in zip(result.outputs, arguments, strict=True)]
        layout = None
        if result.key_domains is not None:
            table, layout, populations = _completed(result.table, KeyLayout(result.dimensions, result.key_domains), outs, populations)
            result = replace(result, table=table)
        try:
            controlled = control(result.table, outs, result.unit_columns, self.policy.disclosure, limits=self._suppression_limits())
        except TooExpensive:
            if self.interrupt is not None and self.interrupt.is_set():
                raise QueryInterrupted("the job was stopped during secondary suppression") from None
            raise
        self.stage(JobStage.RELEASE, 0.95)
        release = decide(controlled, [], [o.name for o in outs], self.policy)
        release = replace(release, table=with_margins(release.table, result))
        masks = result.table.column(GROUPING_COLUMN).to_pylist() if GROUPING_COLUMN in result.table.column_names else None
        released, position = _shown(_stats_columns(release.table, result), release, layout, [o.name for o in outs], masks)
        return Outcome(
            release.status, release.reason, Verdict.of(release.summary), result.table, released, _kept(populations, release.rows, position)
        )

    def _suppression_limits(self) -> SuppressionLimits:
        """The policy's caps on secondary suppression; a run stopped in process (cancelled, timed out) interrupts
        its programmes. A child process is killed instead."""
        caps, interrupt = self.policy.limits, self.interrupt
        relations = caps.max_suppression_cells * caps.max_dimensions  # a cell is a total in at most each of its dimensions
        if interrupt is None:
            return SuppressionLimits(caps.suppression_seconds, caps.max_suppression_cells, relations)
        return SuppressionLimits(caps.suppression_seconds, caps.max_suppression_cells, relations, interrupted=interrupt.is_set)

    def _model(self, result: StatsResult) -> Outcome:
        """Coefficients, standard errors and fit statistics, already refused by the op when unsafe."""
        table = pa.table({n: result.table.column(n) for n in result.table.column_names if not is_evidence(n)})
        verdict = Verdict(CellStatus.PASS, "", {"rows": table.num_rows, "fit": result.summary})
        columns = [
            {"name": n, "kind": "group_key" if n == "term" else "aggregate", "type": str(table.schema.field(n).type)}
            for n in table.column_names
        ]
        status, reason = self._release_mode()
        return Outcome(status, reason, verdict, result.table, form(columns, table, (), verdict.as_json()))

    def _he_aggregate(self, plan: AggregatePlan) -> Outcome:
        """Counts in plain, sums decrypted by the custodian; a dry run counts only (mock rows have no ciphertexts)."""
        table = self.tables[plan.dataset]
        if self.definition.mock:
            result = he_aggregate.dry_run(plan, self.policy, table)
        else:
            public = self.services.public_key(plan.key)
            result = he_aggregate.run(plan, self.policy, table, public, self.services.decrypt, self.stage)
        # Keys are outputs: the groups are the data's own, so a fully withheld group is left out (no layout).
        keys = tuple(c["name"] for c in result.columns if c["kind"] == "group_key")
        aggregates = [c["name"] for c in result.columns if c["kind"] != "group_key"]
        table, notes, position = _hidden(result.table, result.notes, KeyLayout(keys, (None,) * len(keys)), aggregates)
        shown = {"rows": table.num_rows, "cells": table.num_rows * len(aggregates)}
        summary = {**result.summary, **{k: v for k, v in shown.items() if k in result.summary}}
        released = form(result.columns, table, notes, summary)
        version = self.definition.dataset(plan.dataset).version_id
        bitmaps = {position[row]: p.serialize() for row, p in result.populations.items() if row in position}
        kept = (Populations(version, bitmaps),) if bitmaps else ()
        return Outcome(result.status, result.reason, Verdict.of(result.summary), result.raw, released, kept)

    def _score(self, plan: ScorePlan) -> Outcome:
        """Encrypted scores of the eligible entities; there is no cell to check, only the release mode to obey."""
        if self.definition.mock:
            raise BadRequest("score jobs have no dry run: mock rows have no consents and no scores", details={"field": "kind"})
        scored = he_score.score(plan, self.tables[plan.dataset], self.services.eligibility(plan), self.stage)
        self.stage(JobStage.OUTPUT_CONTROL, 0.8)
        self.stage(JobStage.RELEASE, 0.95)
        status, reason = self._release_mode()
        released = form(he_score.COLUMNS, scored.table, (), scored.summary)
        return Outcome(status, reason, Verdict.of(scored.summary), scored.table, released, scored=scored.entities)

    def _release_mode(self) -> tuple[JobStatus, str]:
        """The release of an answer output control has nothing to check in: the release mode alone decides."""
        if self.policy.release_mode is ReleaseMode.ALWAYS_REVIEW:
            return JobStatus.HELD, HELD_BY_POLICY
        return JobStatus.RELEASED, ""


def _shown(
    columns: list[dict[str, str]], release: Release, layout: KeyLayout | None, aggregates: list[str], masks: list[int] | None = None
) -> tuple[Released, dict[int, int]]:
    """The released form: a fully withheld row only where its keys are declared or shown by a released row;
    and where each row of ``release.table`` went in it (the release audit's populations follow their rows)."""
    table, notes = release.table, release.notes
    position = {i: i for i in range(table.num_rows)}
    if layout is not None:
        table, notes, position = _hidden(table, notes, layout, aggregates, masks)
    summary = {**release.summary, "rows": table.num_rows, "cells": table.num_rows * len(aggregates)}
    return form(columns, table, notes, summary), position


ROW = "__row"  # a row's place before laying out or hiding, carried through and dropped after


def _completed(
    table: pa.Table, layout: KeyLayout, outs: Sequence[Output], populations: Mapping[str, list[Any]]
) -> tuple[pa.Table, KeyLayout, dict[str, list[Any]]]:
    """``jobs.keys.complete``, with each row's population following it (a laid-out empty row has nobody)."""
    numbered = table.append_column(ROW, pa.array(range(table.num_rows), pa.int64()))
    laid, layout = complete(numbered, layout, outs)
    origin = laid.column(ROW).to_pylist()
    moved = {version: [bitmaps[i] if i is not None else BitMap() for i in origin] for version, bitmaps in populations.items()}
    return laid.drop_columns([ROW]), layout, moved


def _hidden(
    table: pa.Table, notes: Sequence[Note], layout: KeyLayout, aggregates: list[str], masks: list[int] | None = None
) -> tuple[pa.Table, tuple[Note, ...], dict[int, int]]:
    """``jobs.keys.hide``, and the new place of every row it keeps."""
    numbered = table.append_column(ROW, pa.array(range(table.num_rows), pa.int64()))
    shown, kept = hide(numbered, notes, layout, aggregates, masks)
    position = {old: new for new, old in enumerate(shown.column(ROW).to_pylist())}
    return shown.drop_columns([ROW]), kept, position


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


def _row_bound(domains: Sequence[Sequence[Any] | None]) -> int | None:
    """At most how many rows a plan grouped by keys of these declared domains gives (``None``: any number).

    Ingest keeps every value in its declared domain, so a key takes a declared value, NULL, or (in a
    margin) none: ``len(domain) + 2`` ways each, and a row is one way per key.
    """
    if any(domain is None for domain in domains):
        return None
    return math.prod(len(domain) + 2 for domain in domains if domain is not None)


def _kept(populations: Mapping[str, list[Any]], rows: list[int], position: Mapping[int, int]) -> tuple[Populations, ...]:
    """The populations of the rows to release, per dataset version, serialized for the queue, each under its
    row's place in the released form (``position``: a row with a cell to release is never hidden)."""
    return tuple(
        Populations(version, {position[row]: bitmaps[row].serialize() for row in rows}) for version, bitmaps in populations.items()
    )
