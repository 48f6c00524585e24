"""The pinned runtime of script jobs (``sandbox.scripts.runtime``): its package list and hash, and its refusal when unusable.

A fake runtime in ``tmp_path`` (a pyvenv.cfg, dist-info folders, the stamp) stands for the real one;
``test_script_isolation`` and ``test_script_jobs`` run scripts in the real one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sandbox.runtime import script_run
from sandbox.scripts import runtime

PINS = "numpy==2.4.6\nscikit-learn==1.9.1\n"


def fake_runtime(root: Path, requirements: Path, distributions: dict[str, str]) -> None:
    """A runtime as scripts/script-runtime.sh leaves it, with ``distributions`` (name -> version) installed."""
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "bin" / "python").symlink_to("/usr/bin/env")  # any file: only its presence is checked
    (root / "pyvenv.cfg").write_text("home = /opt/python/3.11.7/bin\ninclude-system-site-packages = false\nversion = 3.11.7\n")
    for name, version in distributions.items():
        install(site, name, version)
    requirements.write_text(PINS)
    (root / runtime.STAMP).write_text(hashlib.sha256(PINS.encode()).hexdigest() + "\n")


def install(site: Path, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Path, Path]:
    root, requirements = tmp_path / "rt", tmp_path / "requirements.txt"
    fake_runtime(root, requirements, {"numpy": "2.4.6", "scikit_learn": "1.9.1"})
    return root, requirements


def test_the_package_list_is_each_distribution_name_and_version_sorted(fake: tuple[Path, Path]) -> None:
    root, requirements = fake
    assert runtime.packages(root) == ("numpy==2.4.6", "scikit-learn==1.9.1")
    described = runtime.describe(root)
    assert described == {"python": "3.11.7", "packages_sha256": hashlib.sha256(b"numpy==2.4.6\nscikit-learn==1.9.1").hexdigest()}
    assert runtime.missing(root, requirements) == ""
    assert runtime.locate(root).base == Path("/opt/python/3.11.7")


@pytest.mark.parametrize(
    ("change", "name", "version"),
    [
        pytest.param("add", "joblib", "1.6.0", id="a-package-added"),
        pytest.param("upgrade", "numpy", "2.4.7", id="a-version-changed"),
    ],
)
def test_the_recorded_hash_changes_when_the_package_list_changes(fake: tuple[Path, Path], change: str, name: str, version: str) -> None:
    root, _ = fake
    before = runtime.describe(root)["packages_sha256"]
    site = root / "lib" / "python3.11" / "site-packages"
    if change == "upgrade":
        for old in site.glob(f"{name}-*.dist-info"):
            (old / "METADATA").unlink()
            old.rmdir()
    install(site, name, version)
    assert f"{name}=={version}" in runtime.packages(root)
    assert runtime.describe(root)["packages_sha256"] != before


def test_an_absent_or_half_made_runtime_is_refused(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(PINS)
    assert "not installed" in runtime.missing(tmp_path / "absent", requirements)
    half = tmp_path / "half"  # a venv without the stamp: the install did not finish
    half.mkdir()
    (half / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.7\n")
    assert "not installed" in runtime.missing(half, requirements)


def test_a_runtime_installed_from_other_pins_is_refused(fake: tuple[Path, Path]) -> None:
    root, requirements = fake
    requirements.write_text(PINS + "joblib==1.6.0\n")  # a pin added since the install
    assert "other pins" in runtime.missing(root, requirements)


def test_the_projects_runtime_is_built_from_its_requirements_file() -> None:
    """The real runtime, where scripts/script-runtime.sh built it: exactly the pinned distributions, nothing of the service."""
    if runtime.missing():
        pytest.skip(runtime.missing())
    pinned = {
        line.split("==")[0].lower() + "==" + line.split("==")[1]
        for line in runtime.REQUIREMENTS.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert set(runtime.packages()) == pinned
    assert "scikit-learn==1.9.1" in pinned


def test_what_a_script_job_records_follows_the_runtimes_package_list(fake: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict and summary of a job (here one held without a result) carry the hash of the runtime's list as it is now."""
    root, _ = fake
    monkeypatch.setattr(runtime, "RUNTIME", root)
    first = script_run.held_anyway("the launcher failed")
    assert first.verdict.details["runtime"] == runtime.describe(root)
    assert first.released is not None
    assert first.released["summary"]["runtime"] == runtime.describe(root)
    install(root / "lib" / "python3.11" / "site-packages", "threadpoolctl", "3.8.0")
    second = script_run.held_anyway("the launcher failed")
    assert second.verdict.details["runtime"]["packages_sha256"] != first.verdict.details["runtime"]["packages_sha256"]
    assert second.raw is not None
    raw = dict(zip(second.raw.column("item").to_pylist(), second.raw.column("value").to_pylist(), strict=True))
    assert raw["packages"].splitlines() == ["numpy==2.4.6", "scikit-learn==1.9.1", "threadpoolctl==3.8.0"]  # shown to the reviewers
