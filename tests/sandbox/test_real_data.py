"""Real bureau data as it comes: Chinese names, GBK/GB18030 or BOM UTF-8 text, Excel workbooks (issue 13).

Uploaded through the API, queried with quoted names, released with the names as declared and the
aliases as written; statistics, formulas and DP on Chinese names; names that collide, hostile names
and undecodable files refused clearly. The rows are the demo's synthetic tax records, fewer of them.
"""

from __future__ import annotations

import codecs
import io
import json
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flask import Flask

from sandbox.demo import tax
from tests.conftest import World, auth
from tests.sandbox.hekit import CustodianFixture, he_grant, quick_encrypt, submit_he, upload_bytes
from tests.sandbox.jobkit import approve, job_json, run_worker, submit

ROWS = tax.records(seed=7, enterprises=400)
TAX_POLICY: dict[str, Any] = {
    "columns": {
        "企业纳税": {"行业": "dimension", "地区": "dimension", "纳税年度": "dimension", "纳税额": "measure", "营业收入": "measure"}
    },
    "aggregates": ["count", "sum", "avg"],
    "job_kinds": ["query", "stats"],
}


def tax_csv(encoding: str, bom: bool = False) -> bytes:
    data = tax.csv_text(ROWS).encode(encoding)
    return codecs.BOM_UTF8 + data if bom else data


def tax_xlsx(rows: list[dict[str, Any]] = ROWS, merge: str | None = None) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "纳税"
    names = list(tax.META["columns"])
    sheet.append(names)
    for row in rows:
        sheet.append([row[name] for name in names])
    if merge:
        sheet.merge_cells(merge)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def upload(world: World, data: bytes, filename: str, **meta: Any) -> Any:
    return upload_bytes(world, {**tax.META, **meta}, data, filename)


def granted(world: World, dataset_id: str, policy: dict[str, Any] = TAX_POLICY) -> str:
    body = {"dataset_ids": [dataset_id], "scenario": "Tax by district for a regional study", "requested": {"job_kinds": ["query", "stats"]}}
    response = world.client.post("/api/v1/grants", headers=auth(world.analyst), json=body)
    assert response.status_code == 201, response.json
    approve(world, response.json["id"], policy)
    return str(response.json["id"])


