"""Everything that runs a study, in layers that import downwards only:

    cli  ->  views  ->  sweep, tracking  ->  trial  ->  models

`trial` (one trial: no Ray, no MLflow), `tracking` (the one door to MLflow), `sweep` (Ray Tune,
Optuna and what keeps a sweep whole), `views` (what a study holds), `cli` (`python -m study`).
"""

import importlib
import importlib.abc
import importlib.util
import sys

# Where each module of the flat study/ that came before the layers lives now. Tune's saved state
# (tuner.pkl, the searcher's) pickles the trainable, callbacks and searcher by module path: a
# study launched before the move (0.1, before 2026-11-30) resumes because these old paths, and
# only these, still import; 0.3 drops them.
MOVED = {
    **{
        m: f"study.trial.{m}"
        for m in (
            "config",
            "data",
            "trainer",
            "evaluate",
            "figures",
            "metrics",
            "states",
            "ranking",
        )
    },
    **{
        m: f"study.sweep.{m}"
        for m in (
            "search",
            "space",
            "space_file",
            "trainable",
            "ending",
            "progress",
            "pictures",
            "ray_connect",
            "cluster",
            "pruning",
            "leftovers",
            "lock",
            "trust",
            "verified_storage",
            "disk",
        )
    },
    **{m: f"study.views.{m}" for m in ("runs", "status", "export")},
    "cli_train": "study.cli.train",
    "cli_servers": "study.cli.servers",
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports `study.<old name>` as the module it moved to (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname.removeprefix("study.")
        if fullname.startswith("study.") and old in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name.removeprefix("study.")])

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Moved())  # before any finder that could see a stale copy
