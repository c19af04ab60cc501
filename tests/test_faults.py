"""Faults with real processes: concurrent drivers, failed launches, hostile state, killed
workers, deterministic failures (servers: tests/test_servers.py). Each sweep test ends with the
counts the issue asks for: trials in Tune, runs in MLflow by state, trials in Optuna,
duplicates, trials lost."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import signal
import socket
import subprocess
import time

import pytest

from study import tracking
from study.sweep import leftovers
from study.sweep.launch import SweepOptions, undone_on_failure
from study.views.runs import study_runs
from tests.harness.files import Planted
from tests.harness.studies import assert_only_the_tool_speaks, counts, write_space
from tests.harness.tool import hold_env, run_here, start_sweep, wait_for_holds


@pytest.mark.slow
def test_two_sweeps_of_one_name_at_once_one_is_refused_naming_the_holder(tmp_path, local_ray):
    # the first driver, a process of its own (on this process's Ray), holds the lock for its
    # whole sweep; the second, refused before any work, runs in this process within a second
    space = write_space(
        tmp_path, num_samples=2, epochs=1, scheduler={"type": "none"}, params={"model": ["ae"]}
    )
    first = start_sweep(space, "twice", tmp_path, "--max-concurrent", "1", "--address", local_ray)
    lock = tmp_path / ".twice.lock"
    deadline = time.monotonic() + 180
    while not (lock.exists() and lock.read_text()):  # the first driver holds it
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    second = run_here(
        "sweep", str(space), "--name", "twice", "--storage", str(tmp_path), cwd=tmp_path
    )
    assert second.returncode == 2
    assert f"study 'twice' is in use by pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    assert_only_the_tool_speaks(out)
    assert counts(tmp_path, "twice") == {
        "tune": 2,
        "mlflow": {"FINISHED": 2},
        "optuna": {"COMPLETE": 2},
        "duplicates": 0,
        "lost": 0,
    }
    resume = run_here("resume", "twice", "--storage", str(tmp_path), cwd=tmp_path)
    assert resume.returncode == 0, resume.stderr[-2000:]  # the lock is free again


def test_a_launch_failing_after_validation_leaves_nothing_behind(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = tmp_path / "half"
    options = SweepOptions(name="half", storage=str(tmp_path), tracking_uri=uri)
    with pytest.raises(RuntimeError), undone_on_failure(folder, options):
        tracking.ensure_study(uri, "half", "", {"folder": str(folder)})
        (folder / "tuner.pkl").write_bytes(b"half-made")
        raise RuntimeError("something failed after validation")
    assert not folder.exists()
    assert not tracking.study_exists(uri, "half")
    # the name is free for the next launch (MLflow keeps the name of an experiment it only
    # marked deleted, and would refuse to make one of that name again)
    tracking.ensure_study(uri, "half", "", {"folder": str(folder)})
    assert tracking.study_exists(uri, "half")


def test_bad_search_seed_is_refused_before_anything_is_written(tmp_path, cli_here):
    space = write_space(tmp_path, search={"algorithm": "tpe", "seed": "abc"})
    result = cli_here(
        "sweep", str(space), "--name", "seedy", "--storage", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "search.seed: must be a whole number >= 0" in result.stderr
    assert not (tmp_path / "seedy").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("listening", [False, True], ids=["nothing-there", "not-ray"])
def test_an_address_that_is_not_a_ray_head_fails_within_seconds(tmp_path, cli_here, listening):
    """Nothing answering fails in seconds, not after Ray's minutes of retries; a TCP port that
    accepts but is not a Ray head (second walk, finding 9) held `ray.init` for over 200 s."""
    space = write_space(tmp_path)
    with socket.socket() as listener:  # bound only: refuses connections; listening: says nothing
        listener.bind(("127.0.0.1", 0))
        if listening:
            listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        start = time.monotonic()
        args = ["sweep", str(space), "--name", "far", "--storage", str(tmp_path)]
        result = cli_here(*args, "--address", address, cwd=tmp_path)
    assert time.monotonic() - start < 30
    message = "not a Ray cluster's head" if listening else "nothing answers there"
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "far").exists()


@pytest.mark.slow
def test_resume_refuses_pickled_state_it_did_not_sign(tmp_path, local_ray):
    space = write_space(tmp_path, num_samples=1, epochs=1)
    made = run_here(
        "sweep", str(space), "--name", "signed", "--storage", str(tmp_path), cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr[-2000:]
    for _ in range(2):  # a resume that runs nothing still signs the state it saves
        again = run_here("resume", "signed", "--storage", str(tmp_path), cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-2000:]
    marker = tmp_path / "code-ran"
    (tmp_path / "signed" / "tuner.pkl").write_bytes(pickle.dumps(Planted(marker)))
    result = run_here("resume", "signed", "--storage", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "holds pickled state this tool did not write or sign (tuner.pkl)" in result.stderr
    assert "--trust-state" in result.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_a_diverging_trial_fails_once_without_retries_and_a_degenerate_one_is_never_crowned(
    tmp_path, cli_here, local_ray
):
    # lr 1000: the VAE's loss becomes NaN in epoch 1; the AE's stays finite but learns nothing
    space = write_space(
        tmp_path,
        num_samples=1,
        epochs=3,
        scheduler={"type": "none"},
        search={"algorithm": "grid"},
        fixed={"batch_size": 256, "lr": 1000.0},
        params={"model": ["vae", "ae"]},
    )
    start = time.monotonic()
    result = run_here(
        "sweep",
        str(space),
        "--name",
        "wild",
        "--storage",
        str(tmp_path),
        "--max-failures",
        "2",
        "--max-concurrent",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "raised; retrying" not in result.stdout
    runs = tracking.trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "wild")
    vae = runs[runs["params.model"] == "vae"].iloc[0]
    assert vae["status"] == "FAILED" and "training diverged in epoch 1" in vae["tags.aestudy.error"]
    vae_dir = next((tmp_path / "wild").glob("vae_*"))
    assert not (vae_dir / "error.txt").exists()  # Tune saw no failure: nothing was retried
    assert counts(tmp_path, "wild") == {
        "tune": 2,
        "mlflow": {"FAILED": 1, "FINISHED": 1},
        "optuna": {},
        "duplicates": 0,
        "lost": 0,
    }
    # the AE learnt nothing: MLflow's state tag says so in status's words; every view reads it
    # back as a finished trial, ranked last
    ae = runs[runs["params.model"] == "ae"].iloc[0]
    assert ae["status"] == "FINISHED" and ae["tags.aestudy.state"] == "degenerate"
    read = study_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "wild").set_index("model")
    assert read.loc["ae", "state"] == "done" and read.loc["vae", "state"] == "failed"
    best = cli_here("best", "wild", "--storage", str(tmp_path), cwd=tmp_path)
    assert best.returncode != 0 and "degenerate" in best.stdout + best.stderr
    assert time.monotonic() - start < 300


@pytest.mark.slow
def test_a_killed_worker_fails_its_trial_with_a_reason(tmp_path, cli_here):
    space = write_space(
        tmp_path, num_samples=1, epochs=3, scheduler={"type": "none"}, params={"model": ["ae"]}
    )
    holds = tmp_path / "holds"
    driver = start_sweep(
        space, "killed-worker", tmp_path, "--max-failures", "0", env=hold_env(holds)
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    wait_for_holds(holds, 1, driver)  # its worker is mid-trial
    # this driver's own trial workers: processes of the Ray session its note names, never
    # another sweep's on the same machine
    note = json.loads(json.loads((tmp_path / ".killed-worker.ray").read_text())["note"])
    session = note["session_dir"]
    pids = [
        pid
        for pid in leftovers._processes_with_open_files_in(session)
        if leftovers._name(pid).startswith("ray::ImplicitFunc")
    ]
    assert pids, "no trial worker found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, out[-3000:]
    # the tool's own line says it failed; Tune's traceback and Optuna's warnings are noise
    for noise in ("Traceback", "Trials did not complete", "ExperimentalWarning"):
        assert noise not in out, out[-3000:]
    assert "failed (see `" in out
    runs = tracking.trial_runs(uri, "killed-worker")
    assert list(runs["status"]) == ["FAILED"]
    reason = runs["tags.aestudy.error"].iloc[0]
    assert isinstance(reason, str) and reason.strip() and "error.txt" in reason
    status = cli_here("status", "killed-worker", "--storage", str(tmp_path), cwd=tmp_path)
    assert "no reason recorded" not in status.stdout
    assert counts(tmp_path, "killed-worker") == {
        "tune": 1,
        "mlflow": {"FAILED": 1},
        "optuna": {"FAIL": 1},
        "duplicates": 0,
        "lost": 0,
    }


def test_a_storage_that_is_a_file_is_refused_in_one_line(tmp_path, cli_here):
    (tmp_path / "afile").write_text("")
    space = write_space(tmp_path)
    result = cli_here(
        "sweep", str(space), "--name", "x", "--storage", str(tmp_path / "afile"), cwd=tmp_path
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is a file; give the folder that holds studies" in result.stderr


def mounted_tmpfs(folder, size: str):
    """Mount a tmpfs of `size` at `folder` (made here); skips the test where this process may
    not mount one (it needs CAP_SYS_ADMIN, which a root CI container has)."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    return folder


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB tmpfs of its own at tmp_path/disk, unmounted afterwards."""
    yield mounted_tmpfs(tmp_path / "disk", "64m")
    subprocess.run(["umount", "-l", str(tmp_path / "disk")], check=False)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KB tmpfs of its own at tmp_path/tiny, unmounted afterwards."""
    yield mounted_tmpfs(tmp_path / "tiny", "64k")
    subprocess.run(["umount", "-l", str(tmp_path / "tiny")], check=False)


