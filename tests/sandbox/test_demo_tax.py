"""The demo's synthetic enterprise tax records: the committed file is what the generator makes, and the tour's query runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from core.identifiers import is_credit_code
from sandbox.cli import main
from sandbox.db import get_db_of
from sandbox.demo import tax
from sandbox.demo import tokens as demo_tokens
from tests.sandbox.jobkit import run_worker

README = Path(__file__).resolve().parents[2] / "README.md"
CREDIT_CODE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")


def test_the_committed_file_is_the_generators() -> None:
    assert tax.FILE.read_text(encoding="utf-8") == tax.csv_text(tax.records())


def test_records_are_shaped_like_a_tax_export() -> None:
    rows = tax.records()
    assert len(rows) == tax.ENTERPRISES * len(tax.YEARS)
    codes = {row["统一社会信用代码"] for row in rows}
    assert len(codes) == tax.ENTERPRISES
    assert all(CREDIT_CODE.match(code) for code in codes)
    assert all(is_credit_code(code) for code in codes)  # the check character of GB 32100-2015
    assert all(tax.REVENUE_BOUNDS[0] <= row["营业收入"] <= tax.REVENUE_BOUNDS[1] for row in rows)
    assert all(tax.TAX_BOUNDS[0] <= row["纳税额"] <= tax.TAX_BOUNDS[1] for row in rows)
    assert "synthetic" in tax.META["description"].lower()


def test_the_demo_grant_answers_the_tour_query(tmp_path: Path, database_url: str) -> None:
    env = {"SANDBOX_INSTANCE_PATH": str(tmp_path / "instance"), "SANDBOX_DATABASE_URL": database_url}
    assert CliRunner().invoke(main, ["init", "--demo"], env=env, catch_exceptions=False).exit_code == 0
    analyst = demo_tokens.read(demo_tokens.path_in(tmp_path / "instance"))["analyst"]
    from sandbox import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url})
    client, headers = app.test_client(), {"Authorization": f"Bearer {analyst}"}
    grant = next(g for g in client.get("/api/v1/grants", headers=headers).json["items"] if "企业纳税" in g["datasets"])
    assert grant["status"] == "approved"
    (line,) = [line for line in README.read_text(encoding="utf-8").splitlines() if 'FROM \\"企业纳税\\"' in line]
    sql = json.loads(line.strip().removesuffix("}}"))  # the tour's query, as its JSON body spells it
    job = client.post("/api/v1/jobs", headers=headers, json={"grant_id": grant["id"], "kind": "query", "spec": {"sql": sql}})
    assert job.status_code == 202, job.json
    run_worker(app)
    result = client.get(f"/api/v1/jobs/{job.json['id']}/result", headers=headers)
    assert result.status_code == 200, result.json
    totals: dict[str, float] = {}
    for row in tax.records():
        totals[row["地区"]] = totals.get(row["地区"], 0.0) + row["纳税额"]
    assert [c["name"] for c in result.json["columns"]] == ["地区", "企业数", "纳税总额"]
    assert [row["地区"] for row in result.json["rows"]] == sorted(totals)  # every district is large enough to release
    for row in result.json["rows"]:
        assert abs(row["纳税总额"] - totals[row["地区"]]) < 1e-6
    get_db_of(app).engine.dispose()
