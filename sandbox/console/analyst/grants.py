"""The analyst's grants: each one's datasets, job kinds and columns, and on a DP grant its ε budget as a gauge.

Each grant goes through ``sandbox.api.services.grant_out`` and its budget through
``sandbox.api.grants.budget_out``, the functions that answer ``GET /api/v1/grants`` and
``GET /api/v1/grants/{id}/budget``: the page shows the grants of the analyst's organisation, as the
API does, and nothing more.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from core.values import Role
from sandbox.console.analyst.submission import grant_page
from sandbox.console.signin import signed_in
from sandbox.db import read_session
from sandbox.service import grants as grant_service
from sandbox.service.auth import Principal


def register(bp: Blueprint) -> None:
    @bp.route("/grants")
    @signed_in(Role.ANALYST)
    def my_grants(person: Principal) -> Any:
        session = read_session()
        shown = [grant_page(session, grant) for grant in grant_service.list_visible(session, person)]
        shown.reverse()  # newest first
        return render_template("grants.html", person=person, grants=shown)
