"""The import boundaries the folder tree promises, read from the source (no imports run)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

TRACKING = ROOT / "study" / "tracking"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports in functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_only_the_tracking_package_talks_to_mlflow():
    """MLflow and its raw client are reached through `study.tracking` alone: its functions are
    the one door (the analysis scripts included)."""
    offenders = []
    for path in sources("study", "analysis"):
        if TRACKING in path.parents:
            continue
        modules = imported_modules(path)
        if any(m == "mlflow" or m.startswith("mlflow.") for m in modules):
            offenders.append(f"{path.relative_to(ROOT)} imports mlflow")
        if "study.tracking.client" in modules or "tracking.client(" in path.read_text():
            offenders.append(f"{path.relative_to(ROOT)} uses the raw MLflow client")
    assert offenders == []


def test_the_tracking_package_needs_neither_ray_nor_the_trainer():
    """`study.tracking` is imported by the analysis scripts and the views: no Ray, no trainer."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {m}"
        for path in sources("study/tracking")
        for m in sorted(imported_modules(path))
        if m == "ray" or m.startswith(("ray.", "study.trainer", "study.trainable", "study.sweep"))
    ]
    assert offenders == []
