"""Crosstabs and pivots against ACRO, cell for cell, on real data: each disclosure rule and the withheld set.

ACRO (AI-SDC's output checker, ``acro`` 1.0.2) is the oracle. Every case computes one table twice:
through our statistics path (``jobs.stats.plan`` + ``run`` in DuckDB, then
``policies.output_control.control``) and through ``ACRO.crosstab`` / ``ACRO.pivot_table``. ACRO's
per-check masks are taken from the checks themselves: ``SDCChecks.run_checks_for_analysis`` is
wrapped on the session's instance so that each analysis' ``ChecksResults.outcomes`` (one boolean
DataFrame per check, labelled like the table) is kept, together with the ``SDCEvidence`` it ran on.
The capture is checked against what ACRO records (``acro.results``: the ``sdc`` summary counts and
the collated per-cell ``outcome``), so that it is ACRO's verdict and not a re-derivation.

Data: ``acro/test_data.csv`` (charity financials), ``acro/nursery_dataset.csv`` and
``smartnoise-sdk/PUMS_pid.csv``. A row number ``row_id`` is added and declared the privacy unit
(an ``identifier``), so that our unit counts and per-unit totals are ACRO's row counts and record
values. Some cases run with ``unique_units`` both ways: the results must not change.

Missing values, as ACRO handles them: ACRO's crosstab keeps rows whose value is missing in its
threshold count (a frequency crosstab of the dimensions) and its sums, maxima and top-n sums skip
NaN; our ``__units_0`` counts every row of the group and our SQL aggregates skip NULL, which is the
same. ACRO's crosstab does not drop rows with a missing dimension (``dropna=False``: NaN is a
category, as it is a group in our GROUP BY); none of the three files has a missing dimension, so no
row is dropped on either side. Only the charity file has missing values (in every magnitude).

Comparison, per case, on the cells both tables have (keys: the dimension values, ``None`` for a
margin, ACRO's ``All``):

- ``threshold`` vs ``MinimumThresholdCheck``, ``nk_dominance`` vs ``NKCheck``, ``p_ratio`` vs
  ``PPercentCheck``: equal verdicts. ACRO runs NK and p-ratio only for sums and means; on counts
  our two dominance rules must answer "not applicable" (pass).
- ``zeros``: on counts vs ``PresenceOfZeroCheck``; on sums and means (ACRO has no zero check
  for them) vs ACRO blanking every 0 of the table on suppression, as ``rules.zeros`` documents.
- the withheld set: our withheld cells vs the cells ACRO decides to suppress (its collated
  ``outcome`` is not ``ok``) or blanks as zeros. Not ACRO's redacted table: ACRO 1.0.2 does not
  apply its own decisions in some shapes. Its suppression re-runs the table without the records of
  each flagged cell, selected by a ``DataFrame.query`` built from the cell's labels over the
  dimensions cast to ``str``: with margins, integer labels are Python ints, written unquoted, so
  ``year == 2010`` matches nothing (e.g. ``crosstab(year, grant_type, margins=True)`` still shows
  R/G's 8 records); and ``pivot_table`` with ``columns`` and a list of aggfuncs keeps the values
  level in the labels, so ``None == "children"`` matches nothing either.

Deliberate differences, asserted as such (``policies/rules.py``): negatives (ACRO reviews the
cells and skips dominance for the whole table, we review those cells and check the others; ACRO's
collation then withholds the reviewed cells, we keep them for review), zeros of sums and means
(above), and secondary suppression (complements in tables with margins; ACRO recomputes its
margins from the unsuppressed records instead). Cells only one side has: ACRO's empty
combinations (count 0: flagged by ACRO, never output by our GROUP BY, so not released either) and
our subtotal margins over two index dimensions (pandas' margins have no subtotals).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from acro import ACRO
from acro.sdcchecks import ChecksResults, SDCEvidence
from acro.table_utils import AGGFUNC_TO_TYPE

from core.schema import DatasetMeta, DatasetSchema
from jobs.engine import DuckDBEngine
from jobs.stats import StatsResult, plan, run
from policies.evidence import GROUPING_COLUMN, Output
from policies.model import Aggregate, Disclosure, Policy
from policies.output_control import WITHHELD, CellStatus, Controlled, control
from tests.conftest import data_file

# ACRO hands numpy callables to pandas, which warns about its own future; not our code.
pytestmark = pytest.mark.filterwarnings("ignore:The provided callable:FutureWarning")

SETTINGS = Disclosure()  # ACRO's default.yaml
ENGINE = DuckDBEngine()
UNIT = "row_id"
MARGIN = "All"  # ACRO's (pandas') margins_name
COMPARED = ("threshold", "nk_dominance", "p_ratio", "zeros")
CHECK_OF = {"threshold": "MinimumThresholdCheck", "nk_dominance": "NKCheck", "p_ratio": "PPercentCheck", "zeros": "PresenceOfZeroCheck"}
DOMINANCE = ("nk_dominance", "p_ratio")
Key = tuple[Any, ...]
Cell = tuple[str, Key]  # (our output column, dimension key)


# --- datasets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    path: str
    dimensions: dict[str, str]  # column -> declared type
    measures: tuple[str, ...]  # numeric columns that some case aggregates


DATASETS = {
    "charity": Dataset(
        "acro/test_data.csv",
        {"year": "int", "grant_type": "string", "status": "string", "survivor": "string"},
        ("inc_activity", "inc_grants", "inc_donations", "inc_other", "total_costs", "staff_costs", "assets", "balance", "grants_given"),
    ),
    "nursery": Dataset(
        "acro/nursery_dataset.csv",
        {
            "parents": "string",
            "has_nurs": "string",
            "form": "string",
            "children": "int",
            "housing": "string",
            "finance": "string",
            "social": "string",
            "health": "string",
            "recommend": "string",
        },
        ("children",),
    ),
    "pums": Dataset(
        "smartnoise-sdk/PUMS_pid.csv",
        {"age": "int", "sex": "int", "educ": "int", "race": "int", "married": "int"},
        ("income", "age"),
    ),
}


@cache
def frame_of(name: str) -> pd.DataFrame:
    """The file's columns that cases use, and ``row_id``: one privacy unit per row."""
    dataset = DATASETS[name]
    frame = pd.read_csv(data_file(dataset.path))
    frame = frame[list(dict.fromkeys([*dataset.dimensions, *dataset.measures]))].copy()
    frame[UNIT] = np.arange(1, len(frame) + 1)
    return frame


