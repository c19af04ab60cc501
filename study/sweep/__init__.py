"""A study's sweep: Ray Tune runs the trials, Optuna (or a grid) proposes them, ASHA stops them;
and what keeps a sweep's results whole: the study lock, signed state, the disk reserve, pruned
checkpoints, a driver's leftovers. `launch` starts and resumes a study.

Imports nothing heavy itself: `study.sweep.lock` and the others load without Ray."""

import importlib
from pathlib import Path
from typing import Any

# Tune's saved state of a study launched before study/ had subpackages (0.1, before
# 2026-11-30) names objects of the module `study.sweep`, which now live in (or are imported by)
# `study.sweep.launch`: these names, and no others, still resolve there, until 0.3 drops the
# old layout. Any other name fails at once, naming it, without importing Ray.
FORMERLY_HERE = frozenset(
    [
        "CheckpointPruner",
        "DiskGuard",
        "Outcome",
        "ProgressPrinter",
        "ResumableOptunaSearch",
        "Signer",
        "Space",
        "SweepOptions",
        "TrackingCallback",
        "check_address",
        "check_duration",
        "check_name_is_free",
        "check_new",
        "check_not_held",
        "check_room",
        "check_writable",
        "connect",
        "default_storage",
        "finish",
        "fit",
        "flat_config",
        "forgotten_on_failure",
        "launch",
        "load_splits",
        "local_lanes",
        "open_study_record",
        "param_space",
        "parse_space",
        "print_where_to_watch",
        "read_study",
        "resume",
        "run_config",
        "run_trial",
        "scheduler",
        "searcher",
        "stop_epochs",
        "study_dir",
        "study_lock",
        "trainable",
        "trial_dirname",
        "tune_config",
        "undone_on_failure",
    ]
)


def __getattr__(name: str) -> Any:
    # `from study.sweep import lock` asks for the attribute before importing the submodule
    if (Path(__file__).parent / f"{name}.py").is_file():
        return importlib.import_module(f"{__name__}.{name}")
    if name in FORMERLY_HERE:
        return getattr(importlib.import_module(f"{__name__}.launch"), name)
    raise AttributeError(f"module {__name__!r} has no attribute or submodule {name!r}")
