"""``validate``'s contract beyond the corpus: the plan's fields, error types, limits, messages, and
rules that depend on the policy (a policy other than the corpus's is built per test)."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import BadRequest, PolicyViolation, SandboxError
from core.schema import DatasetSchema
from jobs.query import BadSql, OutputColumn, OutputKind, validate
from jobs.query.parse import MAX_CHARS
from policies.model import Aggregate, Policy
from tests.jobs.conftest import POLICY


def policy_with(**changes: Any) -> Policy:
    """The corpus policy with some fields replaced (``columns`` are merged per dataset)."""
    data = POLICY.model_dump()
    for dataset, uses in changes.pop("columns", {}).items():
        data["columns"][dataset] = {**data["columns"].get(dataset, {}), **uses}
    return Policy.model_validate({**data, **changes})


def refusal(sql: str, policy: Policy, schemas: dict[str, DatasetSchema]) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as refused:
        validate(sql, policy, schemas)
    return refused.value


def test_plan_describes_outputs(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    plan = validate(
        "SELECT t.industry, FLOOR(p.age / 10) AS decade, COUNT(*) AS n, AVG(p.income) AS mean_income, COUNT(DISTINCT p.pid)\n"
        "FROM pums AS p JOIN tax AS t ON p.pid = t.pid\n"
        "WHERE p.race IN (1, 2)\n"
        "GROUP BY t.industry, FLOOR(p.age / 10)",
        policy,
        schemas,
    )
    assert plan.outputs == (
        OutputColumn("industry", OutputKind.GROUP_KEY, None),
        OutputColumn("decade", OutputKind.GROUP_KEY, None),
        OutputColumn("n", OutputKind.AGGREGATE, Aggregate.COUNT),
        OutputColumn("mean_income", OutputKind.AGGREGATE, Aggregate.AVG, '"p"."income"'),
        OutputColumn("_col_4", OutputKind.AGGREGATE, Aggregate.COUNT_DISTINCT, 'DISTINCT "p"."pid"'),
    )
    assert plan.group_keys == ("industry", "decade")
    # Keys are outputs: industry has no declared values; the decade is a bin of age's declared bounds (0..100).
    assert plan.keys is not None
    assert plan.keys.sources is not None
    industry, decade = plan.keys.sources
    assert industry is None
    assert decade is not None
    assert decade.expression == 'FLOOR("__v" / 10)'
    assert decade.values == (0, 5, 15, 25, 35, 45, 55, 65, 75, 85, 95, 100)
    assert plan.datasets == ("pums", "tax")
    assert plan.unit_columns == ("__units_0", "__units_1")


def test_sql_is_normalised_and_stable(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    plan = validate('select RACE as "Race", count(*) N from PUMS group by 1 order by race desc', policy, schemas)
    assert plan.sql == 'SELECT "pums"."race" AS "race", COUNT(*) AS "N" FROM "pums" AS "pums" GROUP BY "pums"."race" ORDER BY "race" DESC'
    # identifiers are case-insensitive: declared names are spelled as declared, other aliases as written
    assert [output.name for output in plan.outputs] == ["race", "N"]
    assert validate(plan.sql, policy, schemas) == plan


def test_datasets_include_derived_tables_and_joins(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    plan = validate(
        "SELECT s.age, COUNT(*) AS n FROM (SELECT age, pid FROM pums) AS s JOIN tax AS t ON t.pid = s.pid GROUP BY s.age", policy, schemas
    )
    assert plan.datasets == ("pums", "tax")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("-- nothing here\n;", "empty"),
        ("SELECT race FROM pums WHERE", "does not parse"),
        ("SELECT 'unterminated FROM pums", "does not parse"),
        ("race + 1", "not a query"),
        ("SELECT COUNT(*) FROM pums WHERE " + "(" * 300 + "age > 1" + ")" * 300, "nested"),
    ],
    ids=["empty", "blank", "comment_only", "truncated", "unterminated", "expression", "deeply_nested"],
)
def test_bad_sql(sql: str, message: str, policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    with pytest.raises(BadSql) as bad:
        validate(sql, policy, schemas)
    assert message in bad.value.message
    assert isinstance(bad.value, BadRequest)
    assert (bad.value.code, bad.value.status) == ("bad_sql", 400)


@pytest.mark.parametrize(
    ("sql", "message", "position"),
    [
        ("SELECT (race FROM pums", "line 1, column 14, after 'SELECT (race': expected ) before 'FROM'", (1, 14)),
        ("SELECT race FROM pums WHERE", "after 'SELECT race FROM pums': an expression is expected after 'WHERE'", (1, 23)),
        ("SELECT race FROM pums WHERE income >", "after '...CT race FROM pums WHERE income': an expression is expected after '>'", (1, 36)),
        ("SELECT race, COUNT(*) AS n FROM pums GROUP race", "unexpected 'race'", (1, 44)),
        ("SELECT race,\n  COUNT(*) AS n\nFROM pums WHERE educ IN (1, 2 GROUP BY race", "IN (?, ?': expected ) before 'GROUP BY'", (3, 31)),
        ("SELECT race FROM pums WHERE income > 31337 AND (", "WHERE income > ? AND': an expression is expected after '('", (1, 48)),
    ],
    ids=["unclosed_paren", "empty_where", "missing_operand", "group_without_by", "second_line", "number_masked"],
)
def test_parse_errors_say_what_was_expected_where(
    sql: str, message: str, position: tuple[int, int], policy: Policy, schemas: dict[str, DatasetSchema]
) -> None:
    with pytest.raises(BadSql) as bad:
        validate(sql, policy, schemas)
    assert message in bad.value.message
    assert (bad.value.details["line"], bad.value.details["column"]) == position
    assert "<class" not in bad.value.message
    assert "sqlglot" not in bad.value.message


def test_length_limit(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    sql = "SELECT COUNT(*) AS n FROM pums"
    validate(sql.ljust(MAX_CHARS), policy, schemas)
    with pytest.raises(BadSql, match="longer than"):
        validate(sql.ljust(MAX_CHARS + 1), policy, schemas)


def test_policy_violation_is_a_422(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    refused = refusal("SELECT race, income FROM pums", policy, schemas)
    assert (refused.code, refused.status) == ("policy_violation", 422)
    assert refused.details == {"rule": "measure_outside_aggregate", "column": "pums.income"}
    assert refused.message == "column pums.income may only be used inside an aggregate (rule measure_outside_aggregate)"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) AS n FROM tax WHERE industry = 'S3CR3T' AND firm_id = 1",
        "SELECT industry, COUNT(*) AS n FROM tax WHERE industry LIKE 'S3CR3T%' GROUP BY industry",
        "SELECT COUNT(*) AS n FROM read_csv('/S3CR3T.csv')",
        "SELECT COUNT(*) AS n FROM 'S3CR3T.csv'",
        "SELECT COUNT(*) AS n FROM tax WHERE industry = 'S3CR3T' GROUP BY industry HAVING tax_paid > 1",
        "SELECT COUNT(*) AS n FROM tax WHERE industry = 'S3CR3T' GROUP BY industry HAVING",
        "SELECT COUNT(*) AS n FROM tax WHERE industry = 'S3CR3T",
        "SELECT COUNT(*) AS n FROM tax WHERE industry = 'S3CR3T' AND firm_id = (",
        "SELECT COUNT(*) AS n FROM tax WHERE industry IN ('S3CR3T' 'x') AND (",
        "SELECT COUNT(*) AS n FROM tax WHERE industry = 'it''s S3CR3T' AND (",
        "SELECT COUNT(*) AS n FROM tax WHERE 'S3CR3T' (",
    ],
    ids=[
        "column_denied",
        "function",
        "table_function",
        "file_literal",
        "measure",
        "parse_error",
        "token_error",
        "parse_error_after_literal",
        "parse_error_adjacent_literals",
        "parse_error_escaped_quote",
        "parse_error_at_literal",
    ],
)
def test_messages_never_repeat_literals(sql: str, policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    with pytest.raises(SandboxError) as refused:
        validate(sql, policy, schemas)
    assert "S3CR3T" not in refused.value.message
    assert "S3CR3T" not in str(refused.value.details)


def test_count_distinct_units_needs_count_distinct(schemas: dict[str, DatasetSchema]) -> None:
    policy = policy_with(aggregates=["count", "sum"])
    refused = refusal("SELECT race, COUNT(DISTINCT pid) AS persons FROM pums GROUP BY race", policy, schemas)
    assert refused.details["rule"] == "aggregate_not_allowed"


def test_count_distinct_units_whatever_the_use(schemas: dict[str, DatasetSchema]) -> None:
    """With pid denied, the number of people may still be counted, but pid cannot be joined on."""
    policy = policy_with(columns={"pums": {"pid": "deny"}})
    plan = validate("SELECT race, COUNT(DISTINCT pid) AS persons FROM pums GROUP BY race", policy, schemas)
    assert plan.outputs[1].aggregate is Aggregate.COUNT_DISTINCT
    validate("SELECT s.race, COUNT(DISTINCT s.pid) AS persons FROM (SELECT race, pid FROM pums) AS s GROUP BY s.race", policy, schemas)
    refused = refusal("SELECT COUNT(*) AS n FROM pums AS p JOIN tax AS t ON p.pid = t.pid", policy, schemas)
    assert refused.details == {"rule": "column_denied", "column": "pums.pid"}


@pytest.mark.parametrize("use", ["plain", "dimension", "measure"])
def test_identifiers_are_never_more_than_join_keys(use: str, schemas: dict[str, DatasetSchema]) -> None:
    """A policy that (wrongly) grants an identifier more than join_key is narrowed to deny, not trusted."""
    policy = policy_with(columns={"pums": {"pid": use}})
    for sql in ("SELECT pid, COUNT(*) AS n FROM pums GROUP BY pid", "SELECT COUNT(*) AS n FROM pums WHERE pid + 0 > 100"):
        assert refusal(sql, policy, schemas).details == {"rule": "column_denied", "column": "pums.pid"}


def test_datasets_outside_the_policy_are_denied(schemas: dict[str, DatasetSchema]) -> None:
    policy = Policy.model_validate({"columns": {"pums": {"race": "dimension"}}, "aggregates": ["count"], "job_kinds": ["query"]})
    assert validate("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", policy, schemas).group_keys == ("race",)
    refused = refusal("SELECT industry, COUNT(*) AS n FROM tax GROUP BY industry", policy, schemas)
    assert refused.details == {"rule": "column_denied", "column": "tax.industry"}


def test_tables_must_be_in_the_grant(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    refused = refusal("SELECT industry, COUNT(*) AS n FROM tax GROUP BY industry", policy, {"pums": schemas["pums"]})
    assert refused.details["rule"] == "table_not_granted"


def test_more_aggregates_when_the_policy_allows_them(schemas: dict[str, DatasetSchema]) -> None:
    policy = policy_with(aggregates=["count", "stddev", "variance"])
    plan = validate("SELECT race, STDDEV_POP(income) AS sd, VAR_POP(income) AS v FROM pums GROUP BY race", policy, schemas)
    assert [output.aggregate for output in plan.outputs] == [None, Aggregate.STDDEV, Aggregate.VARIANCE]
    assert refusal("SELECT race, SUM(income) AS s FROM pums GROUP BY race", policy, schemas).details["rule"] == "aggregate_not_allowed"


def test_a_use_the_role_forbids_is_denied(schemas: dict[str, DatasetSchema]) -> None:
    """A quasi-identifier can never be plain (policies.model.ALLOWED_USES): such a grant is read as deny."""
    policy = policy_with(columns={"pums": {"age": "plain"}})
    refused = refusal("SELECT age, COUNT(*) AS n FROM pums GROUP BY age", policy, schemas)
    assert refused.details == {"rule": "column_denied", "column": "pums.age"}


def test_a_plain_attribute_may_be_grouped_filtered_and_aggregated(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    plan = validate("SELECT married, AVG(married) AS share, COUNT(*) AS n FROM pums WHERE married >= 0 GROUP BY married", policy, schemas)
    assert plan.group_keys == ("married",)
