"""The policy a steward attaches to a grant, and its validation against the datasets' schemas.

Deny by default: a column the policy does not name is ``deny``; a job kind or an aggregate it
does not list is refused. Disclosure defaults are ACRO's (``default.yaml``), the de-facto
standard of trusted research environments.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import ValidationFailed
from core.schema import DatasetSchema
from core.text import a
from core.values import ColumnRole, ColumnType, JobKind


class ColumnUse(StrEnum):
    DENY = "deny"
    JOIN_KEY = "join_key"  # only in join conditions
    DIMENSION = "dimension"  # filter and group by
    MEASURE = "measure"  # inside allowed aggregates only
    PLAIN = "plain"  # may be output as is


class Aggregate(StrEnum):
    COUNT = "count"
    COUNT_DISTINCT = "count_distinct"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    MEDIAN = "median"
    QUANTILE = "quantile"
    STDDEV = "stddev"
    VARIANCE = "variance"


class ReleaseMode(StrEnum):
    """What happens to cells a rule flags for review (suppression is always applied automatically).

    ``auto`` withholds flagged cells like suppressed ones and releases the rest; ``review_on_flag``
    holds the whole output for an auditor when any cell is flagged; ``always_review`` holds every
    output. A ``block`` verdict is never releasable in any mode.
    """

    AUTO = "auto"
    REVIEW_ON_FLAG = "review_on_flag"
    ALWAYS_REVIEW = "always_review"


# Which uses each column role can ever be granted. A direct identifier must never come out, nor be
# grouped or measured: at most it links tables. A sensitive value may be aggregated, never shown.
ALLOWED_USES: dict[ColumnRole, frozenset[ColumnUse]] = {
    ColumnRole.IDENTIFIER: frozenset({ColumnUse.DENY, ColumnUse.JOIN_KEY}),
    ColumnRole.QUASI_IDENTIFIER: frozenset({ColumnUse.DENY, ColumnUse.JOIN_KEY, ColumnUse.DIMENSION, ColumnUse.MEASURE}),
    ColumnRole.SENSITIVE: frozenset({ColumnUse.DENY, ColumnUse.DIMENSION, ColumnUse.MEASURE}),
    ColumnRole.ATTRIBUTE: frozenset(ColumnUse),
}


class Disclosure(BaseModel):
    """Statistical disclosure control settings; defaults are ACRO's ``default.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: Annotated[int, Field(ge=1, le=10_000, description="minimum privacy units per cell")] = 10
    dof_threshold: Annotated[int, Field(ge=1, le=10_000, description="minimum residual degrees of freedom")] = 10
    nk_n: Annotated[int, Field(ge=1, le=100, description="n of the n-k dominance rule")] = 2
    nk_k: Annotated[float, Field(gt=0, le=1, description="k of the n-k dominance rule (share)")] = 0.90
    p_ratio: Annotated[float, Field(gt=0, le=1, description="p of the p-ratio rule")] = 0.10
    zeros_disclosive: bool = True
    check_missing: bool = False
    rounding: Annotated[
        bool,
        Field(description="round every released number: counts, totals, minima, maxima to the base; means and spreads from rounded sums"),
    ] = False
    round_base: Annotated[int, Field(ge=1, le=1_000)] = 5
    secondary_suppression: bool = True
    max_leverage: Annotated[
        float,
        Field(
            gt=0,
            le=1,
            description="the largest hat value (summed over a unit's rows) a released model may give one privacy unit",
        ),
    ] = 0.2


class CostLimits(BaseModel):
    """What one job may cost, checked at submission against its plan's estimate (``jobs.cost``).

    Threat: one analyst's job that holds a worker for its whole timeout, or its memory, delays every
    other organisation's jobs; a dry run that does so ties up a web worker. A job over any cap is
    refused with 422 ``too_expensive`` naming the cap and the estimate, before it is queued. The
    suppression programme grows much faster than its table (on 2 cores a 1,600-cell table with
    margins took about 45 s), so it has its own cap on cells and a time limit while it runs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_cells: Annotated[int, Field(ge=1, le=10_000_000, description="cells one release may have: groups times aggregate outputs")] = (
        100_000
    )
    max_dimensions: Annotated[int, Field(ge=1, le=32, description="dimensions (group keys) one table may have")] = 5
    max_suppression_cells: Annotated[
        int, Field(ge=1, le=100_000, description="cells of a table with margins that secondary suppression may protect")
    ] = 5_000
    suppression_seconds: Annotated[
        float, Field(gt=0, le=3_600, allow_inf_nan=False, description="time limit of secondary suppression's programmes")
    ] = 60.0


class DPSettings(BaseModel):
    """Differential privacy for a grant's query jobs. No defaults: every privacy parameter is the steward's choice.

    ``max_rows_per_unit`` caps each privacy unit's rows before aggregating, which bounds how far one
    unit can move any released number (the sensitivity the noise is calibrated to).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon_total: Annotated[float, Field(gt=0, allow_inf_nan=False, description="the grant's total epsilon")]
    epsilon_per_job: Annotated[float, Field(gt=0, allow_inf_nan=False, description="the most one job may spend")]
    delta_total: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False, description="the grant's total delta")]
    max_rows_per_unit: Annotated[int, Field(ge=1, le=10_000, description="rows kept per privacy unit before aggregating")]

    @model_validator(mode="after")
    def _per_job_within_total(self) -> DPSettings:
        if self.epsilon_per_job > self.epsilon_total:
            raise ValueError("epsilon_per_job cannot exceed epsilon_total")
        return self


