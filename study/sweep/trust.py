"""The study folder's trust boundary: `resume` unpickles only state this tool wrote.

Ray Tune saves a sweep's state as pickles (`tuner.pkl`, the searcher's state) and as JSON that
embeds cloudpickled objects (`experiment_state-*`); restoring it runs whatever code those
pickles name, and the tool's own `study.json` says where `resume` connects. A study folder often
sits on storage others can write (a cluster's shared disk), so the driver signs every such file
with an HMAC whose key lives outside the folder (`<home>/study-key`, mode 0600), and `resume`
refuses a folder whose state is unsigned or changed. Checkpoint weights are not covered: they are loaded with
`weights_only=True` and cannot run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from study import tracking
from study.sweep.plain_files import TrustError, open_plain, read_bytes, write_whole

SIGNATURES = "signatures.json"
KEY_FILE = "study-key"
# Tune's saved state is pickles under several names (tuner.pkl, searcher-state-*.pkl, and
# experiment_state-*.json / search_gen_state-*.json, which embed or are pickles), and the tool's
# own study.json steers `resume` (the Ray address, the tracking URI): every file at the top of
# the folder is signed, but for what is read as data only (Optuna's study: its journal, or the
# SQLite file of an older study; the journal's lock while a driver writes it) and hidden
# files. A failed trial's error.pkl is never read at all (`verified_storage` hides it from Tune,
# which would unpickle it for its result grid), so it needs no signature.
UNSIGNED = ("optuna.db", "optuna.journal", "optuna.journal.lock", SIGNATURES)
WRITTEN_BY_THE_LAUNCH = ("tuner.pkl", "study.json")


KEY_BYTES = 32
# Escape hatch for a lost key: make a new one although studies signed with the old one exist
# (they then resume only with --trust-state).
NEW_KEY_ENV = "AESTUDY_NEW_KEY"


def key() -> bytes:
    """This user's signing key: 32 random bytes as 64 hex digits in `<home>/study-key`, mode
    0600. Made on first use, atomically; refused, naming the file, when it is a link, not a
    plain file, readable by others, or not a key (empty, short, not hex), and never silently
    made anew while studies signed with a lost one exist."""
    path = tracking.home() / KEY_FILE
    if not os.path.lexists(path):
        _make_key(path)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    fd, info = open_plain(path, f"signing key {path}", "restore the key file (64 hex digits)")
    with os.fdopen(fd) as f:
        if info.st_mode & 0o077:
            raise TrustError(
                f"signing key {path} has mode {stat.S_IMODE(info.st_mode):04o}: anyone who can "
                f"read it can forge a study's signatures; `chmod 600 {path}`"
            )
        text = f.read(4 * KEY_BYTES).strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != KEY_BYTES:
        raise TrustError(
            f"signing key {path} is not a key ({len(text)} characters; a key is {2 * KEY_BYTES} "
            "hex digits): restore it from a backup, or delete it to make a new one (studies "
            "signed with the old key then resume only with --trust-state)"
        )
    return secret


def _make_key(path: Path) -> None:
    """Write a new key to a temporary file, flush it to disk, then link it into place: a crash
    or a full disk leaves no key or a whole one, never a short one, and of two processes
    making one at once, one wins and both use it."""
    signed = _signed_studies()
    if signed and not os.environ.get(NEW_KEY_ENV):
        raise TrustError(
            f"signing key {path} is missing, but studies signed with it exist ({signed[0]}"
            f"{f' and {len(signed) - 1} more' if len(signed) > 1 else ''}): restore the key file "
            f"from a backup; if it is lost, set {NEW_KEY_ENV}=1 once to make a new one (those "
            "studies then resume only with --trust-state)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process made one first: use it
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _signed_studies() -> list[Path]:
    """Study folders under the default storage that hold signatures."""
    return sorted((tracking.home() / "studies").glob(f"*/{SIGNATURES}"))


def is_signed(folder: Path, path: Path) -> bool:
    """Whether `path` is of a kind the study folder's signatures cover (see UNSIGNED)."""
    return (
        path.parent == folder
        and not path.name.startswith(".")
        and not path.name.startswith(UNSIGNED)
    )


def pickled_files(folder: Path) -> list[Path]:
    """The files of the folder its signatures cover (see UNSIGNED)."""
    return sorted(p for p in folder.iterdir() if not p.is_dir() and is_signed(folder, p))


