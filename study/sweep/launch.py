"""Sweeps: Ray Tune schedules the trials, Optuna samples the space, ASHA stops the weak ones.

A study lives in one folder, `<storage>/<name>/`: Tune's experiment state and trial checkpoints,
`study.json` (the space and the options it was launched with) and Optuna's journal (the sampler's
study, `optuna.journal`, which `python -m study dashboard NAME` browses). `resume` needs nothing
else.
A team's study lives in object storage instead (`--storage s3://…`, `study.sweep.bucket`), its
search in PostgreSQL (`--search-db`): then no node needs a folder another can see.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ray import tune

from models import ConfigError
from study import databases, tracking
from study.hints import resume_command, study_command
from study.sweep import bucket, hooks, leftovers, plain_files, restored, trust
from study.sweep.checks import check_duration, check_writable
from study.sweep.disk import DiskGuard, check_room
from study.sweep.ending import Outcome, fit
from study.sweep.folder import (
    STUDY_FILE,
    damaged,
    default_storage,
    has_search,
    open_search,
    pulled,
    saved_launch,
    study_dir,
)
from study.sweep.leaders import Leaderboard
from study.sweep.lock import check_not_held, study_lock
from study.sweep.places import location, search_storage, study_filesystem, tune_path
from study.sweep.progress import ProgressPrinter, TrackingCallback, print_where_to_watch
from study.sweep.pruning import CheckpointPruner
from study.sweep.ray_connect import check_address, connect, local_lanes, pending_on_a_cluster
from study.sweep.saving import SaveWatch
from study.sweep.search import (
    ResumableOptunaSearch,  # noqa: F401  studies launched before it moved pickled it from here
    param_space,
    scheduler,
    searcher,
    stop_epochs,
)
from study.sweep.signer import Signer
from study.sweep.space import Space
from study.sweep.space_file import parse_space
from study.sweep.trainable import run_trial
from study.trial.config import flat_config
from study.trial.data import load_splits
from study.trial.metrics import COSTLY


@dataclass
class SweepOptions:
    """Command-line options of `sweep`; stored with the study so `resume` reuses them."""

    name: str
    storage: str = ""  # "": default_storage()
    num_samples: int | None = None  # overrides the space's
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2
    checkpoint_every: float = 10.0  # seconds of a trial between checkpoints (study.sweep.trainable)
    address: str | None = None  # None: start a local Ray; "auto" or host:port: join a cluster
    tracking_uri: str | None = None  # None: tracking.STORE_DEFAULT
    search_db: str | None = None  # None: Optuna's study in the study folder (its journal file)
    long: bool = False  # go ahead with a sweep estimated to run longer than LONG_HOURS

    def validate(self) -> None:
        self.storage = self.storage or str(default_storage())
        study_dir(self.storage, self.name)  # a safe name, and a storage that can be a folder
        if bucket.is_remote(self.storage):
            bucket.Bucket.parse(self.storage).check()  # reachable, there and writable
            if not databases.is_database(self.search_db):
                raise ConfigError(
                    f"--storage {self.storage}: a study in object storage keeps its search and "
                    "its lock in PostgreSQL; add --search-db postgresql://user@host:port/db"
                )
        else:
            check_writable(Path(self.storage))
            check_room(Path(self.storage).expanduser().absolute())
        if self.search_db:
            databases.check(self.search_db, "--search-db")
        if self.address:
            check_address(self.address)  # before anything is written: a refused launch leaves none
        if self.max_failures < 0:
            raise ConfigError(
                f"--max-failures must be >= 0 (retries per trial), got {self.max_failures}"
            )
        if not math.isfinite(self.checkpoint_every) or self.checkpoint_every < 0:
            raise ConfigError(
                "--checkpoint-every must be >= 0 seconds (0: every epoch), "
                f"got {self.checkpoint_every}"
            )
        if not math.isfinite(self.cpus_per_trial) or self.cpus_per_trial <= 0:
            raise ConfigError(f"--cpus-per-trial must be > 0, got {self.cpus_per_trial}")
        if (
            not math.isfinite(self.gpus_per_trial)
            or self.gpus_per_trial < 0
            or (self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer())
        ):
            raise ConfigError(
                f"--gpus-per-trial must be a fraction <= 1 or a whole number, got {self.gpus_per_trial}"
            )
        for key in ("num_samples", "max_concurrent"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, got {value}")


def launch(space: Space, options: SweepOptions) -> Outcome:
    """Validate everything, then run a new study; returns how it ended."""
    options.validate()
    if space.algorithm == "grid" and (options.num_samples or 1) != 1:
        raise ConfigError(
            f"--num-samples {options.num_samples}: a grid runs each of its points once; for "
            "repeats with other seeds add `seed: [0, 1, 2]` under params"
        )
    check_duration(space, options)
    folder = study_dir(options.storage, options.name)
    options.tracking_uri = tracking.resolve_tracking_uri(options.tracking_uri)
    if options.tracking_uri == tracking.resolve_tracking_uri(None):
        tracking.home().mkdir(parents=True, exist_ok=True)  # the default store's folder
    tracking.check_reachable(options.tracking_uri)
    check_not_held(options.storage, options.name, options.search_db)  # a running driver: name it
    check_new(options, folder)  # before the lock, which creates the storage folder
    lock = study_lock(options.storage, options.name, keep=False, database=options.search_db)
    with lock, forgotten_on_failure(folder):
        check_new(options, folder)  # again: another launch may have made it meanwhile
        load_splits(space.dataset, space.data_dir)  # fetch or read the data now: fail early
        connect(options, folder)
        with undone_on_failure(folder, options):
            record = open_study_record(space, options)
            tuner = tune.Tuner(
                trainable(options, record, space),
                param_space=param_space(space),
                tune_config=tune_config(space, options, folder),
                run_config=run_config(space, options, record, folder),
            )
            # Written last: its presence is what makes the folder a study that `resume` continues.
            saved = {"space_path": space.path, "space": space.raw, "options": asdict(options)}
            plain_files.write_whole(folder / STUDY_FILE, json.dumps(saved, indent=2))
            if bucket.is_remote(options.storage):
                bucket.Bucket.parse(options.storage).push(options.name, folder / STUDY_FILE)
        print_where_to_watch(record, space)
        return finish(record, tuner, folder, space, options)


@contextlib.contextmanager
def undone_on_failure(folder: Path, options: SweepOptions):
    """A launch that fails (or is interrupted) before its first trial leaves nothing behind:
    neither the study folder (in a bucket too) nor its MLflow experiment, so the same name can
    be launched again."""
    existed = folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
            if bucket.is_remote(options.storage):
                with contextlib.suppress(Exception):
                    bucket.Bucket.parse(options.storage).remove(options.name)
        with contextlib.suppress(Exception):  # the launch's own error is the one to report
            tracking.abandon_study(options.tracking_uri, options.name)
        raise


@contextlib.contextmanager
def forgotten_on_failure(folder: Path):
    """A launch refused before its study existed leaves no note of its Ray session either."""
    try:
        yield
    except BaseException:
        if not (folder / STUDY_FILE).exists():
            leftovers.session_note(folder).unlink(missing_ok=True)
        raise


def check_new(options: SweepOptions, folder: Path) -> None:
    """Refuse a name already used: by a study folder here, or by a study in the tracking store."""
    remote = bucket.is_remote(options.storage)
    if (folder / STUDY_FILE).exists() or (
        remote and bucket.Bucket.parse(options.storage).has(options.name, STUDY_FILE)
    ):
        where = options.storage if remote else folder.parent
        raise ConfigError(
            f"study {options.name!r} already exists in {where}: continue it with "
            f"`{resume_command(options.name, where)}` or choose another --name"
        )
    check_name_is_free(options.tracking_uri, options.name, folder, location(options))


def check_name_is_free(uri: str, name: str, folder: Path, where: str) -> None:
    """A study name is one study: refuse a name the tracking store already holds, which would
    merge two studies' runs in one experiment."""
    if not tracking.study_exists(uri, name):
        return
    other = tracking.study_params(uri, name).get("folder")
    if other == where and not (folder / STUDY_FILE).exists():
        return  # a launch of this very study killed before it began: its experiment is reused
    storage = (
        (other.rsplit("/", 1)[0] if "://" in other else Path(other).parent) if other else "FOLDER"
    )
    raise ConfigError(
        f"study {name!r} already exists in the tracking store {uri} (its folder: "
        f"{other or 'not recorded'}), and this sweep would put another study in {folder}: choose "
        "another --name, or continue that study with "
        f"`{study_command(f'resume {name} --storage {storage}')}`"
    )


