"""Package boundaries, as one table: what each package of the repository must never import.

Arrows point down (``sandbox -> jobs -> policies, crypto -> core``) and, inside ``sandbox/``, by
responsibility: ``api`` (HTTP) may call ``service`` and ``runtime``; the web ``console`` (HTTP for
people) may call ``api``'s conversions and ``service``, and the API never the console; ``service``
knows nothing of HTTP or the runtime; the ``client`` installs without the server's dependencies. The table is keyed
by package path; a module obeys the rule of the most specific package that contains it. Every
package directory must have its own entry, so a new package cannot slip past the check.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_PRODUCTION = {"tests", "migrations", "benchmarks", ".venv", ".script-runtime", ".script-runtime.new", ".git"}

# Every production package: nothing imports the test suite or the benchmarks.
NEVER = frozenset({"tests", "benchmarks"})
WEB = frozenset({"flask", "werkzeug"})
DATABASE = frozenset({"sqlalchemy", "alembic"})
PROJECT = frozenset({"core", "crypto", "policies", "jobs", "sandbox", "custodian"})
SERVER_DEPENDENCIES = WEB | DATABASE | {
    "duckdb", "opendp", "statsmodels", "scipy", "sqlglot", "gunicorn",
    "psycopg", "psycopg2", "pyroaring", "apispec", "Crypto", "Cryptodome",
}  # fmt: skip
SANDBOX_SHELL = frozenset(f"sandbox.{path.stem}" for path in (ROOT / "sandbox").glob("*.py") if path.stem != "__init__")
SANDBOX_PARTS = frozenset(
    {"sandbox.api", "sandbox.console", "sandbox.service", "sandbox.runtime", "sandbox.client", "sandbox.demo", "sandbox.scripts"}
)


@dataclass(frozen=True)
class Rule:
    """Modules a package must never import (a name forbids the module and all its submodules).

    ``exceptions`` names, per module file, forbidden imports tolerated *today*; each one is a debt
    with a reason, and ``test_known_exceptions_are_still_needed`` fails once it is paid.
    """

    forbidden: frozenset[str]
    exceptions: Mapping[str, frozenset[str]] = field(default_factory=dict)


PURE_JOBS = Rule(NEVER | WEB | DATABASE | {"sandbox", "custodian"})

RULES: dict[str, Rule] = {
    "core": Rule(NEVER | WEB | DATABASE | (PROJECT - {"core"})),
    "crypto": Rule(NEVER | WEB | DATABASE | {"sandbox", "jobs", "policies", "custodian"}),
    "policies": Rule(NEVER | WEB | DATABASE | {"sandbox", "jobs", "custodian"}),
    "jobs": PURE_JOBS,
    "jobs/dp": PURE_JOBS,
    "jobs/he": PURE_JOBS,
    "jobs/query": PURE_JOBS,
    "jobs/query/checks": PURE_JOBS,
    "jobs/stats": PURE_JOBS,
    "jobs/script": PURE_JOBS,
    # The key custodian is deployable alone: nothing of the sandbox, its database or its jobs.
    "custodian": Rule(NEVER | DATABASE | {"sandbox", "jobs", "policies"}),
    # The shell (app factory, CLI, database, keys) wires the parts together; the CLI also
    # mounts the custodian's own commands.
    "sandbox": Rule(NEVER),
    "sandbox/api": Rule(NEVER | {"sandbox.console", "sandbox.client", "sandbox.demo", "custodian"}),
    # The web console presents what the API presents: it may use the API's conversions and response
    # models (so that a page shows nothing the API would not), never the other way round. It reaches
    # the runtime only through them, and never the client, the demo or the custodian.
    "sandbox/console": Rule(NEVER | {"sandbox.runtime", "sandbox.client", "sandbox.demo", "custodian"}),
    # Each role's pages, under the console's rule; they share the console's sign-in, language and error
    # pages, never each other's modules (an analyst's page is built from nothing of the auditor's).
    "sandbox/console/analyst": Rule(
        NEVER | {"sandbox.runtime", "sandbox.client", "sandbox.demo", "custodian", "sandbox.console.steward", "sandbox.console.oversight"}
    ),
    "sandbox/console/steward": Rule(
        NEVER | {"sandbox.runtime", "sandbox.client", "sandbox.demo", "custodian", "sandbox.console.analyst", "sandbox.console.oversight"}
    ),
    "sandbox/console/oversight": Rule(
        NEVER | {"sandbox.runtime", "sandbox.client", "sandbox.demo", "custodian", "sandbox.console.analyst", "sandbox.console.steward"}
    ),
    "sandbox/service": Rule(NEVER | WEB | {"sandbox.api", "sandbox.console", "sandbox.runtime", "sandbox.client", "sandbox.demo"}),
    "sandbox/runtime": Rule(
        NEVER | WEB | {"sandbox.api", "sandbox.console", "sandbox.client", "sandbox.demo", "custodian"},
        # The worker is built from an ``Instance``; neither it nor the custodian client imports Flask.
    ),
    # The client installs and imports without the server's dependencies or the server itself.
    "sandbox/client": Rule(NEVER | SERVER_DEPENDENCIES | (SANDBOX_PARTS - {"sandbox.client"}) | SANDBOX_SHELL),
    # Script isolation: the trusted launcher runs as a process of its own and starts in milliseconds, so it
    # imports the standard library (and libseccomp's bindings) only: nothing of the project but itself.
    "sandbox/scripts": Rule(
        NEVER
        | WEB
        | DATABASE
        | SERVER_DEPENDENCIES
        | (PROJECT - {"sandbox"})
        | (SANDBOX_PARTS - {"sandbox.scripts"})
        | SANDBOX_SHELL
        | {"pyarrow", "pandas", "numpy"}
    ),
    # Demo data is seeded through the services, never through HTTP or a running worker.
    "sandbox/demo": Rule(NEVER | {"sandbox.api", "sandbox.console", "sandbox.runtime", "custodian"}),
}


def module_name(path: Path) -> str:
    """``sandbox/api/jobs.py`` -> ``sandbox.api.jobs``; a package's ``__init__`` is the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every absolute module name ``source`` imports, wherever the import sits.

    ``import a.b`` yields ``a.b``; ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a
    submodule); relative imports are resolved against ``module``; a literal
    ``importlib.import_module("x")`` counts as importing ``x``.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, _package_of(module, is_package))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if alias.name != "*"}
        elif _is_import_module_call(node):
            found.add(node.args[0].value)  # type: ignore[attr-defined]
    return found


