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

from study.tracking.registry import (
    ENCODE,
    ENCODER_TAG,
    RECONSTRUCT,
    alias_version,
    publish,
    resolve,
)
from study.tracking.store import (
    ARTIFACTS_DIR,
    DEFAULT_DB,
    HOME_ENV,
    STORE_DEFAULT,
    RunData,
    check_reachable,
    client,
    download_artifacts,
    home,
    local_artifact_root,
    metric_history,
    resolve_tracking_uri,
    run_data,
)
from study.tracking.studies import (
    StudyRecord,
    abandon_study,
    ensure_study,
    experiment_id,
    log_report,
    set_study_status,
    study_exists,
    study_names,
    study_params,
)
from study.tracking.tags import AS_TAGS, ERROR, GIVEN, PICTURES, ROLE, STATE, THREADS, TRIAL_ID
from study.tracking.trials import (
    TrialRun,
    find_trial_run,
    finish_trial,
    git_commit,
    log_final,
    mark_orphans,
    run_tags,
    runs_without_pictures,
    trial_run_id,
    trial_runs,
    trials_closed_since,
)
from study.tracking.view import artifact_page, runs_page, trials_view, version_page

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
    "STORE_DEFAULT",
    "THREADS",
    "TRIAL_ID",
    "RunData",
    "StudyRecord",
    "TrialRun",
    "abandon_study",
    "alias_version",
    "artifact_page",
    "check_reachable",
    "client",
    "download_artifacts",
    "ensure_study",
    "experiment_id",
    "find_trial_run",
    "finish_trial",
    "git_commit",
    "home",
    "local_artifact_root",
    "log_final",
    "log_report",
    "mark_orphans",
    "metric_history",
    "publish",
    "resolve",
    "resolve_tracking_uri",
    "run_data",
    "run_tags",
    "runs_page",
    "runs_without_pictures",
    "set_study_status",
    "study_exists",
    "study_names",
    "study_params",
    "trial_run_id",
    "trial_runs",
    "trials_closed_since",
    "trials_view",
    "version_page",
]
