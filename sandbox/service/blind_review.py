"""Blinded review of script jobs: each reviewer decides alone, and sees no other decision until all have decided.

Independent and blinded like OpenSAFELY's Airlock: a reviewer who could read an earlier decision
would be tempted to follow it, and one who colludes with the analyst could steer by it. So while a
script job's review is open:

- a decision, release or reject, never ends the job by itself: it stays held until the policy's
  number of reviewers have decided, so neither its status, its reason, nor its leaving the queue
  tells a later reviewer what an earlier one chose;
- the ledger records each decision when it is made (``review.submitted``): who decided, and a
  SHA-256 commitment to the decision, its reason and its selection of outputs, salted with the
  review's random id, never the content itself (auditors read the ledger, and reviewers are
  auditors); when the last required reviewer decides, ``review.opened`` records every decision in
  full with its salt, so that anyone can check each against the commitment made before it;
- the outcome comes from all the decisions at once (``outcome``): any rejection rejects the job, with
  the rejecting reviewers' reasons; otherwise what every reviewer released is released and the rest
  returned. Selections with nothing in common return everything (the job is rejected) rather than
  answer an error: an error a reviewer could retry would let them probe the others' selections one
  output at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.models import Review

NOTHING_IN_COMMON = "the reviewers released no output in common, so every output is returned"


@dataclass(frozen=True)
class Outcome:
    """What a complete review decided: ``release`` of ``kept`` (and the rest returned), or ``reject``; with the reasons."""

    decision: str
    reason: str
    kept: frozenset[str]


def opened(review: Review) -> dict[str, Any]:
    """A decision in full, as ``review.opened`` records it once the review is complete; ``review_id`` is its salt."""
    return {
        "review_id": review.id,
        "reviewer": review.reviewer,
        "decision": review.decision,
        "reason": review.reason,
        "outputs": review.outputs,
    }


def commitment(review: Review) -> str:
    """The SHA-256 of the decision's canonical JSON (``opened``): binds the decision without showing it.

    The review id (a random UUID, shown to nobody before the review is complete) makes a decision
    that could be guessed -- release, everything -- unrecognisable from its commitment.
    """
    return hashlib.sha256(json.dumps(opened(review), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def outcome(reviews: Sequence[Review], proposed: Collection[str]) -> Outcome:
    """The decision of a complete review (every required reviewer has decided), from all decisions at once."""
    rejecting = [r.reason for r in reviews if r.decision == "reject"]
    if rejecting:
        return Outcome("reject", _joined(rejecting), frozenset())
    kept = set(proposed)
    for review in reviews:
        if review.outputs is not None:
            kept &= set(review.outputs)
    reasons = _joined([r.reason for r in reviews])
    if proposed and not kept:
        return Outcome("reject", f"{NOTHING_IN_COMMON}: {reasons}", frozenset())
    return Outcome("release", reasons, frozenset(kept))


def _joined(reasons: list[str]) -> str:
    return " / ".join(dict.fromkeys(reasons))
