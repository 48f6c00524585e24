"""Grants: analysts request, stewards decide; visible only to the parties and to auditors."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy.orm import Session

from core.values import Role
from sandbox.api.routing import endpoint
from sandbox.api.schemas import ApproveIn, BudgetOut, GrantIn, GrantList, GrantOut, ReasonIn
from sandbox.api.services import grant_out, ledger
from sandbox.db import read_session, writing
from sandbox.models import Grant
from sandbox.service import budget, grants
from sandbox.service.auth import Principal

ANALYST = frozenset({Role.ANALYST})
STEWARD = frozenset({Role.STEWARD})
PARTIES = frozenset({Role.ANALYST, Role.STEWARD, Role.AUDITOR})


def budget_out(session: Session, grant: Grant) -> BudgetOut:
    """``GET /grants/{id}/budget`` of a grant the caller sees (every field null when its policy has no dp)."""
    return BudgetOut.model_validate(budget.view(session, grant) or {})


def register(bp: Blueprint) -> None:
    @endpoint(
        bp,
        "/grants",
        "POST",
        summary="Request a grant for a scenario",
        roles=ANALYST,
        body=GrantIn,
        response=GrantOut,
        status=201,
        errors=(400, 401, 403, 404),
    )
    def request_grant(caller: Principal, body: GrantIn) -> GrantOut:
        with writing() as session:
            requested = body.requested.model_dump(mode="json", exclude_none=True)
            grant = grants.request_grant(session, ledger(), caller, body.dataset_ids, body.scenario, requested)
            return grant_out(grant)

    @endpoint(bp, "/grants", "GET", summary="Grants visible to the caller", roles=PARTIES, response=GrantList, errors=(401, 403))
    def list_grants(caller: Principal) -> GrantList:
        return GrantList(items=[grant_out(g) for g in grants.list_visible(read_session(), caller)])

    @endpoint(
        bp,
        "/grants/<grant_id>",
        "GET",
        summary="One grant with its policy and status",
        roles=PARTIES,
        response=GrantOut,
        errors=(401, 403, 404),
    )
    def get_grant(caller: Principal, grant_id: str) -> GrantOut:
        return grant_out(grants.get_visible(read_session(), caller, grant_id))

    @endpoint(
        bp,
        "/grants/<grant_id>/budget",
        "GET",
        summary="The grant's privacy budget: total, spent, remaining, and its datasets' global caps (null without dp)",
        roles=PARTIES,
        response=BudgetOut,
        errors=(401, 403, 404),
    )
    def get_budget(caller: Principal, grant_id: str) -> BudgetOut:
        session = read_session()
        return budget_out(session, grants.get_visible(session, caller, grant_id))

    @endpoint(
        bp,
        "/grants/<grant_id>/approve",
        "POST",
        summary="Approve with a policy and an expiry",
        roles=STEWARD,
        body=ApproveIn,
        response=GrantOut,
        errors=(400, 401, 403, 404, 409),
    )
    def approve(caller: Principal, grant_id: str, body: ApproveIn) -> GrantOut:
        with writing() as session:
            return grant_out(grants.approve(session, ledger(), caller, grant_id, body.policy, body.expires_at))

    @endpoint(
        bp,
        "/grants/<grant_id>/reject",
        "POST",
        summary="Reject a requested grant, with a reason",
        roles=STEWARD,
        body=ReasonIn,
        response=GrantOut,
        errors=(400, 401, 403, 404, 409),
    )
    def reject(caller: Principal, grant_id: str, body: ReasonIn) -> GrantOut:
        with writing() as session:
            return grant_out(grants.reject(session, ledger(), caller, grant_id, body.reason))

    @endpoint(
        bp,
        "/grants/<grant_id>/revoke",
        "POST",
        summary="Revoke an approved grant, with a reason",
        roles=STEWARD,
        body=ReasonIn,
        response=GrantOut,
        errors=(400, 401, 403, 404, 409),
    )
    def revoke(caller: Principal, grant_id: str, body: ReasonIn) -> GrantOut:
        with writing() as session:
            return grant_out(grants.revoke(session, ledger(), caller, grant_id, body.reason))