def _resolve(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    anchor = package.split(".")
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def _is_import_module_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    first = node.args[0]
    return name in {"import_module", "__import__"} and isinstance(first, ast.Constant) and isinstance(first.value, str)


def violations(imported: set[str], forbidden: frozenset[str]) -> set[str]:
    """The imported modules that are, or sit under, a forbidden name."""
    return {name for name in imported for bad in forbidden if name == bad or name.startswith(bad + ".")}


def rule_key(path: Path) -> str:
    """The most specific table entry whose package contains ``path``."""
    folder = path.relative_to(ROOT).parent
    for candidate in (folder, *folder.parents):
        if candidate.as_posix() in RULES:
            return candidate.as_posix()
    raise LookupError(f"no rule covers {path.relative_to(ROOT)}")


def _production(paths: Iterator[Path]) -> list[Path]:
    return sorted(p for p in paths if not NOT_PRODUCTION & set(p.relative_to(ROOT).parts))


def package_dirs() -> list[str]:
    return [p.parent.relative_to(ROOT).as_posix() for p in _production(ROOT.rglob("__init__.py"))]


def _modules() -> list[Path]:
    return [p for p in _production(ROOT.rglob("*.py")) if (p.parent / "__init__.py").exists()]


def offences(relative: str, source: str) -> set[str]:
    """What ``source``, placed at ``relative``, imports against its package's rule (minus exceptions)."""
    path = ROOT / relative
    rule = RULES[rule_key(path)]
    imported = imported_modules(source, module_name(path), path.name == "__init__.py")
    return violations(imported, rule.forbidden) - violations(imported, rule.exceptions.get(relative, frozenset()))


MODULES = _modules()


@pytest.mark.parametrize("path", MODULES, ids=[p.relative_to(ROOT).as_posix() for p in MODULES])
def test_module_imports_obey_its_package_rule(path: Path) -> None:
    bad = offences(path.relative_to(ROOT).as_posix(), path.read_text())
    assert not bad, f"{path.relative_to(ROOT)} (rule {rule_key(path)!r}) imports {sorted(bad)}"


def test_every_package_has_its_own_rule() -> None:
    """A new package must be placed in the table; inheriting a parent's rule is not enough."""
    dirs = package_dirs()
    assert {"core", "sandbox/service", "sandbox/client"} <= set(dirs)
    assert sorted(set(dirs) - set(RULES)) == []
    assert sorted(set(RULES) - set(dirs)) == [], "rules for packages that no longer exist"


def test_known_exceptions_are_still_needed() -> None:
    for key, rule in RULES.items():
        for relative, tolerated in rule.exceptions.items():
            path = ROOT / relative
            assert rule_key(path) == key, f"{relative} is not governed by {key!r}"
            imported = imported_modules(path.read_text(), module_name(path))
            assert violations(imported, tolerated), f"{relative} no longer imports {sorted(tolerated)}: drop the exception"


SYNTHETIC = [
    pytest.param("jobs/engine.py", "import sqlalchemy.orm\n", {"sqlalchemy.orm"}, id="dotted-import"),
    pytest.param("core/values.py", "def f():\n    from crypto import envelope\n", {"crypto", "crypto.envelope"}, id="nested"),
    pytest.param("sandbox/service/jobs.py", "from ..runtime import queue\n", {"sandbox.runtime", "sandbox.runtime.queue"}, id="relative"),
    pytest.param("sandbox/service/jobs.py", "from .. import api\n", {"sandbox.api"}, id="relative-package"),
    pytest.param("sandbox/client/scoring.py", "from sandbox import db\n", {"sandbox.db"}, id="shell-submodule"),
    pytest.param("sandbox/client/scoring.py", "from Crypto import Cipher\n", {"Crypto", "Crypto.Cipher"}, id="client-server-dep"),
    pytest.param("policies/dp.py", "import importlib\nimportlib.import_module('flask')\n", {"flask"}, id="import-module"),
    pytest.param("sandbox/runtime/queue.py", "from flask import Flask\n", {"flask", "flask.Flask"}, id="runtime-flask-not-excepted"),
    pytest.param("sandbox/api/jobs.py", "import sandbox.console.pages\n", {"sandbox.console.pages"}, id="api-console"),
    pytest.param("sandbox/console/analyst/jobs.py", "from sandbox import runtime\n", {"sandbox.runtime"}, id="console-runtime"),
]  # fmt: skip


@pytest.mark.parametrize(("where", "source", "expected"), SYNTHETIC)
def test_the_checker_catches_a_violation(where: str, source: str, expected: set[str]) -> None:
    assert offences(where, source) == expected


def test_the_checker_lets_allowed_imports_through() -> None:
    source = "from sandbox.service import jobs\nfrom sandbox.runtime.pipeline import preview\nfrom sandbox import __version__\n"
    assert offences("sandbox/api/jobs.py", source) == set()