def released(world: World, app: Flask, response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.json
    run_worker(app)
    job = job_json(world, response.json["id"])
    assert job["status"] == "released", job
    result = world.client.get(f"/api/v1/jobs/{response.json['id']}/result", headers=auth(world.analyst))
    assert result.status_code == 200, result.json
    return dict(result.json)


def district_totals() -> dict[str, float]:
    totals: dict[str, float] = {}
    for row in ROWS:
        totals[row["地区"]] = totals.get(row["地区"], 0.0) + row["纳税额"]
    return totals


QUERY = 'SELECT "地区", COUNT(*) AS "企业数", SUM("纳税额") AS "Total Tax" FROM "企业纳税" GROUP BY "地区" ORDER BY "地区"'


def test_a_gbk_csv_with_chinese_names_round_trips(world: World, app: Flask) -> None:
    data = tax_csv("gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # really GBK, not UTF-8 that happens to parse
    response = upload(world, data, "企业纳税.csv")
    assert response.status_code == 201, response.json
    dataset = response.json
    assert dataset["name"] == "企业纳税"
    assert set(dataset["columns"]) == set(tax.META["columns"])
    assert dataset["privacy_unit"] == "统一社会信用代码"
    result = released(world, app, submit(world, granted(world, dataset["id"]), QUERY))
    assert [column["name"] for column in result["columns"]] == ["地区", "企业数", "Total Tax"]  # aliases as written
    totals = district_totals()
    assert {row["地区"] for row in result["rows"]} == set(totals)
    for row in result["rows"]:
        assert row["Total Tax"] == pytest.approx(totals[row["地区"]], rel=1e-9, abs=1e-6)
    created = [
        e
        for e in world.client.get("/api/v1/audit/events?limit=1000", headers=auth(world.auditor)).json["items"]
        if e["action"] == "dataset.create"
    ]
    assert created[0]["details"]["name"] == "企业纳税"
    assert created[0]["details"]["columns"]["纳税额"] == "sensitive"
    assert world.client.get("/api/v1/audit/verify", headers=auth(world.auditor)).json["ok"] is True


def test_mock_rows_and_dry_runs_use_the_names_as_given(world: World) -> None:
    dataset = upload(world, tax_csv("gbk"), "tax.csv").json
    mock = world.client.get(f"/api/v1/datasets/{dataset['id']}/mock?rows=5&seed=1", headers=auth(world.analyst))
    assert mock.status_code == 200, mock.json
    assert set(mock.json["rows"][0]) == set(tax.META["columns"])
    assert all(row["地区"] in tax.DISTRICTS for row in mock.json["rows"])
    grant = granted(world, dataset["id"])
    body = {"grant_id": grant, "kind": "query", "spec": {"sql": QUERY}}
    response = world.client.post("/api/v1/jobs/dry-run", headers=auth(world.analyst), json=body)
    assert response.status_code == 200, response.json
    assert [column["name"] for column in response.json["columns"]] == ["地区", "企业数", "Total Tax"]


def test_unquoted_chinese_names_and_case_insensitive_aliases_resolve(world: World, app: Flask) -> None:
    dataset = upload(world, tax_csv("utf-8"), "tax.csv").json
    sql = "SELECT 地区, SUM(纳税额) AS Total FROM 企业纳税 GROUP BY 地区 ORDER BY total"
    response = submit(world, granted(world, dataset["id"]), sql)
    assert response.status_code == 422  # ORDER BY an aggregate is refused: the alias resolved to it
    assert response.json["error"]["details"]["rule"] == "order_by"
    sql = "SELECT 地区 AS District, COUNT(*) AS n FROM 企业纳税 GROUP BY 地区 ORDER BY district"
    result = released(world, app, submit(world, granted(world, dataset["id"]), sql))
    assert [column["name"] for column in result["columns"]] == ["District", "n"]
    assert [row["District"] for row in result["rows"]] == sorted(district_totals())


def test_a_utf8_csv_with_a_bom_is_read_without_it(world: World) -> None:
    response = upload(world, tax_csv("utf-8", bom=True), "tax.csv")
    assert response.status_code == 201, response.json
    assert set(response.json["columns"]) == set(tax.META["columns"])  # not "\ufeff统一社会信用代码"


def test_a_gb18030_only_character_is_decoded(world: World, app: Flask) -> None:
    rare = "𠮷"  # U+20BB7: four bytes in GB18030, absent from GBK
    with pytest.raises(UnicodeEncodeError):
        rare.encode("gbk")
    rows = [{**row, "地区": rare + "区"} if row["地区"] == "通州区" else row for row in ROWS]
    meta = json.loads(json.dumps(tax.META))
    meta["columns"]["地区"]["domain"] = [rare + "区" if d == "通州区" else d for d in meta["columns"]["地区"]["domain"]]
    response = upload_bytes(world, meta, tax.csv_text(rows).encode("gb18030"), "tax.csv")
    assert response.status_code == 201, response.json
    result = released(world, app, submit(world, granted(world, response.json["id"]), QUERY))
    assert rare + "区" in {row["地区"] for row in result["rows"]}


def test_a_stated_encoding_is_used_and_checked(world: World) -> None:
    assert upload(world, tax_csv("gbk"), "tax.csv", encoding="GBK").status_code == 201
    response = upload(world, tax_csv("gbk"), "tax.csv", name="again", encoding="utf-8")
    assert response.status_code == 400
    assert "utf-8" in response.json["error"]["message"]
    response = upload(world, tax_csv("gbk"), "tax.csv", name="again", encoding="latin-1")
    assert response.status_code == 400
    assert response.json["error"]["details"]["problems"][0]["field"] == "encoding"


def test_an_undecodable_csv_is_refused_without_quoting_it(world: World, app: Flask) -> None:
    secret = "机密" * 3
    data = tax_csv("utf-8").replace(b"\n", ("\n" + secret).encode("utf-8") + b"\xff\xfe\x80,", 1)
    response = upload(world, data, "tax.csv")
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "validation_error"
    assert "not UTF-8, GBK or GB18030" in error["message"]
    body = response.get_data(as_text=True)
    assert secret not in body
    assert "机密" not in json.loads(body)["error"]["message"]
    assert world.client.get("/api/v1/datasets", headers=auth(world.steward)).json["items"] == []


def test_an_xlsx_workbook_is_read(world: World, app: Flask) -> None:
    response = upload(world, tax_xlsx(), "企业纳税.xlsx")
    assert response.status_code == 201, response.json
    assert response.json["row_count"] == len(ROWS)
    result = released(world, app, submit(world, granted(world, response.json["id"]), QUERY))
    totals = district_totals()
    for row in result["rows"]:
        assert row["Total Tax"] == pytest.approx(totals[row["地区"]], rel=1e-9, abs=1e-6)


def test_a_named_sheet_is_read_and_a_missing_one_refused(world: World) -> None:
    assert upload(world, tax_xlsx(), "tax.xlsx", sheet="纳税").status_code == 201
    response = upload(world, tax_xlsx(), "tax.xlsx", name="again", sheet="Sheet9")
    assert response.status_code == 400
    assert "Sheet9" in response.json["error"]["message"]


def test_reading_options_of_another_format_are_refused(world: World) -> None:
    response = upload(world, tax_xlsx(), "tax.xlsx", encoding="gbk")
    assert response.status_code == 400
    assert response.json["error"]["details"] == {"field": "encoding"}
    response = upload(world, tax_csv("utf-8"), "tax.csv", sheet="纳税")
    assert response.status_code == 400
    assert response.json["error"]["details"] == {"field": "sheet"}


def test_merged_header_cells_are_refused_clearly(world: World, app: Flask) -> None:
    response = upload(world, tax_xlsx(merge="C1:D1"), "tax.xlsx")
    assert response.status_code == 400
    error = response.json["error"]
    assert "header row has merged cells (C1:D1)" in error["message"]
    assert "行业" not in error["message"]  # a cell reference, never the file's content
    response = upload(world, tax_xlsx(merge="C3:C4"), "tax.xlsx")
    assert response.status_code == 400
    assert "merged" in response.json["error"]["message"]


@pytest.mark.parametrize(
    ("first", "second"),
    [("Yrs.Since.PhD", "yrs.since.phd"), ("Straße", "STRASSE"), ("Café", "Cafe\u0301"), ("ΣA", "σa")],
    ids=["case", "case-folding", "nfc", "greek"],
)
def test_names_that_collide_after_normalisation_are_refused_naming_both(world: World, first: str, second: str) -> None:
    meta = {
        "name": "collide",
        "title": "Collision",
        "level": "一般",
        "privacy_unit": "id",
        "columns": {
            "id": {"role": "identifier", "type": "int"},
            first: {"role": "attribute", "type": "int"},
            second: {"role": "attribute", "type": "int"},
        },
    }
    response = upload_bytes(world, meta, f'id,"{first}","{second}"\n1,2,3\n'.encode(), "c.csv")
    assert response.status_code == 400
    message = response.json["error"]["message"]
    assert first in message
    assert second in message


def test_a_dataset_name_colliding_with_an_existing_one_is_a_conflict_naming_both(world: World) -> None:
    assert upload(world, tax_csv("utf-8"), "tax.csv", name="Tax Records").status_code == 201
    response = upload(world, tax_csv("utf-8"), "tax.csv", name="TAX RECORDS")
    assert response.status_code == 409
    assert "'TAX RECORDS'" in response.json["error"]["message"]
    assert "'Tax Records'" in response.json["error"]["message"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "is empty"),
        ("x" * 64, "longer than 63"),
        ("a\u0000b", "U+0000"),
        ("a\nb", "U+000A"),
        ("a\u202eb", "U+202E"),
        (" 地区", "whitespace"),
    ],
    ids=["empty", "too-long", "nul", "newline", "bidi-override", "leading-space"],
)
def test_bad_names_are_refused_clearly(world: World, name: str, reason: str) -> None:
    meta = {**tax.META, "columns": {**tax.META["columns"], name: {"role": "attribute", "type": "int"}}}
    response = upload_bytes(world, meta, tax_csv("utf-8"), "tax.csv")
    assert response.status_code == 400
    assert reason in response.json["error"]["message"]


