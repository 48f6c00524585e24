"""Disclosure rules: typed statuses and verdicts, and a registry of small pure rules, one per check.

Each rule maps one cell's evidence (``policies.evidence.CellEvidence``) and the grant's disclosure
settings to a ``Verdict``; ``policies.output_control.control`` runs every registered rule on every
aggregate cell and keeps the worst verdict. A rule whose aggregate it does not concern answers
PASS ("not applicable"), so running all rules on all cells is always correct.

Where a check is also one of ACRO's (``acro.sdcchecks``), the arithmetic here is ACRO's, cell for
cell, so that an oracle test can compare the two; every such rule says where it follows ACRO and
where it is deliberately stricter. Two differences hold throughout: ACRO counts records where we
count privacy units (people, enterprises), and ACRO's dominance inputs are record values where ours
are per-unit totals. With one record per unit the two coincide.

Evidence in a verdict is shown to auditors: counts, shares and ratios only, never a raw cell value
or a unit's total, so that the audit trail is not itself a disclosure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from policies.evidence import MAGNITUDE, ORDER_STATISTICS, CellEvidence
from policies.model import Disclosure


class CellStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    SUPPRESS = "suppress"  # withheld from the release; the rest of the table may go out
    REVIEW = "review"  # an auditor must decide
    BLOCK = "block"  # never releasable, whatever a reviewer says

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {CellStatus.PASS: 0, CellStatus.SUPPRESS: 1, CellStatus.REVIEW: 2, CellStatus.BLOCK: 3}


def worst(statuses: Iterable[CellStatus]) -> CellStatus:
    """The most severe status; an empty set means nothing was checked, which is a review, not a pass."""
    found = list(statuses)
    if not found:
        return CellStatus.REVIEW
    return max(found, key=lambda s: s.severity)


@dataclass(frozen=True)
class Verdict:
    """One rule's judgement of one cell: what to do, which rule, why, and what it measured."""

    status: CellStatus
    rule: str
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


Rule = Callable[[CellEvidence, Disclosure], Verdict]
RULES: dict[str, Rule] = {}  # registration order is the order of evaluation and of tie-breaks


def rule(name: str) -> Callable[[Rule], Rule]:
    """Register a rule under a unique name; a second rule of the same name is a bug, not an override."""

    def register(fn: Rule) -> Rule:
        if name in RULES:
            raise ValueError(f"a disclosure rule named {name!r} is already registered")
        RULES[name] = fn
        return fn

    return register


def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool) and value == 0


@rule("threshold")
def threshold(cell: CellEvidence, settings: Disclosure) -> Verdict:
    """At least k distinct privacy units behind every cell, not k rows; every aggregate.

    ACRO's ``MinimumThresholdCheck``: ``count < safe_threshold`` is disclosive (strict ``<``).
    """
    measured = {"units": cell.units, "threshold": settings.threshold}
    if cell.units < settings.threshold:
        return Verdict(CellStatus.SUPPRESS, "threshold", f"fewer than {settings.threshold} privacy units behind this cell", measured)
    return Verdict(CellStatus.PASS, "threshold", "enough privacy units", measured)


@rule("values_threshold")
def values_threshold(cell: CellEvidence, settings: Disclosure) -> Verdict:
    """An aggregate over a column needs k units that have a value, not only k units in the group.

    A mean over a group of 59 records of which 5 carry a value is a mean of 5. The evidence counts
    missing rows, not units, so ``units - missing`` is a lower bound on the units with a value (a
    unit with several missing rows lowers it more than once): erring towards withholding. ACRO counts
    records here, and so passes such a cell.
    """
    if not cell.missing:
        return Verdict(CellStatus.PASS, "values_threshold", "no missing values", {"missing": 0})
    with_value = max(cell.units - cell.missing, 0)
    measured = {"units_with_value_at_least": with_value, "threshold": settings.threshold}
    if with_value < settings.threshold:
        return Verdict(
            CellStatus.SUPPRESS,
            "values_threshold",
            f"fewer than {settings.threshold} privacy units with a value behind this cell",
            measured,
        )
    return Verdict(CellStatus.PASS, "values_threshold", "enough units with a value", measured)


