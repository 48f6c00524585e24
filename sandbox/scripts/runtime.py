"""The pinned runtime of script jobs: a venv of its own, separate from the service's, bound read-only into the sandbox.

``scripts/script-runtime.sh`` installs ``requirements-script-runtime.txt`` (exact versions, every
dependency listed, ``--no-deps``) into ``.script-runtime/`` beside the project, with the service
venv's interpreter and no pip, and stamps it (``.installed``) with the SHA-256 of the requirements
file it was installed from. ``missing`` says why it cannot be used -- absent, half-made, or installed
from other pins than the file now holds -- and script jobs are then refused: they never fall back to
the service's venv, whose packages (Flask, the keys' cryptography, the database drivers) a script has
no business importing and whose list changes with the service. ``describe`` is what every script job
records: the runtime's Python and a SHA-256 of its package list (``packages``: ``name==version``).

Standard library only: the launcher imports this module.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
RUNTIME = PROJECT / ".script-runtime"
REQUIREMENTS = PROJECT / "requirements-script-runtime.txt"
STAMP = ".installed"
INSTALL = "scripts/script-runtime.sh installs it (make test and make run call it)"


@dataclass(frozen=True)
class Runtime:
    """Where a runtime lives: its venv (``prefix``) and the installation of the interpreter it runs on (``base``)."""

    prefix: Path
    base: Path
    python: str  # its interpreter's version, from pyvenv.cfg

    @property
    def executable(self) -> Path:
        return self.prefix / "bin" / "python"


def missing(root: Path | None = None, requirements: Path | None = None) -> str:
    """Why the runtime at ``root`` cannot run scripts ("" when it can): said once, and every script job is refused with it."""
    root, requirements = root or RUNTIME, requirements or REQUIREMENTS
    try:
        stamp = (root / STAMP).read_text(encoding="ascii").strip()
        located = locate(root)
    except (OSError, ValueError):
        return (
            f"script jobs need their pinned runtime ({requirements.name}), which is not installed; {INSTALL}; "
            "they never run on the service's venv"
        )
    try:
        wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    except OSError:
        return f"script jobs need {requirements.name}, the pins of their runtime, and it is missing"
    if stamp != wanted:
        return f"the script runtime was installed from other pins than {requirements.name} now holds; {INSTALL}"
    if not located.executable.exists():
        return f"the script runtime has no interpreter (its Python was removed?); {INSTALL}"
    return ""


def locate(root: Path) -> Runtime:
    """The runtime at ``root`` as its pyvenv.cfg describes it; ``ValueError`` if that file says too little, ``OSError`` if absent."""
    settings = {}
    for line in (root / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            settings[key.strip()] = value.strip()
    home, version = settings.get("home"), settings.get("version") or settings.get("version_info")
    if not home or not version:
        raise ValueError("pyvenv.cfg names no home or version")
    return Runtime(prefix=root.resolve(), base=Path(home).resolve().parent, python=version)


def packages(root: Path | None = None) -> tuple[str, ...]:
    """The runtime's installed distributions, ``name==version`` (names normalised, lower case), sorted."""
    found = set()
    for site in sorted((root or RUNTIME).glob("lib/python*/site-packages")):
        for dist in metadata.distributions(path=[str(site)]):
            name = dist.metadata["Name"]
            if name:
                found.add(f"{re.sub(r'[-_.]+', '-', name).lower()}=={dist.version}")
    return tuple(sorted(found))


def describe(root: Path | None = None) -> dict[str, str]:
    """What every script job records of its runtime: its Python's version and the SHA-256 of ``packages`` joined by newlines."""
    root = root or RUNTIME
    listed = packages(root)
    try:
        python = locate(root).python
    except (OSError, ValueError):
        python = "unknown"
    return {"python": python, "packages_sha256": hashlib.sha256("\n".join(listed).encode()).hexdigest()}
