"""Homomorphic jobs (``kind: "he"``, docs/homomorphic-jobs.md): the spec's ``op`` picks the planner.

``plan(spec, policy, schemas, unique_units)`` returns the op's plan or refuses: ``score`` (an
analyst's encrypted linear model over consenting entities, ``jobs.he.score``). Whether the grant
allows ``he`` jobs at all is the caller's check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import BadRequest, ValidationFailed
from core.schema import DatasetSchema
from jobs.he.score import ScorePlan, ScoreRule, ScoreSpec, plan_score
from policies.model import Policy

__all__ = ["OPS", "HEPlan", "ScorePlan", "ScoreRule", "ScoreSpec", "plan", "plan_score"]

OPS = ("score",)
HEPlan = ScorePlan


def plan(
    spec: Mapping[str, Any], policy: Policy, schemas: Mapping[str, DatasetSchema], unique_units: frozenset[str] = frozenset()
) -> HEPlan:
    op = spec.get("op")
    if op == "score":
        return plan_score(spec, policy, schemas, unique_units)
    if op == "aggregate":
        raise BadRequest("the he op aggregate is not available on this instance yet; op score is", details={"field": "spec.op"})
    raise ValidationFailed(f"spec.op must be one of: {', '.join(OPS)}", details={"field": "spec.op"})
