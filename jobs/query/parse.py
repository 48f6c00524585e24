"""Stage one: text to exactly one SELECT syntax tree (DuckDB dialect), or a clear refusal.

Size and nesting are bounded before anything else looks at the tree, so that a hostile text can
neither exhaust memory nor the interpreter's recursion limit in later stages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from jobs.query.model import BadSql, QueryRule, violation
from jobs.query.spelling import Spelling

DIALECT = "duckdb"
MAX_CHARS = 20_000
_CLASS = re.compile(r"<class '[\w.]*\.(\w+)'>")  # how sqlglot names its expression classes
# String literals (quotes doubled inside; unterminated to the end), dollar-quoted strings, numbers.
_LITERAL = re.compile(r"[eE]?'(?:[^']|'')*(?:'|$)|\$\$.*?(?:\$\$|$)|\b\d+(?:\.\d*)?(?:[eE][+-]?\d+)?\b|\.\d+\b", re.DOTALL)
MAX_DEPTH = 200  # deeper trees are refused: every later stage walks the tree recursively


def parse_select(sql: str, spelling: Spelling) -> exp.Select:
    """The one SELECT statement of ``sql``, identifiers normalised as DuckDB resolves them (case-insensitively),
    each spelled by ``spelling``: declared names as declared, aliases as first written (``jobs.query.spelling``).

    Raises ``BadSql`` for empty, oversized, unparseable or non-statement text, and ``PolicyViolation``
    for several statements, a statement that is not a SELECT, a set operation or a WITH clause.
    """
    if len(sql) > MAX_CHARS:
        raise BadSql(f"the query is longer than {MAX_CHARS} characters", details={"field": "sql"})
    if not sql.strip():
        raise BadSql("the query is empty", details={"field": "sql"})
    statements = [s for s in _parse(sql) if s is not None and not isinstance(s, exp.Semicolon)]  # empty statements
    if not statements:
        raise BadSql("the query is empty (only comments or semicolons)", details={"field": "sql"})
    if len(statements) > 1:
        raise violation(QueryRule.SINGLE_SELECT, f"send exactly one statement, not {len(statements)}")
    statement = statements[0]
    _check_depth(statement)
    if isinstance(statement, exp.SetOperation):
        raise violation(QueryRule.SINGLE_SELECT, "UNION, INTERSECT and EXCEPT are not allowed: send one SELECT")
    if not isinstance(statement, exp.Select):
        if isinstance(statement, exp.Query | exp.Command) or _is_statement(statement):
            kind = statement.name if isinstance(statement, exp.Command) else statement.key
            raise violation(QueryRule.SINGLE_SELECT, f"only a SELECT statement is allowed, not {kind.upper()}")
        raise BadSql("the text is not a query: send a SELECT statement", details={"field": "sql"})
    if statement.args.get("with_"):
        raise violation(QueryRule.SUBQUERY, "WITH (common table expressions) is not allowed: use a subquery in FROM")
    spelling.adopt_aliases(statement)
    return normalize_identifiers(statement, dialect=spelling)


def _parse(sql: str) -> list[exp.Expr | None]:
    try:
        return sqlglot.parse(sql, read=DIALECT)
    except ParseError as exc:
        raise _parse_refusal(exc.errors[0] if exc.errors else {}) from None
    except TokenError:
        raise BadSql("the query does not parse (unterminated string, comment or identifier)", details={"field": "sql"}) from None
    except RecursionError:
        raise BadSql("the query is too deeply nested", details={"field": "sql"}) from None
    except SqlglotError:
        raise BadSql("the query does not parse", details={"field": "sql"}) from None


def _parse_refusal(where: Mapping[str, Any]) -> BadSql:
    """Where the text stops parsing and what was expected there, in words.

    sqlglot's own description names its classes ("Required keyword: 'this' missing for <class
    '...Where'>"); the message says instead what was expected or found, quoting the token and a
    short piece of the text before it. The text is the analyst's own query, but its literals may be
    data values (a person's id probed in a WHERE) and refusals reach the ledger: literals are shown
    as ``?``, as in every other refusal.
    """
    line, end = where.get("line"), where.get("col")
    token = _fragment(_masked(str(where.get("highlight") or "")))
    before = _fragment(_masked(str(where.get("start_context") or "")), tail=True)
    column = end - len(str(where.get("highlight") or "")) + 1 if isinstance(end, int) else None
    position = f"line {line}, column {column}" if isinstance(line, int) and column is not None else "an unknown position"
    after = f", after '{before}'" if before else ""
    message = f"the query does not parse at {position}{after}: {_expected(str(where.get('description') or ''), token)}"
    details: dict[str, Any] = {"field": "sql"}
    if isinstance(line, int) and column is not None:
        details |= {"line": line, "column": column}
    return BadSql(message, details=details)


def _expected(description: str, token: str) -> str:
    """sqlglot's description of a parse error as what was expected or found at ``token``."""
    found = f"'{token}'" if token else "the end of the query"
    expecting = re.match(r"Expecting (.+)", description)
    if expecting:
        return f"expected {expecting.group(1).strip()} before {found}"
    if re.match(r"Required keyword: '\w+' missing for " + _CLASS.pattern, description):
        return f"an expression is expected after {found}"
    if description.startswith(("Invalid expression", "Unexpected token")):
        return f"unexpected {found}"
    plain = _CLASS.sub(lambda m: m.group(1), description).strip() or "unexpected"
    return f"{plain} at {found}"


def _masked(text: str) -> str:
    """``text`` with its string and number literals replaced by ``?`` (an unterminated string to the end)."""
    return _LITERAL.sub("?", text)


def _fragment(text: str, tail: bool = False, limit: int = 30) -> str:
    """At most ``limit`` characters of ``text`` on one line (its end if ``tail``), marked with ... where cut."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return "..." + flat[-limit:] if tail else flat[:limit] + "..."


def _is_statement(node: exp.Expr) -> bool:
    """DDL, DML and session commands (ATTACH, COPY, PRAGMA, SET, ...): anything that is not a bare expression."""
    return not isinstance(node, exp.Condition | exp.Identifier | exp.Literal)


def _check_depth(root: exp.Expr) -> None:
    stack: list[tuple[exp.Expr, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadSql(f"the query is nested more than {MAX_DEPTH} levels deep", details={"field": "sql"})
        stack.extend((child, depth + 1) for child in node.iter_expressions())
