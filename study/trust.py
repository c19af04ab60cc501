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
# the top of the folder is signed, but for what is read as data (the SQLite Optuna study, the
# tool's own study.json) and hidden files; of the trial folders, the error.pkl that Tune
# unpickles (params.pkl it only writes).
UNSIGNED = ("optuna.db", "study.json", SIGNATURES)
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


def sign(folder: Path, extra: dict[str, str] | None = None) -> None:
    """Record the MAC of every pickled file the folder holds now, and the `extra` MACs of files
    written elsewhere (written atomically)."""
    secret = key()
    macs = {str(p.relative_to(folder)): _mac(secret, p) for p in pickled_files(folder)}
    tmp = folder / f".{SIGNATURES}.tmp"
    tmp.write_text(json.dumps({**(extra or {}), **macs}, indent=1, sort_keys=True))
    tmp.replace(folder / SIGNATURES)


def mac(path: Path) -> str:
    """The MAC of one file under this user's key."""
    return _mac(key(), path)


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
    """Signs the study's state as Tune saves it.

    Tune writes its state into a staging folder on the driver (under /tmp/ray) and copies that
    folder to the study folder in the background. The signature is made in the staging folder at
    the end of each save (Tune saves its callbacks' state last: `get_state` is that moment), so
    it travels to the study folder in the same copy as the state it signs: a driver killed at
    any moment leaves, at worst, a copy cut short. `tuner.pkl`, which the Tuner writes straight
    into the study folder, is signed as it is when the run starts. Nothing else found in the study
    folder is ever signed: a file planted there stays unsigned.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.staging: Path | None = None
        self.direct: dict[str, str] = {}

    def setup(self, **info) -> None:
        tuner = self.folder / "tuner.pkl"
        self.direct = {tuner.name: mac(tuner)} if tuner.is_file() else {}

    def on_step_begin(self, iteration, trials, **info) -> None:
        if self.staging is None and trials:
            self.staging = Path(trials[0].storage.experiment_driver_staging_path)

    def get_state(self) -> None:
        staging = self.staging or self._staging_of_this_session()
        if staging is not None and staging.is_dir():
            sign(staging, self.direct)
        return None  # nothing to restore: the signature is the point

    def _staging_of_this_session(self) -> Path | None:
        """The staging folder when Tune saves before any step (a resumed study whose trials had
        all ended): `<session>/artifacts/<run timestamp>/<study>/driver_artifacts`, the newest."""
        import ray

        node = getattr(ray._private.worker, "_global_node", None)  # the driver's Ray session
        if node is None:
            return None
        artifacts = Path(node.get_session_dir_path()) / "artifacts"
        found = sorted(
            artifacts.glob(f"*/{self.folder.name}/driver_artifacts"),
            key=lambda p: p.stat().st_mtime,
        )
        return found[-1] if found else None
