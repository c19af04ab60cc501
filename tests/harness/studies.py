"""Space files to sweep, and readers of what a study left behind, each from the component that
holds it (Tune's state, Optuna's storage, MLflow's runs), to check the tool's views against."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from study import tracking
from study.tracking import client

# A valid space file's contents, which the tests change a key of to make a bad one.
GOOD = {
    "dataset": "mnist-5k",
    "objective": "val_mse",
    "search": {"algorithm": "tpe", "seed": 0},
    "num_samples": 6,
    "epochs": 3,
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    "fixed": {"batch_size": 256},
    "params": {
        "model": ["ae", "dae", "vae"],
        "latent_dim": {"int": [2, 8]},
        "noise": {"float": [0.1, 0.5], "when": {"model": "dae"}},
        "recon_loss": {"values": ["mse", "bce"], "when": {"model": "vae"}},
    },
}


# quick.yaml's AE, which beats the mean digit within an epoch: a study of it has a winner to crown
WINNING_AE = {
    "batch_size": 64,
    "lr": 3e-3,
    "ae": {"hidden": [256], "code_activation": "linear", "output_activation": "sigmoid"},
}

DELETE = object()  # the value that makes `with_change` remove its key


def with_change(key_path: str, value) -> dict:
    """GOOD with the key at `key_path` (levels joined by dots) set to `value`, or removed."""
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, last = key_path.split(".")
    node = raw
    for k in parents:
        node = node[k]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


def write_space(folder: Path, **changes) -> Path:
    """GOOD with `changes`; a change to None removes the key."""
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    raw.update(changes)
    raw = {key: value for key, value in raw.items() if value is not None}
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def tune_trial_states(name: str, storage: Path) -> list[dict]:
    """Tune's own view of a study's trials (its experiment state on disk), to check the tool's
    views against: one dict per trial with trial_id, state, model and epochs reported."""
    from ray.tune import ExperimentAnalysis

    from study.sweep.launch import study_dir
    from study.sweep.progress import trial_state
    from study.trial.config import flat_config

    folder = study_dir(storage, name)
    if not any(folder.glob("experiment_state-*.json")):
        return []
    rows = []
    for t in sorted(ExperimentAnalysis(str(folder)).trials, key=lambda t: t.trial_id):
        last = t.last_result or {}
        rows.append(
            {
                "trial_id": t.trial_id,
                "state": trial_state(t.status, last, t.config),
                "model": flat_config(t.config).get("model", "ae"),
                "epochs": last.get("training_iteration", 0),
            }
        )
    return rows


def optuna_trials(folder: Path) -> list:
    """The Optuna trials of the study in `folder` (its journal: no --search-db)."""
    import optuna

    from study.sweep.folder import OPTUNA_JOURNAL, open_search

    storage = open_search(str(folder / OPTUNA_JOURNAL))
    return optuna.load_study(study_name=folder.name, storage=storage).trials


def logged_steps(db: Path, run_id: str, metric: str) -> list[int]:
    """The steps at which `metric` was logged, duplicates included, in order."""
    history = client(f"sqlite:///{db}").get_metric_history(run_id, metric)
    return sorted(int(m.step) for m in history)


def reported_epochs(trial_dir: Path) -> list[int]:

    import pandas as pd

    return pd.read_csv(trial_dir / "progress.csv")["epoch"].astype(int).tolist()


def assert_only_the_tool_speaks(terminal: str) -> None:
    """A sweep's terminal (a driver of its own's stdout and stderr) holds the tool's own lines
    only, by default: none of Ray's, Tune's, Optuna's or MLflow's, whether it started its Ray or
    joined one."""
    for noise in (
        "Configuration for experiment",
        "View detailed results",
        "TensorBoard",
        "Tuner.restore",
        "View run",
        "A new study created",
        "INFO mlflow",
        "Token authentication is enabled",
        "Connecting to existing Ray cluster",
    ):
        assert noise not in terminal, noise


def counts(storage: Path, name: str, uri: str | None = None) -> dict:
    """Tune's trials, MLflow's runs by status, Optuna's trials, duplicates and lost trials."""
    tune = tune_trial_states(name, storage)
    runs = tracking.trial_runs(uri or f"sqlite:///{storage / 'mlflow.db'}", name)
    ids = list(runs["tags.aestudy.trial_id"])
    optuna = optuna_trials(storage / name) if (storage / name / "optuna.journal").exists() else []
    return {
        "tune": len(tune),
        "mlflow": dict(Counter(runs["status"])),
        "optuna": dict(Counter(t.state.name for t in optuna)),
        "duplicates": len(ids) - len(set(ids)),
        "lost": len({t["trial_id"] for t in tune} - set(ids)),
    }