def resume(
    name: str, storage: str | Path | None = None, trust_state: bool = False
) -> tuple[Space, Outcome]:
    """Continue an interrupted study: finished trials stay, unfinished ones restart from checkpoints."""
    space, options = read_study(name, storage)
    folder = study_dir(options.storage, name)
    with study_lock(options.storage, name, database=options.search_db):
        pulled(options.storage, name)  # in the lock: the bucket as the last driver left it
        if not (folder / "tuner.pkl").is_file():
            raise ConfigError(
                f"study {name!r} in {folder} has no saved Tune state (tuner.pkl): its launch "
                "stopped before the first trial. Launch it again under another --name (or "
                f"remove {folder} first)"
            )
        trust.check_state_whole(folder, name)  # --trust-state too: a cut state drops samples
        check_room(folder)
        if not trust_state:
            trust.check_private(folder, name)
            trust.check(folder, name)
        tracking.check_reachable(options.tracking_uri)
        if options.search_db:
            databases.check(options.search_db, "--search-db")
        connect(options, folder)
        record = open_study_record(space, options)
        with restored.tune_restore_errors():  # why Tune could not restore, if it could not
            tuner = tune.Tuner.restore(
                tune_path(options),
                trainable=trainable(options, record, space),
                resume_unfinished=True,
                resume_errored=True,
                # Tune reads the state again, seconds after the check: verified again (unless
                # trusted)
                storage_filesystem=study_filesystem(options, verify=not trust_state),
            )
            return space, finish(record, tuner, folder, space, options)