def test_names_with_dots_capitals_and_spaces_are_kept_as_given(world: World, app: Flask) -> None:
    meta = {
        "name": "Faculty Salaries",
        "title": "R export",
        "level": "一般",
        "privacy_unit": "id",
        "columns": {
            "id": {"role": "identifier", "type": "int"},
            "Yrs.Since.PhD": {"role": "quasi_identifier", "type": "int", "domain": [1, 2, 3]},
            "Salary (USD)": {"role": "sensitive", "type": "int", "bounds": [0, 1000]},
        },
    }
    lines = ["id,Yrs.Since.PhD,Salary (USD)", *(f"{i},{i % 3 + 1},{i * 3}" for i in range(60))]
    dataset = upload_bytes(world, meta, "\n".join(lines).encode(), "s.csv").json
    policy = {
        "columns": {"Faculty Salaries": {"Yrs.Since.PhD": "dimension", "Salary (USD)": "measure"}},
        "aggregates": ["count", "sum"],
        "job_kinds": ["query"],
    }
    sql = 'SELECT "yrs.since.phd", SUM("SALARY (usd)") AS "Sum Salary" FROM "faculty salaries" GROUP BY "YRS.SINCE.PHD"'
    result = released(world, app, submit(world, granted(world, dataset["id"], policy), sql))
    assert [column["name"] for column in result["columns"]] == ["Yrs.Since.PhD", "Sum Salary"]
    expected = {k: sum(i * 3 for i in range(60) if i % 3 + 1 == k) for k in (1, 2, 3)}
    assert {row["Yrs.Since.PhD"]: row["Sum Salary"] for row in result["rows"]} == expected


