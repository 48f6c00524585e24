"""The benchmarks' checks can fail: a wrong result or a missed target gives exit status 1."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from benchmarks import dp_checks, query_overhead, sdc_vs_acro
from benchmarks.checks import Checks, Verdict


def test_all_passed_is_status_0() -> None:
    checks = Checks(smoke=False)
    checks.check("right", True)
    checks.at_most("fast", 1.0, 2.0)
    checks.at_least("faster", 30.0, 20.0)
    assert checks.finish() == 0


def test_a_failed_check_is_status_1_in_smoke_mode_too() -> None:
    checks = Checks(smoke=True)
    checks.check("right", True)
    checks.check("wrong", False, "differs at (1, 2)")
    assert checks.finish() == 1
    assert [line.name for line in checks.failed()] == ["wrong"]


@pytest.mark.parametrize(("value", "status"), [(2.5, 1), (1.5, 0)], ids=["missed", "met"])
def test_a_missed_target_is_status_1(value: float, status: int) -> None:
    checks = Checks(smoke=False)
    checks.at_most("time", value, 2.0, " s")
    assert checks.finish() == status


def test_smoke_mode_skips_targets_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    checks = Checks(smoke=True)
    checks.at_least("speed-up", 2.0, 20.0, "x")
    assert checks.finish() == 0
    assert checks.lines[0].verdict is Verdict.SKIPPED
    assert "skipped (smoke mode" in capsys.readouterr().out


def test_acro_comparison_fails_on_a_different_released_value() -> None:
    acro = {(1, 1): 100.0, (1, 2): None, (2, 1): 50.0}
    checks = Checks(smoke=True)
    sdc_vs_acro.compare(checks, 0, acro, dict(acro))
    assert checks.finish() == 0
    checks = Checks(smoke=True)
    sdc_vs_acro.compare(checks, 0, acro, acro | {(2, 1): 51.0})
    assert [line.name for line in checks.failed()] == ["repeat 1: the same released values as ACRO (2 cells)"]


def test_acro_comparison_fails_on_different_withheld_cells() -> None:
    acro = {(1, 1): 100.0, (1, 2): None}
    checks = Checks(smoke=True)
    sdc_vs_acro.compare(checks, 0, acro, {(1, 1): None, (1, 2): None})
    assert "repeat 1: the same withheld cells as ACRO (1)" in [line.name for line in checks.failed()]


def test_acro_comparison_fails_when_nothing_is_withheld() -> None:
    cells = {(1, 1): 100.0}
    checks = Checks(smoke=True)
    sdc_vs_acro.compare(checks, 0, cells, dict(cells))
    assert checks.finish() == 1


def test_query_released_values_must_equal_duckdb() -> None:
    raw = pa.table({"race": [1, 2], "n": [10, 20], "mean_income": [5.0, 7.0]})
    released = pd.DataFrame({"race": [1, 2], "n": [10, None], "mean_income": [5.0, 7.0]})
    checks = Checks(smoke=True)
    query_overhead.check_released(checks, released, raw)
    assert checks.finish() == 0
    checks = Checks(smoke=True)
    query_overhead.check_released(checks, released.assign(mean_income=[5.0, 7.5]), raw)
    assert checks.finish() == 1


def test_stated_bound_fails_only_on_too_many_misses() -> None:
    assert dp_checks.binomial_tail(100, 0, 0.05) == pytest.approx(1.0)
    assert dp_checks.binomial_tail(2, 1, 0.5) == pytest.approx(0.75)
    assert dp_checks.binomial_tail(3200, 200, 0.05) == pytest.approx(9.6e-4, rel=0.01)  # large n: no overflow (3.2 s.d. above the mean)
    checks = Checks(smoke=True)
    dp_checks._check_bound(checks, "ok", 200, 12)  # 6% misses: plausible for a 95% bound
    dp_checks._check_bound(checks, "wrong", 200, 60)  # 30%: not a 95% bound
    assert [line.name.split(":")[0] for line in checks.failed()] == ["wrong"]
