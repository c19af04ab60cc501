"""Each touch of Ray's, Optuna's and MLflow's private internals (study/sweep/internals.py, and
MLflow's in study/tracking/registry.py) still does what the tool relies on: an upgrade that
changes one fails here, the test's name naming the touch."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from study.sweep import internals
from tests.harness.tool import PYTHON, ROOT


def test_save_period_is_tune_s_adaptive_period_set_by_the_tool_s_rule():
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    from study.sweep import saving

    original = _ExperimentCheckpointManager._update_auto_checkpoint_time
    try:
        internals.set_save_period(saving.period)
        manager = _ExperimentCheckpointManager(storage=None, checkpoint_period="auto")
        assert manager.auto_checkpoint_enabled
        manager._update_auto_checkpoint_time(0.01)  # a cheap save of a small state: the floor
        assert manager._checkpoint_period == saving.SAVE_FLOOR_S
        manager._update_auto_checkpoint_time(1.0)  # a 1 s save: 19 s between saves
        assert abs(manager._checkpoint_period - 19.0) < 1e-9
        fixed = _ExperimentCheckpointManager(storage=None, checkpoint_period=5)
        fixed._update_auto_checkpoint_time(1.0)  # a period the user fixed stays
        assert fixed._checkpoint_period == 5.0
    finally:
        _ExperimentCheckpointManager._update_auto_checkpoint_time = original


def test_asha_milestones_are_its_rungs_epochs():
    from ray.tune.schedulers import AsyncHyperBandScheduler

    asha = AsyncHyperBandScheduler(
        time_attr="training_iteration", grace_period=3, reduction_factor=2, max_t=12
    )
    assert sorted(internals.asha_milestones(asha)) == [3, 6, 12]  # the last: max_t


def test_asha_brackets_are_the_ones_a_new_trial_is_given_to():
    from ray.tune.schedulers import AsyncHyperBandScheduler

    asha = AsyncHyperBandScheduler(
        time_attr="training_iteration",
        metric="loss",
        mode="min",
        grace_period=1,
        reduction_factor=2,
        max_t=4,
    )
    fresh = copy.deepcopy(internals.asha_brackets(asha))
    internals.use_asha_brackets(asha, fresh)
    trial = SimpleNamespace(trial_id="t1", config={})
    asha.on_trial_add(None, trial)
    assert asha._trial_info["t1"] is fresh[0]


def test_a_trial_s_results_file_is_read_through_its_storage(tmp_path):
    from ray.train._internal.storage import StorageContext

    storage = StorageContext(str(tmp_path), "study", trial_dir_name="ae_t1")
    filesystem, path = internals.trial_results_file(SimpleNamespace(storage=storage))
    assert path == f"{tmp_path}/study/ae_t1/result.json"
    (tmp_path / "study" / "ae_t1").mkdir(parents=True)
    Path(path).write_text('{"epoch": 1}\n')
    with filesystem.open_input_stream(path) as f:
        assert f.read() == b'{"epoch": 1}\n'


def test_optuna_search_s_study_trials_and_completed_set(tmp_path):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    search = OptunaSearch(
        space={"x": optuna.distributions.FloatDistribution(0, 1)},
        metric="loss",
        mode="min",
        storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}"),
        study_name="s",
    )
    assert search.suggest("t1") is not None
    assert isinstance(internals.optuna_study(search), optuna.Study)
    assert isinstance(internals.optuna_trials(search)["t1"], optuna.Trial)
    search.on_trial_complete("t1", {"loss": 0.5, "training_iteration": 1})
    assert "t1" in internals.completed_trials(search)


@pytest.fixture
def connected(local_ray) -> str:
    """This process connected to the tests' local Ray (a sweep run here before may have
    disconnected it)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=local_ray, log_to_driver=False, configure_logging=False)
    return local_ray


def test_session_dir_is_the_local_ray_s(connected):
    session = Path(internals.session_dir())
    assert session.is_dir() and (session / "logs").is_dir()


def test_console_popen_is_how_ray_starts_its_processes():
    from ray._private import services

    plain = services.ConsolePopen
    with internals.ray_in_own_process_groups():
        assert services.ConsolePopen is not plain
        proc = services.ConsolePopen(
            [PYTHON, "-c", "import os; print(os.getpgid(0))"], stdout=subprocess.PIPE
        )
        group = int(proc.communicate(timeout=60)[0])
    assert group == proc.pid  # a group of its own
    assert services.ConsolePopen is plain


def test_a_trial_s_staging_folder_and_folder_name(tmp_path, connected):
    from ray.train._internal.storage import StorageContext

    storage = StorageContext(str(tmp_path), "study", trial_dir_name="ae_t1")
    trial = SimpleNamespace(storage=storage)
    assert internals.trial_folder_name(trial) == "ae_t1"
    staging = internals.staging_folder(trial)
    assert staging.name == "driver_artifacts" and "study" in staging.parts


def test_cluster_configs_are_prepared_and_validated_by_ray():
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    prepared = internals.validate_cluster_config(copy.deepcopy(raw))
    assert prepared["head_node_type"] in prepared["available_node_types"]
    raw["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5
    with pytest.raises(Exception, match="is not of type 'integer'"):
        internals.validate_cluster_config(raw)


def test_mlflow_s_global_tracking_uri_is_put_back(tmp_path, monkeypatch):
    from mlflow.tracking._tracking_service import utils

    from study.tracking.registry import _tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = utils._tracking_uri
    with _tracking_uri(f"sqlite:///{tmp_path / 'x.db'}"):
        assert utils._tracking_uri == f"sqlite:///{tmp_path / 'x.db'}"
    assert utils._tracking_uri == before
