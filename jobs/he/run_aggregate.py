"""Running an ``he`` aggregate: group in plain, sum ciphertexts, control on counts, decrypt only what passed.

1. Group the rows by the plain dimensions (pyarrow/numpy): per group its rows, its distinct privacy
   units and, per encrypted column, how many rows have a value.
2. Output control on what is known in plain (``control`` with the rules a count decides); the
   release mode applies as for any job. The rules that need values (dominance, p-ratio, negative
   contributors) cannot be evaluated on ciphertexts: the summary says so.
3. Multiply the ciphertexts of the cells still releasable (``paillier_bulk.group_sums``); suppressed
   cells are never summed, never signed for, never sent.
4. Sign a release decision naming each ciphertext by row, column and digest; the custodian decrypts.
   ``he.decrypted`` goes on the ledger (job, key, cell count, decision digest; never a value).
5. Decode sums and averages, run output control again now that values are known (zeros), release.

The raw output sealed for auditors holds group keys, counts and evidence, and the decrypted values
of the cells the release shows; a withheld cell's value is not in it (most were never decrypted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray
from pyroaring import BitMap

from core.errors import SandboxError
from core.values import JobStage, JobStatus
from crypto import paillier, paillier_bulk
from crypto.paillier import PublicKey
from jobs.he import AggregatePlan
from jobs.population import group_populations
from policies import release as releases
from policies.evidence import Output, component_column, missing_column
from policies.model import Aggregate, Policy
from policies.output_control import TABLE_ROW, CellStatus, Controlled, Note, control

UNITS = "__units_0"
RULES = ("threshold", "values_threshold", "zeros", "missing")  # what counts (and, after decryption, values) decide
NOT_EVALUATED = ("nk_dominance", "p_ratio", "negative")  # need per-unit values: not on ciphertexts
Cell = tuple[int, str]  # (row, encrypted column)
Decrypt = Callable[[PublicKey, dict[Cell, int]], tuple[dict[Cell, int], str]]  # -> (mantissas, decision digest)
Stage = Callable[[JobStage, float], None]


@dataclass(frozen=True)
class Groups:
    keys: pa.Table  # one row per group, sorted by the group keys (nulls last)
    index: NDArray[np.int64]  # per input row, its group
    rows: NDArray[np.int64]
    units: NDArray[np.int64]
    values: dict[str, NDArray[np.int64]]  # per encrypted column, rows with a value
    unit_codes: NDArray[np.int64]  # per input row, its unit's index in the version (``jobs.population``); -1 for none


@dataclass(frozen=True)
class Result:
    status: JobStatus
    reason: str
    summary: dict[str, Any]
    raw: pa.Table
    columns: list[dict[str, str]]
    table: pa.Table
    notes: tuple[Note, ...]
    populations: dict[int, BitMap] = field(default_factory=dict)  # rows to release -> their units, for the release audit


def group(table: pa.Table, plan: AggregatePlan, values_known: bool = True) -> Groups:
    """Dense group indices ordered by the keys; with ``values_known`` False (mock data) every row counts as having a value."""
    n = table.num_rows
    codes = np.zeros(n, np.int64)
    for name in plan.group_by:
        encoded = pc.dictionary_encode(table.column(name).combine_chunks(), null_encoding="encode")
        codes = codes * len(encoded.dictionary) + np.asarray(encoded.indices.to_numpy(zero_copy_only=False), np.int64)
        codes = np.unique(codes, return_inverse=True)[1].astype(np.int64).reshape(n)
    _, first = np.unique(codes, return_index=True)
    keys = table.select(list(plan.group_by)).take(pa.array(first))
    if plan.group_by:
        order = np.asarray(pc.sort_indices(keys, sort_keys=[(c, "ascending", "at_end") for c in plan.group_by]))
    else:
        order = np.arange(len(first))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    index = rank[codes] if n else codes
    count = len(order)
    unit = pc.dictionary_encode(table.column(plan.privacy_unit).combine_chunks())
    unit_codes = np.asarray(pc.fill_null(unit.indices, -1).to_numpy(zero_copy_only=False), np.int64)
    pairs = np.unique((index * max(len(unit.dictionary), 1) + unit_codes)[unit_codes >= 0])
    units = np.bincount(pairs // max(len(unit.dictionary), 1), minlength=count).astype(np.int64)
    rows = np.bincount(index, minlength=count).astype(np.int64)
    values = {}
    for column in plan.encrypted:
        valid = np.asarray(pc.is_valid(table.column(column)).to_numpy(zero_copy_only=False), bool) if values_known else np.ones(n, bool)
        values[column] = np.bincount(index, weights=valid, minlength=count).astype(np.int64)
    return Groups(keys.take(pa.array(order)) if plan.group_by else pa.table({}), index, rows, units, values, unit_codes)


def control_table(groups: Groups, plan: AggregatePlan, sums: dict[Cell, Decimal] | None = None) -> pa.Table:
    """Group keys, every output (sums and averages null unless decrypted) and the evidence output control reads."""
    count = len(groups.rows)
    columns: dict[str, Any] = {name: groups.keys.column(name) for name in plan.group_by}
    evidence: dict[str, Any] = {UNITS: pa.array(groups.units, pa.int64())}
    for out in plan.outputs:
        if out.column is not None:
            evidence[missing_column(out.name)] = pa.array(groups.rows - groups.values[out.column], pa.int64())
        if out.aggregate is Aggregate.COUNT:
            counts = groups.rows if out.column is None else groups.values[out.column]
            columns[out.name] = pa.array(counts, pa.int64())
            continue
        assert out.column is not None
        found = sums or {}
        values = [_value(out.aggregate, found.get((i, out.column)), int(groups.values[out.column][i])) for i in range(count)]
        integral = out.aggregate is Aggregate.SUM and plan.scale(out.column) == 0 and all(v is None or abs(v) < 2**63 for v in values)
        columns[out.name] = pa.array([None if v is None else int(v) if integral else float(v) for v in values], _type(integral))
        if out.aggregate is Aggregate.AVG:  # under rounding, output control releases R(sum) / R(count)
            totals = [found.get((i, out.column)) for i in range(count)]
            evidence[component_column("count", out.name)] = pa.array(groups.values[out.column], pa.int64())
            evidence[component_column("sum", out.name)] = pa.array([None if t is None else float(t) for t in totals], pa.float64())
    return pa.table(columns | evidence) if columns else pa.table(evidence)


def _type(integral: bool) -> pa.DataType:
    return pa.int64() if integral else pa.float64()


def _value(aggregate: Aggregate, total: Decimal | None, with_value: int) -> Decimal | None:
    if total is None:
        return None
    if aggregate is Aggregate.AVG:
        return total / with_value if with_value else None
    return total


def outputs_of(plan: AggregatePlan) -> list[Output]:
    return [Output(o.name, o.aggregate) for o in plan.outputs]


def cells_to_decrypt(plan: AggregatePlan, notes: Sequence[Note], rows: int) -> list[Cell]:
    """(row, encrypted column) whose sum some released or reviewed output needs."""
    withheld = {(n.row, n.column) for n in notes if n.status in (CellStatus.SUPPRESS, CellStatus.BLOCK)}
    readers = {c: [o.name for o in plan.outputs if o.column == c and o.aggregate is not Aggregate.COUNT] for c in plan.summed}
    return [(i, c) for i in range(rows) for c in plan.summed if any((i, name) not in withheld for name in readers[c])]


def encrypted_sums(table: pa.Table, groups: Groups, public: PublicKey, cells: Sequence[Cell]) -> dict[Cell, int]:
    """Enc(sum) of each cell's rows, summing only the rows of the groups that are asked for."""
    found: dict[Cell, int] = {}
    for column in dict.fromkeys(c for _, c in cells):
        wanted = sorted(i for i, c in cells if c == column)
        remap = np.full(len(groups.rows), -1, np.int64)
        remap[wanted] = np.arange(len(wanted))
        keep = remap[groups.index] >= 0
        sums = paillier_bulk.group_sums(public, table.column(column).filter(pa.array(keep)), remap[groups.index[keep]], len(wanted))
        found |= {(row, column): sums[j] for j, row in enumerate(wanted)}
    return found