def test_a_double_quote_in_a_name_cannot_break_out_of_quoting(world: World, app: Flask) -> None:
    """A steward's names are input too: ``x", (SELECT 1) AS "y`` is one quoted name in every SQL text."""
    hostile, table = 'x", (SELECT 1) AS "y', 'hostile"; DROP TABLE t; --'
    meta = {
        "name": table,
        "title": "Hostile names",
        "level": "一般",
        "privacy_unit": "id",
        "columns": {"id": {"role": "identifier", "type": "int"}, hostile: {"role": "quasi_identifier", "type": "int", "domain": [1, 2]}},
    }
    body = "id," + '"' + hostile.replace('"', '""') + '"\n' + "\n".join(f"{i},{i % 2 + 1}" for i in range(40))
    response = upload_bytes(world, meta, body.encode(), "h.csv")
    assert response.status_code == 201, response.json
    assert response.json["name"] == table
    assert hostile in response.json["columns"]
    policy = {"columns": {table: {hostile: "dimension"}}, "aggregates": ["count"], "job_kinds": ["query", "stats"]}
    grant = granted(world, response.json["id"], policy)
    column, source = ('"' + name.replace('"', '""') + '"' for name in (hostile, table))
    sql = f"SELECT {column}, COUNT(*) AS n FROM {source} GROUP BY {column}"  # noqa: S608 - the attack
    result = released(world, app, submit(world, grant, sql))
    assert [column["name"] for column in result["columns"]] == [hostile, "n"]
    assert sorted((row[hostile], row["n"]) for row in result["rows"]) == [(1, 20), (2, 20)]
    stats = {"op": "crosstab", "dataset": table, "index": [hostile]}
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant, "kind": "stats", "spec": stats})
    result = released(world, app, response)
    assert {row[hostile]: row["count"] for row in result["rows"]} == {1: 20, 2: 20}


