"""Homomorphic-encryption jobs (kind ``he``), one module per ``op``.

``plan(spec, policy, schemas, unique_units)`` validates a spec (``ValidationFailed``) and checks it
against the grant's policy (``PolicyViolation`` with ``details["rule"]``), returning the op's plan, a
subclass of ``HEPlan``: ``aggregate`` (sums of provider-encrypted columns, decrypted by the key
custodian, ``jobs.he.aggregate``) or ``score`` (an analyst's encrypted linear model over consenting
entities, ``jobs.he.score``). An op registers its planner in ``PLANNERS``; the worker side
(``sandbox``) runs the plan by its type. Whether the grant allows ``he`` jobs at all is the caller's
check. See ``docs/homomorphic-jobs.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.errors import ValidationFailed
from core.schema import DatasetSchema
from jobs.he.aggregate import AggregateOutput, AggregatePlan, plan_aggregate
from jobs.he.score import ScorePlan, ScoreRule, ScoreSpec, plan_score
from jobs.he.values import HEPlan, HERule, violation
from policies.model import Policy

__all__ = [
    "PLANNERS",
    "AggregateOutput",
    "AggregatePlan",
    "HEPlan",
    "HERule",
    "ScorePlan",
    "ScoreRule",
    "ScoreSpec",
    "plan",
    "plan_score",
    "violation",
]

# (spec, policy, schemas by dataset name, datasets with one row per privacy unit) -> plan
Planner = Callable[[Mapping[str, Any], Policy, Mapping[str, DatasetSchema], frozenset[str]], HEPlan]

PLANNERS: dict[str, Planner] = {
    "aggregate": lambda spec, policy, schemas, _unique: plan_aggregate(spec, policy, schemas),
    "score": plan_score,
}


def plan(
    spec: Mapping[str, Any], policy: Policy, schemas: Mapping[str, DatasetSchema], unique_units: frozenset[str] = frozenset()
) -> HEPlan:
    """The plan of ``spec``'s op, checked against ``policy`` over the grant's datasets (``schemas`` by name)."""
    op = spec.get("op")
    planner = PLANNERS.get(op) if isinstance(op, str) else None
    if planner is None:
        ops = ", ".join(sorted(PLANNERS))
        raise ValidationFailed(f"invalid spec: op: must be one of {ops}", details={"field": "op"})
    return planner(spec, policy, schemas, unique_units)
