"""Space files: the shipped ones validate, bad ones fail with file + key, conditions hold."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import yaml

from study.sweep.space import SpaceError, SpaceSampler
from study.sweep.space_file import load_space, parse_space
from tests.harness.studies import GOOD, with_change
from tests.harness.tool import ROOT


@pytest.mark.parametrize("name", ["quick", "seed", "wide"])
def test_shipped_spaces_validate_and_open_with_their_launch_command(name):
    path = ROOT / "search_spaces" / f"{name}.yaml"
    space = load_space(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Launch") and f"search_spaces/{name}.yaml" in "".join(
        path.read_text().splitlines()[:3]
    )
    assert space.params


def test_quick_space_covers_at_least_three_model_types():
    space = load_space(ROOT / "search_spaces/quick.yaml")
    assert len(next(p for p in space.params if p.name == "model").values) >= 3


def test_seed_grid_repeats_the_seed_experiments():
    points = load_space(ROOT / "search_spaces/seed.yaml").grid()
    labels = {(p["model"], p.get("activation"), p.get("recon_loss")) for p in points}
    assert labels == {
        ("ae", "relu", None),
        ("ae", "tanh", None),
        ("sdae", None, None),
        ("cae", None, None),
        ("vae", None, "mse"),
        ("vae", None, "bce"),
    }
    space = load_space(ROOT / "search_spaces/seed.yaml")
    assert space.trial_config({"model": "ae"})["epochs"] == 100
    assert space.trial_config({"model": "cae"})["epochs"] == 20


def test_sampled_configs_carry_exactly_the_parameters_their_model_uses():
    space = parse_space(GOOD, "good.yaml")
    sampler = SpaceSampler(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        constants = sampler(trial)
        config = {**trial.params, **constants}
        seen.add(config["model"])
        assert ("noise" in config) == (config["model"] == "dae")
        assert ("recon_loss" in config) == (config["model"] == "vae")
        assert config["epochs"] == 3 and config["batch_size"] == 256
        study.tell(trial, 0.0)
    assert seen == {"ae", "dae", "vae"}


@pytest.mark.parametrize(
    ("key_path", "value", "message"),
    [
        ("colour", "blue", "colour: unknown key; allowed: description, dataset"),
        (
            "params.model",
            ["ae", "gan"],
            "params.model: unknown model 'gan'; allowed: ae, dae, sdae, cae, vae",
        ),
        ("objective", "accuracy", "objective: unknown metric 'accuracy'; allowed: val_mse"),
        (
            "params.latent_dim",
            {"int": [8, 2]},
            "params.latent_dim.int: empty or inverted range [8, 2]",
        ),
        (
            "params.latent_dim",
            {"int": [4, 4]},
            "params.latent_dim.int: empty or inverted range [4, 4]",
        ),
        (
            "params.noise",
            {"float": [0.1, 0.5], "when": {"modle": "dae"}},
            "params.noise.when.modle: condition on a parameter that does not exist",
        ),
        (
            "params.noise",
            {"float": [0.1, 0.5]},
            "params.noise: applies to model 'ae', which has no such parameter",
        ),
        (
            "params.noise",
            {"float": [0.1, 5.0], "when": {"model": "dae"}},
            "params.noise: for model 'dae': noise for gaussian must lie in",
        ),
        (
            "params.latent_dim",
            {"int": [2, 8], "colour": 1},
            "params.latent_dim.colour: unknown key",
        ),
        (
            "params.latent_dim",
            {"float": [1e-3, 1], "log": True, "int": [1, 2]},
            "give exactly one of",
        ),
        ("params.lr", {"float": [0, 0.1], "log": True}, "params.lr.log: a log range needs low > 0"),
        ("search", {"algorithm": "bayes"}, "search.algorithm: 'bayes'; allowed: tpe, random, grid"),
        ("search", {"algorithm": "grid"}, "params.latent_dim: grid search needs a list of values"),
        (
            "scheduler",
            {"type": "asha", "grace_period": 9},
            "scheduler.grace_period: must be a whole number in [1, epochs (3)]",
        ),
        ("num_samples", 0, "num_samples: must be a whole number >= 1"),
        ("params.epochs", [1, 2], "params.epochs: set by the sweep itself"),
        (
            "params.recon_loss",
            {"values": ["mse", "bce"]},
            "params.recon_loss: for model 'ae': recon_loss 'bce' needs outputs in [0, 1]",
        ),
        (
            "params.latent_dim",
            [4, "x"],
            "params.latent_dim: for model 'ae': latent_dim must be a whole number, got 'x'",
        ),
        (
            "params.lr",
            {"float": [1e-4, 0.1], "step": "often"},
            "params.lr.step: must be a number > 0",
        ),
        (
            "params.latnet_dim",
            {"int": [2, 8]},
            "params.latnet_dim: no model has a parameter 'latnet_dim' (did you mean latent_dim?)",
        ),
        ("params.model", ["ae", "vea"], "unknown model 'vea' (did you mean vae?)"),
        ("objectve", "val_mse", "objectve: unknown key (did you mean objective?)"),
        (
            "params.noise",
            {"float": [0.1, 0.5], "when": {"model": ["dea"]}},
            "params.noise.when.model: 'dea' is not among the study's models (did you mean dae?)",
        ),
        (
            "fixed",
            {"batch_size": 6.5},
            "fixed: for model 'ae': batch_size must be a whole number, got 6.5",
        ),
        # keys the sweep owns, under fixed: (they would override the top-level ones silently)
        (
            "fixed",
            {"epochs": 50},
            "fixed.epochs: set by the sweep itself; use the top-level key 'epochs'",
        ),
        (
            "fixed",
            {"dataset": "mnist"},
            "fixed.dataset: set by the sweep itself; use the top-level key 'dataset'",
        ),
        ("fixed", {"data_dir": "/tmp"}, "fixed.data_dir: set by the sweep itself"),
        (
            "fixed",
            {"device": "cuda:0"},
            "fixed.device: set by the sweep itself; use --gpus-per-trial",
        ),
        ("fixed", {"vae": {"epochs": 9}}, "fixed.vae.epochs: set by the sweep itself"),
        ("fixed", {"cae": {"beta": 1.0}}, "fixed.cae: 'cae' is not among the study's models"),
        ("fixed", {"ae": {"beta": 1.0}}, "fixed.ae.beta: model 'ae' has no parameter 'beta'"),
        ("fixed", {"ae": 3}, "fixed.ae: expected a mapping of model 'ae''s parameters"),
        (
            "fixed",
            {"vae": {"recon_loss": "bce"}},
            "params.recon_loss: is also in fixed.vae; keep one",
        ),
        # BCE ranks only models whose outputs come from a sigmoid
        (
            "objective",
            "val_bce",
            "objective: val_bce is comparable only between models whose output is a sigmoid, but model 'ae' ends in 'relu'",
        ),
    ],
)
def test_bad_space_names_the_key_and_what_is_allowed(key_path, value, message):
    with pytest.raises(SpaceError) as err:
        parse_space(with_change(key_path, value), "bad.yaml")
    assert str(err.value).startswith("bad.yaml: ")
    assert message in str(err.value)


def test_val_bce_is_an_objective_where_every_model_ends_in_a_sigmoid():
    raw = with_change("objective", "val_bce")
    raw["params"]["model"] = ["vae", "cae"]
    del raw["params"]["noise"]
    assert parse_space(raw, "ok.yaml").objective == "val_bce"
    raw["params"]["model"] = ["ae", "vae"]
    raw["fixed"] = {"ae": {"output_activation": "sigmoid"}}
    assert (
        parse_space(raw, "ok.yaml").trial_config({"model": "ae"})["output_activation"] == "sigmoid"
    )


def test_a_model_s_own_fixed_values_reach_its_trials_only():
    raw = with_change("fixed", {"batch_size": 128, "ae": {"hidden": [64]}})
    space = parse_space(raw, "ok.yaml")
    assert space.trial_config({"model": "ae"})["hidden"] == [64]
    assert "hidden" not in space.trial_config({"model": "vae"})
    assert space.trial_config({"model": "vae"})["batch_size"] == 128


def test_finetune_acc_with_asha_is_refused_with_the_reason():
    raw = with_change("objective", "finetune_acc")
    raw["fixed"]["finetune_epochs"] = 1
    with pytest.raises(SpaceError, match="finetune_acc is measured after a trial's last epoch"):
        parse_space(raw, "bad.yaml")
    raw["scheduler"] = {"type": "none"}
    assert parse_space(raw, "ok.yaml").objective == "finetune_acc"


def test_condition_on_a_later_parameter_is_refused():
    raw = with_change("params.model", ["ae", "dae", "vae"])
    raw["params"] = {"noise": {"float": [0.1, 0.5], "when": {"model": "dae"}}, **raw["params"]}
    with pytest.raises(SpaceError) as err:
        parse_space(raw, "bad.yaml")
    assert "params.noise.when.model: condition on a parameter that comes after it" in str(err.value)


def test_cli_rejects_a_bad_space_with_exit_code_2_before_starting_ray(tmp_path: Path, cli_here):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_change("params.latent_dim", {"int": [8, 2]})))
    result = cli_here("sweep", str(bad), "--storage", str(tmp_path / "studies"), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{bad}: params.latent_dim.int: empty or inverted range" in result.stderr
    assert not (tmp_path / "studies").exists()


def test_a_grid_runs_each_point_once():
    raw = with_change("search", {"algorithm": "grid"})
    raw["params"] = {"model": ["ae", "vae"], "seed": [0, 1, 2]}
    del raw["num_samples"]
    space = parse_space(raw, "grid.yaml")
    assert space.num_samples == 1 and len(space.grid()) == 6
    raw["num_samples"] = 10
    with pytest.raises(SpaceError, match="num_samples: a grid runs each point once"):
        parse_space(raw, "grid.yaml")


def test_a_step_yaml_left_as_a_string_becomes_a_number():
    space = parse_space(with_change("params.lr", {"float": [0.001, 0.1], "step": "1e-3"}), "s.yaml")
    assert next(p for p in space.params if p.name == "lr").step == 0.001


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x [1, 2]\nb: *x\n", "aliases (*name) are not allowed"),
        ("epochs: 3\nepochs: 4\n", "duplicate key 'epochs'"),
    ],
)
def test_yaml_that_hides_or_multiplies_content_is_refused(tmp_path: Path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=re.escape(message)):
        load_space(path)


def test_a_binary_or_huge_space_file_is_refused(tmp_path: Path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SpaceError, match="not a text file"):
        load_space(binary)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# x\n" * 50_000)
    with pytest.raises(SpaceError, match="a space file is a few lines"):
        load_space(huge)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "../escape"], "study name '../escape': use 1-100 letters"),
        (["--name", ""], "study name '': use"),
        (["--name", "two\nlines"], "study name 'two\\nlines'"),
        (["--name", "ok", "--max-failures", "-1"], "--max-failures must be >= 0"),
    ],
)
def test_bad_names_and_retries_are_refused_before_ray_starts(
    tmp_path: Path, args, message, cli_here
):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(GOOD))
    result = cli_here("sweep", str(space), *args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "studies").exists()
    status = cli_here("status", "../escape", cwd=tmp_path)
    assert status.returncode == 2 and "study name '../escape'" in status.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"fixed": {"epochs": 50}},
            "fixed.epochs: set by the sweep itself; use the top-level key 'epochs'",
        ),
        (
            {"fixed": {"dataset": "mnist"}},
            "fixed.dataset: set by the sweep itself; use the top-level key 'dataset'",
        ),
        (
            {"objective": "finetune_acc", "fixed": {"finetune_epochs": 1}},
            "objective: finetune_acc is measured after a trial's last epoch only",
        ),
    ],
)
def test_sweep_owned_settings_and_a_final_only_objective_exit_2_writing_nothing(
    tmp_path: Path, capsys, change, message
):
    from study.cli.commands import main

    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    raw.update(change)
    space = tmp_path / "bad.yaml"
    space.write_text(yaml.safe_dump(raw))
    store = tmp_path / "mlflow.db"
    code = main(
        [
            "sweep",
            str(space),
            "--storage",
            str(tmp_path / "studies"),
            "--tracking-uri",
            f"sqlite:///{store}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {space}: {message}")
    assert not (tmp_path / "studies").exists() and not store.exists()