@pytest.mark.parametrize(
    "alias",
    ['n" FROM "企业纳税"; DROP TABLE x; --', 'n"", "纳税额', "n') --"],
    ids=["breaks-out", "doubled-quote", "string-quote"],
)
def test_an_alias_cannot_break_out_of_quoting(world: World, app: Flask, alias: str) -> None:
    """An analyst's alias is one identifier: written back quoted and escaped, it names the output and nothing else."""
    dataset = upload(world, tax_csv("utf-8"), "tax.csv").json
    quoted = '"' + alias.replace('"', '""') + '"'
    sql = f'SELECT "地区", COUNT(*) AS {quoted} FROM "企业纳税" GROUP BY "地区"'  # noqa: S608 - the attack
    result = released(world, app, submit(world, granted(world, dataset["id"]), sql))
    assert [column["name"] for column in result["columns"]] == ["地区", alias]
    assert sum(row[alias] for row in result["rows"]) == len(ROWS)


def test_an_unescaped_quote_in_an_alias_is_a_parse_error(world: World) -> None:
    dataset = upload(world, tax_csv("utf-8"), "tax.csv").json
    response = submit(world, granted(world, dataset["id"]), 'SELECT COUNT(*) AS "n" FROM "企业纳税"; DROP TABLE x; --" ')
    assert response.status_code in (400, 422)


def test_a_stats_crosstab_on_chinese_names(world: World, app: Flask) -> None:
    dataset = upload(world, tax_csv("gbk"), "tax.csv").json
    spec = {"op": "crosstab", "dataset": "企业纳税", "index": ["地区"], "columns": ["纳税年度"], "values": "纳税额", "aggfunc": ["sum"]}
    response = world.client.post(
        "/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": granted(world, dataset["id"]), "kind": "stats", "spec": spec}
    )
    result = released(world, app, response)
    names = [column["name"] for column in result["columns"]]
    assert names[:2] == ["地区", "纳税年度"]
    expected: dict[tuple[str, int], float] = {}
    for row in ROWS:
        expected[row["地区"], row["纳税年度"]] = expected.get((row["地区"], row["纳税年度"]), 0.0) + row["纳税额"]
    value = names[2]
    for row in result["rows"]:
        assert row[value] == pytest.approx(expected[row["地区"], row["纳税年度"]], rel=1e-9)


def test_a_model_formula_with_q_on_chinese_names(world: World, app: Flask) -> None:
    import pandas as pd
    import statsmodels.formula.api as smf

    dataset = upload(world, tax_csv("gbk"), "tax.csv").json
    formula = 'Q("纳税额") ~ Q("营业收入") + C(Q("地区"))'
    spec = {"op": "ols", "dataset": "企业纳税", "formula": formula}
    response = world.client.post(
        "/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": granted(world, dataset["id"]), "kind": "stats", "spec": spec}
    )
    result = released(world, app, response)
    expected = smf.ols(formula, pd.DataFrame(ROWS)).fit()
    coefs = {row["term"]: row["coef"] for row in result["rows"]}
    assert set(coefs) == set(expected.params.index)
    for term, value in expected.params.items():
        assert coefs[term] == pytest.approx(value, rel=1e-6)


