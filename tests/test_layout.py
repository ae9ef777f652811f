"""The layout's one-way dependencies, read from every module's imports (nothing is run).

- ``resources/`` is domain-agnostic infrastructure: it imports no domain, sensor or serving code.
- A domain (``*_assets/``) imports ``resources/`` and itself, never another domain, nor the
  sensors or the web service that sit on top of it.
- ``sensors/`` and ``serving/`` may use the domains; nothing below them imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOMAINS = ("weather_assets", "esios_assets", "nasa_assets", "market_assets")
ON_TOP = ("sensors", "serving", "definitions")


def imported_packages(path: Path) -> dict[str, int]:
    """Top-level package of every absolute import in ``path`` (lazy imports included), with a
    line number to point at."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            found.setdefault(name.split(".")[0], node.lineno)
    return found


def modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{line} imports {top}"
        for path in modules(package)
        for top, line in imported_packages(path).items()
        if top in forbidden
    ]


def test_resources_import_no_domain_sensor_or_service():
    assert modules("resources")
    assert violations("resources", DOMAINS + ON_TOP) == []


@pytest.mark.parametrize("domain", DOMAINS)
def test_a_domain_imports_no_other_domain_and_nothing_on_top_of_it(domain):
    assert modules(domain)
    others = tuple(d for d in DOMAINS if d != domain)
    assert violations(domain, others + ON_TOP) == []


def test_sensors_hold_sensors_only():
    """No op, job, asset or schedule is declared in sensors/ (they belong to the domains)."""
    declared = []
    for path in modules("sensors"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    name = target.attr if isinstance(target, ast.Attribute) else ""
                    if name in ("op", "job", "asset", "multi_asset", "schedule", "asset_check"):
                        declared.append(f"{path.relative_to(REPO)}:{node.lineno} @{name}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("define_asset_job", "ScheduleDefinition")
            ):
                declared.append(f"{path.relative_to(REPO)}:{node.lineno} {node.func.attr}")
    assert declared == []


def test_the_check_sees_a_violation(tmp_path):
    """The scan is not vacuous: an import of another domain, even inside a function, is found."""
    module = tmp_path / "bad.py"
    module.write_text(
        "def f():\n    from nasa_assets.search import dedupe\n    import esios_assets\n"
    )
    assert imported_packages(module) == {"nasa_assets": 2, "esios_assets": 3}
