"""Homomorphic-encryption jobs (kind ``he``), one module per ``op``.

``plan(spec, policy, schemas)`` validates a spec (``ValidationFailed``) and checks it against the
grant's policy (``PolicyViolation`` with ``details["rule"]`` an ``HERule`` value), returning the
op's plan, a subclass of ``HEPlan``. An op registers its planner in ``PLANNERS``; the worker side
(``sandbox``) runs the plan by its type. Whether the grant allows ``he`` jobs at all is the caller's
check. See ``docs/homomorphic-jobs.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.errors import ValidationFailed
from core.schema import DatasetSchema
from jobs.he.aggregate import AggregateOutput, AggregatePlan, plan_aggregate
from jobs.he.values import HEPlan, HERule, violation
from policies.model import Policy

__all__ = ["PLANNERS", "AggregateOutput", "AggregatePlan", "HEPlan", "HERule", "plan", "violation"]

Planner = Callable[[Mapping[str, Any], Policy, Mapping[str, DatasetSchema]], HEPlan]

PLANNERS: dict[str, Planner] = {
    "aggregate": plan_aggregate,
}


def plan(spec: Mapping[str, Any], policy: Policy, schemas: Mapping[str, DatasetSchema]) -> HEPlan:
    """The plan of ``spec``'s op, checked against ``policy`` over the grant's datasets (``schemas`` by name)."""
    op = spec.get("op")
    planner = PLANNERS.get(op) if isinstance(op, str) else None
    if planner is None:
        ops = ", ".join(sorted(PLANNERS))
        raise ValidationFailed(f"invalid spec: op: must be one of {ops}", details={"field": "op"})
    return planner(spec, policy, schemas)
