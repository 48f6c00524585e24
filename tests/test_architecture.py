"""Package boundaries: arrows point down (sandbox -> jobs -> policies, crypto -> core)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN = {
    "core": {"flask", "sqlalchemy", "sandbox", "jobs", "policies", "crypto", "werkzeug", "alembic"},
    "crypto": {"flask", "sqlalchemy", "sandbox", "jobs", "policies", "werkzeug", "alembic"},
    "policies": {"flask", "sqlalchemy", "sandbox", "jobs", "werkzeug", "alembic"},
    "jobs": {"flask", "sandbox", "werkzeug", "alembic"},
    # The key custodian is deployable alone: nothing of the sandbox, its database or its jobs.
    "custodian": {"sandbox", "sqlalchemy", "alembic", "jobs", "policies"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


CASES = [(pkg, path) for pkg in FORBIDDEN if (ROOT / pkg).exists() for path in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize(("package", "path"), CASES, ids=[str(p.relative_to(ROOT)) for _, p in CASES])
def test_package_imports_point_down(package: str, path: Path) -> None:
    bad = _imports(path) & FORBIDDEN[package]
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_check_sees_the_pure_packages() -> None:
    assert {pkg for pkg, _ in CASES} >= {"core", "crypto", "policies", "custodian"}
