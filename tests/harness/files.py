"""Files a test feeds the tool (MNIST's format, a hostile pickle), a loader of what it
exports that uses MLflow alone, and a reader of the checkpoints a saved Tune state names."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import numpy as np

from tests.harness.tool import PYTHON, ROOT


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """An IDX file (MNIST's format), gzipped if `compress`."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def load_with_mlflow_alone(uri: str, model_uris: list[str], folder: Path) -> dict[str, dict]:
    """Load `model_uris` with MLflow's own API in a fresh `python -I` in an empty `folder` that
    cannot import this project (pickle deserialization off), feed it 100 MNIST test digits;
    returns, per URI, the reconstructions' min, max and MSE (pyfunc and pytorch flavours), and
    the digits fed under the key "digits"."""
    import json

    from study.trial.data import mnist_test_digits

    folder.mkdir(parents=True, exist_ok=True)
    digits = mnist_test_digits()[:100].reshape(100, -1).numpy()
    np.save(folder.parent / "digits.npy", digits)
    script = ROOT / "tests" / "scripts" / "load_with_mlflow_alone.py"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(folder.parent),
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    }
    result = subprocess.run(
        [PYTHON, "-I", str(script), uri, str(folder.parent / "digits.npy"), *model_uris],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "digits": digits}


class Planted:
    """A pickle that runs code when loaded: it creates the file it names."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def saved_checkpoints(folder: Path) -> list[Path]:
    """The checkpoint of each trial's last result in the study's newest saved Tune state (what
    `resume` restores from), read as plain JSON: the test's own reading, not the tool's."""
    newest = max(folder.glob("experiment_state-*.json"))
    named = []
    for _, metadata in json.loads(newest.read_text())["trial_data"]:
        last = json.loads(metadata).get("last_result") or {}
        name = last.get("checkpoint_dir_name")
        if name:
            named += [p for p in folder.glob(f"*_{last['trial_id']}/{name}") if p.is_dir()]
    return named