def test_a_dp_sum_on_a_chinese_measure_with_declared_bounds(world: World, app: Flask) -> None:
    dataset = upload(world, tax_csv("gbk"), "tax.csv").json
    dp = {"epsilon_total": 10.0, "epsilon_per_job": 10.0, "delta_total": 0.0, "max_rows_per_unit": 2}
    grant = granted(world, dataset["id"], {**TAX_POLICY, "dp": dp})
    sql = 'SELECT "地区", SUM("纳税额") AS "纳税总额" FROM "企业纳税" GROUP BY "地区"'
    result = released(world, app, submit(world, grant, sql, epsilon=10.0))
    assert [column["name"] for column in result["columns"]] == ["地区", "纳税总额"]
    assert {row["地区"] for row in result["rows"]} == set(tax.DISTRICTS)  # every declared district, none from the data
    error = result["summary"]["dp"]["errors"]["纳税总额"][0]
    totals = district_totals()
    for row in result["rows"]:
        assert abs(row["纳税总额"] - totals[row["地区"]]) < 20 * error["scale"] + 1


def test_an_he_aggregate_on_chinese_names(world: World, app: Flask, custodian: CustodianFixture) -> None:
    """纳税额 encrypted by its provider (scale 2); summed per 地区 under encryption, decrypted by the custodian."""
    rows = ROWS[:300]
    frame = pa.Table.from_pylist(rows)
    encrypted = quick_encrypt(custodian.public, [r["纳税额"] for r in rows], 2)
    frame = frame.set_column(frame.schema.get_field_index("纳税额"), "纳税额", encrypted)
    sink = io.BytesIO()
    pq.write_table(frame, sink)
    meta = json.loads(json.dumps(tax.META))
    meta["columns"]["纳税额"] = {"role": "sensitive", "type": "paillier", "paillier": {"key": custodian.public.fingerprint, "scale": 2}}
    response = upload_bytes(world, meta, sink.getvalue(), "企业纳税.parquet")
    assert response.status_code == 201, response.json
    policy = {"columns": {"企业纳税": {"地区": "dimension", "纳税额": "measure"}}, "aggregates": ["count", "sum"], "job_kinds": ["he"]}
    spec = {
        "op": "aggregate",
        "dataset": "企业纳税",
        "group_by": ["地区"],
        "aggregates": [{"fn": "count", "name": "企业数"}, {"fn": "sum", "column": "纳税额", "name": "纳税总额"}],
    }
    response = submit_he(world, he_grant(world, response.json["id"], policy), spec)
    result = released(world, app, response)
    assert [column["name"] for column in result["columns"]] == ["地区", "企业数", "纳税总额"]
    expected: dict[str, float] = {}
    for row in rows:
        expected[row["地区"]] = expected.get(row["地区"], 0.0) + round(row["纳税额"] * 100)
    for row in result["rows"]:
        assert row["纳税总额"] == pytest.approx(expected[row["地区"]] / 100, abs=1e-6)


def test_a_dp_crosstab_of_a_chinese_measure_by_chinese_dimensions(world: World, app: Flask) -> None:
    dataset = upload(world, tax_csv("gb18030"), "tax.csv").json
    dp = {"epsilon_total": 10.0, "epsilon_per_job": 10.0, "delta_total": 0.0, "max_rows_per_unit": 2}
    grant = granted(world, dataset["id"], {**TAX_POLICY, "dp": dp})
    spec = {"op": "crosstab", "dataset": "企业纳税", "index": ["地区"], "columns": ["行业"], "values": "营业收入", "aggfunc": ["mean"]}
    response = world.client.post(
        "/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant, "kind": "stats", "spec": {**spec, "epsilon": 5.0}}
    )
    result = released(world, app, response)
    assert [column["name"] for column in result["columns"]][:2] == ["地区", "行业"]
    assert {(row["地区"], row["行业"]) for row in result["rows"]} == {(d, i) for d in tax.DISTRICTS for i in tax.INDUSTRIES}
