"""The custodian's ``init`` tells what to run next, and that is what ``make run`` (scripts/run.sh) runs."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from custodian.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_the_next_hint_is_the_command_make_run_runs(tmp_path: Path) -> None:
    directory = tmp_path / "custodian"
    result = CliRunner().invoke(main, ["init"], env={"SANDBOX_CUSTODIAN_DIR": str(directory)}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    hint = re.search(r"^next: (.+)$", result.stderr, flags=re.MULTILINE)
    assert hint is not None, result.stderr
    script = (ROOT / "scripts" / "run.sh").read_text()
    ran = re.search(r"^\.venv/bin/(python -m sandbox keys export-public .+)$", script, flags=re.MULTILINE)
    assert ran is not None
    # run.sh's custodian_dir is the SANDBOX_CUSTODIAN_DIR the custodian was initialised with.
    assert hint.group(1) == ran.group(1).replace('"$custodian_dir/domain.pub"', str(directory / "domain.pub"))
    again = CliRunner().invoke(main, ["init"], env={"SANDBOX_CUSTODIAN_DIR": str(directory)}, catch_exceptions=False)
    assert "next:" in again.stderr  # the domain key is still missing
    (directory / "domain.pub").write_text("-----BEGIN PUBLIC KEY-----\n")
    done = CliRunner().invoke(main, ["init"], env={"SANDBOX_CUSTODIAN_DIR": str(directory)}, catch_exceptions=False)
    assert "next:" not in done.stderr