@cache
def table_of(name: str) -> pa.Table:
    table = pa.Table.from_pandas(frame_of(name), preserve_index=False)  # NaN becomes NULL
    for column in DATASETS[name].measures:
        assert table.column(column).null_count == int(frame_of(name)[column].isna().sum())
    return table


@cache
def schema_of(name: str) -> DatasetSchema:
    """Dimensions are quasi-identifiers; measures are sensitive floats, bounds generously around the data."""
    dataset, frame = DATASETS[name], frame_of(name)
    columns: dict[str, dict[str, Any]] = {d: {"role": "quasi_identifier", "type": t} for d, t in dataset.dimensions.items()}
    for measure in dataset.measures:
        if measure in columns:
            continue  # also a dimension (nursery's children, PUMS' age): a quasi-identifier may be measured
        low, high = float(frame[measure].min()), float(frame[measure].max())
        span = max(high - low, 1.0)
        columns[measure] = {"role": "sensitive", "type": "float", "bounds": [math.floor(low - span), math.ceil(high + span)]}
    columns[UNIT] = {"role": "identifier", "type": "int"}
    meta = {"name": name, "title": f"{name} (ACRO oracle)", "level": "general", "privacy_unit": UNIT, "columns": columns}
    return DatasetMeta.model_validate(meta).schema_only()


