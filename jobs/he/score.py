"""Planning a consent-bound scoring job (``he`` op ``score``): the analyst's encrypted linear model.

The analyst (say a bank) sends a Paillier public key of its own, its model's weights and intercept
encrypted under it, and the entities it wants scored. ``plan_score`` checks the shape (400,
``ValidationFailed``: a malformed key, a ciphertext that is not one of that key) and then the
grant's policy (422, ``PolicyViolation`` with ``details["rule"]`` a ``ScoreRule``): the policy allows
scoring, the features are bounded numeric measures, the request stays within the policy's entity
limit and the dataset holds one row per privacy unit, so that an entity has exactly one score.

Fixed point: weights and intercept arrive encoded at ``scale`` digits (s). Features are encoded at
the features' scale f, which the column types decide: integer features are exact at f = 0; when a
feature is a float column, the spec states ``feature_scale`` (0..6) and every feature is rounded at
it. A score is Enc(b) ⊗ 10^f ⊕ Σ Enc(w_j) ⊗ round(x_j · 10^f): its scale is s + f.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from core import validation
from core.errors import PolicyViolation, ValidationFailed
from core.schema import DatasetSchema, Name
from core.values import ColumnType
from crypto import paillier
from crypto.paillier import PublicKey
from jobs.he.values import HEPlan
from policies.model import ColumnUse, Policy, ScoreSettings

MAX_FEATURES = 100
MAX_FEATURE_SCALE = 6
MAX_ENTITIES = 1_000_000  # the most any policy may allow (``ScoreSettings.max_entities_per_job``)
ENTITY_CHARS = 200  # the width of ``consents.entity`` and ``score_uses.entity``
_FEATURE_USES = frozenset({ColumnUse.MEASURE, ColumnUse.PLAIN})


class ScoreRule(StrEnum):
    """Every reason the policy refuses a scoring spec; the value is the ``rule`` the analyst sees."""

    DATASET_NOT_GRANTED = "dataset_not_granted"
    SCORE_NOT_ALLOWED = "score_not_allowed"  # the policy has no ``he.score`` block
    COLUMN_DENIED = "column_denied"  # a feature that is not a measure (or plain) column of the policy
    NOT_NUMERIC = "not_numeric"  # features are int or float columns
    BOUNDS_REQUIRED = "bounds_required"  # a feature without declared bounds
    TOO_MANY_ENTITIES = "max_entities_per_job"
    UNITS_NOT_UNIQUE = "units_not_unique"  # the dataset has several rows for some privacy unit


def violation(rule: ScoreRule, message: str, column: str | None = None, **details: Any) -> PolicyViolation:
    return PolicyViolation(f"{message} (rule {rule.value})", details={"rule": rule.value, "column": column, **details})


def _utf8(value: str) -> str:
    """Refuse lone surrogates: such text cannot be stored nor hashed."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid text") from None
    return value


Entity = Annotated[str, Field(min_length=1, max_length=ENTITY_CHARS), AfterValidator(_utf8)]


class ScoreSpec(BaseModel):
    """The shape of a scoring spec; ciphertexts and the key are checked against each other by ``plan_score``."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["score"]
    dataset: Name
    features: Annotated[list[Name], Field(min_length=1, max_length=MAX_FEATURES)]
    feature_scale: Annotated[int, Field(ge=0, le=MAX_FEATURE_SCALE)] | None = None
    public_key: dict[str, Any]
    scale: Annotated[int, Field(ge=0, le=paillier.MAX_SCALE, description="decimal digits of the encrypted weights")]
    weights: Annotated[list[str | int], Field(min_length=1, max_length=MAX_FEATURES)]
    intercept: str | int
    entities: Annotated[list[Entity], Field(min_length=1, max_length=MAX_ENTITIES)]


@dataclass(frozen=True)
class ScorePlan(HEPlan):
    """A scoring spec that passed validation and the policy: what the worker computes."""

    privacy_unit: str
    features: tuple[str, ...]
    feature_scale: int  # f: features are encoded as round(x * 10**f)
    weights_scale: int  # s: the scale the analyst encrypted weights and intercept at
    public: PublicKey
    weights: tuple[int, ...]
    intercept: int
    entities: tuple[str, ...]  # distinct, in the order first asked for
    requested: int  # entities as sent, duplicates included
    limits: ScoreSettings

    @property
    def result_scale(self) -> int:
        """Decimal digits of a decrypted score: s + f."""
        return self.weights_scale + self.feature_scale


def parse_spec(spec: Mapping[str, Any]) -> ScoreSpec:
    """The spec's shape; problems name fields, never the values sent."""
    try:
        return ScoreSpec.model_validate(spec)
    except ValidationError as exc:
        problems = validation.problems(exc, spec, prefix="spec", whole="spec")
        raise ValidationFailed(f"invalid spec: {problems[0]['field']}: {problems[0]['problem']}", details={"problems": problems}) from None


