"""The description of a dataset that stewards declare at upload: columns, roles, bounds, domains.

These pydantic models are the one definition shared by ingest (``sandbox``), policies and jobs.
They hold metadata only, never a data value other than declared bounds and public domains.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from core.names import MAX_NAME_LENGTH, collisions, name_problem
from core.values import ColumnRole, ColumnType, Encoding, Level

Scalar = int | float | str | bool


def _acceptable_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(f"the name {value!r} {problem}")
    return value


# A dataset, column or output name as specs write it (``core.names``): whatever reaches SQL is quoted there.
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_acceptable_name)]


class Bounds(BaseModel):
    """Declared public bounds of a numeric column; every value must lie in [lower, upper]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lower: float
    upper: float

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if not self.lower < self.upper:
            raise ValueError("lower must be below upper")
        return self


class PaillierColumn(BaseModel):
    """How a provider-encrypted column was encrypted: under which public key, at which fixed-point scale.

    Values are encoded as ``round(x * 10**scale)`` before encryption (see ``crypto.paillier``); the
    plaintext bounds are the provider's declaration and cannot be checked by the domain.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="fingerprint of the Paillier public key")]
    scale: Annotated[int, Field(ge=0, le=12, description="decimal digits kept after the point")]


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    role: ColumnRole
    type: ColumnType
    bounds: Bounds | None = None
    domain: Annotated[list[Scalar], Field(min_length=1, max_length=10_000)] | None = None
    paillier: PaillierColumn | None = None  # set exactly when ``type`` is ``paillier``
    description: Annotated[str, Field(max_length=2_000)] = ""

    @field_validator("bounds", mode="before")
    @classmethod
    def _bounds_pair(cls, value: Any) -> Any:
        """Accept ``[lower, upper]`` as well as ``{"lower": .., "upper": ..}``."""
        if isinstance(value, list | tuple):
            if len(value) != 2:
                raise ValueError("bounds must be [lower, upper]")
            return {"lower": value[0], "upper": value[1]}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if self.bounds is not None and not self.type.numeric:
            raise ValueError(f"bounds are only for numeric columns, not {self.type.value}")
        if self.role is ColumnRole.SENSITIVE and self.type.numeric and self.bounds is None and self.domain is None:
            raise ValueError("a sensitive numeric column needs declared bounds (or a domain, if it is a coded category)")
        if (self.type is ColumnType.PAILLIER) != (self.paillier is not None):
            raise ValueError("a paillier column states its key and scale (paillier: {key, scale}), and only a paillier column does")
        if self.type is ColumnType.PAILLIER and (self.role is not ColumnRole.SENSITIVE or self.domain is not None):
            raise ValueError("a paillier column is sensitive and has no domain")
        if self.domain is not None and len(set(map(str, self.domain))) != len(self.domain):
            raise ValueError("domain values must be distinct")
        return self


class DatasetMeta(BaseModel):
    """What a steward sends with an upload (the ``meta`` part of ``POST /datasets``)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_NAME_LENGTH,
            description="table name used in queries (any printable Unicode; quote it in SQL when it is not a plain word)",
        ),
    ]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=5_000)] = ""
    level: Level
    privacy_unit: str
    columns: Annotated[dict[str, ColumnSpec], Field(min_length=1, max_length=1_000)]
    # How to read this upload's file; not part of the schema. Detected (CSV) or the first sheet (.xlsx) without them.
    encoding: Annotated[Encoding | None, Field(description="text encoding of a CSV file: utf-8, gbk or gb18030")] = None
    sheet: Annotated[str | None, Field(min_length=1, max_length=31, description="the sheet of an .xlsx workbook to read")] = None

    @field_validator("encoding", mode="before")
    @classmethod
    def _encoding(cls, value: Any) -> Any:
        return value.lower().replace("utf8", "utf-8") if isinstance(value, str) else value

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return Level.parse(value) if isinstance(value, str) else value

    @field_validator("name", mode="after")
    @classmethod
    def _name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem:
            raise ValueError(f"the dataset name {value!r} {problem}")
        return value

    @field_validator("columns", mode="after")
    @classmethod
    def _column_names(cls, value: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        """Every name acceptable (``core.names``), and no two that a query could not tell apart."""
        for name in value:
            problem = name_problem(name)
            if problem:
                raise ValueError(f"the column name {name!r} {problem}")
        for first, second in collisions(value):
            raise ValueError(
                f"the column names {first!r} and {second!r} differ only in case or Unicode normal form; "
                "queries match names without regard to either, so rename one"
            )
        return value

    @model_validator(mode="after")
    def _privacy_unit(self) -> DatasetMeta:
        if self.privacy_unit not in self.columns:
            raise ValueError(f"privacy_unit {self.privacy_unit!r} is not one of the declared columns")
        return self

    def schema_only(self) -> DatasetSchema:
        return DatasetSchema(privacy_unit=self.privacy_unit, columns=self.columns)


class DatasetSchema(BaseModel):
    """The schema of one dataset version: what policies are checked against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    privacy_unit: str
    columns: dict[str, ColumnSpec]

    def column(self, name: str) -> ColumnSpec | None:
        return self.columns.get(name)
