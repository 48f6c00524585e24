"""Result checks and stated targets of the benchmarks, and the exit status they add up to.

A benchmark that only prints numbers cannot fail: a wrong answer or a missed target scrolls by.
Each benchmark records every result check (e.g. "the same withheld cells as ACRO") and every
stated target (e.g. "speed-up >= 20x") here; each is printed as it is decided, a summary is
printed at the end, and ``finish`` gives the exit status: 1 if any check or target failed.

In smoke mode (``--smoke``: small data, seconds, run by ``make bench-smoke`` in CI) every result
check still runs, but timing and accuracy targets are skipped and said to be: they are stated for
the full-size data, and small data on a shared CI machine measures start-up costs and noise.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from enum import Enum


class Verdict(Enum):
    PASSED = "ok"
    FAILED = "FAILED"
    SKIPPED = "skipped (smoke mode: small data, target stated for full size)"


class Kind(Enum):
    CHECK = "check"
    TARGET = "target"


@dataclass(frozen=True)
class Line:
    kind: Kind
    name: str
    verdict: Verdict
    detail: str


def add_smoke_flag(parser: argparse.ArgumentParser) -> None:
    """The one ``--smoke`` flag every benchmark takes."""
    parser.add_argument(
        "--smoke", action="store_true", help="small data in seconds: every result check, targets skipped (make bench-smoke)"
    )


@dataclass
class Checks:
    """The checks and targets of one benchmark run; ``smoke`` skips the targets, never the checks."""

    smoke: bool
    lines: list[Line] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """A result check: fails the run when ``ok`` is false, in smoke mode too. ``detail`` (what differs) shows on failure."""
        self._add(Line(Kind.CHECK, name, Verdict.PASSED if ok else Verdict.FAILED, "" if ok else detail))
        return ok

    def at_most(self, name: str, value: float, bound: float, unit: str = "") -> None:
        """A stated target ``value <= bound`` (skipped in smoke mode)."""
        self._target(name, value <= bound, f"{value:.4g}{unit} (target <= {bound:.4g}{unit})")

    def at_least(self, name: str, value: float, bound: float, unit: str = "") -> None:
        """A stated target ``value >= bound`` (skipped in smoke mode)."""
        self._target(name, value >= bound, f"{value:.4g}{unit} (target >= {bound:.4g}{unit})")

    def failed(self) -> list[Line]:
        return [line for line in self.lines if line.verdict is Verdict.FAILED]

    def finish(self) -> int:
        """Print the summary; the exit status is 1 if any check or target failed, else 0."""
        counts = {v: sum(line.verdict is v for line in self.lines) for v in Verdict}
        mode = "smoke mode: targets skipped" if self.smoke else "full size"
        print(f"\n{len(self.lines)} checks and targets ({mode}): {counts[Verdict.PASSED]} ok, "
              f"{counts[Verdict.FAILED]} failed, {counts[Verdict.SKIPPED]} skipped")  # fmt: skip
        for line in self.failed():
            print(f"  FAILED {line.kind.value}: {line.name}: {line.detail}")
        return 1 if self.failed() else 0

    def _target(self, name: str, met: bool, detail: str) -> None:
        verdict = Verdict.SKIPPED if self.smoke else (Verdict.PASSED if met else Verdict.FAILED)
        self._add(Line(Kind.TARGET, name, verdict, detail))

    def _add(self, line: Line) -> None:
        self.lines.append(line)
        print(f"  [{line.kind.value} {line.verdict.value}] {line.name}" + (f": {line.detail}" if line.detail else ""))
