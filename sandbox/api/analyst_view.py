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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.values import JobStage, JobStatus
from policies.lp_audit import SUPPRESSION_TOO_LONG
from policies.rules import CellStatus
from sandbox.runtime.child import FAILED_REASON, MEMORY_REASON
from sandbox.scripts.isolation import LAUNCHER_GRACE_SECONDS

WITHHELD = "withheld"
WITHHELD_REASON = "withheld by output control"

# A held or blocked job's stored reason names the rule that fired (or whether anything was flagged at
# all under always_review): the analyst reads one text per status. A failed job's reason is the
# worker's own text: a crash or a library's message never gets there (``sandbox.runtime.child`` sends
# its fixed FAILED_REASON), and what remains is operational (time limit, grant revoked, custodian
# unreachable, a score's consents changed), not a value. Running out of memory can depend on the data
# (how many groups, how many distinct values): it reads as any other failure, so that a failure is one
# bit and no more. A timeout keeps its text: the whole-second run time, near the analyst's limit, tells it anyway.
STATUS_REASONS = {
    JobStatus.HELD: "held for review by the bureau's auditors",
    JobStatus.BLOCKED: WITHHELD_REASON,
}
# Counts per rule: how many cells were primary or secondary suppressions or flagged, and the verdict's
# reason naming the rule. The rest of a summary (rows, cells, DP accounting, a model's fit, an he job's
# decryption and a score's scales and counts, which the score's design shows the analyst) stays.
# Failures whose occurrence depends on the data (memory, how long the suppression programmes take):
# the analyst reads them as any other failure, so that each is one bit and no more.
DATA_DEPENDENT_FAILURES = frozenset({MEMORY_REASON, SUPPRESSION_TOO_LONG})
DISCLOSURE_KEYS = frozenset({"reason", "suppressed", "complements", "complementary", "flagged"})


def reason(status: JobStatus, stored: str | None) -> str | None:
    """The job's reason as the analyst reads it. A review's decision keeps its reason (a person wrote it)."""
    if stored is None:
        return None
    if status is JobStatus.FAILED:
        return FAILED_REASON if stored in DATA_DEPENDENT_FAILURES else stored
    return STATUS_REASONS.get(status, stored)


def verdict(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The verdict without counts of suppressed, flagged or complementary cells, nor the rule's reason."""
    if stored is None:
        return None
    return {key: value for key, value in stored.items() if key not in DISCLOSURE_KEYS}


def released(form: dict[str, Any]) -> dict[str, Any]:
    """The released form with every withheld cell alike and a summary without disclosure counts."""
    notes = [_note(note) for note in form.get("notes", [])]
    summary = {key: value for key, value in form.get("summary", {}).items() if key not in DISCLOSURE_KEYS}
    if notes or "cells" in summary:  # a table with notes or under output control; a score has no cells to withhold
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


# A script job ends when its script chooses (it can sleep for as long as a value says): until its time
# limit and its launcher's grace have passed since it started, its analyst sees it running, whatever
# it did. After that the stored status shows (held, or cancelled by the analyst at once).
SCRIPT_SETTLE_SECONDS = LAUNCHER_GRACE_SECONDS + 5


@dataclass(frozen=True)
class ScriptState:
    status: str
    stage: str
    progress: float
    masked: bool  # True: the stored status, reason, verdict and result are not shown yet


def script_state(status: JobStatus, stage: str, progress: float, started_at: datetime | None, timeout_seconds: int) -> ScriptState:
    """What a script job's analyst sees of its progress: nothing that depends on when the script ended."""
    if started_at is None or status is JobStatus.CANCELLED:
        return ScriptState(status.value, stage, progress, False)
    settled = started_at.replace(tzinfo=started_at.tzinfo or UTC) + timedelta(seconds=timeout_seconds + SCRIPT_SETTLE_SECONDS)
    if datetime.now(UTC) < settled:
        return ScriptState(JobStatus.RUNNING.value, JobStage.EXECUTE.value, 0.5, True)
    return ScriptState(status.value, stage, progress, False)
