"""Command line: `python -m study COMMAND`. Bad input ends with a one-line error and exit code 2."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models import StudyError
from study.cli.servers import run_dashboard, run_server, run_ui
from study.cli.train import add_train_command
from study.hints import resume_command, study_command
from study.tracking import DEFAULT_DB, STORE_DEFAULT

# `status` shows the best this many ranked (and failed) trials unless given --all
SHOWN_TRIALS = 25

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
CLOSED_PIPE = 141  # the shell's code for a process ended by SIGPIPE (`status | head -1`)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(train_details=argv[:1] == ["train"])
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at the exit's flush
        return CLOSED_PIPE
    except KeyboardInterrupt:  # a second Ctrl-C: Tune's saved state stands, nothing was pruned
        name, storage = getattr(args, "name", None), getattr(args, "storage", None)
        where = f" --storage {storage}" if storage else ""
        hint = f"; continue with `{study_command(f'resume {name}{where}')}`" if name else ""
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return INTERRUPTED


def wind_down() -> None:
    """After the command, on the way out of the process: stop the Ray it started, with Ctrl-C
    ignored from here to the exit.

    The command's work is over (a sweep's state saved, its summary printed). Left to Ray's exit
    hook, a Ctrl-C pressed while Ray stopped (an impatient second one) printed a traceback and
    left Ray's processes to its reaper. SIGTERM still ends the process at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def leave(code: int) -> None:
    """Exit with `code`. Where a daemon thread is still at work (the driver's closing thread
    drawing a trial's pictures or scoring its test split, after a second Ctrl-C), exit without
    the interpreter's finalization: it stops such threads by unwinding them out of torch's C++
    code, which aborts the process (SIGABRT, a C stack trace). What they were
    doing is redone by the study's next `resume` (study.sweep.pictures.catch_up)."""
    progress = sys.modules.get("study.sweep.progress")  # loaded only by a sweep or resume
    if progress is None or not progress.closing_busy():
        raise SystemExit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def build_parser(train_details: bool = True) -> argparse.ArgumentParser:
    """The command line; `train_details` False leaves the models (torch) unimported unless the
    command is `train` (see `add_train_command`)."""
    parser = argparse.ArgumentParser(prog="python -m study", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_command(commands, train_details)
    add_sweep_commands(commands)
    add_tracking_commands(commands)
    p = commands.add_parser(
        "cluster-check", help="validate cluster launcher configs offline (Ray's schema)"
    )
    p.add_argument("configs", nargs="+", help="e.g. cluster.yaml cluster-onprem.yaml")
    p.set_defaults(handler=run_cluster_check)

    from analysis.table import __doc__ as table_doc
    from analysis.table import add_arguments as table_arguments

    p = commands.add_parser(
        "table",
        help="the comparison table and plots of a study (reports/NAME/)",
        description=table_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    table_arguments(p)
    p.set_defaults(handler=run_table)

    return parser


def add_sweep_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("sweep", help="run a study: Ray Tune + Optuna over a space file")
    p.add_argument("space", help="a search space file, e.g. search_spaces/quick.yaml")
    p.add_argument("--name", help="study name (default: the space file's name)")
    p.add_argument("--num-samples", type=int, help="number of trials (overrides the space)")
    p.add_argument(
        "--max-concurrent",
        type=int,
        help="trials running at once (default: as many as a local Ray's CPUs and GPUs hold; "
        "set it on a cluster, see docs/cluster.md)",
    )
    p.add_argument(
        "--cpus-per-trial", type=float, default=1.0, help="CPUs each trial holds (default 1)"
    )
    p.add_argument(
        "--gpus-per-trial", type=float, default=0.0, help="fractions pack trials on one GPU"
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="retries of a failing trial, from its checkpoint",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a trial checkpoints where ASHA may stop it, at its end, and once the epochs since "
        "its last checkpoint took this long to train and evaluate (0: every epoch; default 10)",
    )
    p.add_argument(
        "--address", help="join a Ray cluster ('auto' or host:port); default: start a local Ray"
    )
    p.add_argument(
        "--storage",
        help=STORAGE_HELP + "; on a cluster, one every node mounts, or object storage: "
        "s3://bucket/prefix[?endpoint_override=host:port&scheme=http] (needs --search-db)",
    )
    p.add_argument(
        "--tracking-uri",
        help=f"MLflow store: sqlite:///path/{DEFAULT_DB}, http://host:port or "
        f"postgresql://user@host:port/db (default: {STORE_DEFAULT})",
    )
    p.add_argument(
        "--search-db",
        metavar="URL",
        help="Optuna's study (and, with s3:// storage, the study lock) in PostgreSQL: "
        "postgresql://user@host:port/db; default: optuna.db in the study folder",
    )
    p.add_argument(
        "--dataset", help="override the space's data set (mnist-5k, mnist, fashion-mnist)"
    )
    p.add_argument(
        "--data-dir", help="folder of IDX files for mnist / fashion-mnist (shared on a cluster)"
    )
    p.add_argument(
        "--long",
        action="store_true",
        help="go ahead with a sweep estimated to run for more than a day (refused otherwise)",
    )
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    p.set_defaults(handler=run_sweep)

    p = commands.add_parser("resume", help="continue an interrupted study")
    p.add_argument("name", help=NAME_HELP)
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument(
        "--trust-state",
        action="store_true",
        help="resume even if the study folder holds pickled state this tool did not sign "
        "(see docs/architecture.md, 'The study folder')",
    )
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    p.set_defaults(handler=run_resume)

    p = commands.add_parser("status", help="a study's trials, ranked, with states and parameters")
    add_study_arguments(p)
    p.add_argument(
        "--all", action="store_true", help=f"every trial (default: the best {SHOWN_TRIALS})"
    )
    p.set_defaults(handler=run_status)

    p = commands.add_parser(
        "best", help="the best trial of each model type, with its train command"
    )
    add_study_arguments(p)
    p.add_argument("--model", help="only this model type")
    p.set_defaults(handler=run_best)

    p = commands.add_parser(
        "dashboard", help="optuna-dashboard on a study's Optuna search (127.0.0.1)"
    )
    p.add_argument("name", help=NAME_HELP)
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--port", type=int, default=8080, help="the port on 127.0.0.1 (default 8080)")
    p.set_defaults(handler=run_dashboard)

    p = commands.add_parser("list", help="the studies in the tracking store")
    p.add_argument("--tracking-uri", help=TRACKING_HELP)
    p.set_defaults(handler=run_list)


NAME_HELP = "the study's name, as given to sweep --name (`python -m study list` shows them)"
VERBOSE_HELP = "let Ray Tune, MLflow and Optuna print their own messages too"
STORAGE_HELP = (
    "folder that holds the study, or s3://bucket/prefix (default: $AESTUDY_HOME/studies, "
    "~/.aestudy/studies)"
)
TRACKING_HELP = (
    f"MLflow store: sqlite:///path/{DEFAULT_DB}, http://host:port or postgresql://… (default: "
    "the study's own, "
    f"else {STORE_DEFAULT})"
)


def add_study_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help=NAME_HELP)
    p.add_argument("--tracking-uri", help=TRACKING_HELP)
    p.add_argument("--storage", help=STORAGE_HELP)


def study_uri(args: argparse.Namespace) -> str:
    """--tracking-uri; else the store the study was launched with (its study.json); else the
    default store."""
    from study.sweep.bucket import is_remote
    from study.sweep.folder import STUDY_FILE, default_storage, saved_launch, study_dir
    from study.tracking import resolve_tracking_uri

    if args.tracking_uri:
        return resolve_tracking_uri(args.tracking_uri)
    storage = args.storage or default_storage()
    local = not is_remote(storage)
    if local and not os.path.lexists(study_dir(storage, args.name) / STUDY_FILE):
        return resolve_tracking_uri(None)
    return resolve_tracking_uri(saved_launch(storage, args.name)["options"].get("tracking_uri"))


def run_sweep(args: argparse.Namespace) -> int:
    from study.sweep.launch import SweepOptions, launch
    from study.sweep.space_file import load_space

    quiet_libraries(args.verbose)
    data_dir = str(Path(args.data_dir).expanduser().resolve()) if args.data_dir else None
    # every problem in the file is reported before Ray starts
    space = load_space(args.space, {"dataset": args.dataset, "data_dir": data_dir})
    options = SweepOptions(
        name=Path(args.space).stem if args.name is None else args.name,
        storage=args.storage or "",
        num_samples=args.num_samples,
        max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_failures=args.max_failures,
        checkpoint_every=args.checkpoint_every,
        address=args.address,
        long=args.long,
        tracking_uri=args.tracking_uri,
        search_db=args.search_db,
    )
    print(f"study {options.name}: {space.description or space.path}", flush=True)
    outcome, wall = timed(launch, space, options)
    return summarise(options, outcome, wall)


def run_resume(args: argparse.Namespace) -> int:
    from study.sweep.launch import read_study, resume

    quiet_libraries(args.verbose)
    _, options = read_study(args.name, args.storage)  # a missing study fails before Ray starts
    (_, outcome), wall = timed(resume, args.name, args.storage, args.trust_state)
    return summarise(options, outcome, wall)


def quiet_libraries(verbose: bool) -> None:
    """Unless `verbose`, the terminal shows the tool's own lines only: Tune's reporter (tables,
    "View detailed results", a TensorBoard hint, `Tuner.restore` advice) and the INFO lines of
    MLflow and Optuna say nothing the progress lines and summary do not, or say it wrongly.
    Errors still show."""
    if verbose:
        return
    import logging
    import os

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0, Tune's legacy reporter is silent
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # Ray's notice that it turned on token authentication for the local cluster, every launch
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    # Tune logs a failed trial's traceback and, at the end, "Trials did not complete": the tool
    # prints its own line per failed trial and records the error in MLflow and `status`
    for name in ("ray.tune", "ray.train", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(
            logging.CRITICAL if name.startswith("ray") else logging.WARNING
        )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def summarise(options: Any, outcome: Any, wall: float) -> int:
    """The closing summary; exit code 130 when a signal interrupted the sweep."""
    from study.sweep.launch import study_dir
    from study.sweep.progress import own_seconds
    from study.views.status import print_summary

    folder = study_dir(options.storage, options.name)
    trained = own_seconds(outcome.results, since=time.time() - wall)
    print_summary(options.tracking_uri, options.name, trained, wall, folder, options.storage)
    if not outcome.interrupted:
        return 0
    print(
        f"interrupted: {len(outcome.unfinished)} trial(s) unfinished; continue with "
        f"`{resume_command(options.name, options.storage)}`",
        flush=True,
    )
    return INTERRUPTED


def run_status(args: argparse.Namespace) -> int:
    from study.views.status import print_status

    print_status(study_uri(args), args.name, None if args.all else SHOWN_TRIALS)
    return 0


def run_best(args: argparse.Namespace) -> int:
    from study.views.status import print_best

    return print_best(study_uri(args), args.name, args.model)


def run_list(args: argparse.Namespace) -> int:
    from study.tracking import resolve_tracking_uri
    from study.views.status import print_list

    print_list(resolve_tracking_uri(args.tracking_uri))
    return 0


def add_tracking_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("ui", help="browse the studies in the MLflow UI (127.0.0.1)")
    p.add_argument("--port", type=int, default=5000, help="the port on 127.0.0.1 (default 5000)")
    p.add_argument("--tracking-uri", help=TRACKING_HELP)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="MLflow's server processes (default 1: one browser on a local file)",
    )
    p.set_defaults(handler=run_ui)

    p = commands.add_parser("server", help="start an MLflow tracking server for a cluster")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept workers of a cluster")
    p.add_argument("--port", type=int, default=5000, help="the port to listen on (default 5000)")
    p.add_argument(
        "--backend-store-uri",
        help="sqlite:///path or postgresql://user@host:port/db (default: as --tracking-uri of "
        "the other commands)",
    )
    p.add_argument(
        "--artifacts-destination",
        default="mlartifacts",
        help="where it stores artifacts: a folder, or s3://bucket/prefix (MLflow's boto3 client: "
        "MLFLOW_S3_ENDPOINT_URL for an S3-compatible store)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=4,
        help="server processes answering the trials (default 4, MLflow's)",
    )
    p.set_defaults(handler=run_server)

    p = commands.add_parser(
        "export", help="write the best checkpoints of a study and register them"
    )
    add_study_arguments(p)
    p.add_argument("--out", required=True, help="an empty or new folder to write into")
    p.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    p.add_argument("--per-model", action="store_true", help="the best trial of each model type")
    p.add_argument(
        "--metric",
        help="rank by this metric (default: the study's objective, whose winners get the "
        "aliases champion and champion-<model>; another metric's get best-<metric>[-<model>])",
    )
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from study.trial.metrics import test_counterpart
    from study.views.export import export_best

    exported, skipped = export_best(
        study_uri(args), args.name, args.out, args.per_model, args.metric, force=args.force
    )
    for item in exported:
        note = f"  [{item.standing}]" if item.standing else ""
        test = test_counterpart(item.metric)
        reported = f" ({test} {item.test[test]:.4f})" if test in item.test else ""
        print(
            f"{item.label:<5} {item.metric}={item.value:.4f}{reported}  trial {item.trial_id}  -> "
            f"{item.folder}  ({', '.join(item.registered)}){note}"
        )
    for model, reason in skipped.items():
        print(f"{model:<5} not exported: {reason}")
    return 0


def run_cluster_check(args: argparse.Namespace) -> int:
    from study.sweep.cluster import validate_cluster_config

    for path in args.configs:
        prepared = validate_cluster_config(path)
        types = ", ".join(prepared.get("available_node_types", {}))
        print(f"{path}: valid ({prepared['provider']['type']}; node types: {types})")
    return 0


def run_table(args: argparse.Namespace) -> int:
    """`study table ...` is `python -m analysis.table ...`: one implementation, two doors."""
    from analysis.table import run

    return run(args)


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - start
