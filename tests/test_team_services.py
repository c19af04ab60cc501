"""A team's services: a study in an S3 bucket (moto's server mode on 127.0.0.1), its search and
lock in PostgreSQL (Debian's server, started by the tests), MLflow's store in PostgreSQL. Every
refusal comes before anything is launched or written, in one line naming what to fix. The
multi-node sweep whose nodes share no folder is in tests/test_cluster.py."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from models import ResourceError
from study.sweep.bucket import Bucket
from study.sweep.lock import check_not_held, study_lock
from tests.harness.studies import WINNING_AE, write_space
from tests.harness.tool import PYTHON, ROOT

NOTHING_LISTENS = "s3://bucket/prefix?endpoint_override=http://127.0.0.1:9&scheme=http"


def refused_in_one_line(result, *named: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in named:
        assert text in lines[0], lines[0]


def test_s3_storage_and_a_postgres_store_with_nothing_listening_exit_2_writing_nothing(
    tmp_path, cli_here
):
    space = write_space(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    bucket = cli_here("sweep", str(space), "--name", "s", "--storage", NOTHING_LISTENS, cwd=home)
    refused_in_one_line(bucket, "http://127.0.0.1:9", "does not answer")
    store = "postgresql://user:pw@127.0.0.1:9/mlflow"
    db = cli_here("sweep", str(space), "--name", "s", "--tracking-uri", store, cwd=home)
    refused_in_one_line(db, "127.0.0.1:9", "--tracking-uri")
    assert ":pw@" not in db.stderr  # the password is masked
    assert sorted(p.name for p in home.iterdir()) == []  # no study folder, mirror or store


def test_s3_bucket_missing_or_without_search_db_and_postgres_wrong_password_exit_2(
    tmp_path, cli_here, s3, s3_env, postgres
):
    space = write_space(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    db = postgres.create("refusals")
    sweep = ("sweep", str(space), "--name", "s", "--storage")
    missing = cli_here(*sweep, s3.uri("no-such-bucket"), "--search-db", db, cwd=home)
    refused_in_one_line(missing, "bucket 'no-such-bucket' does not exist", s3.endpoint)
    bucket = s3.create("refusals")
    no_db = cli_here(*sweep, s3.uri(bucket), cwd=home)
    refused_in_one_line(no_db, "add --search-db postgresql://")
    wrong = postgres.url("refusals", password="wrong")
    bad_password = cli_here(*sweep, s3.uri(bucket), "--search-db", wrong, cwd=home)
    refused_in_one_line(bad_password, "--search-db", "password authentication failed")
    assert sorted(p.name for p in home.iterdir()) == []
    # the write check's probe is gone (pyarrow leaves the prefix's empty folder marker)
    assert [key for key in s3.keys(bucket) if not key.endswith("/")] == []


HOLDER = """
import sys
from study.sweep.lock import study_lock
with study_lock(sys.argv[1], "locked", database=sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_postgres_lock_of_an_s3_study_refuses_a_second_driver_until_its_holder_is_killed(
    tmp_path, monkeypatch, s3, s3_env, postgres
):
    monkeypatch.setenv("AESTUDY_HOME", str(tmp_path))
    storage, db = s3.uri(s3.create("locks")), postgres.create("locks")
    holder = subprocess.Popen(
        [PYTHON, "-c", HOLDER, storage, db],
        cwd=ROOT,
        env={**os.environ},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ResourceError, match=rf"in use by pid {holder.pid} on "):
            check_not_held(storage, "locked", db)
        second = study_lock(storage, "locked", database=db)
        with pytest.raises(ResourceError, match=r"in use by pid .*resume locked --storage"):
            second.__enter__()
        with study_lock(storage, "other", database=db):  # another study's lock is its own
            pass
    finally:
        holder.kill()  # SIGKILL: no unlock, the server sees the connection end
        holder.wait()
    deadline = time.monotonic() + 30
    while True:  # the server ends the dead holder's session once its socket closes
        try:
            check_not_held(storage, "locked", db)
            break
        except ResourceError:
            assert time.monotonic() < deadline, "the killed holder's lock was never released"
            time.sleep(0.1)
    with study_lock(storage, "locked", database=db):
        pass
    assert not Bucket.parse(storage).has("locked", "study.json")  # a lock writes nothing there


def test_an_s3_launch_failing_after_validation_leaves_nothing_in_the_bucket(
    tmp_path, monkeypatch, s3, s3_env
):
    from study import tracking
    from study.sweep.launch import SweepOptions, undone_on_failure

    monkeypatch.setenv("AESTUDY_HOME", str(tmp_path))
    storage, uri = s3.uri(s3.create("half-made")), f"sqlite:///{tmp_path / 'mlflow.db'}"
    options = SweepOptions(name="half", storage=storage, tracking_uri=uri)
    where = Bucket.parse(storage)
    folder = where.mirror("half")
    with pytest.raises(RuntimeError), undone_on_failure(folder, options):
        tracking.ensure_study(uri, "half", "", {})
        (folder / "tuner.pkl").write_bytes(b"half-made")
        where.push("half", folder / "tuner.pkl")
        assert where.has("half", "tuner.pkl")
        raise RuntimeError("something failed after validation")
    assert not folder.exists() and not where.has("half", "tuner.pkl")
    assert not tracking.study_exists(uri, "half")


def test_s3_mirror_and_paths_are_one_per_storage(tmp_path, monkeypatch):
    """Two buckets, or two endpoints, never share a driver's mirror; the study's path in the
    bucket is what Tune is handed."""
    monkeypatch.setenv("AESTUDY_HOME", str(tmp_path))
    a = Bucket.parse("s3://team-a/studies?endpoint_override=127.0.0.1:9000&scheme=http")
    b = Bucket.parse("s3://team-a/studies?endpoint_override=127.0.0.1:9001&scheme=http")
    assert a.mirror("s") != b.mirror("s") and a.mirror("s").is_relative_to(Path(tmp_path))
    assert a.study_root("s") == "team-a/studies/s"
    with pytest.raises(Exception, match="unknown option bogus"):
        Bucket.parse("s3://team-a/x?bogus=1")
    with pytest.raises(Exception, match="object storage is s3://"):
        Bucket.parse("gs://team-a/x")


@pytest.mark.ray
def test_a_sweep_logs_to_a_postgres_store_directly_and_every_view_reads_it(
    tmp_path, local_ray, postgres
):
    """`--tracking-uri postgresql://…` with no server between: the sweep's trials log there,
    the study's own journal keeps its search, and `status`, `best` and `list` read the store."""
    from study.tracking import trial_runs
    from tests.harness.tool import run_here

    store = postgres.create("direct_mlflow")
    space = write_space(
        tmp_path,
        num_samples=2,
        epochs=1,
        scheduler={"type": "none"},
        fixed=WINNING_AE,
        params={"model": ["ae"], "latent_dim": {"int": [4, 12]}},
    )
    sweep = run_here(
        "sweep", str(space), "--name", "pg", "--tracking-uri", store, cwd=tmp_path, seed=False
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    runs = trial_runs(store, "pg")
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the default SQLite store
    winner = runs.sort_values("metrics.val_mse")["tags.aestudy.trial_id"].iloc[0][:8]
    for view in ("status", "best"):  # the store found through the study's study.json
        shown = run_here(view, "pg", cwd=tmp_path, seed=False)
        assert shown.returncode == 0, shown.stderr
        assert winner in shown.stdout
    listed = run_here("list", "--tracking-uri", store, cwd=tmp_path, seed=False)
    assert listed.returncode == 0 and "pg" in listed.stdout, listed.stderr
    # its search is Optuna's journal file in the study folder: `study dashboard` serves it
    assert (tmp_path / "studies" / "pg" / "optuna.journal").is_file()
    assert dashboard_studies(tmp_path, "pg") == {"pg": 2}


def dashboard_studies(home: Path, name: str) -> dict[str, int]:
    """`python -m study dashboard NAME` started in `home`, asked for its studies (name: trial
    count) once it answers, then stopped."""
    import json
    import signal
    import urllib.request

    from tests.harness.servers import free_port
    from tests.harness.tool import home_env

    port = free_port()
    command = [PYTHON, "-m", "study", "dashboard", name, "--port", str(port)]
    server = subprocess.Popen(
        command,
        cwd=home,
        env=home_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"http://127.0.0.1:{port}/api/studies"
                with urllib.request.urlopen(url, timeout=2) as reply:
                    summaries = json.loads(reply.read())["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, "the dashboard ended"
                assert time.monotonic() < deadline, "the dashboard did not answer in 60 s"
                time.sleep(0.2)
        counts = {}
        for summary in summaries:
            url = f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}"
            with urllib.request.urlopen(url, timeout=5) as reply:
                counts[summary["study_name"]] = len(json.loads(reply.read())["trials"])
        return counts
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_postgres_search_db_going_down_is_waited_out_and_loses_nothing(
    tmp_path, postgres, capsys
):
    """Optuna's study in PostgreSQL, the server stopped between a trial's results (as an
    administrator's restart ends every session): the search waits, says so once, and records
    the result once the server is back; the trial's curve in Optuna has every step once."""
    import threading

    import optuna

    from study.sweep import search
    from study.sweep.space_file import load_space
    from tests.harness.studies import write_space

    db = postgres.create("outage")
    space = load_space(str(write_space(tmp_path, scheduler={"type": "none"})), {})
    searcher = search.searcher(space, "outage", db)
    config = searcher.suggest("t1")
    assert config and "model" in config
    searcher.on_trial_result("t1", {space.objective: 0.09, "training_iteration": 1})
    postgres.stop()
    waited = threading.Thread(
        target=searcher.on_trial_complete,
        args=("t1", {space.objective: 0.08, "training_iteration": 2}),
    )
    waited.start()
    deadline = time.monotonic() + 30
    while "waiting for the search database" not in capsys.readouterr().out:
        assert waited.is_alive() and time.monotonic() < deadline, "it did not wait"
        time.sleep(0.1)
    postgres.start()
    waited.join(timeout=60)
    assert not waited.is_alive(), "the search did not go on once the server answered"
    (trial,) = optuna.load_study(study_name="outage", storage=db).trials
    assert trial.state.name == "COMPLETE" and trial.value == pytest.approx(0.08)
    assert trial.intermediate_values == {1: pytest.approx(0.09), 2: pytest.approx(0.08)}