# --- cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    dataset: str
    op: str  # crosstab | pivot
    index: tuple[str, ...]
    columns: tuple[str, ...] = ()
    values: tuple[str, ...] = ()  # crosstab: at most one; none means a frequency table
    aggfunc: tuple[str, ...] = ()
    margins: bool = False
    both_ways: bool = False  # also plan with unique_units: the results must not change

    @property
    def id(self) -> str:
        parts = [self.dataset, *(["pivot"] if self.op == "pivot" else []), "+".join(self.index)]
        if self.columns:
            parts += ["x", "+".join(self.columns)]
        parts += ["+".join(self.aggfunc or ("count",)), *(["+".join(self.values)] if self.values else [])]
        return "-".join(parts) + ("-margins" if self.margins else "")

    @property
    def dimensions(self) -> tuple[str, ...]:
        return (*self.index, *self.columns)

    def outputs(self) -> dict[str, tuple[str | None, str]]:
        """Our output column -> (ACRO's values column, ACRO's analysis name)."""
        if not self.values:
            return {"count": (None, AGGFUNC_TO_TYPE["count"])}
        return {f"{f}_{v}": (v, AGGFUNC_TO_TYPE[f]) for f in self.aggfunc for v in self.values}

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"op": self.op, "dataset": self.dataset, "index": list(self.index), "columns": list(self.columns)}
        if self.values:
            spec["values"] = self.values[0] if self.op == "crosstab" else list(self.values)
            spec["aggfunc"] = list(self.aggfunc)
        return {**spec, "margins": self.margins}

    def policy(self) -> Policy:
        """Least privilege: the case's dimensions and measures, count, sum and mean, ACRO's disclosure defaults."""
        uses = dict.fromkeys(self.dimensions, "dimension") | dict.fromkeys(self.values, "measure")
        return Policy.model_validate(
            {"columns": {self.dataset: uses}, "aggregates": ["count", "sum", "avg"], "job_kinds": ["stats"], "disclosure": SETTINGS}
        )


def crosstab(dataset: str, index: str, columns: str, *aggfunc: str, values: str | None = None, **kw: bool) -> Case:
    return Case(dataset, "crosstab", tuple(index.split("+")), tuple(columns.split("+")), (values,) if values else (), aggfunc, **kw)


def pivot(dataset: str, index: str, columns: str, values: str, *aggfunc: str, **kw: bool) -> Case:
    return Case(
        dataset, "pivot", tuple(index.split("+")), tuple(columns.split("+")) if columns else (), tuple(values.split("+")), aggfunc, **kw
    )


CASES = [
    # charity financials: 918 records; many magnitudes have missing values, several have negatives
    crosstab("charity", "year", "grant_type", both_ways=True),
    crosstab("charity", "year", "grant_type", margins=True),
    crosstab("charity", "year+status", "grant_type", margins=True),
    crosstab("charity", "survivor", "grant_type"),
    crosstab("charity", "year", "grant_type", "sum", values="inc_activity", both_ways=True),
    crosstab("charity", "year", "grant_type", "sum", "mean", values="inc_grants", margins=True, both_ways=True),
    crosstab("charity", "grant_type", "status", "sum", values="total_costs"),
    crosstab("charity", "year+survivor", "grant_type", "mean", values="staff_costs", both_ways=True),
    crosstab("charity", "year+status", "grant_type", "sum", "mean", values="inc_donations", margins=True),
    crosstab("charity", "status", "year", "sum", values="inc_other", margins=True),
    crosstab("charity", "grant_type", "survivor", "mean", values="assets"),
    crosstab("charity", "year", "status", "sum", values="grants_given"),
    crosstab("charity", "year+grant_type", "status", "sum", "mean", values="balance"),
    pivot("charity", "year", "", "inc_activity+inc_grants", "sum", "mean", both_ways=True),
    pivot("charity", "grant_type+status", "", "total_costs+staff_costs", "sum", "mean"),
    pivot("charity", "year", "grant_type", "inc_grants+inc_donations", "sum", margins=True),
    pivot("charity", "year+status", "grant_type", "inc_grants", "mean", "sum", margins=True),
    pivot("charity", "grant_type", "status", "balance+assets", "mean", both_ways=True),
    pivot("charity", "status", "", "inc_other", "mean", "sum"),
    pivot("charity", "year+grant_type", "", "inc_activity", "sum", "mean"),  # 2010/N: 59 records, 5 values
    # nursery: 12,960 records, all categorical but children; "recommend" has a class of 2
    crosstab("nursery", "parents", "has_nurs", both_ways=True),
    crosstab("nursery", "parents", "recommend", margins=True),
    crosstab("nursery", "form+housing", "recommend"),
    crosstab("nursery", "health", "recommend", margins=True),
    crosstab("nursery", "finance+social", "recommend", margins=True),
    crosstab("nursery", "children", "recommend"),
    crosstab("nursery", "has_nurs", "recommend", "sum", "mean", values="children"),
    pivot("nursery", "recommend", "", "children", "sum", "mean"),
    pivot("nursery", "health", "recommend", "children", "sum", margins=True),
    # PUMS: 1,000 persons; income has zeros, age makes many small cells
    crosstab("pums", "sex", "race", both_ways=True),
    crosstab("pums", "educ", "race", margins=True),
    crosstab("pums", "sex+married", "race", margins=True),
    crosstab("pums", "age", "sex"),
    crosstab("pums", "educ", "race", "sum", values="income", both_ways=True),
    crosstab("pums", "race", "sex", "sum", "mean", values="income", margins=True),
    crosstab("pums", "sex+married", "educ", "mean", values="income"),
    crosstab("pums", "age", "married", "sum", values="income"),
    pivot("pums", "educ", "", "income", "sum", "mean", both_ways=True),
    pivot("pums", "race+sex", "", "income", "mean", "sum"),
    pivot("pums", "married", "race", "income", "sum", "mean", margins=True),
    pivot("pums", "educ+married", "sex", "income+age", "mean"),
]