def run(plan: AggregatePlan, policy: Policy, table: pa.Table, public: PublicKey | None, decrypt: Decrypt, stage: Stage) -> Result:
    groups = group(table, plan)
    stage(JobStage.OUTPUT_CONTROL, 0.6)
    first = _decide(control_table(groups, plan), plan, policy, groups)
    if first.status is JobStatus.BLOCKED:
        return _result(first, plan, control_table(groups, plan), {})
    cells = cells_to_decrypt(plan, first.notes, len(groups.rows))
    if public is None or public.fingerprint != plan.key:
        raise SandboxError("the Paillier key of the dataset's encrypted columns is not registered in this domain")
    ciphertexts = encrypted_sums(table, groups, public, cells)
    stage(JobStage.RELEASE, 0.75)  # a cancelled or timed-out job stops here, before anything is decrypted
    mantissas, digest = decrypt(public, ciphertexts) if ciphertexts else ({}, "")
    try:
        sums = {cell: paillier.decode(m, plan.scale(cell[1]), public) for cell, m in mantissas.items()}
    except OverflowError:
        raise SandboxError("a decrypted sum overflowed the key's range: the column's values are too large for its scale") from None
    stage(JobStage.RELEASE, 0.9)
    filled = control_table(groups, plan, sums)
    release = _decide(filled, plan, policy, groups)
    he = {"key": plan.key, "decrypted": len(mantissas), "decision_sha256": digest}
    result = _result(release, plan, filled, he)
    everyone = group_populations(groups.index, groups.unit_codes, len(groups.rows))
    return replace(result, populations={row: everyone[row] for row in release.rows})


