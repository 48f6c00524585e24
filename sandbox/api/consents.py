"""Consent lists of a grant: the bureau's steward registers and revokes, the parties read (docs/homomorphic-jobs.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from flask import Blueprint
from pydantic import BaseModel, Field

from core.values import Role
from jobs.he.score import Entity
from sandbox.api.routing import endpoint
from sandbox.api.schemas import Strict
from sandbox.api.services import ledger
from sandbox.db import read_session, writing
from sandbox.service import consents
from sandbox.service.auth import Principal

STEWARD = frozenset({Role.STEWARD})
PARTIES = frozenset({Role.ANALYST, Role.STEWARD, Role.AUDITOR})
Entities = Annotated[list[Entity], Field(min_length=1, max_length=consents.MAX_ENTITIES_PER_REQUEST)]


class _EntityList(Strict):
    entities: Annotated[Entities, Field(description="the dataset's privacy-unit identifiers, as text; duplicates count once")]


class ConsentsIn(_EntityList):
    valid_until: Annotated[datetime, Field(description="ISO 8601, in the future; without an offset it is read as UTC")]


class RevokeConsentsIn(_EntityList):
    pass


class ConsentsRegistered(BaseModel):
    grant_id: str
    entities: Annotated[int, Field(description="distinct entities in the request")]
    registered: Annotated[int, Field(description="entities without an unrevoked consent before: a new consent")]
    renewed: Annotated[int, Field(description="entities whose unrevoked consent now runs until valid_until")]
    valid_until: datetime
    entities_sha256: Annotated[str, Field(description="SHA-256 of the sorted distinct identifiers as JSON, as on the ledger")]


class ConsentsRevoked(BaseModel):
    grant_id: str
    entities: Annotated[int, Field(description="distinct entities in the request")]
    revoked: Annotated[int, Field(description="entities whose consent was revoked")]
    without_consent: Annotated[int, Field(description="entities that had no unrevoked consent")]
    entities_sha256: Annotated[str, Field(description="SHA-256 of the sorted distinct identifiers as JSON, as on the ledger")]


class ConsentsQuery(Strict):
    after: Annotated[Entity | None, Field(description="the last entity of the previous page")] = None
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1_000


class ConsentItem(BaseModel):
    entity: str
    status: consents.ConsentStatus
    valid_until: datetime
    registered_at: datetime
    revoked_at: datetime | None


class ConsentsOut(BaseModel):
    grant_id: str
    counts: Annotated[dict[consents.ConsentStatus, int], Field(description="entities per status")]
    items: Annotated[list[ConsentItem] | None, Field(description="null for the enterprise owning the grant: it sees counts only")]
    next_after: str | None


def register(bp: Blueprint) -> None:
    @endpoint(
        bp,
        "/grants/<grant_id>/consents",
        "POST",
        summary="Register entities' consent to be scored under the grant, until valid_until",
        roles=STEWARD,
        body=ConsentsIn,
        response=ConsentsRegistered,
        status=201,
        errors=(400, 401, 403, 404, 409),
    )
    def register_consents(caller: Principal, grant_id: str, body: ConsentsIn) -> ConsentsRegistered:
        with writing() as session:
            return ConsentsRegistered.model_validate(
                consents.register(session, ledger(), caller, grant_id, body.entities, body.valid_until)
            )

    @endpoint(
        bp,
        "/grants/<grant_id>/consents",
        "GET",
        summary="The consent list: each entity's status (bureau, auditors) or counts only (the grant's enterprise)",
        roles=PARTIES,
        query=ConsentsQuery,
        response=ConsentsOut,
        errors=(400, 401, 403, 404),
    )
    def list_consents(caller: Principal, grant_id: str, query: ConsentsQuery) -> ConsentsOut:
        if caller.role is Role.ANALYST:
            return ConsentsOut.model_validate(consents.view(read_session(), ledger(), caller, grant_id, query.after, query.limit))
        with writing() as session:
            return ConsentsOut.model_validate(consents.view(session, ledger(), caller, grant_id, query.after, query.limit))

    @endpoint(
        bp,
        "/grants/<grant_id>/consents/revoke",
        "POST",
        summary="Revoke entities' consents; no job releases their scores afterwards",
        roles=STEWARD,
        body=RevokeConsentsIn,
        response=ConsentsRevoked,
        errors=(400, 401, 403, 404),
    )
    def revoke_consents(caller: Principal, grant_id: str, body: RevokeConsentsIn) -> ConsentsRevoked:
        with writing() as session:
            return ConsentsRevoked.model_validate(consents.revoke(session, ledger(), caller, grant_id, body.entities))
