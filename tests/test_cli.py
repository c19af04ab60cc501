"""`python -m study train`: one trial from the command line, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import models
from tests.harness.files import write_idx
from tests.harness.tool import run_cli


def test_train_prints_epochs_writes_a_checkpoint_and_ends_with_json(tmp_path):
    out = tmp_path / "vae1"
    result = run_cli(
        "train",
        "--model",
        "vae",
        "--latent-dim",
        "2",
        "--recon-loss",
        "bce",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--out",
        str(out),
    )
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
        (["--model", "ae", "--latent-dim", "0"], "latent_dim must lie in [1, 783]"),
        (["--model", "ae", "--latent-dim", "1000000"], "latent_dim must lie in [1, 783]"),
        (["--model", "ae", "--device", "cuda"], "device 'cuda': this machine has no CUDA devices"),
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
        (["--model", "ae", "--set", "hidden=[1000000000]"], "hidden sizes must lie in [1, 16384]"),
        (["--model", "cae", "--latent-dim", "500"], "wider than the CAE's 392-number feature map"),
    ],
)
def test_bad_options_fail_before_training_with_exit_code_2(args, message, tmp_path, capsys):
    from study.cli.commands import main

    args = [str(tmp_path) if a == "EMPTY" else a for a in args]
    code = main(["train", *args, "--out", str(tmp_path / "never")])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]
    assert "epoch" not in out
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    "command",
    [
        "train",
        "sweep",
        "resume",
        "status",
        "best",
        "list",
        "ui",
        "server",
        "export",
        "table",
        "cluster-check",
        "dashboard",
    ],
)
def test_every_subcommand_has_help(command, capsys):
    from study.cli.commands import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m study {command}")


def test_every_option_of_every_subcommand_says_what_it_does():
    import argparse

    from study.cli.commands import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    undocumented = [
        f"{name} {action.option_strings or action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]
    assert len(commands.choices) == 12 and undocumented == []


def test_train_help_lists_allowed_values_and_defaults(capsys):
    from study.cli.commands import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--model MODEL one of ae, dae, sdae, cae, vae; default: ae" in text
    assert "default per model (the seed's): ae mse, dae mse, sdae mse, cae bce, vae bce" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "vea"], "unknown model 'vea' (did you mean vae?)"),
        (
            ["--model", "ae", "--set", "latnet_dim=4"],
            "no parameter latnet_dim (did you mean latent_dim?)",
        ),
        (["--model", "ae", "--activation", "tahn"], "got 'tahn' (did you mean tanh?)"),
    ],
)
def test_a_misspelling_gets_a_suggestion(args, message, capsys):
    from study.cli.commands import main

    code = main(["train", *args])
    assert code == 2 and message in capsys.readouterr().err


def test_train_refuses_to_write_over_a_checkpoint_unless_forced(tmp_path, cli_here):
    out = tmp_path / "out"
    first = cli_here("train", "--model", "ae", "--epochs", "1", "--out", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    written = (out / "config.json").read_text()
    again = cli_here("train", "--model", "vae", "--epochs", "1", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 2 and "is not empty" in again.stderr and "--force" in again.stderr
    assert (out / "config.json").read_text() == written
    forced = cli_here(
        "train", "--model", "vae", "--epochs", "1", "--out", str(out), "--force", cwd=tmp_path
    )
    assert forced.returncode == 0, forced.stderr
    assert '"model": "vae"' in (out / "config.json").read_text()


def space_file(folder, **changes):
    """tests.harness.studies.GOOD with top-level `changes`, or `text` as the whole file."""
    import yaml

    from tests.harness.studies import GOOD

    path = folder / "space.yaml"
    text = changes.pop("text", None)
    path.write_text(text if text is not None else yaml.safe_dump({**GOOD, **changes}))
    return str(path)


def damaged_study(folder: Path) -> str:
    """A storage folder holding study `x` whose study.json is not JSON; returns the storage."""
    (folder / "studies" / "x").mkdir(parents=True)
    (folder / "studies" / "x" / "study.json").write_text('{"options": {"tracking_u')
    return str(folder / "studies")


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (
            lambda d: ["sweep", space_file(d, params={"latent_dim": {"int": "28"}})],
            "params.latent_dim.int: expected [low, high] of two finite numbers, got '28'",
        ),
        (
            lambda d: ["sweep", space_file(d, params={"latent_dim": 1000000})],
            "latent_dim must lie in [1, 783]",
        ),
        (
            lambda d: [
                "sweep",
                space_file(d, scheduler={"type": "asha", "reduction_factor": float("nan")}),
            ],
            "scheduler.reduction_factor: must be > 1",
        ),
        (
            lambda d: ["sweep", space_file(d, text="a: " + "[" * 5000 + "]" * 5000)],
            "nested too deeply",
        ),
        (lambda d: ["sweep", space_file(d, num_samples=100000)], "this sweep may run for about"),
        (lambda d: ["sweep", space_file(d, epochs=1000000)], "or pass --long to go ahead"),
        (
            lambda d: ["sweep", space_file(d), "--cpus-per-trial", "nan"],
            "--cpus-per-trial must be > 0",
        ),
        (
            lambda d: ["sweep", space_file(d), "--checkpoint-every", "nan"],
            "--checkpoint-every must be >= 0",
        ),
        (
            lambda d: ["sweep", space_file(d), "--storage", "/proc/studies"],
            "is not writable by this user",
        ),
        (
            lambda d: ["sweep", space_file(d), "--storage", space_file(d) + "/under"],
            "is a file, not a folder",
        ),
        (
            lambda d: ["sweep", space_file(d), "--tracking-uri", "databricks"],
            "--tracking-uri 'databricks': use sqlite:///",
        ),
        (
            lambda d: ["sweep", space_file(d), "--tracking-uri", f"sqlite:///{space_file(d)}"],
            "is not an SQLite database",
        ),
        (
            lambda d: ["sweep", space_file(d), "--address", "garbage"],
            "--address garbage: expected 'auto', host:port",
        ),
        (
            lambda d: ["sweep", space_file(d), "--address", "ray://127.0.0.1:1"],
            "nothing answers there",
        ),
        (lambda d: ["server", "--port", "-1"], "--port -1: a port is a number in 1-65535"),
        (lambda d: ["server", "--host", "999.1.1.1"], "--host 999.1.1.1: not an IP address"),
        (lambda d: ["server", "--workers", "0"], "--workers must be at least 1, got 0"),
        (lambda d: ["ui", "--workers", "-1"], "--workers must be at least 1, got -1"),
        (lambda d: ["cluster-check", str(d / "missing.yaml")], "missing.yaml: cannot be read"),
        (lambda d: ["cluster-check", PYTHON_BINARY], "not a YAML text file"),
        (lambda d: ["table", "x", "--out", space_file(d)], "is a file; give a folder"),
        (lambda d: ["export", "x", "--out", "/proc/x"], "--out /proc/x cannot be written"),
        (
            lambda d: ["export", "x", "--metric", "train_loss", "--out", str(d / "o")],
            "--metric 'train_loss': not a score",
        ),
        (lambda d: ["ui", "--tracking-uri", "http://127.0.0.1:1"], "http://127.0.0.1:1"),
        (lambda d: ["status", "x", "--storage", damaged_study(d)], "study.json is damaged"),
    ],
)
def test_hostile_input_is_refused_in_one_line_before_any_work(make_args, message, tmp_path, capsys):
    """The issue's inputs that ended in tracebacks or started work: exit 2, one line, and no
    store, study folder or lock written."""
    from study.cli.commands import main

    args = make_args(tmp_path)
    before = set(tmp_path.iterdir())
    code = main(
        [*args, "--storage", str(tmp_path / "studies")]
        if args[0] == "sweep" and "--storage" not in args
        else args
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert set(tmp_path.iterdir()) == before  # no store, no study, no lock


def truncated(folder: Path) -> None:
    images = folder / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])


def damaged_gzip(folder: Path) -> None:
    images = folder / "train-images-idx3-ubyte.gz"
    whole = images.read_bytes()
    images.write_bytes(whole[:100] + b"\xff" * 50 + whole[150:])


def labels_of(folder: Path, labels) -> None:
    write_idx(folder / "t10k-labels-idx1-ubyte", np.asarray(labels), compress=False)


def claims_a_billion(folder: Path) -> None:
    images = folder / "t10k-images-idx3-ubyte"
    raw = bytearray(images.read_bytes())
    raw[4:8] = (10**9).to_bytes(4, "big")
    images.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (truncated, "t10k-images-idx3-ubyte is cut short or damaged"),
        (damaged_gzip, "train-images-idx3-ubyte.gz cannot be read"),
        (lambda d: labels_of(d, np.arange(49) % 10), "the two files do not belong together"),
        (claims_a_billion, "declares 1000000000x28x28"),
        (lambda d: labels_of(d, np.full(50, 200)), "holds label 200; digit labels are 0-9"),
    ],
    ids=["truncated", "damaged-gzip", "label-count", "a-billion", "label-200"],
)
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_damaged_idx_files_are_refused_in_one_line(idx_folder, tmp_path, damage, message, command):
    """Second walk, findings 10 and 11: damaged IDX files ended in tracebacks, or (labels of
    200) trained and scored nonsense."""
    damage(idx_folder)
    space = tmp_path / "space.yaml"
    space.write_text("dataset: mnist\nnum_samples: 1\nepochs: 1\nparams: {model: [ae]}\n")
    args = {
        "train": ["train", "--model", "ae", "--out", str(tmp_path / "never")],
        "sweep": ["sweep", str(space), "--storage", str(tmp_path / "studies")],
    }[command]
    result = run_cli(
        *args,
        "--dataset",
        "mnist",
        "--data-dir",
        str(idx_folder),
        env={"AESTUDY_HOME": str(tmp_path / "home")},
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "never").exists() and not (tmp_path / "studies" / "space").exists()


PYTHON_BINARY = __import__("sys").executable


def test_suggested_commands_name_the_interpreter_that_has_the_package(tmp_path, monkeypatch):
    """After `make quickstart` only `.venv/bin/python` has the package: a hint saying `python`
    would fail with "No module named study" (unless that venv is activated)."""
    import shutil
    import sys

    from study.hints import study_command

    monkeypatch.chdir(Path(sys.executable).parent.parent.parent)  # the venv's parent folder
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/python")
    venv = Path(sys.executable).parent.parent.name
    assert study_command("status x") == f"{venv}/bin/python -m study status x"
    monkeypatch.setattr(shutil, "which", lambda name: sys.executable)  # the venv is activated
    assert study_command("status x") == "python -m study status x"


def test_bad_input_and_an_unready_environment_are_different_errors_both_exit_2(tmp_path, cli_here):
    """A ConfigError means change the command; a ResourceError means the command is fine but
    something around it is not ready (here a port in use): both one line, exit 2."""
    import socket

    from models import ConfigError, ResourceError
    from study.cli.servers import check_port_free
    from study.tracking import check_reachable
    from tests.harness.servers import free_port

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ResourceError, match=f"port {port} on 127.0.0.1 is in use"):
            check_port_free("127.0.0.1", port)
        busy = cli_here("ui", "--port", str(port), cwd=tmp_path)
    assert busy.returncode == 2 and busy.stderr.count("\n") == 1 and "in use" in busy.stderr
    with pytest.raises(ResourceError, match="cannot be reached"):
        check_reachable(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError) as bad:
        check_port_free("127.0.0.1", 70000)
    assert not isinstance(bad.value, ResourceError)


@pytest.mark.parametrize(
    ("device", "accepted"),
    [
        ("cuda", True),
        ("cuda:0", True),
        ("cuda:1", True),
        ("cuda:2", False),
        ("cuda:x", False),
        ("cudax", False),
    ],
)
def test_the_cuda_devices_a_machine_has_are_accepted(device, accepted, monkeypatch):
    """Issue 40, defect 3: `cuda` was always refused ("".isdigit() is False). CUDA reported
    present with two devices (this machine has none)."""
    import torch

    from study.trial.config import check_device_here

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if accepted:
        check_device_here(device)
    else:
        with pytest.raises(models.ConfigError, match="this machine has 2 CUDA devices"):
            check_device_here(device)
