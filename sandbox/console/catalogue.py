"""The catalogue as people see it: search and filters over the API's own catalogue entries (metadata and mock rows, never a value).

Each entry goes through ``sandbox.api.services.dataset_out``, the function that answers
``GET /api/v1/datasets``: the counts are rounded for analysts exactly as the API rounds them, and the
page can show nothing the API would not show the same person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, render_template, request
from sqlalchemy import select

from core.errors import NotFound
from core.schema import DatasetSchema
from core.values import ColumnRole, Level, OrgKind
from jobs.mock import mock_rows
from sandbox.api.schemas import DatasetOut
from sandbox.api.services import dataset_out
from sandbox.console.signin import is_htmx, signed_in
from sandbox.db import read_session
from sandbox.models import Dataset, Org
from sandbox.service.auth import Principal

MOCK_ROWS = 10  # rows of mock data on a dataset's page
MOCK_SEED = 0


@dataclass(frozen=True)
class Filters:
    text: str
    bureau: str
    level: str
    column_role: str

    @classmethod
    def from_args(cls) -> Filters:
        args = request.args
        level = args.get("level", "")
        role = args.get("column_role", "")
        return cls(
            text=args.get("q", "").strip()[:200],
            bureau=args.get("bureau", "")[:36],
            level=level if level in {lv.value for lv in Level} else "",
            column_role=role if role in {r.value for r in ColumnRole} else "",
        )

    def keep(self, entry: DatasetOut) -> bool:
        if self.bureau and entry.org_id != self.bureau:
            return False
        if self.level and entry.level != self.level:
            return False
        if self.column_role and all(column.role.value != self.column_role for column in entry.columns.values()):
            return False
        return not self.text or self._matches(entry)

    def _matches(self, entry: DatasetOut) -> bool:
        needle = self.text.casefold()
        haystack = [entry.name, entry.title, entry.description, *entry.columns]
        haystack += [column.description or "" for column in entry.columns.values()]
        return any(needle in text.casefold() for text in haystack)


def register(bp: Blueprint) -> None:
    @bp.route("/catalogue")
    @signed_in()
    def catalogue(person: Principal) -> Any:
        session = read_session()
        filters = Filters.from_args()
        entries = [dataset_out(d, person) for d in session.scalars(select(Dataset).order_by(Dataset.name))]
        shown = [entry for entry in entries if filters.keep(entry)]
        bureaus = {org.id: org.name for org in session.scalars(select(Org).where(Org.kind == OrgKind.BUREAU.value).order_by(Org.name))}
        context = {"person": person, "entries": shown, "total": len(entries), "filters": filters, "bureaus": bureaus}
        context |= {"levels": [lv.value for lv in Level], "column_roles": list(ColumnRole)}
        template = "catalogue_results.html" if is_htmx(request) else "catalogue.html"
        return render_template(template, **context)

    @bp.route("/catalogue/<dataset_id>")
    @signed_in()
    def dataset(person: Principal, dataset_id: str) -> Any:
        session = read_session()
        row = session.get(Dataset, dataset_id)
        if row is None:
            raise NotFound("no such dataset")
        entry = dataset_out(row, person)
        bureau = session.get(Org, row.org_id)
        schema = DatasetSchema.model_validate(row.current.schema)
        rows = mock_rows(schema, min(MOCK_ROWS, int(current_app.config["MOCK_MAX_ROWS"])), MOCK_SEED)
        return render_template(
            "dataset.html", person=person, entry=entry, bureau=bureau.name if bureau else "", columns=list(schema.columns), rows=rows
        )
