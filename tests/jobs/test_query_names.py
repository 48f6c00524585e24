"""Names in queries (``jobs.query.spelling``): declared names as declared, aliases as written, collisions refused.

DuckDB folds ASCII letters only, so a query naming ``"énergie"`` would not reach a column declared
``Énergie`` if the text were passed on as written: the validated plan spells every dataset and column
name byte for byte as declared, and it runs.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from core.errors import PolicyViolation
from core.schema import DatasetMeta, DatasetSchema
from jobs.engine import DuckDBEngine
from jobs.query import validate
from policies.model import Policy

META = {
    "name": "Données",
    "title": "t",
    "level": "一般",
    "privacy_unit": "ID",
    "columns": {
        "ID": {"role": "identifier", "type": "int"},
        "Énergie": {"role": "quasi_identifier", "type": "string", "domain": ["a", "b"]},
        "Yrs.Since.PhD": {"role": "quasi_identifier", "type": "int", "domain": [1, 2]},
        "纳税额": {"role": "sensitive", "type": "float", "bounds": [0, 100]},
    },
}
SCHEMAS = {"Données": DatasetMeta.model_validate(META).schema_only()}
POLICY = Policy.model_validate(
    {
        "columns": {"Données": {"Énergie": "dimension", "Yrs.Since.PhD": "dimension", "纳税额": "measure"}},
        "aggregates": ["count", "sum"],
        "job_kinds": ["query"],
    }
)
TABLE = pa.table(
    {
        "ID": list(range(20)),
        "Énergie": ["a", "b"] * 10,
        "Yrs.Since.PhD": [1] * 10 + [2] * 10,
        "纳税额": [float(i) for i in range(20)],
    }
)


def test_names_typed_in_any_case_are_spelled_as_declared_and_run() -> None:
    plan = validate('SELECT "énergie", SUM("纳税额") AS "Total" FROM "DONNÉES" GROUP BY "ÉNERGIE" ORDER BY "Énergie"', POLICY, SCHEMAS)
    assert '"Données"."Énergie"' in plan.sql
    assert [output.name for output in plan.outputs] == ["Énergie", "Total"]
    assert plan.datasets == ("Données",)
    result = DuckDBEngine(threads=1, memory_mb=256).run(plan.executable_sql, {"Données": TABLE})
    assert result.column_names[:2] == ["Énergie", "Total"]
    assert result.to_pydict()["Total"] == [90.0, 100.0]


def test_an_alias_keeps_its_first_spelling_wherever_it_is_referred_to() -> None:
    plan = validate('SELECT "Yrs.Since.PhD" AS "Years", COUNT(*) AS N FROM "Données" GROUP BY years ORDER BY YEARS', POLICY, SCHEMAS)
    assert [output.name for output in plan.outputs] == ["Years", "N"]
    assert plan.group_keys == ("Years",)


def test_names_of_two_datasets_that_differ_only_in_case_cannot_be_queried_together() -> None:
    other = DatasetSchema(
        privacy_unit="id", columns={"id": SCHEMAS["Données"].columns["ID"], "énergie": SCHEMAS["Données"].columns["Énergie"]}
    )
    with pytest.raises(PolicyViolation) as refused:
        validate('SELECT COUNT(*) AS n FROM "Données"', POLICY, {**SCHEMAS, "other": other})
    assert "'ID' and 'id'" in refused.value.message


def test_a_dataset_and_a_column_differing_only_in_case_are_told_apart_by_their_place() -> None:
    columns = SCHEMAS["Données"].columns
    schemas = {
        "Sales": DatasetSchema(privacy_unit="id", columns={"id": columns["ID"], "sales": columns["纳税额"], "Region": columns["Énergie"]})
    }
    policy = Policy.model_validate(
        {"columns": {"Sales": {"Region": "dimension", "sales": "measure"}}, "aggregates": ["count", "sum"], "job_kinds": ["query"]}
    )
    plan = validate("SELECT SALES.region, SUM(SALES.SALES) AS Total FROM SALES GROUP BY sales.REGION", policy, schemas)
    assert plan.datasets == ("Sales",)
    assert 'SUM("Sales"."sales")' in plan.sql
    assert 'FROM "Sales" AS "Sales"' in plan.sql
    table = pa.table({"id": [1, 2, 3], "sales": [1.0, 2.0, 3.0], "Region": ["a", "b", "a"]})
    result = DuckDBEngine(threads=1, memory_mb=256).run(plan.executable_sql, {"Sales": table})
    assert dict(zip(result.column("Region").to_pylist(), result.column("Total").to_pylist(), strict=True)) == {"a": 4.0, "b": 2.0}


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT COUNT(*) AS "__units_0" FROM "Données"',
        'SELECT COUNT(*) AS n FROM "Données" AS "__cells"',
        'SELECT COUNT(*) AS "n\nINFO forged log line" FROM "Données"',
        'SELECT COUNT(*) AS "n\u202e" FROM "Données"',
    ],
    ids=["output", "table-alias", "newline-in-alias", "bidi-override-in-alias"],
)
def test_reserved_names_stay_reserved(sql: str) -> None:
    with pytest.raises(PolicyViolation, match=r"reserved|invisible"):
        validate(sql, POLICY, SCHEMAS)
