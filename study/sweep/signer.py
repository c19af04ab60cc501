"""The callback that signs a study's state as Tune saves it (the key and the rule of what is
signed: `study.sweep.trust`, which needs no Ray)."""

from __future__ import annotations

from pathlib import Path

from ray.tune import Callback

from study.sweep import internals, saving
from study.sweep.trust import WRITTEN_BY_THE_LAUNCH, mac, sign


class Signer(Callback):
    """Signs the study's state as Tune saves it.

    Tune writes its state into a staging folder on the driver (under /tmp/ray) and copies that
    folder to the study folder in the background. The signature is made in the staging folder at
    the end of each save (Tune saves its callbacks' state last: `get_state` is that moment), so
    it travels to the study folder in the same copy as the state it signs: a driver killed at
    any moment leaves, at worst, a copy cut short. `tuner.pkl` and `study.json`, which the launch
    writes straight into the study folder, are signed as they are when the run starts. Nothing
    else found in the study folder is ever signed: a file planted there stays unsigned.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.direct: dict[str, str] = {}

    def setup(self, **info) -> None:
        direct = [self.folder / name for name in WRITTEN_BY_THE_LAUNCH]
        self.direct = {path.name: mac(path) for path in direct if path.is_file()}

    def get_state(self) -> None:
        staging = saving.of(self.folder).staging or self._staging_of_this_session()
        if staging is not None and staging.is_dir():
            sign(staging, self.direct)
        return None  # nothing to restore: the signature is the point

    def _staging_of_this_session(self) -> Path | None:
        """The staging folder when Tune saves before any step (a resumed study whose trials had
        all ended): `<session>/artifacts/<run timestamp>/<study>/driver_artifacts`, the newest."""
        session = internals.session_dir()  # the driver's Ray session
        if not session:
            return None
        artifacts = Path(session) / "artifacts"
        found = sorted(
            artifacts.glob(f"*/{self.folder.name}/driver_artifacts"),
            key=lambda p: p.stat().st_mtime,
        )
        return found[-1] if found else None
