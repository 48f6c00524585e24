"""What every ``he`` op shares: the refusal rules and the base of its plan."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.errors import PolicyViolation


class HERule(StrEnum):
    """Every reason an ``he`` spec can be refused; the value is the ``rule`` the analyst sees."""

    DATASET_NOT_GRANTED = "dataset_not_granted"
    IDENTIFIER = "identifier"  # identifiers and the privacy-unit column are never grouped or aggregated
    COLUMN_DENIED = "column_denied"
    MEASURE_AS_DIMENSION = "measure_as_dimension"  # group keys must be dimension (or plain) columns
    NOT_ENCRYPTED = "not_encrypted"  # he aggregates sum paillier columns; plain columns are for query and stats jobs
    AGGREGATE_NOT_ALLOWED = "aggregate_not_allowed"
    KEYS_DIFFER = "keys_differ"  # one job, one Paillier key: one release decision, one custodian
    DP_UNSUPPORTED = "dp_unsupported"  # ciphertext sums take no DP noise here


def violation(rule: HERule, message: str, column: str | None = None) -> PolicyViolation:
    """The error for a broken rule; the message ends by naming the rule, as analysts see it."""
    return PolicyViolation(f"{message} (rule {rule.value})", details={"rule": rule.value, "column": column})


@dataclass(frozen=True)
class HEPlan:
    """The base of every ``he`` op's plan: the op and the one dataset it reads."""

    op: str
    dataset: str

    @property
    def datasets(self) -> tuple[str, ...]:
        return (self.dataset,)
