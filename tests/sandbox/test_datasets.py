"""Datasets in, encrypted: validation errors that name the column, storage that hides every value."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from flask import Flask

from sandbox.models import Dataset
from sandbox.service.datasets import catalogue_count
from tests.conftest import PUMS_META, World, auth, data_file


def _meta(**changes: Any) -> dict[str, Any]:
    meta = copy.deepcopy(PUMS_META)
    meta.update(changes)
    return meta


def _csv(text: str) -> bytes:
    return text.encode("utf-8")


def _post(world: World, meta: Any, content: bytes, filename: str = "data.csv") -> Any:
    return world.client.post(
        "/api/v1/datasets",
        headers=auth(world.steward),
        data={"meta": meta if isinstance(meta, str) else json.dumps(meta), "file": (io.BytesIO(content), filename)},
        content_type="multipart/form-data",
    )


PUMS_BYTES = data_file("smartnoise-sdk/PUMS_pid.csv").read_bytes()
HEADER = "age,sex,educ,race,income,married,pid\n"


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _with_column(meta: dict[str, Any], name: str, spec: dict[str, Any]) -> dict[str, Any]:
    meta = copy.deepcopy(meta)
    meta["columns"][name] = spec
    return meta


# (id, meta, file bytes, filename, expected status, the column or field the error must name)
BAD_UPLOADS = [
    (
        "unknown-column-in-file",
        _meta(columns={k: v for k, v in PUMS_META["columns"].items() if k != "married"}),
        PUMS_BYTES,
        "p.csv",
        400,
        "#6",  # by position: a header is the file's text (in a file without one, its first row)
    ),
    (
        "declared-column-missing",
        _with_column(PUMS_META, "region", {"role": "attribute", "type": "string"}),
        PUMS_BYTES,
        "p.csv",
        400,
        "region",
    ),
    ("bad-role", _with_column(PUMS_META, "married", {"role": "secret", "type": "int"}), PUMS_BYTES, "p.csv", 400, "columns.married.role"),
    (
        "bad-type",
        _with_column(PUMS_META, "married", {"role": "attribute", "type": "decimal"}),
        PUMS_BYTES,
        "p.csv",
        400,
        "columns.married.type",
    ),
    ("missing-privacy-unit", {k: v for k, v in PUMS_META.items() if k != "privacy_unit"}, PUMS_BYTES, "p.csv", 400, "privacy_unit"),
    ("privacy-unit-not-a-column", _meta(privacy_unit="person"), PUMS_BYTES, "p.csv", 400, "person"),
    (
        "sensitive-without-bounds",
        _with_column(PUMS_META, "income", {"role": "sensitive", "type": "int"}),
        PUMS_BYTES,
        "p.csv",
        400,
        "columns.income",
    ),
    (
        "bounds-violated",
        _with_column(PUMS_META, "income", {"role": "sensitive", "type": "int", "bounds": [0, 100000]}),
        PUMS_BYTES,
        "p.csv",
        400,
        "income",
    ),
    (
        "bounds-reversed",
        _with_column(PUMS_META, "age", {"role": "quasi_identifier", "type": "int", "bounds": [100, 0]}),
        PUMS_BYTES,
        "p.csv",
        400,
        "columns.age.bounds",
    ),
    (
        "bounds-on-string",
        _with_column(PUMS_META, "married", {"role": "attribute", "type": "string", "bounds": [0, 1]}),
        PUMS_BYTES,
        "p.csv",
        400,
        "columns.married",
    ),
    (
        "domain-violated",
        _with_column(PUMS_META, "race", {"role": "quasi_identifier", "type": "int", "domain": [1, 2, 3]}),
        PUMS_BYTES,
        "p.csv",
        400,
        "race",
    ),
    ("wrong-type-in-data", _meta(), _csv(HEADER + "40,1,9,1,1000,1,1\nforty,0,9,1,2000,0,2\n"), "p.csv", 400, "age"),
    ("null-privacy-unit", _meta(), _csv(HEADER + "40,1,9,1,1000,1,1\n41,0,9,1,2000,0,\n"), "p.csv", 400, "pid"),
    ("bad-level", _meta(level="secret"), PUMS_BYTES, "p.csv", 400, "level"),
    ("bad-name", _meta(name="Drop\tTable"), PUMS_BYTES, "p.csv", 400, "name"),
    ("reserved-name", _meta(name="__units_0"), PUMS_BYTES, "p.csv", 400, "name"),
    ("meta-not-json", "{name: pums", PUMS_BYTES, "p.csv", 400, "meta"),
    ("csv-that-is-parquet", _meta(), _parquet(pacsv.read_csv(io.BytesIO(PUMS_BYTES))), "p.csv", 400, "file"),
    ("parquet-that-is-csv", _meta(), PUMS_BYTES, "p.parquet", 400, "file"),
    ("binary-named-csv", _meta(), b"\x00\x01\x02garbage\x00", "p.csv", 400, "file"),
    ("not-utf8", _meta(), HEADER.encode() + "40,1,9,1,1000,1,1\n".encode("utf-16"), "p.csv", 400, "file"),
    ("ragged-rows", _meta(), _csv(HEADER + "40,1,9,1,1000,1,1\n41,0,9\n"), "p.csv", 400, "file"),
    ("no-rows", _meta(), _csv(HEADER), "p.csv", 400, "*"),
    ("empty-file", _meta(), b"", "p.csv", 400, "file"),
    ("csv-named-xlsx", _meta(), PUMS_BYTES, "p.xlsx", 400, "file"),
    ("unknown-extension", _meta(), PUMS_BYTES, "p.json", 400, "file"),
    ("txt-is-not-csv", _meta(), PUMS_BYTES, "p.txt", 400, "file"),
    ("duplicate-header", _meta(), _csv("age,age,educ,race,income,married,pid\n1,2,3,4,5,0,1\n"), "p.csv", 400, "age"),
]


@pytest.mark.parametrize(("meta", "content", "filename", "status", "names"), [c[1:] for c in BAD_UPLOADS], ids=[c[0] for c in BAD_UPLOADS])
def test_bad_upload_is_refused_with_a_clear_error(
    world: World, app: Flask, meta: Any, content: bytes, filename: str, status: int, names: str
) -> None:
    response = _post(world, meta, content, filename)
    assert response.status_code == status, response.json
    error = response.json["error"]
    assert error["code"] == "validation_error"
    assert names in json.dumps(error, ensure_ascii=False)
    _assert_nothing_stored(world, app)


def _assert_nothing_stored(world: World, app: Flask) -> None:
    assert world.client.get("/api/v1/datasets", headers=auth(world.steward)).json["items"] == []
    data_dir = Path(app.config["INSTANCE_PATH"]) / "data"
    assert not data_dir.exists() or not any(p.is_file() for p in data_dir.rglob("*"))


def test_errors_never_echo_file_values(world: World) -> None:
    secret = "987654321"
    response = _post(world, _meta(), _csv(HEADER + f"40,1,9,1,{secret},1,1\n41,0,9,1,2000,0,notanumber{secret}\n"))
    assert response.status_code == 400
    assert secret not in response.get_data(as_text=True)


def test_a_file_without_a_header_row_is_refused_without_quoting_its_first_row(world: World) -> None:
    first_row = "41,1,9,1,987654,1,31337"
    response = _post(world, _meta(), _csv(first_row + "\n40,0,9,1,2000,0,2\n"))
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "987654" not in text
    assert "31337" not in text
    problems = response.json["error"]["details"]["problems"]
    assert {"column": "#1", "problem": "column 1 of the file has a header that names no declared column"} in problems
    assert {"column": "pid", "problem": "is declared but not in the file"} in problems


def test_duplicate_name_is_a_conflict(world: World, pums: dict[str, Any]) -> None:
    response = _post(world, _meta(), PUMS_BYTES, "pums.csv")
    assert response.status_code == 409
    assert response.json["error"]["code"] == "conflict"


def test_oversize_upload_is_413(world: World, app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    response = _post(world, _meta(), PUMS_BYTES, "pums.csv")
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_large"
    _assert_nothing_stored(world, app)


def test_upload_registers_schema_counts_and_level(pums: dict[str, Any]) -> None:
    assert pums["name"] == "pums"
    assert pums["level"] == "重要"
    assert pums["row_count"] == 1000
    assert pums["unit_count"] == 1000
    assert pums["privacy_unit"] == "pid"
    assert pums["columns"]["income"]["role"] == "sensitive"
    assert pums["columns"]["income"]["bounds"] == {"lower": 0, "upper": 500000}
    assert [v["number"] for v in pums["versions"]] == [1]


def test_parquet_upload_and_unit_count_counts_persons(world: World) -> None:
    table = pacsv.read_csv(data_file("smartnoise-sdk/PUMS_dup.csv"))
    response = _post(world, _meta(name="pums_dup"), _parquet(table), "dup.parquet")
    assert response.status_code == 201, response.json
    assert response.json["row_count"] == 1948
    assert response.json["unit_count"] == 1000


def test_catalogue_shows_metadata_never_values(world: World, pums: dict[str, Any]) -> None:
    listing = world.client.get("/api/v1/datasets", headers=auth(world.analyst))
    one = world.client.get(f"/api/v1/datasets/{pums['id']}", headers=auth(world.other_analyst))
    assert listing.status_code == one.status_code == 200
    text = listing.get_data(as_text=True) + one.get_data(as_text=True)
    # Incomes and the one race=5 person's exact income never appear in the catalogue.
    for value in ("56000", "17000", "420500", "34380084"):
        assert value not in text
    assert set(one.json) >= {"columns", "level", "row_count", "versions", "privacy_unit"}


def test_stored_file_is_ciphertext_and_reads_back(app: Flask, pums: dict[str, Any]) -> None:
    with app.app_context():
        service = app.extensions["sandbox.datasets"]
        dataset = service.get(pums["id"])
        stored = Path(app.config["INSTANCE_PATH"]) / "data" / dataset.current.path
        assert stored.read_bytes()[:4] == b"SBXE"
        table = service.read(dataset.current)
    expected = pacsv.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))
    assert table.num_rows == 1000
    assert table.column("income").to_pylist() == [int(v) for v in expected.column("income").to_pylist()]


def test_new_version_keeps_old_version_readable(world: World, app: Flask, pums: dict[str, Any]) -> None:
    first_half = b"".join(PUMS_BYTES.splitlines(keepends=True)[:501])
    response = world.client.post(
        f"/api/v1/datasets/{pums['id']}/versions",
        headers=auth(world.steward),
        data={"file": (io.BytesIO(first_half), "pums_v2.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.json
    assert [v["row_count"] for v in response.json["versions"]] == [1000, 500]
    assert response.json["current_version"] == 2
    with app.app_context():
        service = app.extensions["sandbox.datasets"]
        dataset: Dataset = service.get(pums["id"])
        assert [service.read(v).num_rows for v in dataset.versions] == [1000, 500]


def test_version_with_changed_schema_and_bad_version_leave_nothing(world: World, app: Flask, pums: dict[str, Any]) -> None:
    bad = world.client.post(
        f"/api/v1/datasets/{pums['id']}/versions",
        headers=auth(world.steward),
        data={"file": (io.BytesIO(_csv(HEADER + "40,1,9,7,1000,1,1\n")), "v.csv")},
        content_type="multipart/form-data",
    )
    assert bad.status_code == 400
    assert "race" in bad.json["error"]["message"]
    files = [p for p in (Path(app.config["INSTANCE_PATH"]) / "data").rglob("*") if p.is_file()]
    assert len(files) == 1
    renamed = world.client.post(
        f"/api/v1/datasets/{pums['id']}/versions",
        headers=auth(world.steward),
        data={"file": (io.BytesIO(PUMS_BYTES), "v.csv"), "meta": json.dumps(_meta(name="other"))},
        content_type="multipart/form-data",
    )
    assert renamed.status_code == 400


def test_mock_rows_are_synthetic_and_follow_the_schema(world: World, pums: dict[str, Any]) -> None:
    response = world.client.get(f"/api/v1/datasets/{pums['id']}/mock?rows=200&seed=7", headers=auth(world.analyst))
    assert response.status_code == 200
    body = response.json
    assert body["synthetic"] is True
    assert len(body["rows"]) == 200
    real = {tuple(int(float(x)) for x in line.split(",")) for line in PUMS_BYTES.decode().splitlines()[1:]}
    for row in body["rows"]:
        assert 0 <= row["age"] <= 100
        assert row["race"] in range(1, 7)
        assert 0 <= row["income"] <= 500000
        assert row["pid"] < 0  # mock identifiers can never be mistaken for real ones
        assert tuple(row[c] for c in ("age", "sex", "educ", "race", "income", "married", "pid")) not in real
    again = world.client.get(f"/api/v1/datasets/{pums['id']}/mock?rows=200&seed=7", headers=auth(world.analyst))
    assert again.json["rows"] == body["rows"]
    too_many = world.client.get(f"/api/v1/datasets/{pums['id']}/mock?rows=100000", headers=auth(world.analyst))
    assert too_many.status_code == 400


def test_the_catalogue_rounds_counts_for_everyone_but_the_owner_and_auditors(world: World, pums: dict[str, Any]) -> None:
    """COUNT(*) WHERE race <> 5 (999) beside an exact catalogue count (1000) would say the race-5 person is there."""
    dup = world.upload(world.steward, {**PUMS_META, "name": "pums_dup"}, data_file("smartnoise-sdk/PUMS_dup.csv"))
    assert dup.status_code == 201, dup.json
    assert (dup.json["row_count"], dup.json["unit_count"]) == (1948, 1000)  # the owning steward: exact
    for token in (world.analyst, world.other_steward):
        seen = world.client.get(f"/api/v1/datasets/{dup.json['id']}", headers=auth(token)).json
        assert (seen["row_count"], seen["unit_count"]) == (1950, 1000)
        assert [v["row_count"] for v in seen["versions"]] == [1950]
        assert seen["versions"][0]["stored_bytes"] is None
        listed = world.client.get("/api/v1/datasets", headers=auth(token)).json["items"]
        assert {d["row_count"] for d in listed} == {1000, 1950}
    audit = world.client.get(f"/api/v1/datasets/{dup.json['id']}", headers=auth(world.auditor)).json
    assert audit["row_count"] == 1948
    assert audit["versions"][0]["stored_bytes"] > 0


@pytest.mark.parametrize(("count", "rounded"), [(0, 0), (1, 10), (4, 10), (5, 10), (14, 10), (15, 20), (999, 1000), (1948, 1950)])
def test_catalogue_counts_round_to_the_nearest_multiple(count: int, rounded: int) -> None:
    assert catalogue_count(count, 10) == rounded