# --- ACRO -----------------------------------------------------------------------------------


def label_key(row: Any, column: Any, nrow: int, ncol: int) -> Key:
    """A cell's key from ACRO's labels: row levels then column levels, ``All`` (and the blank levels
    pandas puts after it) as ``None``, numbers as Python numbers."""
    key: list[Any] = []
    for labels, levels in ((row, nrow), (column, ncol)):
        parts = labels if isinstance(labels, tuple) else (labels,)
        assert len(parts) == levels, (labels, levels)
        margin = False
        for part in parts:
            margin = margin or part == MARGIN
            key.append(None if margin and part in (MARGIN, "") else plain(part))
    return tuple(key)


def plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def cells_of(frame: pd.DataFrame, ncol: int, outer: int = 0) -> Iterator[tuple[tuple[Any, ...], Key, Any]]:
    """Every cell of an ACRO frame: (the ``outer`` column levels, e.g. aggfunc and value; key; content)."""
    nrow = frame.index.nlevels
    for column in frame.columns:
        labels = column if isinstance(column, tuple) else (column,)
        head, rest = labels[:outer], labels[outer:]
        for row, content in zip(frame.index, frame[column].to_numpy(), strict=True):
            yield head, label_key(row, rest if ncol else (), nrow, ncol), content


@dataclass
class AcroCall:
    """One ACRO table: its raw table, the recorded output, and each analysis' checks with their evidence."""

    table: pd.DataFrame
    outcome: pd.DataFrame
    sdc: dict[str, Any]
    analyses: dict[str, tuple[SDCEvidence, Any, ChecksResults]]


@dataclass
class AcroCell:
    checks: dict[str, bool]  # rule name -> ACRO's mask, for the checks its analysis ran
    negative: bool  # the table had negatives, and ACRO's dominance mask here is "num_negative > 0"
    arithmetic: dict[str, bool]  # NK and p-ratio by ACRO's arithmetic with the negative short-cut off
    value: Any  # the unsuppressed table's value
    decision: bool  # ACRO suppresses it: its collated outcome is not "ok", or it blanks it as a zero
    count: int  # ACRO's threshold count
    missing: int = 0  # records of the cell that ACRO's threshold count leaves out (see ``uncounted``)

    @property
    def records(self) -> int:
        return self.count + self.missing


