"""Every third-party import is declared: the server's in requirements.txt, the client's in requirements-client.txt.

An import that works only because another package happens to pull its distribution in (patsy through
statsmodels, numpy through pandas, werkzeug through flask) breaks the day that package drops it. The
imports are read with ``ast``; ``importlib.metadata.packages_distributions()`` of this environment names
the distribution of each top-level module, and ``sys.stdlib_module_names`` the standard library.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"core", "crypto", "policies", "jobs", "custodian", "sandbox", "tests", "wsgi", "benchmarks", "migrations"}

# code -> the requirements file that must declare what it imports
SERVER_CODE = ["core", "crypto", "policies", "jobs", "custodian", "sandbox", "migrations", "wsgi.py"]
DEV_CODE = ["tests", "benchmarks"]
# Files that run in a venv of their own (benchmarks/smartnoise_env.sh: SmartNoise needs opendp<0.15).
OWN_VENV = {"benchmarks/smartnoise_side.py"}
CLIENT_PACKAGE = "sandbox.client"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def declared(filename: str) -> frozenset[str]:
    """Distribution names a requirements file declares, following ``-r`` includes."""
    names: set[str] = set()
    for raw in (ROOT / filename).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= declared(line[2:].strip())
        elif line:
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
            assert match, f"{filename}: cannot read {raw!r}"
            names.add(_normalise(match.group()))
    return frozenset(names)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_names(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """Dotted names an import statement loads, relative imports resolved against ``package``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{parent}.{base}" if base else parent
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def imports(path: Path, package: str, *, at_import_only: bool) -> set[str]:
    """Dotted names imported by a file; ``at_import_only`` keeps the module-level ones that run on import
    (not those under ``if TYPE_CHECKING:`` and not those inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    pending: list[ast.AST] = list(tree.body) if at_import_only else [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.update(_module_names(node, package))
        elif not at_import_only:
            pending.extend(ast.iter_child_nodes(node))
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            pending.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody, *(s for h in node.handlers for s in h.body)])
    return found


def third_party(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} - FIRST_PARTY - set(sys.stdlib_module_names)


def undeclared(top_level: set[str], requirements: str) -> dict[str, list[str]]:
    """Top-level modules whose distribution ``requirements`` does not name (a module no distribution provides maps to [])."""
    owners = packages_distributions()
    names = declared(requirements)
    return {m: owners.get(m, []) for m in sorted(top_level) if not {_normalise(d) for d in owners.get(m, [])} & names}


def _files(entries: list[str]) -> list[Path]:
    found = [p for entry in entries for p in ([ROOT / entry] if entry.endswith(".py") else sorted((ROOT / entry).rglob("*.py")))]
    return [p for p in found if str(p.relative_to(ROOT)) not in OWN_VENV]


def _package_of(path: Path) -> str:
    """The package a file's relative imports start from: its folder (for ``__init__.py`` too)."""
    return ".".join(path.relative_to(ROOT).parts[:-1])


@pytest.mark.parametrize(
    ("entries", "requirements"), [(SERVER_CODE, "requirements.txt"), (DEV_CODE, "requirements-dev.txt")], ids=["server", "tests and tools"]
)
def test_every_import_is_declared(entries: list[str], requirements: str) -> None:
    modules = set().union(*(imports(path, _package_of(path), at_import_only=False) for path in _files(entries)))
    assert not undeclared(third_party(modules), requirements), f"imported but not declared in {requirements}"


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def client_closure() -> dict[str, set[str]]:
    """First-party modules that ``import sandbox.client`` and its sub-modules load, each with what it imports on import."""
    start = [CLIENT_PACKAGE] + [f"{CLIENT_PACKAGE}.{p.stem}" for p in (ROOT / "sandbox" / "client").glob("*.py") if p.stem != "__init__"]
    # Importing a module imports its parent packages first.
    pending = [".".join(name.split(".")[:i]) for name in start for i in range(1, name.count(".") + 2)]
    seen: dict[str, set[str]] = {}
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen[name] = imports(path, _package_of(path), at_import_only=True)
        for imported in seen[name]:
            if imported.split(".")[0] in FIRST_PARTY:
                pending.extend(".".join(imported.split(".")[:i]) for i in range(1, imported.count(".") + 2))
    return seen


def test_the_client_imports_only_what_requirements_client_declares() -> None:
    closure = client_closure()
    assert {"sandbox", "sandbox.client", "crypto.paillier"} <= set(closure)
    allowed = ("sandbox.client", "core.", "crypto.")
    server_side = {m for m in closure if m not in {"sandbox", "core", "crypto"} and not m.startswith(allowed)}
    assert not server_side, "the client loads modules of the server"
    modules = set().union(*closure.values())
    assert not undeclared(third_party(modules), "requirements-client.txt"), "the client imports what requirements-client.txt lacks"


def test_the_client_requirements_are_the_servers_ranges() -> None:
    """requirements.txt stays the one source of each range: the client's file repeats its lines exactly."""
    server = {line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()}
    client = [line.split("#")[0].strip() for line in (ROOT / "requirements-client.txt").read_text().splitlines()]
    assert [line for line in client if line and line not in server] == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import patsy.highlevel", {"patsy"}),
        ("from duckdb import connect", {"duckdb"}),
        ("import os, json", set()),
        ("from . import sibling", set()),
        ("def f():\n    import opendp", {"opendp"}),
    ],
    ids=["dotted", "from", "stdlib", "relative", "in a function"],
)
def test_the_scan_finds_third_party_imports(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert third_party(imports(path, "sandbox.client", at_import_only=False)) == expected


def test_an_undeclared_distribution_is_reported() -> None:
    assert undeclared({"duckdb"}, "requirements-client.txt") == {"duckdb": ["duckdb"]}
    assert undeclared({"duckdb"}, "requirements.txt") == {}


def test_type_checking_and_function_imports_do_not_run_on_import(tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import flask\ndef f():\n    import duckdb\nimport requests\n")
    assert third_party(imports(path, "sandbox", at_import_only=True)) == {"requests"}
