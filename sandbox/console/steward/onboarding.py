"""The steward's datasets: onboarding (upload with suggested column roles), versions and ε caps.

Every write goes through the service and the validation the API uses for the same request: the form
becomes the ``meta`` of ``POST /api/v1/datasets`` and is read by ``parse_meta``; the file is read by
``uploaded_file``; ``Datasets.create``/``add_version`` and ``budget.set_cap`` do the work. A refusal
shows the API's message on the page (its field named), with the API's status.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from core.errors import NotFound, SandboxError
from core.values import ColumnRole, ColumnType, Encoding, Level, Role
from sandbox.api.datasets import uploaded_file
from sandbox.api.routing import json_limits
from sandbox.api.schemas import EpsilonCapIn
from sandbox.api.services import dataset_out, datasets, ledger
from sandbox.console.signin import signed_in
from sandbox.console.steward import suggest
from sandbox.console.steward.steward_forms import Refusal, attempt, refuse_nul
from sandbox.db import read_session, writing
from sandbox.models import Dataset
from sandbox.service import budget
from sandbox.service.auth import Principal
from sandbox.service.datasets import ingest_limits, parse_meta
from sandbox.service.validation import parse_model

MAX_FORM_COLUMNS = 1_000  # as DatasetMeta allows
META_FIELDS = ("name", "title", "description", "level", "privacy_unit", "encoding")
REASONS = {
    suggest.Reason.CREDIT_CODE: _l("values are unified social credit codes (统一社会信用代码) with valid check characters"),
    suggest.Reason.RESIDENT_ID: _l("values are resident ID numbers (身份证号) with valid check digits"),
    suggest.Reason.MOBILE: _l("values are mobile phone numbers (手机号)"),
    suggest.Reason.IDENTIFIER_NAME: _l("the name says it identifies someone"),
    suggest.Reason.QUASI_NAME: _l("the name is of a trait that helps single someone out"),
    suggest.Reason.FEW_VALUES: _l("few distinct values: a category"),
    suggest.Reason.NUMBER: _l("a measured number: declare its bounds"),
    suggest.Reason.TEXT: _l("free text"),
    suggest.Reason.EMPTY: _l("no value in the sample"),
}


def columns_from_form(form: MultiDict[str, str]) -> list[dict[str, str]]:
    """The column rows of the upload form, as the steward left them."""
    try:
        count = min(int(form.get("columns", "0")), MAX_FORM_COLUMNS)
    except ValueError:
        count = 0
    keys = ("name", "role", "type", "lower", "upper", "domain", "description")
    return [{key: form.get(f"col-{i}-{key}", "").strip() for key in keys} for i in range(count)]


def meta_from_form(form: MultiDict[str, str]) -> dict[str, Any]:
    """The form as the JSON ``meta`` of ``POST /datasets``: values as typed, for the model to judge."""
    meta: dict[str, Any] = {key: form.get(key, "").strip() for key in META_FIELDS}
    if not meta["encoding"]:
        del meta["encoding"]
    meta["columns"] = {row["name"]: _column_spec(row) for row in columns_from_form(form)}
    return meta


def _column_spec(row: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"role": row["role"], "type": row["type"], "description": row["description"]}
    if row["lower"] or row["upper"]:
        spec["bounds"] = [row["lower"], row["upper"]]
    if row["domain"]:
        spec["domain"] = [_scalar(value.strip(), row["type"]) for value in row["domain"].split(",") if value.strip()]
    return spec


def _scalar(text: str, column_type: str) -> int | float | str | bool:
    """A domain value as the column's type reads it; as text when it does not (the model then says why)."""
    try:
        if column_type == ColumnType.INT:
            return int(text)
        if column_type == ColumnType.FLOAT:
            return float(text)
    except ValueError:
        return text
    if column_type == ColumnType.BOOL and text.lower() in {"true", "false"}:
        return text.lower() == "true"
    return text


def _bureau_dataset(person: Principal, dataset_id: str) -> Dataset:
    """A dataset of the steward's bureau; another bureau's is not on these pages (404, like an unknown id)."""
    row = read_session().get(Dataset, dataset_id)
    if row is None or row.org_id != person.org_id:
        raise NotFound("no such dataset")
    return row


def _form_context(form: MultiDict[str, str], columns: list[dict[str, str]], refusal: Refusal | None = None) -> dict[str, Any]:
    return {
        "form": form,
        "columns": columns,
        "refusal": refusal,
        "levels": [level.value for level in Level],
        "roles": list(ColumnRole),
        "types": [t for t in ColumnType if t is not ColumnType.PAILLIER],
        "encodings": [e.value for e in Encoding],
        "reasons": REASONS,
    }


