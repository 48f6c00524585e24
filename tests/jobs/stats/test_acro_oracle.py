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

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from jobs.stats import StatsResult, plan, run
from policies.evidence import GROUPING_COLUMN, Output
from policies.model import Aggregate
from policies.output_control import WITHHELD, CellStatus, Controlled, control
from tests.jobs.stats.acro_corpus import (
    CASES,
    COMPARED,
    DOMINANCE,
    ENGINE,
    SETTINGS,
    AcroCell,
    Case,
    Cell,
    Key,
    Oracle,
    plain,
    schema_of,
    table_of,
)

pytestmark = pytest.mark.filterwarnings("ignore:The provided callable:FutureWarning")  # ACRO's own pandas calls, not ours


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
    ours_flags: Counter[str] = field(default_factory=Counter)  # cells each kind of check flags, by us
    acro_flags: Counter[str] = field(default_factory=Counter)  # ... and by ACRO (see ``tally``)
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
    by_values_threshold = {(n.column, ours.keys[n.row]) for n in ours.final.notes if n.rule == "values_threshold" and n.row >= 0}
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
        tally(found, ours, cell, aggregate, a, cell in by_values_threshold)
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


def tally(found: Comparison, ours: Ours, cell: Cell, aggregate: Aggregate, acro: AcroCell, values_threshold: bool) -> None:
    """Count, on each side independently, the cells each kind of check flags.

    The compared rules as each side flags them (ACRO: its check's mask; for zeros of sums and
    means, which ACRO does not check, the 0 it blanks); ``negative``: cells reviewed because
    negative values sit behind them; ``missing``: cells with missing values, ours withheld by
    ``values_threshold`` (fewer than k values), ACRO's left out of its pivot's threshold count.
    """
    for rule in COMPARED:
        found.ours_flags[rule] += ours.status(rule, cell) is not CellStatus.PASS
        zero_of_magnitude = rule == "zeros" and aggregate is not Aggregate.COUNT and acro.value == 0
        found.acro_flags[rule] += bool(acro.checks.get(rule, False) or zero_of_magnitude)
    found.ours_flags["negative"] += any(ours.status(rule, cell) is CellStatus.REVIEW for rule in DOMINANCE)
    found.acro_flags["negative"] += bool(acro.negative and acro.checks.get("nk_dominance", False))
    found.ours_flags["missing"] += values_threshold
    found.acro_flags["missing"] += acro.missing > 0


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


class Compared:
    """Each case's comparison, computed once per test process: the per-case tests and the corpus floors share them."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self._done: dict[str, tuple[Ours, Comparison]] = {}

    def __call__(self, case: Case) -> tuple[Ours, Comparison]:
        if case.id not in self._done:
            ours = compute(case, unique_units=False)
            self._done[case.id] = (ours, compare(case, ours, self.oracle.cells(case)))
        return self._done[case.id]


@pytest.fixture(scope="module")
def compared(oracle: Oracle) -> Compared:
    return Compared(oracle)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_verdicts_and_withheld_cells_agree_with_acro(compared: Compared, case: Case) -> None:
    ours, found = compared(case)
    assert found.compared > 0, f"{case.id}: no cell compared"
    problems = found.problems
    assert not problems, f"{case.id}: {len(problems)} disagreements with ACRO over {found.compared} cells:\n" + "\n".join(problems[:40])
    if case.both_ways:
        again = compute(case, unique_units=True)
        assert again.result.table.equals(ours.result.table), "unique_units changed the table"
        assert again.rules == ours.rules
        assert again.final.notes == ours.final.notes
        assert again.final.released.equals(ours.final.released)


# Cells each kind of check must flag over the whole corpus, on each side, a little below what it flags
# today (ours / ACRO's): threshold 573 / 575, nk_dominance 210 / 195, p_ratio 213 / 200, zeros 14 / 14,
# negative 45 / 45, missing 19 / 70. Agreement on a corpus where nothing is flagged would prove nothing.
FLOORS = {"threshold": 550, "nk_dominance": 180, "p_ratio": 180, "zeros": 12, "negative": 40, "missing": 15}


@pytest.mark.parametrize("kind", FLOORS)
def test_the_corpus_makes_every_check_flag_on_both_sides(compared: Compared, kind: str) -> None:
    ours = sum(compared(case)[1].ours_flags[kind] for case in CASES)
    acro = sum(compared(case)[1].acro_flags[kind] for case in CASES)
    assert (ours >= FLOORS[kind], acro >= FLOORS[kind]) == (True, True), f"{kind}: ours flag {ours} cells, ACRO {acro}"


def test_the_corpus_is_large_and_ids_are_unique() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
