"""The import boundaries the folder tree promises, read from the source (no imports run)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.harness.tool import ROOT

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
        # the reviewer's grep (`mlflow.` anywhere): a name of MLflow's, even the default store's
        # file, comes from study.tracking (DEFAULT_DB, STORE_DEFAULT)
        if "mlflow." in path.read_text():
            offenders.append(f"{path.relative_to(ROOT)} names something of MLflow's itself")
    assert offenders == []


def test_the_tracking_package_needs_neither_ray_nor_the_trainer():
    """`study.tracking` is imported by the analysis scripts and the views: no Ray, no trainer."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {m}"
        for path in sources("study/tracking")
        for m in sorted(imported_modules(path))
        if m == "ray" or m.startswith(("ray.", "study.trial.trainer", "study.sweep"))
    ]
    assert offenders == []


# What each layer may not import: the layers above it (cli -> views -> sweep, tracking ->
# trial -> models), and for the trial, the stack it must run without.
FORBIDDEN = {
    "models": ("study", "analysis", "ray", "mlflow", "optuna"),
    "study/trial": (
        "study.tracking",
        "study.sweep",
        "study.views",
        "study.cli",
        "ray",
        "mlflow",
        "optuna",
    ),
    "study/tracking": ("study.sweep", "study.views", "study.cli"),
    "study/sweep": ("study.views", "study.cli"),
    "study/views": ("study.cli",),
    "analysis": ("study.cli",),
}


def test_imports_run_down_the_layers_only():
    offenders = [
        f"{path.relative_to(ROOT)} imports {m}"
        for folder, forbidden in FORBIDDEN.items()
        for path in sources(folder)
        for m in sorted(imported_modules(path))
        if any(m == f or m.startswith(f + ".") for f in forbidden)
    ]
    assert offenders == []


def test_a_study_saved_before_the_layers_still_unpickles():
    """Tune's saved state names the trainable, callbacks and searcher by module path: the flat
    paths of before the layers (`study.progress`, `study.sweep`, …) load the same objects."""
    import pickle

    from study.sweep import launch, progress, trainable

    old = {
        b"study.progress": (b"TrackingCallback", progress.TrackingCallback),
        b"study.trainable": (b"run_trial", trainable.run_trial),
        b"study.sweep": (b"undone_on_failure", launch.undone_on_failure),
    }
    for module, (name, now) in old.items():
        assert pickle.loads(b"c" + module + b"\n" + name + b"\n.") is now, module


def test_a_misspelt_name_in_study_sweep_fails_at_once_naming_it():
    """Issue 38: `study.sweep.lokc` fell back to `study.sweep.launch`, importing Ray, MLflow and
    torch (16 s), then named the wrong module."""
    import subprocess
    import sys

    script = (
        "import sys, study.sweep\n"
        "try:\n    study.sweep.lokc\nexcept AttributeError as exc:\n    print(exc)\n"
        "print('torch' in sys.modules, 'ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.splitlines() == [
        "module 'study.sweep' has no attribute or submodule 'lokc'",
        "False False",
    ], done.stdout + done.stderr
