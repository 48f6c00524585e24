"""Query jobs: an analyst's SQL, validated against the grant's policy and rewritten to carry unit counts.

``validate(sql, policy, schemas)`` returns a ``QueryPlan`` or raises ``BadSql`` / ``PolicyViolation``
(``details["rule"]`` is a ``QueryRule`` value). Parsing, analysis and generation use sqlglot in the
DuckDB dialect.
"""

from __future__ import annotations

from jobs.query.model import BadSql, OutputColumn, OutputKind, QueryPlan, QueryRule
from jobs.query.validate import validate

__all__ = ["BadSql", "OutputColumn", "OutputKind", "QueryPlan", "QueryRule", "validate"]
