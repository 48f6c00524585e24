"""Policy checks for the columns and aggregates a statistics spec uses.

Dimensions (what a table is grouped by, a histogram's column, a model's categorical terms) must be
``dimension`` or ``plain``; values (what is aggregated or modelled numerically) must be ``measure``
or ``plain`` and numeric. Identifiers and the privacy-unit column are never used, whatever the
policy says: statistics of an identifier are statistics of individuals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.errors import ValidationFailed
from core.schema import ColumnSpec, DatasetSchema
from core.values import ColumnRole, ColumnType
from jobs.stats.values import StatsRule, violation
from policies.evidence import NOT_ROUNDABLE
from policies.model import Aggregate, ColumnUse, Policy

_DIMENSION_USES = frozenset({ColumnUse.DIMENSION, ColumnUse.PLAIN})
_MEASURE_USES = frozenset({ColumnUse.MEASURE, ColumnUse.PLAIN})


@dataclass(frozen=True)
class Scope:
    """One dataset of the grant, its schema and the grant's policy: what every check needs."""

    dataset: str
    schema: DatasetSchema
    policy: Policy
    unique_units: bool = False  # every row is its own privacy unit (the version's counts say so)

    @classmethod
    def of(cls, dataset: str, policy: Policy, schemas: Mapping[str, DatasetSchema], unique_units: frozenset[str] = frozenset()) -> Scope:
        schema = schemas.get(dataset)
        if schema is None:
            raise violation(StatsRule.DATASET_NOT_GRANTED, f"dataset {dataset} is not one of this grant's datasets")
        return cls(dataset, schema, policy, dataset in unique_units)

    @property
    def privacy_unit(self) -> str:
        return self.schema.privacy_unit

    def dimension(self, column: str, binned: bool = False) -> ColumnSpec:
        """A column used to group or label: ``dimension`` or ``plain``.

        Keys are outputs: a sensitive column groups only through its declared domain, or through public
        bins (``binned``: a histogram's edges), never by its raw values.
        """
        spec, use = self._usable(column)
        name = self._name(column)
        if use not in _DIMENSION_USES:
            raise violation(StatsRule.MEASURE_AS_DIMENSION, f"column {name} may only be aggregated, not grouped by", name)
        if spec.role is ColumnRole.SENSITIVE and spec.domain is None and not binned:
            message = f"column {name} is sensitive and has no declared domain: its raw values cannot label rows (a histogram bins it)"
            raise violation(StatsRule.SENSITIVE_KEY, message, name)
        return spec

    def measure(self, column: str) -> ColumnSpec:
        """A column aggregated or modelled as a number: ``measure`` or ``plain``, and numeric."""
        spec, use = self._usable(column)
        name = self._name(column)
        if use not in _MEASURE_USES:
            raise violation(StatsRule.DIMENSION_AS_MEASURE, f"column {name} may be grouped by, not aggregated as a value", name)
        if not spec.type.numeric:
            raise violation(StatsRule.NOT_NUMERIC, f"column {name} is {spec.type.value}, not numeric", name)
        return spec

    def aggregates(self, needed: Iterable[Aggregate]) -> None:
        """Every aggregate the op computes must be listed by the policy."""
        for aggregate in needed:
            if aggregate not in self.policy.aggregates:
                raise violation(StatsRule.AGGREGATE_NOT_ALLOWED, f"the policy does not allow the aggregate {aggregate.value}")
            if self.rounding and aggregate in NOT_ROUNDABLE:
                message = f"this grant rounds its results: a {aggregate.value} cannot be rounded (its position gives exact counts)"
                raise violation(StatsRule.AGGREGATE_NOT_ALLOWED, message)

    @property
    def rounding(self) -> bool:
        return self.policy.disclosure.rounding

    def not_rounded(self, op: str) -> None:
        """Refuse an op whose numbers cannot be derived from rounded counts and sums, under a rounding policy.

        A correlation or a regression is an exact function of the data: an intercept-only model is the
        exact mean, a 0/1 regressor's coefficient an exact difference of means, and with the number of
        observations those are exact counts.
        """
        if self.rounding:
            message = f"this grant rounds its results: {op} cannot be derived from rounded counts and totals"
            raise violation(StatsRule.AGGREGATE_NOT_ALLOWED, message)

    def _usable(self, column: str) -> tuple[ColumnSpec, ColumnUse]:
        spec = self.schema.column(column)
        name = self._name(column)
        if spec is None:
            raise ValidationFailed(f"unknown column {name}", details={"field": "spec", "column": name})
        if spec.type is ColumnType.PAILLIER:
            raise violation(StatsRule.ENCRYPTED_COLUMN, f"column {name} is encrypted (paillier): only he jobs can aggregate it", name)
        if spec.role is ColumnRole.IDENTIFIER or column == self.privacy_unit:
            raise violation(StatsRule.IDENTIFIER, f"column {name} is an identifier: statistics never use it", name)
        use = self.policy.use_of(self.dataset, column)
        if use in (ColumnUse.DENY, ColumnUse.JOIN_KEY):
            raise violation(StatsRule.COLUMN_DENIED, f"the policy does not allow column {name} in statistics", name)
        return spec, use

    def _name(self, column: str) -> str:
        return f"{self.dataset}.{column}"