def uncounted(case: Case, value: str | None) -> dict[Key, int]:
    """Records that ACRO's threshold count leaves out, per cell: none, except in a pivot without columns.

    ACRO counts records for its threshold (a frequency crosstab of the dimensions), except in
    ``pivot_table`` without ``columns``: there ``TableModelDetails.get_count_table`` runs
    ``pd.pivot_table(data, index=dims, values=dims[0], aggfunc="count")`` on the dimensions and the
    value; as the "values" are keys, pandas keeps every column and counts the value's non-missing
    entries. So that pivot's threshold counts values, not records: an ACRO inconsistency (its
    crosstab and its pivots with columns count records, as we do). These are the missing values.
    """
    if case.op != "pivot" or case.columns or value is None:
        return {}
    values = frame_of(case.dataset).groupby(list(case.index))[value]
    gaps = values.size() - values.count()
    return {tuple(plain(v) for v in (k if isinstance(k, tuple) else (k,))): int(n) for k, n in gaps.items()}


class Oracle:
    """An ACRO session whose check results are kept as they are produced."""

    def __init__(self) -> None:
        self.acro = ACRO(suppress=False)
        self.captured: list[tuple[str, SDCEvidence, Any, ChecksResults]] = []
        checks = self.acro.sdc_checks
        original = checks.run_checks_for_analysis

        def keep(analysis: str, evidence: SDCEvidence, model: Any) -> ChecksResults:
            result = original(analysis, evidence, model)
            self.captured.append((analysis, evidence, model, result))
            return result

        checks.run_checks_for_analysis = keep

    def call(self, make: Callable[[ACRO], pd.DataFrame]) -> AcroCall:
        self.captured.clear()
        before = len(self.acro.results.results)
        table = make(self.acro)
        assert len(self.acro.results.results) == before + 1, "ACRO recorded no output"
        record = list(self.acro.results.results.values())[-1]
        analyses = {name: (evidence, model, result) for name, evidence, model, result in self.captured}
        assert len(analyses) == len(self.captured), "one analysis ran twice"
        return AcroCall(table, record.outcome, record.sdc, analyses)

    def cells(self, case: Case) -> dict[Cell, AcroCell]:
        """ACRO's verdicts on every cell of its table(s) for the case, keyed by our output and the dimensions."""
        frame = frame_of(case.dataset)
        index, columns = [frame[c] for c in case.index], [frame[c] for c in case.columns]
        calls: list[tuple[AcroCall, str | None]] = []
        if case.op == "crosstab":
            value = case.values[0] if case.values else None

            def crosstab(acro: ACRO) -> pd.DataFrame:
                if value is None:
                    return acro.crosstab(index, columns, margins=case.margins)
                return acro.crosstab(index, columns, values=frame[value], aggfunc=list(case.aggfunc), margins=case.margins)

            calls.append((self.call(crosstab), value))
        for value in case.values if case.op == "pivot" else ():
            # ACRO's pivot_table takes a single values column: one call per value

            def pivot(acro: ACRO, value: str = value) -> pd.DataFrame:
                dims = {"index": list(case.index), "columns": list(case.columns) or None}
                return acro.pivot_table(frame, values=[value], aggfunc=list(case.aggfunc), margins=case.margins, **dims)

            calls.append((self.call(pivot), value))
        found: dict[Cell, AcroCell] = {}
        for call, value_name in calls:
            found |= self._cells(case, call, value_name)
        return found

    def _cells(self, case: Case, call: AcroCall, value_name: str | None) -> dict[Cell, AcroCell]:
        outputs = {o: analysis for o, (v, analysis) in case.outputs().items() if v == value_name}
        # The capture is what ACRO recorded: per check, the number of flagged cells of its first analysis.
        seen: dict[str, int] = {}
        for _, _, result in call.analyses.values():
            for check, mask in result.outcomes.items():
                seen.setdefault(check, int(np.nansum(mask.to_numpy())))
        assert seen == call.sdc["summary"], (seen, call.sdc["summary"])
        ncol = len(case.columns)
        # the raw table and the collated outcome: counts have the column dimensions only; values tables
        # lead with the aggfunc (crosstab) or the aggfunc and the value (pivot_table)
        outer = 0 if not case.values else (1 if case.op == "crosstab" else 2)
        raw = {(head[0] if head else None, key): v for head, key, v in cells_of(call.table, ncol, outer)}
        outcome = {(head[0] if head else None, key): v for head, key, v in cells_of(call.outcome, ncol, outer)}
        found: dict[Cell, AcroCell] = {}
        for output, analysis in outputs.items():
            evidence, model, result = call.analyses[analysis]
            func = None if not case.values else output.removesuffix(f"_{value_name}")
            # masks are labelled by the column dimensions; a pivot without columns has one column, the value
            masks = {
                rule: {key: bool(v) for _, key, v in cells_of(result.outcomes[CHECK_OF[rule]], ncol)}
                for rule in COMPARED
                if CHECK_OF[rule] in result.outcomes
            }
            counts = {key: v for _, key, v in cells_of(evidence.interim_tables["count_table"], ncol)}
            negative = bool("num_negative" in evidence.interim_tables and np.nansum(evidence.interim_tables["num_negative"].to_numpy()) > 0)
            arithmetic = self._arithmetic(evidence, model, ncol) if negative else {}
            missing = uncounted(case, value_name)
            for key in masks["threshold"]:
                value = raw[(func, key)]
                decision = outcome[(func, key)] != "ok" or (SETTINGS.zeros_disclosive and value == 0)
                found[(output, key)] = AcroCell(
                    checks={rule: mask[key] for rule, mask in masks.items()},
                    negative=negative,
                    arithmetic={rule: mask[key] for rule, mask in arithmetic.items()},
                    value=value,
                    decision=bool(decision),
                    count=int(counts[key]),
                    missing=missing.get(key, 0),
                )
        return found

    def _arithmetic(self, evidence: SDCEvidence, model: Any, ncol: int) -> dict[str, dict[Key, bool]]:
        """ACRO's NK and p-ratio arithmetic on every cell, by its own check functions, with no negatives seen."""
        tables = dict(evidence.interim_tables)
        tables["num_negative"] = tables["num_negative"] * 0
        quiet = dataclasses.replace(evidence, interim_tables=tables)
        checks = self.acro.sdc_checks
        found = {}
        for rule, check in (("nk_dominance", checks.check_nk_dominance), ("p_ratio", checks.check_ppercent_dominance)):
            _, _, mask = check("", quiet, model)
            found[rule] = {key: bool(v) for _, key, v in cells_of(mask, ncol)}
        return found


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    session = Oracle()
    appetite = session.acro.sdc_checks.risk_appetite
    ours = {
        "safe_threshold": SETTINGS.threshold,
        "safe_nk_n": SETTINGS.nk_n,
        "safe_nk_k": SETTINGS.nk_k,
        "safe_pratio_p": SETTINGS.p_ratio,
        "zeros_are_disclosive": SETTINGS.zeros_disclosive,
        "check_missing_values": SETTINGS.check_missing,
    }
    assert {k: appetite[k] for k in ours} == ours, "Disclosure() defaults are no longer ACRO's"
    yield session
    logging.getLogger("acro").handlers.clear()