def test_a_whole_write_on_a_full_disk_raises_and_leaves_the_old_file(tiny_disk):
    """Second walk, finding 4: ENOSPC came at the buffered close, the failure went unseen, and
    the finaliser renamed the empty aside file over the good one."""
    import gc

    from study.sweep import plain_files

    kept = tiny_disk / "signatures.json"
    kept.write_text("old content")
    with open(tiny_disk / "filler", "wb", buffering=0) as f:
        for chunk in (4096, 1):  # pages, then bytes: to the last byte
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * chunk)
    with pytest.raises(OSError) as raised:
        plain_files.write_whole(kept, "x" * 3000)
    assert raised.value.errno == errno.ENOSPC
    del raised  # its traceback holds the writer: let the finaliser run
    gc.collect()
    assert kept.read_text() == "old content"
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "signatures.json"]


@pytest.mark.slow
def test_a_disk_filling_up_stops_the_sweep_whole_and_resume_finishes_it(
    tmp_path, small_disk, monkeypatch, local_ray
):
    """Hole 7: a full disk cut Tune's state short and wasted retries. Here the study folder's
    disk fills up mid-sweep: the sweep stops as on Ctrl-C, saying why in one line, its state
    whole and signed; with space freed, `resume` finishes every sample once."""
    from study.sweep import disk, trust

    space = write_space(
        tmp_path,
        num_samples=3,
        epochs=6,
        scheduler={"type": "none"},
        fixed={"batch_size": 256},
        params={"model": ["ae", "vae"]},
    )
    holds = tmp_path / "holds"
    driver = start_sweep(
        space,
        "full",
        small_disk,
        "--max-concurrent",
        "1",
        "--address",
        local_ray,
        env=hold_env(holds),
    )
    wait_for_holds(holds, 1, driver)  # the first trial, mid-run, waits while the disk fills
    filler = small_disk / "filler"
    free = disk.free_bytes(small_disk)
    with open(filler, "wb") as f:  # leave less than the reserve, more than a save needs
        f.write(b"\0" * (free - disk.RESERVE_BYTES // 2))
    (holds / "release").touch()
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 130, out[-3000:]
    assert "Traceback" not in out and "raised; retrying" not in out
    assert (
        sum(line.startswith(f"no space left on {small_disk / 'full'}") for line in out.splitlines())
        == 1
    )
    assert f"resume full --storage {small_disk}`" in out  # the command that finds it
    folder = small_disk / "full"
    monkeypatch.setenv("AESTUDY_HOME", str(small_disk))  # the driver's home holds its key
    trust.check_state_whole(folder, "full")  # the saved state is whole ...
    trust.check(folder, "full")  # ... and signed: plain `resume` accepts it

    filler.unlink()
    result = run_here("resume", "full", "--storage", str(small_disk), cwd=small_disk)
    assert result.returncode == 0, result.stderr[-3000:]
    assert counts(small_disk, "full") == {
        "tune": 3,
        "mlflow": {"FINISHED": 3},
        "optuna": {"COMPLETE": 3},
        "duplicates": 0,
        "lost": 0,
    }


def test_a_trial_failing_for_want_of_space_stops_the_sweep_once_and_other_errors_do_not(
    tmp_path, capsys
):
    """The in-trial half of hole 7: a trial whose write hit ENOSPC (Tune's error file says so)
    stops the sweep as Ctrl-C does, whether Tune is about to retry it or has given up; the
    retry would only fail again. Any other error leaves the sweep to Tune's retries."""
    from types import SimpleNamespace

    from study.sweep.disk import DiskGuard

    full = tmp_path / "full.txt"
    full.write_text("OSError: [Errno 28] No space left on device: '/s/checkpoint_000001'")
    other = tmp_path / "other.txt"
    other.write_text("RuntimeError: CUDA error: an illegal memory access was encountered")
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        guard = DiskGuard(tmp_path, "s")
        guard.on_trial_recover(0, [], SimpleNamespace(error_file=str(other)))
        guard.on_trial_error(0, [], SimpleNamespace(error_file=str(other)))
        assert received == []
        guard.on_trial_recover(0, [], SimpleNamespace(error_file=str(full)))
        guard.on_trial_error(0, [], SimpleNamespace(error_file=str(full)))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert received == [signal.SIGINT]
    assert capsys.readouterr().out.count(f"no space left on {tmp_path}") == 1