@rule("zeros")
def zeros(cell: CellEvidence, settings: Disclosure) -> Verdict:
    """An empty or zero cell is withheld when zeros are disclosive (class disclosure); every aggregate.

    ACRO flags ``count == 0`` cells (``PresenceOfZeroCheck``: empty groups) and, when it suppresses,
    also blanks every cell whose value is 0 (``table.replace({0: nan})`` in ``get_redacted_table``).
    This rule does both: no units behind the cell, or a value equal to 0. So on a sum or mean that is
    0 over a non-empty group it agrees with ACRO's released table, not with ACRO's zero-check mask.
    """
    applies = settings.zeros_disclosive
    if applies and (cell.units == 0 or _is_zero(cell.value)):
        return Verdict(CellStatus.SUPPRESS, "zeros", "an empty or zero cell reveals that no one in the group has it", {"units": cell.units})
    return Verdict(CellStatus.PASS, "zeros", "not a zero cell" if applies else "zeros are not disclosive under this policy")


def _dominance_inputs(name: str, cell: CellEvidence, needed: int) -> Verdict | tuple[list[float], float]:
    """The sorted top per-unit totals and the total, or the verdict that ends the check before arithmetic.

    Shared by ``nk_dominance`` and ``p_ratio``, in ACRO's order: not a magnitude aggregate -> not
    applicable; negative contributions -> review ("dominance is not defined", ACRO reviews such cells,
    though ACRO then skips the whole table while we still check the other cells); no dominance
    evidence at all -> not applicable, as the evidence contract says of absent columns; an empty cell
    -> pass (ACRO's 0/0 is NaN, never flagged); evidence that is partial or contradicts itself ->
    suppress, because a rule that could not measure must not pass.
    """
    if cell.aggregate not in MAGNITUDE:
        return Verdict(CellStatus.PASS, name, f"not applicable to {cell.aggregate.value}")
    if cell.negative > 0:
        return Verdict(
            CellStatus.REVIEW, name, "dominance is not defined when negative values are present", {"negative_units": cell.negative}
        )
    if not cell.top and cell.total is None:
        return Verdict(CellStatus.PASS, name, "no dominance evidence for this cell: not applicable", {"applicable": False})
    if not cell.top and cell.units == 0:
        return Verdict(CellStatus.PASS, name, "no contributors")
    total = cell.total
    top = sorted(cell.top, reverse=True)
    if total is None or len(top) < min(needed, cell.units) or total < 0:
        return Verdict(
            CellStatus.SUPPRESS, name, "the dominance evidence for this cell is incomplete", {"top_values": len(top), "units": cell.units}
        )
    return top, float(total)


@rule("nk_dominance")
def nk_dominance(cell: CellEvidence, settings: Disclosure) -> Verdict:
    """Magnitude cells (sum, avg): the top n units' share of the total must stay below k.

    ACRO's ``NKCheck`` arithmetic: ``share = top_n_sum / sum`` and the cell is disclosive when
    ``share >= k`` (non-strict). Fewer than n contributors sum all of them (share 1). A zero total
    gives 0/0 = NaN, which is never flagged, or x/0 = inf, which is.
    """
    found = _dominance_inputs("nk_dominance", cell, settings.nk_n)
    if isinstance(found, Verdict):
        return found
    top, total = found
    top_n = sum(top[: settings.nk_n])
    share = top_n / total if total != 0 else (math.nan if top_n == 0 else math.copysign(math.inf, top_n))
    measured: dict[str, Any] = {"n": settings.nk_n, "k": settings.nk_k}
    if math.isfinite(share):
        measured["share"] = round(share, 4)
    if share >= settings.nk_k:
        return Verdict(CellStatus.SUPPRESS, "nk_dominance", f"the largest {settings.nk_n} units dominate this total", measured)
    return Verdict(CellStatus.PASS, "nk_dominance", "no dominant units", measured)


