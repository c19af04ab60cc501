"""The study folder's trust boundary: `resume` unpickles only state this tool wrote.

Ray Tune saves a sweep's state as pickles (`tuner.pkl`, the searcher's and scheduler's state,
a failed trial's `error.pkl`) and as JSON that embeds cloudpickled objects (`experiment_state-*`);
restoring it runs whatever code those pickles name. A study folder often sits on storage others
can write (a cluster's shared disk), so the driver signs every such file with an HMAC whose key
lives outside the folder (`<home>/study-key`, mode 0600), and `resume` refuses a folder whose
pickled state is unsigned or changed. Checkpoint weights are not covered: they are loaded with
`weights_only=True` and cannot run code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from ray.tune import Callback

from models import ConfigError
from study import tracking

SIGNATURES = "signatures.json"
KEY_FILE = "study-key"
# Tune's saved state is pickles under several names (tuner.pkl, searcher-state-*.pkl, and
# experiment_state-*.json / search_gen_state-*.json, which embed or are pickles): every file at
# the top of the folder is signed, but for the SQLite Optuna study (read as data) and hidden
# files; of the trial folders, the error.pkl that Tune unpickles (params.pkl it only writes).
UNSIGNED = ("optuna.db", SIGNATURES)
TRIAL_PICKLES = "*/error.pkl"


def key() -> bytes:
    """This user's signing key, made on first use and readable by its owner only."""
    path = tracking.home() / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def pickled_files(folder: Path) -> list[Path]:
    top = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.startswith(UNSIGNED)
    ]
    return sorted([*top, *folder.glob(TRIAL_PICKLES)])


def _mac(secret: bytes, path: Path) -> str:
    return hmac.new(secret, path.read_bytes(), hashlib.sha256).hexdigest()


def sign(folder: Path) -> None:
    """Record the MAC of every pickled file the folder holds now (written atomically)."""
    secret = key()
    macs = {str(p.relative_to(folder)): _mac(secret, p) for p in pickled_files(folder)}
    tmp = folder / f".{SIGNATURES}.tmp"
    tmp.write_text(json.dumps(macs, indent=1, sort_keys=True))
    tmp.replace(folder / SIGNATURES)


def check(folder: Path, name: str) -> None:
    """Refuse (exit 2) a folder holding pickled state this user's key did not sign."""
    signed_file = folder / SIGNATURES
    signed = json.loads(signed_file.read_text()) if signed_file.is_file() else {}
    secret = key()
    bad = [
        str(p.relative_to(folder))
        for p in pickled_files(folder)
        if not hmac.compare_digest(signed.get(str(p.relative_to(folder)), ""), _mac(secret, p))
    ]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ConfigError(
            f"study {name!r}: {folder} holds pickled state this tool did not write or sign "
            f"({shown}); resuming would run the code it names. If you know where it came from "
            "(e.g. the driver was killed between saving and signing, or the study was made on "
            "another machine, whose key is in $AESTUDY_HOME/study-key), pass --trust-state"
        )


class Signer(Callback):
    """Signs the study's state as Tune writes it: at the start of every step of Tune's loop (the
    previous step's save is then on disk) and when the run ends. Files are hashed only when one
    changed, so a driver killed at any moment leaves at most the state of its last step unsigned."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: dict[str, tuple[int, int]] = {}

    def _sign_if_changed(self) -> None:
        stamp = {
            str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in pickled_files(self.folder)
        }
        if stamp != self.seen:
            sign(self.folder)
            self.seen = stamp

    def setup(self, **info) -> None:
        self._sign_if_changed()  # tuner.pkl, written when the Tuner was made

    def on_step_begin(self, iteration, trials, **info) -> None:
        self._sign_if_changed()

    def on_experiment_end(self, trials, **info) -> None:
        self._sign_if_changed()
