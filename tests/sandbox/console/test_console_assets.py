"""The vendored scripts are their releases' files, byte for byte, with their licences and a SOURCE that says where from.

Each ``SOURCE`` names the npm tarball, its integrity and the sha256 of the file kept; the file must
hash to it. Nothing else is vendored, so a changed or added library shows here first.
"""

from __future__ import annotations

import fnmatch
import hashlib
import tomllib
from pathlib import Path

import pytest

from sandbox.console import i18n

VENDOR = Path(i18n.__file__).resolve().parent / "static" / "vendor"
# folder -> (the release file, a line of its licence, the version string inside the file)
RELEASES = {
    "htmx-2.0.11": ("htmx.min.js", "Zero-Clause BSD", 'version:"2.0.11"'),
    "echarts-6.1.0": ("echarts.min.js", "Apache License", 'version="6.1.0"'),
}


def test_only_the_known_libraries_are_vendored() -> None:
    assert sorted(path.name for path in VENDOR.iterdir()) == sorted(RELEASES)


@pytest.mark.parametrize("folder", sorted(RELEASES))
def test_a_vendored_file_is_the_release_file(folder: str) -> None:
    name, licence, version = RELEASES[folder]
    source = (VENDOR / folder / "SOURCE").read_text()
    digest = hashlib.sha256((VENDOR / folder / name).read_bytes()).hexdigest()
    assert f"sha256 of {name}: {digest}" in source
    assert "https://registry.npmjs.org/" in source
    assert "integrity sha512-" in source
    assert licence in (VENDOR / folder / "LICENSE").read_text()
    assert version in (VENDOR / folder / name).read_text(encoding="utf-8").replace(" ", "")


def test_echarts_keeps_its_notice_and_its_chinese_and_english_locales() -> None:
    folder = VENDOR / "echarts-6.1.0"
    assert "The Apache Software Foundation" in (folder / "NOTICE").read_text()
    script = (folder / "echarts.min.js").read_text(encoding="utf-8")
    assert '"ZH"' in script
    assert '"EN"' in script


def test_every_file_the_console_serves_is_packaged() -> None:
    """An installed package has what the checkout serves: each template, static file and catalogue matches
    a ``package-data`` pattern of ``pyproject.toml`` (a new kind of file needs its pattern)."""
    console = VENDOR.parents[1]
    config = tomllib.loads((console.parents[1] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["sandbox.console"]
    files = [
        p.relative_to(console) for folder in ("templates", "static", "translations") for p in (console / folder).rglob("*") if p.is_file()
    ]
    assert len(files) > 20
    unpackaged = [str(f) for f in files if not any(fnmatch.fnmatchcase(str(f), pattern) and f.match(pattern) for pattern in patterns)]
    assert unpackaged == []
