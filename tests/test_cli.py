"""`python -m study train`: one trial from the command line, and its errors."""

from __future__ import annotations

import json

import pytest

import models
from tests.conftest import run_cli


def test_train_prints_epochs_writes_a_checkpoint_and_ends_with_json(tmp_path):
    out = tmp_path / "vae1"
    result = run_cli(
        "train", "--model", "vae", "--latent-dim", "2", "--recon-loss", "bce",
        "--epochs", "2", "--batch-size", "128", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("epoch   1") and lines[1].startswith("epoch   2")
    final = json.loads(lines[-1])
    assert final["epoch"] == 2 and final["kl"] > 0
    model = models.load(out)
    assert model.config.latent_dim == 2 and model.config.recon_loss == "bce"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "gan"], "unknown model 'gan'; choose one of ae, dae, sdae, cae, vae"),
        (["--model", "ae", "--latent-dim", "0"], "latent_dim must be >= 1"),
        (["--model", "dae", "--noise", "2.5"], "noise for gaussian must lie in [0.0, 2.0]"),
        (["--model", "ae", "--recon-loss", "bce"], "recon_loss 'bce' needs outputs in [0, 1]"),
        (["--model", "ae", "--dataset", "mnist", "--data-dir", "EMPTY"], "lacks the IDX files"),
        (["--model", "ae", "--epochs", "0"], "epochs must be >= 1"),
        (["--model", "ae", "--set", "nonsense"], "--set expects KEY=VALUE"),
        (
            ["--model", "ae", "--set", "latent_dim=4.5"],
            "latent_dim must be a whole number, got 4.5",
        ),
        (["--model", "ae", "--set", "batch_size=[64]"], "batch_size must be a whole number"),
    ],
)
def test_bad_options_fail_before_training_with_exit_code_2(args, message, tmp_path):
    args = [str(tmp_path) if a == "EMPTY" else a for a in args]
    result = run_cli("train", *args, "--out", str(tmp_path / "never"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]
    assert "epoch" not in result.stdout
    assert not (tmp_path / "never").exists()