def _decide(table: pa.Table, plan: AggregatePlan, policy: Policy, groups: Groups) -> releases.Release:
    controlled: Controlled = control(table, outputs_of(plan), [UNITS], policy.disclosure, RULES)
    return releases.decide(controlled, [], [o.name for o in plan.outputs], policy)


def _result(release: releases.Release, plan: AggregatePlan, raw: pa.Table, he: dict[str, Any]) -> Result:
    note = (
        f"rules that need each unit's value ({', '.join(NOT_EVALUATED)}) cannot be evaluated on encrypted columns; "
        "sums of cells that failed output control were never decrypted"
    )
    summary = release.summary | {"he": {**he, "rules_not_evaluated": list(NOT_EVALUATED), "note": note}}
    columns = [{"name": n, "kind": "group_key", "type": str(raw.schema.field(n).type)} for n in plan.group_by] + [
        {"name": o.name, "kind": "aggregate", "type": str(raw.schema.field(o.name).type)} for o in plan.outputs
    ]
    return Result(release.status, release.reason, summary, _withhold_raw(raw, release, plan), columns, release.table, release.notes)


def _withhold_raw(raw: pa.Table, release: releases.Release, plan: AggregatePlan) -> pa.Table:
    """The raw table for auditors without the value of any sum or average the release withholds."""
    for out in plan.outputs:
        if out.aggregate is Aggregate.COUNT:
            continue  # counts are plain in the domain, as in every job's raw output
        column = raw.column(out.name)
        hidden = pc.is_null(release.table.column(out.name))
        raw = raw.set_column(raw.schema.get_field_index(out.name), out.name, pc.if_else(hidden, pa.scalar(None, column.type), column))
    return raw


def dry_run(plan: AggregatePlan, policy: Policy, table: pa.Table) -> Result:
    """A dry run on mock rows: groups, counts and output control; sums are never computed (no real ciphertexts)."""
    groups = group(table, plan, values_known=False)
    release = _decide(control_table(groups, plan), plan, policy, groups)
    dry = Note(TABLE_ROW, "*", CellStatus.PASS, "he_dry_run", "sums and averages of encrypted columns are computed on the real data only")
    result = _result(release, plan, control_table(groups, plan), {})
    return Result(result.status, result.reason, result.summary, result.raw, result.columns, result.table, (*result.notes, dry))