def plan_score(
    spec: Mapping[str, Any], policy: Policy, schemas: Mapping[str, DatasetSchema], unique_units: frozenset[str] = frozenset()
) -> ScorePlan:
    """Validate a scoring spec and check it against ``policy`` over the grant's datasets (``schemas`` by name).

    ``unique_units`` names the datasets whose pinned version has one row per privacy unit (its row
    and unit counts are equal); any other dataset is refused, so the default refuses every dataset.
    Whether the grant allows ``he`` jobs at all is the caller's check.
    """
    parsed = parse_spec(spec)
    public = PublicKey.from_dict(parsed.public_key, field="spec.public_key")
    if len(parsed.weights) != len(parsed.features):
        raise ValidationFailed(
            "spec.weights: one encrypted weight per feature, in the order of spec.features", details={"field": "spec.weights"}
        )
    if len(set(parsed.features)) != len(parsed.features):
        raise ValidationFailed("spec.features names a column twice", details={"field": "spec.features"})
    weights = tuple(paillier.parse_ciphertext(public, w, f"spec.weights[{i}]") for i, w in enumerate(parsed.weights))
    intercept = paillier.parse_ciphertext(public, parsed.intercept, "spec.intercept")
    schema = schemas.get(parsed.dataset)
    if schema is None:
        raise violation(ScoreRule.DATASET_NOT_GRANTED, f"dataset {parsed.dataset} is not one of this grant's datasets")
    limits = policy.he.score if policy.he is not None else None
    if limits is None:
        raise violation(ScoreRule.SCORE_NOT_ALLOWED, "the grant's policy does not allow scoring entities (he.score)")
    feature_scale = _features(parsed, policy, schema)
    entities = tuple(dict.fromkeys(parsed.entities))
    if len(entities) > limits.max_entities_per_job:
        raise violation(
            ScoreRule.TOO_MANY_ENTITIES,
            f"the job asks for {len(entities)} distinct entities; the policy allows {limits.max_entities_per_job} per job",
            limit=limits.max_entities_per_job,
            requested=len(entities),
        )
    if parsed.dataset not in unique_units:
        raise violation(
            ScoreRule.UNITS_NOT_UNIQUE,
            f"dataset {parsed.dataset} has several rows for some privacy units: an entity would have several scores",
        )
    return ScorePlan(
        op="score",
        dataset=parsed.dataset,
        privacy_unit=schema.privacy_unit,
        features=tuple(parsed.features),
        feature_scale=feature_scale,
        weights_scale=parsed.scale,
        public=public,
        weights=weights,
        intercept=intercept,
        entities=entities,
        requested=len(parsed.entities),
        limits=limits,
    )


def _features(spec: ScoreSpec, policy: Policy, schema: DatasetSchema) -> int:
    """Check every feature against the policy and the schema; the features' fixed-point scale f."""
    floats = False
    for column in spec.features:
        name = f"{spec.dataset}.{column}"
        column_spec = schema.column(column)
        if column_spec is None:
            raise ValidationFailed(f"unknown column {name}", details={"field": "spec.features", "column": name})
        if column == schema.privacy_unit or policy.use_of(spec.dataset, column) not in _FEATURE_USES:
            raise violation(ScoreRule.COLUMN_DENIED, f"the policy does not allow column {name} as a feature (a measure is needed)", name)
        if not column_spec.type.numeric:
            raise violation(ScoreRule.NOT_NUMERIC, f"column {name} is {column_spec.type.value}, not int or float", name)
        if column_spec.bounds is None:
            raise violation(ScoreRule.BOUNDS_REQUIRED, f"column {name} has no declared bounds", name)
        floats = floats or column_spec.type is ColumnType.FLOAT
    if floats and spec.feature_scale is None:
        raise ValidationFailed(
            f"a feature is a float column: state spec.feature_scale (0..{MAX_FEATURE_SCALE}), the digits it is rounded to",
            details={"field": "spec.feature_scale"},
        )
    if not floats and spec.feature_scale:
        raise ValidationFailed(
            "integer features are exact at scale 0: spec.feature_scale is for float features", details={"field": "spec.feature_scale"}
        )
    return spec.feature_scale or 0
