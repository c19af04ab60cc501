"""The one place that talks to MLflow. No Ray at import: the analysis scripts import it too.

Layout in MLflow: one **experiment per study** (named after it) holding one run per trial (tag
`aestudy.role = trial`) and one study run (tag `aestudy.role = study`: the space's settings, and
later the study's table and plots). An experiment per study keeps studies apart in the UI's
sidebar, in searches and in the registry's names. Trial runs are deliberately *not* children of
the study run: the MLflow UI folds children under their parent, and the whole point of the UI
here is to see and compare the trials side by side. Each trial run names its study run in the
tag `aestudy.study_run`.

A trial's run is found by its Tune trial id, so a retried or resumed trial continues its own run,
and an epoch already logged is never logged again.

Modules: `store` (where the store is, whether it can be used, the client), `tags` (the names
above), `studies` (a study's experiment and study run), `trials` (a trial's run), `view` (the
UI page a study opens on), `registry` (winners as MLflow Models). Import from `study.tracking`:
it exports what the rest of the tool uses.
"""

from study.tracking.registry import ENCODE, ENCODER_TAG, RECONSTRUCT, publish, resolve
from study.tracking.store import (
    ARTIFACTS_DIR,
    DEFAULT_DB,
    HOME_ENV,
    check_reachable,
    client,
    home,
    local_artifact_root,
    resolve_tracking_uri,
)
from study.tracking.studies import (
    StudyRecord,
    abandon_study,
    ensure_study,
    study_exists,
    study_names,
    study_params,
)
from study.tracking.tags import AS_TAGS, ERROR, GIVEN, PICTURES, ROLE, STATE, TRIAL_ID
from study.tracking.trials import (
    TrialRun,
    find_trial_run,
    finish_trial,
    git_commit,
    log_final,
    mark_orphans,
    run_tags,
    runs_without_pictures,
    trial_runs,
    trials_closed_since,
)
from study.tracking.view import runs_page, trials_view

__all__ = [
    "ARTIFACTS_DIR",
    "AS_TAGS",
    "DEFAULT_DB",
    "ENCODE",
    "ENCODER_TAG",
    "ERROR",
    "GIVEN",
    "HOME_ENV",
    "PICTURES",
    "RECONSTRUCT",
    "ROLE",
    "STATE",
    "TRIAL_ID",
    "StudyRecord",
    "TrialRun",
    "abandon_study",
    "check_reachable",
    "client",
    "ensure_study",
    "find_trial_run",
    "finish_trial",
    "git_commit",
    "home",
    "local_artifact_root",
    "log_final",
    "mark_orphans",
    "publish",
    "resolve",
    "resolve_tracking_uri",
    "run_tags",
    "runs_page",
    "runs_without_pictures",
    "study_exists",
    "study_names",
    "study_params",
    "trial_runs",
    "trials_closed_since",
    "trials_view",
]  # fmt: skip
