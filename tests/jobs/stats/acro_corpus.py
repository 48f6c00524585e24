"""The ACRO oracle's corpus and driver: datasets, cases, and ACRO's per-check verdicts for each case.

See ``test_acro_oracle`` for what is compared and why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from acro import ACRO
from acro.sdcchecks import ChecksResults, SDCEvidence
from acro.table_utils import AGGFUNC_TO_TYPE

from core.schema import DatasetMeta, DatasetSchema
from jobs.engine import DuckDBEngine
from policies.model import Disclosure, Policy
from tests.conftest import data_file

# ACRO hands numpy callables to pandas, which warns about its own future; not our code.

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
