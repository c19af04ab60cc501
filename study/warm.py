"""Imports a trial needs, made when Ray starts a worker process rather than in its first trial.

Ray prestarts workers as soon as a local Ray is up, while the driver is still setting the study
up; what they import then is off every lane's clock. Measured here (2 cores), a worker's first
trial otherwise spends ~2.4 s importing torch._dynamo (the first optimizer pulls it in), ~2 s on
mlflow and ~0.5 s on matplotlib before its first epoch.
"""

from __future__ import annotations

PRELOADED = ("torch._dynamo", "mlflow.tracking", "study.figures", "study.trainer")


def warm_worker() -> None:
    """Ray's `worker_process_setup_hook` for a sweep's workers."""
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