def finish(
    record: tracking.StudyRecord,
    tuner: tune.Tuner,
    folder: Path,
    space: Space,
    options: SweepOptions,
) -> Outcome:
    """Run the sweep to its end; once every trial has ended, Optuna trials still RUNNING are
    orphans of a killed driver (Tune will never report them) and are marked failed."""
    with pending_on_a_cluster(options, searched=space.algorithm != "grid"):
        outcome = fit(record, tuner, folder, space.objective, tune_path(options))
    searched = search_storage(options, folder)
    if not outcome.interrupted and space.algorithm != "grid" and has_search(searched):
        fail_orphaned_optuna_trials(searched, options.name)
    return outcome


def fail_orphaned_optuna_trials(storage: str, name: str) -> None:
    """Mark FAIL the Optuna trials of study `name` still RUNNING once every Tune trial has
    ended; `storage` as `folder.search_storage` gives it."""
    import optuna

    storage = open_search(storage)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its warning per failed trial
    try:
        if name in optuna.study.get_all_study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage)
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            for trial in running:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    finally:
        optuna.logging.set_verbosity(verbosity)


def open_study_record(space: Space, options: SweepOptions) -> tracking.StudyRecord:
    """The study's MLflow experiment and study run, created on first use, marked running."""
    params = {
        "space": space.path,
        "objective": space.objective,
        "mode": space.mode,
        "search": space.algorithm,
        "search_seed": space.seed,
        "num_samples": options.num_samples or space.num_samples,
        "dataset": space.dataset,
        "scheduler": space.scheduler["type"],
        "searched": ",".join(p.name for p in space.params),
        "folder": location(options),
    }
    record = tracking.ensure_study(options.tracking_uri, options.name, space.description, params)
    tracking.set_study_status(record, "RUNNING")
    return record


def read_study(name: str, storage: str | Path | None = None) -> tuple[Space, SweepOptions]:
    """The space and options a study was launched with."""
    storage = storage or default_storage()
    folder = study_dir(storage, name)
    record = saved_launch(storage, name)
    where = str(storage) if bucket.is_remote(storage) else str(folder.parent)
    try:
        options = SweepOptions(**{**record["options"], "storage": where})
        space_raw, space_path = record["space"], record["space_path"]
    except (KeyError, TypeError) as exc:
        raise damaged(folder, name, exc) from None
    return parse_space(space_raw, space_path), options


def trainable(options: SweepOptions, record: tracking.StudyRecord, space: Space):
    """The trial function with its resources; one torch thread per CPU Tune gives it."""
    threads = max(1, int(options.cpus_per_trial))
    fn = tune.with_parameters(
        run_trial,
        threads=threads,
        record=record,
        stop_epochs=stop_epochs(space),
        costly_every_epoch=space.objective in COSTLY,
        checkpoint_every=options.checkpoint_every,
        test_hooks=hooks.from_environment(),
    )
    return tune.with_resources(fn, {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})


def tune_config(space: Space, options: SweepOptions, folder: Path) -> tune.TuneConfig:
    num_samples = options.num_samples or space.num_samples
    return tune.TuneConfig(
        metric=space.objective,
        mode=space.mode,
        search_alg=None
        if space.algorithm == "grid"
        else searcher(space, options.name, search_storage(options, folder)),
        scheduler=scheduler(space),
        num_samples=num_samples,
        max_concurrent_trials=options.max_concurrent or local_lanes(options),
        reuse_actors=True,  # a fresh worker costs ~8 s of imports here; trials last seconds
        trial_dirname_creator=trial_dirname,
    )


def trial_dirname(trial: Any) -> str:
    """Short trial folders (`dae_00dd3353`) instead of Tune's config-laden names."""
    return f"{flat_config(trial.config).get('model', 'ae')}_{trial.trial_id}"


def run_config(
    space: Space, options: SweepOptions, record: tracking.StudyRecord, folder: Path
) -> tune.RunConfig:
    board = Leaderboard(space.objective)  # the printer's best and the pictures' leaders
    return tune.RunConfig(
        name=options.name,
        storage_path=tune_path(options).rsplit("/", 1)[0],
        storage_filesystem=study_filesystem(options, verify=False),
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # see study.sweep.pruning
        callbacks=[
            ProgressPrinter(space, board),
            TrackingCallback(record, board),
            SaveWatch(folder),
            Signer(folder),
            restored.RestoreCheck(folder, options.name),
            CheckpointPruner(folder),
            DiskGuard(folder, options.name),
        ],
        verbose=0,
    )