# --- ours -----------------------------------------------------------------------------------


@dataclass
class Ours:
    result: StatsResult
    keys: list[Key]  # per result row
    rules: dict[str, dict[Cell, CellStatus]]  # per rule run alone, its non-pass verdicts
    final: Controlled  # every rule, then secondary suppression: what would be released

    def cells(self) -> set[Cell]:
        return {(name, key) for key in self.keys for name, _ in self.result.outputs}

    def status(self, rule: str, cell: Cell) -> CellStatus:
        return self.rules[rule].get(cell, CellStatus.PASS)


def compute(case: Case, unique_units: bool) -> Ours:
    policy = case.policy()
    planned = plan(case.spec(), policy, {case.dataset: schema_of(case.dataset)}, frozenset({case.dataset}) if unique_units else frozenset())
    result = run(planned, {case.dataset: table_of(case.dataset)}, ENGINE, policy.disclosure)
    rows = result.table.to_pylist()
    dims = case.dimensions
    keys = [
        tuple(None if int(row.get(GROUPING_COLUMN) or 0) >> (len(dims) - 1 - j) & 1 else plain(row[d]) for j, d in enumerate(dims))
        for row in rows
    ]
    assert len(set(keys)) == len(keys), "two result rows with one key"
    outputs = [Output(name, aggregate) for name, aggregate in result.outputs]
    # One rule at a time (no complements: secondary suppression is not a rule's verdict)
    alone = policy.disclosure.model_copy(update={"secondary_suppression": False})
    rules: dict[str, dict[Cell, CellStatus]] = {}
    for rule in COMPARED:
        controlled = control(result.table, outputs, result.unit_columns, alone, rules=[rule])
        assert all(n.rule == rule for n in controlled.notes if n.row >= 0)
        rules[rule] = {(n.column, keys[n.row]): n.status for n in controlled.notes if n.row >= 0}
    return Ours(result, keys, rules, control(result.table, outputs, result.unit_columns, policy.disclosure))