class ScoreSettings(BaseModel):
    """Limits on consent-bound scoring (``he`` jobs, op ``score``): how many entities, how often each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_entities_per_job: Annotated[int, Field(ge=1, le=1_000_000, description="entities one scoring job may ask for")]
    max_jobs_per_entity: Annotated[int, Field(ge=1, le=10_000, description="scoring jobs that may score one entity per period")]
    period_days: Annotated[int, Field(ge=1, le=3_660, description="the period those jobs are counted over")]


class HESettings(BaseModel):
    """Homomorphic jobs. Aggregates need nothing beyond the disclosure rules; scoring needs its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: ScoreSettings | None = None  # None: the grant may not score entities


class ReleasedCellsCap(BaseModel):
    """At most ``cells`` released cells per grant: over a rolling window of ``period_days``, or over the
    grant's whole life when ``period_days`` is None.

    Threat: on the exact-answer path every released number is a linear equation about the data, and
    enough of them reconstruct it (Dinur and Nissim, 2003) whatever each one passed. The cap bounds
    how many such equations one grant can collect; it is counted at release, in the releasing
    transaction, over every job of the grant (a cell is one aggregate value of a released table,
    withheld cells included, so the count does not depend on which cells were suppressed).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cells: Annotated[int, Field(ge=1, le=100_000_000, description="released cells allowed in the period")]
    period_days: Annotated[int | None, Field(ge=1, le=3_660, description="rolling window in days; null: the grant's life")] = None


class Policy(BaseModel):
    """What an approved grant allows. Columns are named per dataset: ``{dataset: {column: use}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, dict[str, ColumnUse]]
    aggregates: Annotated[frozenset[Aggregate], Field(min_length=1)]
    job_kinds: Annotated[frozenset[JobKind], Field(min_length=1)]
    disclosure: Disclosure = Disclosure()
    release_mode: ReleaseMode = ReleaseMode.REVIEW_ON_FLAG
    reviewers: Annotated[int, Field(ge=1, le=3, description="independent auditors who must release a held output")] = 1
    dp: DPSettings | None = None  # None: output control only; with it, query jobs are answered with DP noise
    he: HESettings | None = None  # limits of homomorphic jobs (scoring); None: no scoring
    limits: CostLimits = CostLimits()  # what one job may cost; refused at submission past it
    max_released_cells: ReleasedCellsCap | None = None  # None: no cap on the grant's released cells

    @model_validator(mode="after")
    def _not_empty(self) -> Policy:
        if not any(use is not ColumnUse.DENY for uses in self.columns.values() for use in uses.values()):
            raise ValueError("the policy allows no column at all")
        return self

    def use_of(self, dataset: str, column: str) -> ColumnUse:
        """The use granted for a column; anything unnamed is denied."""
        return self.columns.get(dataset, {}).get(column, ColumnUse.DENY)


def check_against(policy: Policy, schemas: dict[str, DatasetSchema], requested_kinds: frozenset[JobKind]) -> None:
    """Refuse a policy that names unknown datasets or columns, or grants a use a column's role forbids.

    ``schemas`` maps each dataset name of the grant to the schema of its current version. Every
    problem is collected so that the steward sees them all at once.
    """
    problems: list[dict[str, str]] = []
    for dataset, uses in policy.columns.items():
        schema = schemas.get(dataset)
        if schema is None:
            problems.append({"dataset": dataset, "problem": "not a dataset of this grant"})
            continue
        for column, use in uses.items():
            problems.extend(_column_problems(dataset, column, use, schema))
    extra_kinds = policy.job_kinds - requested_kinds
    if extra_kinds:
        names = ", ".join(sorted(kind.value for kind in extra_kinds))
        problems.append({"field": "job_kinds", "problem": f"not requested by the analyst: {names}"})
    if problems:
        first = problems[0]
        where = first.get("column") or first.get("dataset") or first.get("field", "policy")
        raise ValidationFailed(f"policy is not valid for this grant: {where}: {first['problem']}", details={"problems": problems})


def _column_problems(dataset: str, column: str, use: ColumnUse, schema: DatasetSchema) -> list[dict[str, str]]:
    spec = schema.column(column)
    where = {"dataset": dataset, "column": column}
    if spec is None:
        return [{**where, "problem": "unknown column"}]
    if use not in ALLOWED_USES[spec.role]:
        return [{**where, "problem": f"{a(spec.role.value)} column cannot be {use.value}"}]
    if column == schema.privacy_unit and use not in (ColumnUse.DENY, ColumnUse.JOIN_KEY):
        return [{**where, "problem": f"the privacy-unit column cannot be {use.value}"}]
    if spec.type is ColumnType.PAILLIER and use not in (ColumnUse.DENY, ColumnUse.MEASURE):
        return [{**where, "problem": f"an encrypted (paillier) column can only be a measure of he jobs, not {use.value}"}]
    if use is ColumnUse.MEASURE and not (spec.type.numeric or spec.type is ColumnType.PAILLIER):
        return [{**where, "problem": f"only numeric columns can be a measure, this one is {spec.type.value}"}]
    return []
