"""The study folder's trust boundary, attacked as the issue's tester did: planted pickles with a
real payload (it creates a marker file), links planted in place of the tool's files, a forged
note naming a process to kill, a broken or missing signing key. Each time: the marker never
appears, nothing outside the study is written, the command says which file and exits 2."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from study import tracking
from study.sweep import leftovers, plain_files, trust
from study.trial.states import read
from tests.harness.files import Planted
from tests.harness.studies import write_space
from tests.harness.tool import (
    PYTHON,
    hold_env,
    home_env,
    run_cli,
    run_here,
    start_sweep,
    wait_for_holds,
)


def payload_state(marker: Path) -> str:
    """A Tune experiment state whose embedded cloudpickle creates `marker` when loaded."""
    from ray._common.utils import binary_to_hex

    blob = {"_type": "CLOUDPICKLE_FALLBACK", "value": binary_to_hex(pickle.dumps(Planted(marker)))}
    return json.dumps({"trial_data": [], "runner_data": blob})


@pytest.fixture(scope="module")
def signed_study(tmp_path_factory, local_ray) -> Path:
    """A finished one-trial study `s` in the default storage of a home of its own; returns the
    home (its store, key and `studies/`)."""
    home = tmp_path_factory.mktemp("signed")
    space = write_space(home, num_samples=1, epochs=1, scheduler={"type": "none"})
    made = run_here("sweep", str(space), "--name", "s", cwd=home)
    assert made.returncode == 0, made.stderr[-2000:]
    return home


def resume(home: Path, *extra: str, own_ray: bool = False):
    """`resume s` of the study in `home`: in this process (it joins `local_ray`), or with
    `own_ray` as a user runs it, a fresh `python -m study` starting a Ray of its own, which
    stops what a killed driver's note names and writes its own note."""
    if own_ray:
        return run_cli("resume", "s", *extra, cwd=home)
    return run_here("resume", "s", *extra, cwd=home)


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.mark.slow
def test_a_state_planted_while_a_sweep_runs_is_never_loaded_at_its_end(tmp_path, local_ray):
    """Hole 1: the end of a sweep read the newest experiment state unverified."""
    space = write_space(
        tmp_path,
        num_samples=2,
        epochs=3,
        scheduler={"type": "none"},
        fixed={"batch_size": 256},
        params={"model": ["ae"]},
    )
    marker = tmp_path / "code-ran"
    planted = tmp_path / "p" / "experiment_state-9999-12-31_23-59-59.json"
    holds = tmp_path / "holds"
    sweep = start_sweep(
        space, "p", tmp_path, "--address", local_ray, "--max-concurrent", "1", env=hold_env(holds)
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    wait_for_holds(holds, 1, sweep)  # mid-sweep: a trial waits after its first epoch
    planted.write_text(payload_state(marker))
    (holds / "release").touch()
    out, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 2, out[-3000:]
    assert planted.name in out.strip().splitlines()[-1] and "did not write or sign" in out
    assert not marker.exists()
    runs = tracking.trial_runs(uri, "p")
    assert "orphaned" not in set(runs["tags.aestudy.state"])  # the finished trials stand
    (study_run,) = tracking.client(uri).search_runs(
        [tracking.experiment_id(uri, "p")], "tags.`aestudy.role` = 'study'"
    )
    assert study_run.info.status == "KILLED"  # not left RUNNING: resumable, as it says
    planted.unlink()  # the owner removes what they did not write: the study resumes
    again = run_here("resume", "p", "--storage", str(tmp_path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert set(tracking.trial_runs(uri, "p")["tags.aestudy.state"].map(read)) == {"done"}
    assert not marker.exists()


def test_links_planted_for_the_tool_s_own_files_are_never_written_through(signed_study):
    """Hole 3: the lock, the session note and a file of the study folder, each a link to a
    victim file: refused (exit 2, the link named) or replaced, the victim untouched."""
    home, folder = signed_study, signed_study / "studies"
    victim = home / "victim.txt"
    victim.write_text("precious")
    lock = folder / ".s.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    try:
        assert str(lock) in one_line_error(resume(home))
    finally:
        lock.unlink()
    assert victim.read_text() == "precious"

    inside = folder / "s" / "search_gen_state-link.json"
    inside.symlink_to(victim)
    try:
        assert f"{inside} is a symbolic link" in one_line_error(resume(home))
    finally:
        inside.unlink()
    assert victim.read_text() == "precious"

    note = folder / ".s.ray"
    note.unlink(missing_ok=True)
    note.symlink_to(victim)
    again = resume(home, own_ray=True)  # its note: the link is replaced, not followed
    assert again.returncode == 0, again.stderr[-2000:]
    assert victim.read_text() == "precious" and not note.is_symlink()


@contextlib.contextmanager
def holding_open(path: Path) -> Iterator[subprocess.Popen]:
    """A process of this test's that holds `path` open (writing) until the block ends."""
    script = "import signal, sys; f = open(sys.argv[1], 'w'); signal.pause()"
    holder = subprocess.Popen([sys.executable, "-c", script, str(path)])
    try:
        deadline = time.monotonic() + 30
        while not path.exists():  # opened: the open made it
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.1)
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_forged_session_note_names_no_process_to_stop(signed_study, tmp_path):
    """Hole 4: a note naming any folder made `resume` kill whoever held a file there."""
    home, folder = signed_study, signed_study / "studies"
    fake_session = tmp_path / "session_2026-01-01_00-00-00_000000_1"
    fake_session.mkdir()
    # a process that holds a file in the forged folder open until this test kills it
    with holding_open(fake_session / "held") as holder:
        note = {"host": socket.gethostname(), "pid": 999999, "session_dir": str(fake_session)}
        (folder / ".s.ray").unlink(missing_ok=True)
        (folder / ".s.ray").write_text(json.dumps(note))  # unsigned
        result = resume(home, own_ray=True)
        assert result.returncode == 0, result.stderr[-2000:]
        assert holder.poll() is None, "resume stopped a process it did not start"
        assert "left running" not in result.stdout


def test_a_genuine_note_stops_only_ray_s_own_processes_of_its_own_study(tmp_path, monkeypatch):
    """Second walk, finding 7: another study's genuine note copied in made `resume` kill a
    process holding a file of that Ray session open, and a study's own old note made it kill a
    `tail -f` of its session's log. A note now names its study, and only Ray's own processes
    of that session are stopped."""
    monkeypatch.setenv(tracking.HOME_ENV, str(tmp_path))
    session = tmp_path / "session_2026-01-01_00-00-00_000000_1"
    session.mkdir()
    # not Ray's: a reader of the session's log, as `tail -f` would be
    with holding_open(session / "held") as reader:
        studies = tmp_path / "studies"
        (studies / "s").mkdir(parents=True)
        (studies / "other").mkdir()

        def note_for(folder: Path) -> str:  # as the tool writes it, its driver dead since
            body = json.dumps(
                {
                    "host": socket.gethostname(),
                    "pid": 999999,
                    "session_dir": str(session),
                    "study": str(folder),
                }
            )
            return json.dumps({"note": body, "mac": trust.mac_of(body.encode())})

        (studies / ".s.ray").write_text(note_for(studies / "other"))  # another study's
        assert leftovers.find(studies / "s") == (0, [])
        (studies / ".s.ray").write_text(note_for(studies / "s"))  # its own
        assert leftovers.find(studies / "s") == (999999, [])  # the reader is not Ray's
        leftovers.stop(studies / "s")
        assert reader.poll() is None


def test_a_fifo_in_a_file_s_place_is_refused_not_waited_on(signed_study, tmp_path):
    """Second walk, finding 8: a FIFO as the key, the signatures or a state file hung `status`,
    `resume` and `sweep` in `open` (no writer ever comes)."""
    home = copied_home(signed_study, tmp_path)
    folder = home / "studies" / "s"
    # a note to check beside the folder MLflow names (the original's): `status` reads the key
    noted = signed_study / "studies" / "s"
    leftovers.remember(noted, "")
    key = home / trust.KEY_FILE
    key.unlink()
    os.mkfifo(key, 0o600)
    try:
        start = time.monotonic()
        status = run_cli("status", "s", cwd=home, timeout=60)
    finally:
        leftovers.session_note(noted).unlink()
    assert time.monotonic() - start < 30
    assert status.returncode == 2 and f"signing key {key} is not a plain file" in status.stderr

    key.unlink()
    shutil.copyfile(signed_study / trust.KEY_FILE, key)
    signatures = folder / trust.SIGNATURES
    signatures.unlink()
    os.mkfifo(signatures, 0o600)
    assert f"{signatures} is not a plain file" in one_line_error(resume(home))


def test_a_view_piped_into_head_ends_quietly(signed_study, tmp_path):
    """Second walk, finding 10: `status | head -1` ended in a BrokenPipeError traceback. The
    reader here is gone before the first line, as `head -1` is after its first."""
    for view in ("status", "list"):
        read, write = os.pipe()
        os.close(read)
        args = [PYTHON, "-m", "study", view, *(["s"] if view != "list" else [])]
        done = subprocess.run(
            args,
            cwd=signed_study,
            env=home_env(signed_study),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        os.close(write)
        assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, view
        assert done.returncode == 141, (view, done.stderr[-2000:])


def test_a_broken_or_lost_key_is_refused_naming_it_and_never_signs(signed_study, tmp_path):
    """Hole 5: an empty key (a disk full as it was made) let anyone forge signatures; a key
    others can read; a lost key silently replaced."""
    import hashlib
    import hmac

    home, folder = signed_study, signed_study / "studies" / "s"
    key = home / trust.KEY_FILE
    kept, signatures = key.read_bytes(), (folder / trust.SIGNATURES).read_text()
    tuner = (folder / "tuner.pkl").read_bytes()
    marker = tmp_path / "code-ran"
    forged = pickle.dumps(Planted(marker))
    try:
        key.write_text("")
        (folder / "tuner.pkl").write_bytes(forged)  # signed with the empty key, as forgers can
        signed = json.loads(signatures)
        signed["tuner.pkl"] = hmac.new(b"", forged, hashlib.sha256).hexdigest()
        (folder / trust.SIGNATURES).write_text(json.dumps(signed))
        assert f"signing key {key} is not a key" in one_line_error(resume(home))
        assert not marker.exists()

        key.write_bytes(kept)
        key.chmod(0o644)
        line = one_line_error(resume(home))
        assert f"signing key {key} has mode 0644" in line and "chmod 600" in line

        key.unlink()  # lost: not silently replaced while a study signed with it exists
        line = one_line_error(resume(home))
        assert f"signing key {key} is missing" in line and "studies signed with it" in line
        assert not key.exists()
        key.write_bytes(kept)
        key.chmod(0o600)  # the real key refuses the forged file
        line = one_line_error(resume(home))
        assert "holds pickled state this tool did not write or sign (tuner.pkl)" in line
    finally:
        key.write_bytes(kept)
        key.chmod(0o600)
        (folder / "tuner.pkl").write_bytes(tuner)
        (folder / trust.SIGNATURES).write_text(signatures)
    assert not marker.exists()
    assert resume(home).returncode == 0


def test_a_new_key_is_made_whole_and_private(tmp_path, monkeypatch):
    monkeypatch.setenv(tracking.HOME_ENV, str(tmp_path))
    secret = trust.key()
    path = tmp_path / trust.KEY_FILE
    assert len(secret) == trust.KEY_BYTES and path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_text()) == 2 * trust.KEY_BYTES and trust.key() == secret
    assert [p.name for p in tmp_path.iterdir()] == [trust.KEY_FILE]  # no temporary left


def test_a_truncated_state_is_refused_even_with_trust_state(signed_study):
    """Hole 7's remedy: --trust-state resumed a cut state and dropped the samples silently."""
    state = sorted((signed_study / "studies" / "s").glob("experiment_state-*.json"))[-1]
    whole = state.read_bytes()
    try:
        state.write_bytes(whole[: len(whole) // 2])
        line = one_line_error(resume(signed_study, "--trust-state"))
        assert f"{state} is cut short or damaged" in line
    finally:
        state.write_bytes(whole)


@pytest.mark.parametrize("extra", [(), ("--trust-state",)], ids=["verified", "trust-state"])
def test_a_resume_never_rewrites_what_the_launch_wrote_once(signed_study, extra):
    """Tune copies the .json and .pkl files at the top of the folder into its staging folder when
    it restores, and copies them back at every save, each truncated then rewritten: a resumed
    driver killed during such a copy left study.json empty, and the study would not resume."""
    folder = signed_study / "studies" / "s"
    once = [folder / "study.json", folder / "tuner.pkl"]
    before = [(f.stat().st_ino, f.stat().st_mtime_ns, f.read_bytes()) for f in once]
    result = resume(signed_study, *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [(f.stat().st_ino, f.stat().st_mtime_ns, f.read_bytes()) for f in once] == before


def test_tune_s_copies_of_its_state_replace_each_file_whole(tmp_path):
    """Tune copies its saved state into the folder file by file, each truncated, then written:
    a driver killed midway left a file cut short, and the study would not resume. Through the
    study's filesystem a file is replaced whole, or not at all."""
    from study.sweep import verified_storage

    folder = tmp_path / "s"
    folder.mkdir()
    state = folder / "experiment_state-1.json"
    state.write_text("old")
    storage = verified_storage.filesystem(folder, "s", verify=False)
    stream = storage.open_output_stream(str(state))
    stream.write(b"new, half")
    assert state.read_text() == "old"  # killed here, the old file stands whole
    stream.write(b" and the rest")
    stream.close()
    assert state.read_text() == "new, half and the rest"
    assert [p.name for p in folder.iterdir()] == [state.name]  # nothing left aside

    failing = plain_files.ReplacedOnClose(state)
    failing.file.close()  # its write fails, as on a full disk
    with pytest.raises(ValueError):
        failing.write(b"cut")
    failing.close()
    assert state.read_text() == "new, half and the rest"
    assert [p.name for p in folder.iterdir()] == [state.name]

    (folder / "study.json").write_text("{}")  # written once by the launch
    with storage.open_output_stream(str(folder / "study.json")) as f:
        f.write(b"Tune's stale copy")
    assert (folder / "study.json").read_text() == "{}"
    (folder / "trial").mkdir()
    with storage.open_output_stream(str(folder / "trial" / "result.json")) as f:
        f.write(b"{}")  # inside a trial's folder, whole too
    assert (folder / "trial" / "result.json").read_text() == "{}"


def test_links_planted_in_trial_folders_are_never_written_through(tmp_path):
    """Second walk, finding 6: Tune's copies of a trial's files (params, progress, results,
    checkpoints) passed straight through, and links planted there mid-sweep were written
    through. A link in a file's place is replaced; a link in a folder's place is refused."""
    from study.sweep import verified_storage

    folder = tmp_path / "s"
    (folder / "ae_1" / "checkpoint_000001").mkdir(parents=True)
    victims = {}
    for name in (
        "params.json",
        "params.pkl",
        "progress.csv",
        "result.json",
        "events.out.tfevents.1",
        "checkpoint_000001/model.pt",
    ):
        victim = tmp_path / f"victim-{name.replace('/', '-')}"
        victim.write_text("precious")
        (folder / "ae_1" / name).symlink_to(victim)
        victims[name] = victim
    storage = verified_storage.filesystem(folder, "s", verify=False)
    for name in victims:
        with storage.open_output_stream(str(folder / "ae_1" / name)) as f:
            f.write(b"Tune's copy")
        assert (folder / "ae_1" / name).read_bytes() == b"Tune's copy"
        assert not (folder / "ae_1" / name).is_symlink()
    assert all(victim.read_text() == "precious" for victim in victims.values())

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "ae_2").symlink_to(elsewhere)
    with pytest.raises(trust.TrustError, match=f"{folder / 'ae_2'} is a symbolic link"):
        storage.open_output_stream(str(folder / "ae_2" / "result.json"))
    with pytest.raises(trust.TrustError, match="replaced whole"):
        storage.open_append_stream(str(folder / "ae_1" / "progress.csv"), None)
    assert list(elsewhere.iterdir()) == []


def test_a_trial_s_pickled_error_is_never_loaded(signed_study, tmp_path, monkeypatch):
    """Second walk, finding 1: at the end of every sweep Tune's result grid unpickled each
    failed trial's error.pkl from the study folder, unverified. Through the study's filesystem
    the file is not there for Tune (error.txt says the same in words), whatever it holds; so
    it needs no signature either (finding 5: a second resume after a retried failure was
    refused for the error.pkl of the first one's session)."""
    from ray.tune.experiment import Trial

    from study.sweep import verified_storage
    from study.sweep.ending import saved_trials

    monkeypatch.setenv(tracking.HOME_ENV, str(signed_study))
    folder = tmp_path / "s"
    shutil.copytree(signed_study / "studies" / "s", folder)
    marker = tmp_path / "code-ran"
    (trial,) = saved_trials(folder, "s", str(folder))
    Path(trial.path, "error.pkl").write_bytes(pickle.dumps(Planted(marker)))
    trial.run_metadata.pickled_error_filename = "error.pkl"
    for verify in (False, True):  # the launch's filesystem, and resume's
        trial.storage.storage_filesystem = verified_storage.filesystem(folder, "s", verify)
        assert Trial.get_pickled_error(trial) is None
    assert not marker.exists()
    trust.check(folder, "s")  # an error.pkl is no state to sign: resume goes on
    import pyarrow.fs

    trial.storage.storage_filesystem = pyarrow.fs.LocalFileSystem()  # Tune's own reading
    Trial.get_pickled_error(trial)
    assert marker.exists()  # what the hiding prevents


def copied_home(signed_study: Path, tmp_path: Path) -> Path:
    """A copy of the finished study's home (store, key, study folder) to attack."""
    home = tmp_path / "home"
    shutil.copytree(signed_study, home, ignore=shutil.ignore_patterns(".s.lock", ".s.ray"))
    return home


def test_an_edited_study_json_is_refused_before_anything_connects(signed_study, tmp_path):
    """Second walk, finding 2: study.json was unsigned, and an edited `address` made `resume`
    connect to a listener of the attacker's and hang there."""
    home = copied_home(signed_study, tmp_path)
    saved = home / "studies" / "s" / "study.json"
    record = json.loads(saved.read_text())
    with socket.socket() as listener:  # answers, and would hold a Ray client forever
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        record["options"]["address"] = f"127.0.0.1:{listener.getsockname()[1]}"
        saved.write_text(json.dumps(record))
        start = time.monotonic()
        line = one_line_error(resume(home))
    assert time.monotonic() - start < 60
    assert "study.json" in line and "did not write or sign" in line


def test_a_restore_that_fails_stops_the_resume_and_loses_nothing(
    signed_study, tmp_path, monkeypatch
):
    """Second walk, finding 3: a state file swapped right after resume's check made Tune fail
    its restore, log it to a logger the tool silences, and run the study again from nothing:
    exit 0, the saved trials gone. Now: exit 2 in one line naming the file, nothing run."""
    home = copied_home(signed_study, tmp_path)
    folder = home / "studies" / "s"
    marker = tmp_path / "code-ran"
    searcher = sorted(folder.glob("searcher-state-*.pkl"))[-1]  # the newest: Tune's to read
    before = sorted(p.name for p in folder.iterdir())
    real_check = trust.check

    def check_then_swap(folder: Path, name: str) -> None:
        real_check(folder, name)
        searcher.write_bytes(pickle.dumps(Planted(marker)))

    monkeypatch.setattr(trust, "check", check_then_swap)
    line = one_line_error(resume(home))
    assert "could not restore its saved state" in line and searcher.name in line
    assert not marker.exists()
    assert sorted(p.name for p in folder.iterdir()) == before  # no new state, no new trial
    uri = f"sqlite:///{home / 'mlflow.db'}"
    assert list(tracking.trial_runs(uri, "s")["status"]) == ["FINISHED"]


def test_a_study_folder_others_may_write_is_not_resumed(signed_study):
    folder = signed_study / "studies" / "s"
    folder.chmod(0o777)
    try:
        line = one_line_error(resume(signed_study))
        assert f"{folder} is writable by others (mode 0777)" in line and "chmod go-w" in line
    finally:
        folder.chmod(0o755)


def test_the_planted_payload_would_run_if_loaded(tmp_path):
    """The payload these tests plant is real: Tune's own loader runs it."""
    from ray.tune.utils.serialization import TuneFunctionDecoder

    marker = tmp_path / "code-ran"
    json.loads(payload_state(marker), cls=TuneFunctionDecoder, allow_cloudpickle=True)
    assert marker.exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "is not a plain file"),
        (lambda p: p.write_text("zz" * trust.KEY_BYTES), "is not a key"),
        (lambda p: p.write_text("ab" * (trust.KEY_BYTES - 1)), "is not a key"),
    ],
    ids=["a-folder", "not-hex", "short"],
)
def test_a_key_that_is_not_a_key_is_refused_naming_it(tmp_path, monkeypatch, make, message):
    monkeypatch.setenv(tracking.HOME_ENV, str(tmp_path))
    path = tmp_path / trust.KEY_FILE
    make(path)
    if path.is_file():
        path.chmod(0o600)
    with pytest.raises(trust.TrustError, match=f"signing key {path} {message}"):
        trust.key()


def test_state_swapped_after_the_check_is_never_loaded(signed_study, tmp_path, monkeypatch):
    """Hole 2: `resume` checks the folder, starts Ray, then Tune reads the files again. Tune
    reads them through `verified_storage`, which checks the very bytes it hands over."""
    from ray import tune

    from study.sweep import verified_storage

    monkeypatch.setenv(tracking.HOME_ENV, str(signed_study))
    folder = tmp_path / "s"
    shutil.copytree(signed_study / "studies" / "s", folder)
    trust.check(folder, "s")
    storage = verified_storage.filesystem(folder, "s")
    state = sorted(folder.glob(trust.STATE_FILES))[-1]
    with storage.open_input_stream(str(state)) as f:
        assert f.readall() == state.read_bytes()  # intact state reads as it is

    marker = tmp_path / "code-ran"
    (folder / "tuner.pkl").write_bytes(pickle.dumps(Planted(marker)))  # the swap
    with pytest.raises(trust.TrustError, match=r"tuner\.pkl"):
        tune.Tuner.restore(str(folder), trainable=lambda config: None, storage_filesystem=storage)
    state.write_text(payload_state(marker))
    with pytest.raises(trust.TrustError, match=re.escape(state.name)):
        storage.open_input_stream(str(state))
    assert not marker.exists()
    with storage.open_input_stream(str(folder / "study.json")) as f:  # signed too, intact
        assert json.loads(f.readall())
