"""The caller's own identity (any role); organisations, users, their tokens and console password links (admin)."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, current_app, url_for
from sqlalchemy import select

from core.values import Role
from sandbox.api.routing import ANY_ROLE, endpoint
from sandbox.api.schemas import (
    Me,
    OrgIn,
    OrgList,
    OrgOut,
    PasswordLinkIn,
    PasswordLinkOut,
    TokenInfo,
    TokenList,
    TokenOut,
    UserCreated,
    UserIn,
    UserList,
    UserOut,
)
from sandbox.api.services import ledger
from sandbox.db import read_session, writing
from sandbox.models import Org, User
from sandbox.service import identity, people
from sandbox.service.auth import Principal

ADMIN = frozenset({Role.ADMIN})


def register(bp: Blueprint) -> None:
    @endpoint(bp, "/me", "GET", summary="The caller: user, role and organisation", roles=ANY_ROLE, response=Me, errors=(401,))
    def me(caller: Principal) -> Me:
        org = read_session().get(Org, caller.org_id)
        assert org is not None
        return Me(id=caller.user_id, name=caller.name, role=caller.role, org_id=caller.org_id, org_kind=caller.org_kind, org_name=org.name)

    @endpoint(
        bp,
        "/orgs",
        "POST",
        summary="Create an organisation",
        roles=ADMIN,
        body=OrgIn,
        response=OrgOut,
        status=201,
        errors=(400, 401, 403, 409),
    )
    def create_org(caller: Principal, body: OrgIn) -> OrgOut:
        return new_org(caller, body)

    @endpoint(bp, "/orgs", "GET", summary="List organisations", roles=ADMIN, response=OrgList, errors=(401, 403))
    def list_orgs(caller: Principal) -> OrgList:
        return orgs()

    @endpoint(
        bp,
        "/users",
        "POST",
        summary="Create a user; the token is shown once",
        roles=ADMIN,
        body=UserIn,
        response=UserCreated,
        status=201,
        errors=(400, 401, 403, 404),
    )
    def create_user(caller: Principal, body: UserIn) -> UserCreated:
        return new_user(caller, body)

    @endpoint(bp, "/users", "GET", summary="List users", roles=ADMIN, response=UserList, errors=(401, 403))
    def list_users(caller: Principal) -> UserList:
        return users()

    @endpoint(
        bp,
        "/users/<user_id>/tokens",
        "POST",
        summary="Issue another token for a user (shown once)",
        roles=ADMIN,
        response=TokenOut,
        status=201,
        errors=(401, 403, 404),
    )
    def issue_token(caller: Principal, user_id: str) -> TokenOut:
        return new_token(caller, user_id)

    @endpoint(
        bp,
        "/users/<user_id>/tokens",
        "GET",
        summary="A user's tokens: ids and dates, never a token",
        roles=ADMIN,
        response=TokenList,
        errors=(401, 403, 404),
    )
    def list_tokens(caller: Principal, user_id: str) -> TokenList:
        return tokens(user_id)

    @endpoint(bp, "/users/<user_id>/tokens/<token_id>", "DELETE", summary="Revoke a token", roles=ADMIN, errors=(401, 403, 404))
    def revoke_token(caller: Principal, user_id: str, token_id: str) -> dict[str, str]:
        return revoke(caller, user_id, token_id)

    @endpoint(
        bp,
        "/users/<user_id>/password-link",
        "POST",
        summary="Issue a one-time link with which the user sets a console password (shown once; voids earlier links)",
        roles=ADMIN,
        body=PasswordLinkIn,
        response=PasswordLinkOut,
        status=201,
        errors=(400, 401, 403, 404, 409),
    )
    def password_link(caller: Principal, user_id: str, body: PasswordLinkIn) -> PasswordLinkOut:
        return new_password_link(caller, user_id, body)


# The admin's work, one function per endpoint: the API's views and the console's admin pages call these.


def orgs() -> OrgList:
    found = read_session().scalars(select(Org).order_by(Org.created_at))
    return OrgList(items=[OrgOut.model_validate(o, from_attributes=True) for o in found])


def new_org(caller: Principal, body: OrgIn) -> OrgOut:
    with writing() as session:
        org = identity.create_org(session, ledger(), caller.user_id, body.name, body.kind)
        return OrgOut.model_validate(org, from_attributes=True)


def users() -> UserList:
    found = read_session().scalars(select(User).order_by(User.created_at))
    return UserList(items=[UserOut.model_validate(u, from_attributes=True) for u in found])


def new_user(caller: Principal, body: UserIn) -> UserCreated:
    """A user and their first token (shown once)."""
    with writing() as session:
        user, row, token = identity.create_user(session, ledger(), caller.user_id, body.name, body.org_id, body.role)
        out = UserOut.model_validate(user, from_attributes=True)
        return UserCreated(**out.model_dump(), token=token, token_id=row.id)


def tokens(user_id: str) -> TokenList:
    return TokenList(items=[TokenInfo.model_validate(t, from_attributes=True) for t in identity.tokens_of(read_session(), user_id)])


def new_token(caller: Principal, user_id: str) -> TokenOut:
    with writing() as session:
        row, token = identity.new_token(session, ledger(), caller.user_id, user_id)
        return TokenOut(id=row.id, user_id=user_id, token=token)


def revoke(caller: Principal, user_id: str, token_id: str) -> dict[str, str]:
    with writing() as session:
        row = identity.revoke_token(session, ledger(), caller.user_id, user_id, token_id)
        return {"id": row.id, "status": "revoked"}


def new_password_link(caller: Principal, user_id: str, body: PasswordLinkIn) -> PasswordLinkOut:
    """A one-time link to the console's set-password page (shown once; earlier links of the user are void)."""
    lifetime = timedelta(seconds=int(current_app.config["PASSWORD_LINK_SECONDS"]))
    with writing() as session:
        link, token = people.issue_link(session, ledger(), caller.user_id, user_id, body.login, lifetime)
        url = url_for("console.set_password", token=token, _external=True)
        return PasswordLinkOut(user_id=user_id, login=body.login, url=url, expires_at=link.expires_at)
