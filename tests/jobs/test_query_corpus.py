"""The SQL corpus: each ``query_cases/*.sql`` file states on its first line what validation must say.

``-- ok`` or ``-- fail: <rule>[, column: <dataset.column>]``; ``<rule>`` is a ``QueryRule`` value or
``bad_sql``. Failing cases are named ``<name>_fail.sql``, usually beside a passing twin ``<name>.sql``
that differs minimally (SmartNoise SQL's style). Every passing case is also run in DuckDB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from core.errors import PolicyViolation
from core.schema import DatasetSchema
from jobs.query import BadSql, QueryRule, validate
from policies.model import Policy
from tests.jobs.conftest import run

CASES_DIR = Path(__file__).parent / "query_cases"
CASES = sorted(CASES_DIR.glob("*.sql"))
HEADER = re.compile(r"^-- (?:ok|fail: (?P<rule>[a-z_]+)(?:, column: (?P<column>[a-z_]+\.[a-z_]+))?)$")


@dataclass(frozen=True)
class Expected:
    rule: str | None  # None: the query passes
    column: str | None


def expected_of(path: Path) -> Expected:
    first = path.read_text().splitlines()[0]
    match = HEADER.match(first)
    assert match, f"{path.name}: first line must be '-- ok' or '-- fail: <rule>[, column: <dataset.column>]', not {first!r}"
    return Expected(match["rule"], match["column"])


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_case(path: Path, policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]) -> None:
    expected = expected_of(path)
    sql = path.read_text()
    assert path.stem.endswith("_fail") == (expected.rule is not None), "failing cases, and only they, are named *_fail.sql"
    if expected.rule is None:
        plan = validate(sql, policy, schemas)
        result = run(plan.executable_sql, tables)
        assert result.column_names == [output.name for output in plan.outputs] + list(plan.unit_columns)
    elif expected.rule == "bad_sql":
        with pytest.raises(BadSql) as bad:
            validate(sql, policy, schemas)
        assert bad.value.code == "bad_sql"
    else:
        with pytest.raises(PolicyViolation) as refused:
            validate(sql, policy, schemas)
        assert set(refused.value.details) == {"rule", "column"}
        assert refused.value.details["rule"] == expected.rule
        assert refused.value.message.endswith(f"(rule {expected.rule})")
        if expected.column is not None:
            assert refused.value.details["column"] == expected.column
            assert expected.column in refused.value.message


def test_the_corpus_covers_every_rule() -> None:
    rules = {expected_of(path).rule for path in CASES}
    assert rules >= {rule.value for rule in QueryRule} | {"bad_sql", None}
    assert len(CASES) >= 60


def test_most_failing_cases_have_a_passing_twin() -> None:
    stems = {path.stem for path in CASES}
    failing = {stem for stem in stems if stem.endswith("_fail")}
    twins = {stem for stem in failing if stem.removesuffix("_fail") in stems}
    assert len(twins) >= 30, sorted(failing - twins)
