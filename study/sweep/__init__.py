"""A study's sweep: Ray Tune runs the trials, Optuna (or a grid) proposes them, ASHA stops them;
and what keeps a sweep's results whole: the study lock, signed state, the disk reserve, pruned
checkpoints, a driver's leftovers. `launch` starts and resumes a study.

Imports nothing heavy itself: `study.sweep.lock` and the others load without Ray."""

import importlib
from pathlib import Path
from typing import Any


def __getattr__(name: str) -> Any:
    # `from study.sweep import lock` asks for the attribute before importing the submodule
    if (Path(__file__).parent / f"{name}.py").is_file():
        return importlib.import_module(f"{__name__}.{name}")
    # Tune's saved state of a study launched before study/ had subpackages names objects of
    # the module `study.sweep`, now `study.sweep.launch`
    return getattr(importlib.import_module(f"{__name__}.launch"), name)
