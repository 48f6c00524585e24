"""Linked cells: a count, a sum and a mean of one population in one row give each other away.

``sum = mean x count``: a row that releases two of the three releases the third. So when one of
them is withheld (or flagged for review), at most one of the other two is released: the mean goes
(and, when the mean is the one withheld, the sum), with the status of the cell it would give back.
Counts are taken conservatively: any COUNT or COUNT(DISTINCT ...) of the row stands for the
population of every (sum, mean) pair of the row (``COUNT(*)`` equals ``COUNT(x)`` whenever ``x`` has
no missing value, which the analyst may know). The same holds within each grouping set of a table
with margins, row by row. Releases of other jobs are the release-time audit's to combine.
"""

from __future__ import annotations

from collections.abc import Sequence

from policies.evidence import Output
from policies.model import Aggregate
from policies.rules import CellStatus, Verdict

COUNTS = frozenset({Aggregate.COUNT, Aggregate.COUNT_DISTINCT})
RULE = "linked_cells"
REASON = "withheld so that a withheld count, sum or mean of this row cannot be worked out from the other two (sum = mean x count)"


def pairs(outputs: Sequence[Output]) -> list[tuple[str, str]]:
    """(sum, mean) output names over the same known argument."""
    sums = {o.argument: o.name for o in outputs if o.aggregate is Aggregate.SUM and o.argument is not None}
    return [(sums[o.argument], o.name) for o in outputs if o.aggregate is Aggregate.AVG and o.argument in sums]


def link(verdicts: list[dict[str, Verdict]], outputs: Sequence[Output]) -> list[dict[str, Verdict]]:
    """Per row, withhold a mean (or a sum) whose release with the row's other cells would give back a withheld one."""
    linked = pairs(outputs)
    counts = [o.name for o in outputs if o.aggregate in COUNTS]
    if not linked or not counts:
        return verdicts
    return [_row(row, linked, counts) for row in verdicts]


def _row(row: dict[str, Verdict], linked: Sequence[tuple[str, str]], counts: Sequence[str]) -> dict[str, Verdict]:
    row = dict(row)
    for total, mean in linked:
        hidden_counts = [row[c] for c in counts if _hidden(row[c])]
        shown_count = any(not _hidden(row[c]) for c in counts)
        if hidden_counts and not _hidden(row[total]) and not _hidden(row[mean]):
            row[mean] = _because(hidden_counts)
        elif _hidden(row[total]) and not _hidden(row[mean]) and shown_count:
            row[mean] = _because([row[total]])
        elif _hidden(row[mean]) and not _hidden(row[total]) and shown_count:
            row[total] = _because([row[mean]])
    return row


def _hidden(verdict: Verdict) -> bool:
    """Withheld now, or perhaps later (a review may withhold it): either way it may not be given back."""
    return verdict.status is not CellStatus.PASS


def _because(triggers: Sequence[Verdict]) -> Verdict:
    withheld = any(v.status in (CellStatus.SUPPRESS, CellStatus.BLOCK) for v in triggers)
    return Verdict(CellStatus.SUPPRESS if withheld else CellStatus.REVIEW, RULE, REASON, {"linked": True})