def withheld(ours: Ours) -> tuple[set[Cell], set[Cell]]:
    """Our withheld cells: (by the rules, complements of secondary suppression). Each is null in the release."""
    primary: set[Cell] = set()
    complements: set[Cell] = set()
    released = ours.final.released.to_pylist()
    for note in ours.final.notes:
        if note.row < 0 or note.status not in WITHHELD:
            continue
        assert released[note.row][note.column] is None, "a withheld cell was released"
        (complements if note.rule == "secondary_suppression" else primary).add((note.column, ours.keys[note.row]))
    return primary, complements


# --- the comparison -------------------------------------------------------------------------


def expected_status(rule: str, aggregate: Aggregate, acro: AcroCell) -> CellStatus:
    """Our verdict as ACRO's checks give it, with the differences ``policies/rules.py`` documents."""
    flag = CellStatus.SUPPRESS
    if rule in DOMINANCE and aggregate is Aggregate.COUNT:
        assert rule not in acro.checks  # ACRO runs no dominance check on a frequency table; ours is "not applicable"
        return CellStatus.PASS
    if rule == "zeros" and aggregate is not Aggregate.COUNT:
        # rules.zeros: on a sum or mean our zeros rule follows ACRO's released table (every 0 is blanked
        # when zeros are disclosive), not its zero-check mask, which ACRO does not run for sums and means
        assert rule not in acro.checks
        return flag if acro.value == 0 else CellStatus.PASS
    if rule in DOMINANCE and acro.negative:
        # rules._dominance_inputs: a table with negatives makes ACRO answer "review" for every cell with a
        # negative value (its mask is then num_negative > 0) and skip dominance for all other cells; we
        # review the same cells and still check the others, as ACRO's own arithmetic does with them
        if acro.checks[rule]:
            return CellStatus.REVIEW
        return flag if acro.arithmetic[rule] else CellStatus.PASS
    if rule == "threshold" and acro.missing:
        # ACRO's pivot_table without columns counts non-missing values (``uncounted``); we count the
        # records, as ACRO's crosstab does: the same threshold on the records of the cell
        return flag if acro.records < SETTINGS.threshold else CellStatus.PASS
    return flag if acro.checks[rule] else CellStatus.PASS


def expected_withheld(aggregate: Aggregate, acro: AcroCell) -> bool:
    """A cell is withheld when a rule suppresses it; a review (negative values) is kept for the reviewer."""
    return any(expected_status(rule, aggregate, acro) is CellStatus.SUPPRESS for rule in COMPARED)


def explained(aggregate: Aggregate, acro: AcroCell) -> str | None:
    """Why ACRO's own decision on a cell is not ours, if it is not: one of the documented differences."""
    if acro.decision == expected_withheld(aggregate, acro):
        return None
    if acro.negative and acro.checks["nk_dominance"]:
        return "negative values: ACRO suppresses, we review"
    if acro.negative and (acro.arithmetic["nk_dominance"] or acro.arithmetic["p_ratio"]):
        return "table with negatives: ACRO skips dominance, we check it"
    if acro.missing and (acro.count < SETTINGS.threshold) != (acro.records < SETTINGS.threshold):
        return "ACRO's pivot_table counts values, not records"
    return "unexplained"


@dataclass
class Comparison:
    intended: int = 0  # cells we withhold on purpose where ACRO does not (values_threshold)
    compared: int = 0  # cells both tables have
    problems: list[str] = field(default_factory=list)
    differences: dict[str, int] = field(default_factory=dict)  # documented, by reason
    flagged: dict[str, int] = field(default_factory=dict)  # cells each rule flags on both sides
    acro_only: int = 0  # empty combinations
    ours_only: int = 0  # subtotal margins
    complements: int = 0


