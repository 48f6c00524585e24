"""The admin's pages: organisations, users, API tokens and one-time password links.

Every list and change is a function of ``sandbox.api.identity`` that the API's endpoints call too, with
the form parsed into the API's own request model: the same validation, the same ledger events. A new
token or password link is shown once, in the answer to the form that made it (never in a redirect's
flashed message, which would travel in the session cookie), and is neither logged nor on the ledger.
"""

from __future__ import annotations

from typing import Any, TypeVar

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from pydantic import BaseModel

from core.errors import BadRequest, Conflict, NotFound, SandboxError
from core.values import ROLE_ORG_KINDS, OrgKind, Role
from sandbox.api import identity as admin_api
from sandbox.api.schemas import OrgIn, PasswordLinkIn, UserIn, UserOut
from sandbox.console.signin import signed_in
from sandbox.service.auth import Principal
from sandbox.service.validation import parse_model

ORG_KINDS = (OrgKind.BUREAU, OrgKind.ENTERPRISE, OrgKind.AUDIT)


def register(bp: Blueprint) -> None:
    @bp.route("/admin/orgs", methods=["GET", "POST"])
    @signed_in(Role.ADMIN)
    def admin_orgs(person: Principal) -> Any:
        error, form = None, {"name": "", "kind": ""}
        if request.method == "POST":
            form = {"name": request.form.get("name", "").strip(), "kind": request.form.get("kind", "")}
            try:
                created = admin_api.new_org(person, _parsed(OrgIn, form))
            except Conflict:
                error = _("An organisation of that name exists already.")
            except BadRequest:
                error = _("Give a name of 1 to 200 characters and a kind: bureau, enterprise or audit office.")
            else:
                flash(_("Organisation %(name)s created.", name=created.name))
                return redirect(url_for("console.admin_orgs"))
        page = render_template("admin_orgs.html", person=person, orgs=admin_api.orgs().items, kinds=ORG_KINDS, form=form, error=error)
        return page, 400 if error else 200

    @bp.route("/admin/users", methods=["GET", "POST"])
    @signed_in(Role.ADMIN)
    def admin_users(person: Principal) -> Any:
        error, created, form = None, None, {"name": "", "org_id": "", "role": ""}
        if request.method == "POST":
            form = {name: request.form.get(name, "").strip() for name in form}
            try:
                created = admin_api.new_user(person, _parsed(UserIn, form))
                form = dict.fromkeys(form, "")  # an empty form again: sent twice, it would make a second user
            except NotFound:
                error = _("Choose an organisation from the list.")
            except BadRequest as exc:
                error = _user_problem(exc)
        context = {"orgs": {o.id: o for o in admin_api.orgs().items}, "roles": list(Role), "role_kinds": ROLE_ORG_KINDS}
        page = render_template(
            "admin_users.html", person=person, users=admin_api.users().items, form=form, error=error, created=created, **context
        )
        return page, 400 if error else 201 if created else 200

    @bp.route("/admin/users/<user_id>", methods=["GET"])
    @signed_in(Role.ADMIN)
    def admin_user(person: Principal, user_id: str) -> Any:
        return _user_page(person, user_id)

    @bp.route("/admin/users/<user_id>/tokens", methods=["POST"])
    @signed_in(Role.ADMIN)
    def admin_new_token(person: Principal, user_id: str) -> Any:
        issued = admin_api.new_token(person, user_id)
        return _user_page(person, user_id, token=issued.token, status=201)

    @bp.route("/admin/users/<user_id>/tokens/<token_id>/revoke", methods=["POST"])
    @signed_in(Role.ADMIN)
    def admin_revoke_token(person: Principal, user_id: str, token_id: str) -> Any:
        admin_api.revoke(person, user_id, token_id)
        flash(_("Token %(id)s revoked: programs using it are refused from now on.", id=token_id[:8]))
        return redirect(url_for("console.admin_user", user_id=user_id))

    @bp.route("/admin/users/<user_id>/password-link", methods=["POST"])
    @signed_in(Role.ADMIN)
    def admin_password_link(person: Principal, user_id: str) -> Any:
        login = request.form.get("login", "").strip()
        try:
            link = admin_api.new_password_link(person, user_id, _parsed(PasswordLinkIn, {"login": login}))
        except Conflict:
            return _user_page(person, user_id, login=login, error=_("Another person signs in with that login already."), status=409)
        except BadRequest:
            error = _("A login has 2 to 64 characters: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit.")
            return _user_page(person, user_id, login=login, error=error, status=400)
        return _user_page(person, user_id, login=login, link=link, status=201)


M = TypeVar("M", bound=BaseModel)


def _parsed(model: type[M], form: dict[str, str]) -> M:
    return parse_model(model, form, "form")


def _user_problem(exc: SandboxError) -> str:
    fields = {str(p.get("field", "")) for p in exc.details.get("problems", [])} | {str(exc.details.get("field", ""))}
    if "role" in fields:
        return str(_("Choose a role the organisation's kind allows (see the table of roles)."))
    if "org_id" in fields:
        return str(_("Choose an organisation from the list."))
    return str(_("Give a name of 1 to 200 characters."))


def _user_page(person: Principal, user_id: str, status: int = 200, **shown: Any) -> tuple[str, int]:
    """One user's page: their tokens (ids and dates only) and the forms; ``shown`` a secret just made, or a form's error."""
    user = _user(user_id)
    org = next((o for o in admin_api.orgs().items if o.id == user.org_id), None)
    context = {"token": None, "link": None, "error": None, "login": ""} | shown
    page = render_template("admin_user.html", person=person, user=user, org=org, tokens=admin_api.tokens(user_id).items, **context)
    return page, status


def _user(user_id: str) -> UserOut:
    found = next((u for u in admin_api.users().items if u.id == user_id), None)
    if found is None:
        raise NotFound("no such user")
    return found