def links(folder: Path) -> list[Path]:
    """Symbolic links at the top of the study folder and in its trial folders: the tool writes
    none, and Tune would read through them or write through them into files elsewhere."""
    found = [p for p in folder.iterdir() if p.is_symlink()]
    for trial in (p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
        found += [p for p in trial.iterdir() if p.is_symlink()]
    return sorted(found)


def _mac(secret: bytes, data: bytes) -> str:
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


def sign(folder: Path, extra: dict[str, str] | None = None) -> None:
    """Record the MAC of every pickled file the folder holds now, and the `extra` MACs of files
    written elsewhere (`write_whole`)."""
    secret = key()
    macs = {str(p.relative_to(folder)): _mac(secret, read_bytes(p)) for p in pickled_files(folder)}
    write_whole(
        folder / SIGNATURES, json.dumps({**(extra or {}), **macs}, indent=1, sort_keys=True)
    )


def mac(path: Path) -> str:
    """The MAC of one file under this user's key."""
    return _mac(key(), read_bytes(path))


def mac_of(data: bytes) -> str:
    """The MAC of `data` under this user's key."""
    return _mac(key(), data)


def verify(data: bytes, expected: str) -> bool:
    """Whether `expected` is the MAC of `data` under this user's key."""
    return hmac.compare_digest(expected, mac_of(data))


def signatures(folder: Path, name: str) -> dict[str, str]:
    """The MACs recorded in the folder's signatures file (none if it has none)."""
    path = folder / SIGNATURES
    if not os.path.lexists(path):
        return {}
    try:
        signed = json.loads(read_bytes(path))
    except ValueError:
        raise TrustError(
            f"study {name!r}: {path} is damaged (not JSON); pass --trust-state "
            "only if you know where the folder's state came from"
        ) from None
    if not isinstance(signed, dict) or not all(isinstance(v, str) for v in signed.values()):
        raise TrustError(f"study {name!r}: {path} is damaged (not a map of signatures)")
    return signed


def refusal(folder: Path, name: str, bad: list[str]) -> TrustError:
    """The error refusing the folder's unsigned or changed files `bad`."""
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return TrustError(
        f"study {name!r}: {folder} holds pickled state this tool did not write or sign "
        f"({shown}); loading it would run the code it names. If you know where it came from "
        "(e.g. the driver was killed between saving and signing, or the study was made on "
        "another machine, whose key is in $AESTUDY_HOME/study-key), pass --trust-state"
    )


def check(folder: Path, name: str) -> None:
    """Refuse (exit 2) a folder holding pickled state this user's key did not sign, or links."""
    found = links(folder)
    if found:
        raise TrustError(
            f"study {name!r}: {found[0]} is a symbolic link; the tool writes none into a study "
            "folder, and Tune would read or write through it: remove it"
        )
    signed = signatures(folder, name)
    secret = key()
    bad = [
        str(p.relative_to(folder))
        for p in pickled_files(folder)
        if not hmac.compare_digest(
            signed.get(str(p.relative_to(folder)), ""), _mac(secret, read_bytes(p))
        )
    ]
    if bad:
        raise refusal(folder, name, bad)


STATE_FILES = "experiment_state-*.json"


def check_private(folder: Path, name: str) -> None:
    """Refuse a study folder that others may write: its owner must be this user, and neither
    it nor the folder holding it (unless sticky, like /tmp) writable by group or others.
    Whoever can write there can swap a signed file for their own in the instant between its
    check and Tune's load."""
    for path in (folder.parent, folder):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            problem = "a symbolic link"
        elif info.st_uid != os.getuid():
            problem = "owned by another user"
        elif info.st_mode & 0o022 and not (path == folder.parent and info.st_mode & stat.S_ISVTX):
            problem = f"writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
        else:
            continue
        raise TrustError(
            f"study {name!r}: {path} is {problem}; others could swap the study's state for code "
            f"of theirs before it is loaded: `chmod go-w {path}` as its owner, or pass "
            "--trust-state"
        )


def newest_state(folder: Path) -> Path | None:
    """The study's newest saved Tune state (the greatest name: the one Tune itself reads), or
    None before the first save."""
    states = sorted(p for p in folder.glob(STATE_FILES) if not p.is_dir())
    return states[-1] if states else None


def check_state_whole(folder: Path, name: str) -> None:
    """Refuse a study whose newest saved Tune state is cut short or damaged (a full disk, a
    copy killed midway): Tune would fall back on an older state, or none, and drop samples."""
    newest = newest_state(folder)
    if newest is None:
        return
    try:
        json.loads(read_bytes(newest))
    except (ValueError, UnicodeDecodeError):
        raise TrustError(
            f"study {name!r}: {newest} is cut short or damaged ({newest.stat().st_size:,} "
            "bytes, not JSON): resuming from it would silently drop trials. Restore it from a "
            "backup if you have one; the trials' records stay in MLflow"
        ) from None


@contextlib.contextmanager
def verified_state(folder: Path, name: str) -> Iterator[Path]:
    """A private copy (a 0700 temporary folder) of the study's newest saved Tune state, made
    from bytes read once and checked against the folder's signatures: what is verified is what
    is loaded, whatever is swapped into the folder meanwhile. Yields the copy's path."""
    newest = newest_state(folder)
    if newest is None:
        raise TrustError(f"study {name!r}: {folder} holds no saved Tune state ({STATE_FILES})")
    data = read_bytes(newest)
    expected = signatures(folder, name).get(newest.name, "")
    if not hmac.compare_digest(expected, _mac(key(), data)):
        raise refusal(folder, name, [newest.name])
    private = Path(tempfile.mkdtemp(prefix="aestudy-state-"))  # mode 0700
    try:
        copy = private / folder.name / newest.name
        copy.parent.mkdir()
        copy.write_bytes(data)
        yield copy
    finally:
        shutil.rmtree(private, ignore_errors=True)


def __getattr__(name: str):
    # Tune's saved state of studies launched before the signer moved names it here
    if name == "Signer":
        from study.sweep.signer import Signer

        return Signer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