def compare(case: Case, ours: Ours, acro: dict[Cell, AcroCell]) -> Comparison:
    found = Comparison()
    mine = ours.cells()
    common = mine & set(acro)
    found.compared = len(common)
    one_side(case, mine, acro, found)
    aggregates = dict(ours.result.outputs)
    rows = ours.result.table.to_pylist()
    units = {(name, key): row["__units_0"] for key, row in zip(ours.keys, rows, strict=True) for name in aggregates}
    primary, complements = withheld(ours)
    found.complements = len(complements)
    if complements and not case.margins:
        found.problems.append(f"complements without margins: {sorted(complements, key=repr)}")
    for cell in sorted(common, key=repr):
        a, aggregate = acro[cell], aggregates[cell[0]]
        if units[cell] != a.records:
            found.problems.append(f"{cell}: {units[cell]} units, ACRO has {a.records} records")
        for rule in COMPARED:
            want, got = expected_status(rule, aggregate, a), ours.status(rule, cell)
            if want != got:
                found.problems.append(f"{cell} {rule}: ours {got.value}, ACRO {want.value} (value {a.value!r}, records {a.records})")
            elif got is not CellStatus.PASS:
                found.flagged[rule] = found.flagged.get(rule, 0) + 1
        if (cell in primary) != expected_withheld(aggregate, a):
            if cell in primary and any(n.rule == "values_threshold" and (n.column, ours.keys[n.row]) == cell for n in ours.final.notes):
                # a difference on purpose (policies/rules.py values_threshold): fewer than k units have a
                # value in this cell (e.g. 2010/N: 59 records, 5 values); ACRO counts records and releases it
                found.intended += 1
                continue
            found.problems.append(f"{cell} withheld: ours {cell in primary}, ACRO {expected_withheld(aggregate, a)} (value {a.value!r})")
        if cell in complements and a.decision:
            found.problems.append(f"{cell}: a complement of a cell ACRO suppresses")
        reason = explained(aggregate, a)
        if reason is not None:
            found.differences[reason] = found.differences.get(reason, 0) + 1
            if reason == "unexplained":
                found.problems.append(f"{cell}: ACRO decides {a.decision}, its checks say otherwise")
    return found


def one_side(case: Case, mine: set[Cell], acro: dict[Cell, AcroCell], found: Comparison) -> None:
    """ACRO's decisions are its masks' union; cells only one side has are empty ones (ACRO) or subtotals (ours)."""
    for cell, a in sorted(acro.items(), key=repr):
        if a.decision != (any(a.checks.values()) or a.value == 0):  # how ACRO collates its masks
            found.problems.append(f"{cell}: ACRO's outcome is not the union of its masks and zeros")
        if cell not in mine:
            # ACRO shows every combination of categories; an empty one is no row of ours, so not released
            found.acro_only += 1
            if a.records != 0 or not a.checks["threshold"] or not a.decision:
                found.problems.append(f"{cell}: only in ACRO's table, with {a.records} records")
    for output, key in sorted(mine - set(acro), key=repr):
        found.ours_only += 1
        if None not in key or len(case.index) == 1:  # pandas' margins lack only the subtotals of 2+ index dimensions
            found.problems.append(f"{(output, key)}: a cell ACRO's table does not have")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_verdicts_and_withheld_cells_agree_with_acro(oracle: Oracle, case: Case) -> None:
    acro = oracle.cells(case)
    ours = compute(case, unique_units=False)
    found = compare(case, ours, acro)
    assert found.compared > 0, f"{case.id}: no cell compared"
    problems = found.problems
    assert not problems, f"{case.id}: {len(problems)} disagreements with ACRO over {found.compared} cells:\n" + "\n".join(problems[:40])
    if case.both_ways:
        again = compute(case, unique_units=True)
        assert again.result.table.equals(ours.result.table), "unique_units changed the table"
        assert again.rules == ours.rules
        assert again.final.notes == ours.final.notes
        assert again.final.released.equals(ours.final.released)


def test_the_corpus_is_large_and_ids_are_unique() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
