"""What an analyst sees of a job and of its released output, and nothing more.

Every channel is output (docs/architecture.md): a refusal reason that names the rule and the cell, a
count of secondary suppressions, a failure message, a timing to the microsecond — each tells a hostile
analyst something about the data. So the analyst sees:

- every withheld cell with one status (``withheld``) and one reason: primary and secondary suppression,
  differencing and review flags look alike; the rule, counts and evidence stay with auditors;
- a job's reason from a short list of fixed texts that do not depend on the data (time limit, budget,
  cancellation), else one fixed text per status (a memory failure reads as any failure);
- of the verdict, its status and the DP accounting (ε per output, mechanisms, noise scales);
- timestamps and durations in whole seconds.

Stewards and auditors see everything as stored. Dry runs run on mock rows and show everything.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from core.values import JobStatus
from policies.rules import CellStatus
from sandbox.runtime.child import FAILED_REASON, TIMEOUT_REASON

WITHHELD = "withheld"
WITHHELD_REASON = "withheld by output control"

# Reasons that depend on the analyst's own actions, the budget or the limits, not on a value: the
# rest (a library's message, a rule that fired on a cell) are the auditors' to read. Running out of
# memory can depend on the data (how many groups, how many distinct values): it reads as any other
# failure, so that a failure is one bit and no more. A timeout keeps its text: the whole-second
# run time, near the limit the analyst set, tells it anyway.
FIXED_REASONS = frozenset({TIMEOUT_REASON, FAILED_REASON, "cancelled by the analyst", "privacy budget exhausted"})
STATUS_REASONS = {
    JobStatus.HELD: "held for review by the bureau's auditors",
    JobStatus.BLOCKED: WITHHELD_REASON,
    JobStatus.FAILED: FAILED_REASON,
}
SUMMARY_KEYS = ("status", "rows", "cells", "dp", "fit", "he")


def reason(status: JobStatus, stored: str | None) -> str | None:
    """The job's reason as the analyst reads it. A review's decision keeps its reason (a person wrote it)."""
    if stored is None or status in (JobStatus.RELEASED, JobStatus.REJECTED, JobStatus.QUEUED, JobStatus.RUNNING):
        return stored
    if stored in FIXED_REASONS:
        return stored
    return STATUS_REASONS.get(status, WITHHELD_REASON)


def verdict(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The verdict's status and DP accounting; counts of suppressed, flagged or complementary cells stay out."""
    if stored is None:
        return None
    return {key: stored[key] for key in ("status", "dp") if key in stored}


def released(form: dict[str, Any]) -> dict[str, Any]:
    """The released form with every withheld cell alike and a summary without disclosure counts."""
    notes = [_note(note) for note in form.get("notes", [])]
    summary = {key: form["summary"][key] for key in SUMMARY_KEYS if key in form.get("summary", {})}
    summary["withheld"] = sum(1 for note in notes if note["status"] == WITHHELD)
    return {**form, "notes": notes, "summary": summary}


def _note(note: dict[str, Any]) -> dict[str, Any]:
    if note.get("status") == CellStatus.PASS.value:
        return note  # noise or rounding applied alike to every cell: its scale and base are the policy's
    return {"row": note["row"], "column": note["column"], "status": WITHHELD, "rule": "output_control", "reason": WITHHELD_REASON}


def whole_seconds(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(microsecond=0)


def duration(seconds: float | None) -> float | None:
    """A duration rounded up to whole seconds: the analyst learns how long, not how the data shaped it."""
    return None if seconds is None else float(math.ceil(seconds))