@rule("p_ratio")
def p_ratio(cell: CellEvidence, settings: Disclosure) -> Verdict:
    """Magnitude cells (sum, avg): the rest of the total must hide the largest unit to within p.

    ACRO's ``PPercentCheck`` arithmetic: ``ratio = (total - x1 - x2) / x1`` with x1, x2 the two
    largest contributions (x2 = 0 with a single contributor, so the ratio is 0 and the cell fails),
    disclosive when ``ratio < p`` (strict). When x1 is 0 ACRO takes ``ratio = total - x1 - x2``
    undivided, which is 0 for an all-zero cell, so an all-zero cell fails too (despite ACRO's
    comment calling it non-disclosive).
    """
    found = _dominance_inputs("p_ratio", cell, 2)
    if isinstance(found, Verdict):
        return found
    top, total = found
    x1 = top[0] if top else 0.0
    x2 = top[1] if len(top) > 1 else 0.0
    rest = total - x1 - x2
    ratio = rest if x1 == 0 else rest / x1
    measured = {"ratio": round(ratio, 4), "p": settings.p_ratio}
    if ratio < settings.p_ratio:
        return Verdict(CellStatus.SUPPRESS, "p_ratio", "the other contributors cannot hide the largest one", measured)
    return Verdict(CellStatus.PASS, "p_ratio", "the largest contributor is hidden", measured)


@rule("order_statistic")
def order_statistic(cell: CellEvidence, settings: Disclosure) -> Verdict:
    """Min, max, median, quantile: at least k units at or below and at or above the released value.

    An order statistic is one unit's own value unless enough units share its neighbourhood; a
    minimum is released only when k units tie at it. Not one of ACRO's checks (ACRO applies only the
    threshold and zeros checks to these). Missing below/above evidence suppresses: never pass unknown.
    """
    if cell.aggregate not in ORDER_STATISTICS:
        return Verdict(CellStatus.PASS, "order_statistic", f"not applicable to {cell.aggregate.value}")
    k = settings.threshold
    if cell.below is None or cell.above is None:
        return Verdict(
            CellStatus.SUPPRESS, "order_statistic", "no evidence of the units on each side of this order statistic", {"threshold": k}
        )
    measured = {"below": int(cell.below), "above": int(cell.above), "threshold": k}
    if cell.below < k or cell.above < k:
        return Verdict(
            CellStatus.SUPPRESS, "order_statistic", "a minimum/maximum/quantile must have at least k units on each side", measured
        )
    return Verdict(CellStatus.PASS, "order_statistic", "enough units on each side", measured)


@rule("negative")
def negative(cell: CellEvidence, settings: Disclosure) -> Verdict:
    """Any unit with a negative total sends the cell to review: dominance rules cannot judge it.

    ACRO reviews such cells (``num_negative > 0`` in its dominance checks); here any aggregate whose
    engine reported negative evidence is reviewed.
    """
    _ = settings
    if cell.negative > 0:
        return Verdict(CellStatus.REVIEW, "negative", "negative values behind this cell", {"negative_units": cell.negative})
    return Verdict(CellStatus.PASS, "negative", "no negative values")


@rule("missing")
def missing(cell: CellEvidence, settings: Disclosure) -> Verdict:
    """When the policy checks missing values, a cell computed over NULL arguments goes to review.

    ACRO's ``MissingCheck`` (only when ``check_missing_values``): any missing value -> review, because
    the aggregate silently ignored those rows.
    """
    if settings.check_missing and cell.missing > 0:
        return Verdict(CellStatus.REVIEW, "missing", "missing values were ignored in this cell", {"missing_rows": cell.missing})
    return Verdict(CellStatus.PASS, "missing", "no missing values checked or found")