def register(bp: Blueprint) -> None:
    @bp.route("/steward/datasets")
    @signed_in(Role.STEWARD)
    def steward_datasets(person: Principal) -> Any:
        rows = read_session().scalars(select(Dataset).where(Dataset.org_id == person.org_id).order_by(Dataset.name))
        return render_template("steward_datasets.html", person=person, entries=[dataset_out(row, person) for row in rows])

    @bp.route("/steward/datasets/new", methods=["GET", "POST"])
    @signed_in(Role.STEWARD)
    def new_dataset(person: Principal) -> Any:
        if request.method == "GET":
            return render_template("steward_upload.html", person=person, **_form_context(MultiDict(), []))
        refuse_nul()
        try:
            filename, data = uploaded_file()
            meta = parse_meta(json.dumps(meta_from_form(request.form), ensure_ascii=False), json_limits())
            created = datasets().create(person, meta, filename, data)
        except SandboxError as exc:
            refusal = Refusal.of(exc)
            context = _form_context(request.form, columns_from_form(request.form), refusal)
            return render_template("steward_upload.html", person=person, **context), refusal.status
        flash(_("The dataset %(name)s is on the shelf.", name=created.name))
        return redirect(url_for("console.steward_dataset", dataset_id=created.id))

    @bp.route("/steward/datasets/suggest", methods=["POST"])
    @signed_in(Role.STEWARD)
    def suggest_roles(person: Principal) -> Any:
        """The column rows of the form, proposed from the file's header and a sample; nothing of the file is kept or echoed."""
        try:
            filename, data = uploaded_file()
            found = suggest.suggest(suggest.sample(filename, data, ingest_limits(current_app.config)))
        except SandboxError as exc:
            return render_template("steward_columns.html", refusal=Refusal.of(exc), columns=[], form=MultiDict(), **_choices())
        columns = [{"name": s.name, "role": s.role.value, "type": s.type.value, "reason": s.reason.value} for s in found]
        unit = next((s.name for s in found if s.role is ColumnRole.IDENTIFIER), found[0].name if found else "")
        return render_template("steward_columns.html", refusal=None, columns=columns, form=MultiDict({"privacy_unit": unit}), **_choices())

    @bp.route("/steward/datasets/<dataset_id>")
    @signed_in(Role.STEWARD)
    def steward_dataset(person: Principal, dataset_id: str) -> Any:
        return _dataset_page(person, _bureau_dataset(person, dataset_id))

    @bp.route("/steward/datasets/<dataset_id>/versions", methods=["POST"])
    @signed_in(Role.STEWARD)
    def new_version(person: Principal, dataset_id: str) -> Any:
        row = _bureau_dataset(person, dataset_id)
        refuse_nul()
        try:
            filename, data = uploaded_file()
            datasets().add_version(person, row.id, None, filename, data)
        except SandboxError as exc:
            return _dataset_page(person, row, version_refusal=Refusal.of(exc))
        flash(_("A new version is uploaded."))
        return redirect(url_for("console.steward_dataset", dataset_id=row.id))

    @bp.route("/steward/datasets/<dataset_id>/epsilon-cap", methods=["POST"])
    @signed_in(Role.STEWARD)
    def epsilon_cap(person: Principal, dataset_id: str) -> Any:

        def set_cap() -> None:
            body = parse_model(EpsilonCapIn, {"epsilon_cap": request.form.get("epsilon_cap", "").strip()}, "request body")
            with writing() as session:
                budget.set_cap(session, ledger(), person, dataset_id, body.epsilon_cap)

        refusal = attempt(set_cap)
        if refusal is not None:
            return _dataset_page(person, _bureau_dataset(person, dataset_id), cap_refusal=refusal)
        flash(_("The privacy budget cap is set."))
        return redirect(url_for("console.steward_dataset", dataset_id=dataset_id))


def _choices() -> dict[str, Any]:
    return {k: v for k, v in _form_context(MultiDict(), []).items() if k in {"roles", "types", "reasons"}}


def _dataset_page(person: Principal, row: Dataset, version_refusal: Refusal | None = None, cap_refusal: Refusal | None = None) -> Any:
    refusal = version_refusal or cap_refusal
    spent = budget.dataset_spent(read_session(), row.id)
    return render_template(
        "steward_dataset.html",
        person=person,
        entry=dataset_out(row, person),
        epsilon_cap=row.epsilon_cap,
        epsilon_spent=float(spent),
        version_refusal=version_refusal,
        cap_refusal=cap_refusal,
    ), (refusal.status if refusal else 200)
