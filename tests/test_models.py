"""The five models: shapes, gradients, forward record, registry, checkpoints."""

from __future__ import annotations

import pathlib

import pytest
import torch

import models
from models import ConfigError

ALL = list(models.MODELS)


def batch(n: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_registry_holds_the_five_models():
    assert ALL == ["ae", "dae", "sdae", "cae", "vae"]


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_forward_record(name):
    model = models.build_model(name, {"latent_dim": 5})
    x = batch()
    z = model.encode(x)
    assert z.shape == (8, 5)
    assert model.reconstruct(x).shape == (8, 1, 28, 28)
    out = model(model.corrupt(x), x)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.recon.shape == x.shape and out.z.shape == (8, 5)


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name):
    model = models.build_model(name, {"latent_dim": 4})
    model(model.corrupt(batch()), batch()).loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().sum() > 0, pname


def test_cae_without_latent_dim_keeps_the_seed_feature_map():
    model = models.build_model("cae")
    assert model.encode(batch()).shape == (8, 8 * 7 * 7)


def test_vae_samples_and_reports_kl():
    model = models.build_model("vae", {"latent_dim": 2})
    assert model.sample(6).shape == (6, 1, 28, 28)
    out = model(batch())
    assert out.reg_loss > 0
    assert torch.allclose(out.loss, out.recon_loss + out.reg_loss)


def test_denoising_models_corrupt_and_plain_ae_does_not():
    x = batch()
    assert torch.equal(models.build_model("ae").corrupt(x), x)
    for name in ("dae", "sdae"):
        noisy = models.build_model(name).corrupt(x)
        assert not torch.equal(noisy, x)
        assert noisy.min() >= 0 and noisy.max() <= 1  # clipped, as in the seed
    assert torch.equal(models.build_model("cae").corrupt(x), x)  # the seed's CAE had no noise
    assert not torch.equal(models.build_model("cae", {"noise": 0.3}).corrupt(x), x)


@pytest.mark.parametrize("kind", ["gaussian", "masking", "salt_and_pepper"])
def test_noise_kinds_change_about_the_requested_share(kind):
    x = torch.full((1, 1, 28, 28), 0.5)
    noisy = models.build_model("dae", {"noise_kind": kind, "noise": 0.3}).corrupt(x)
    changed = (noisy != x).float().mean().item()
    assert changed > 0.9 if kind == "gaussian" else 0.2 < changed < 0.4


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("gan", {}, "unknown model 'gan'"),
        ("ae", {"latent_dim": 0}, "latent_dim must lie in [1, 783]"),
        ("dae", {"noise": 3.0}, "noise for gaussian must lie in"),
        ("dae", {"noise_kind": "pink"}, "noise_kind must be one of"),
        ("ae", {"recon_loss": "bce"}, "needs outputs in [0, 1]"),
        ("ae", {"noise": 0.5}, "model 'ae' has no parameter noise"),
        ("vae", {"activation": "swish"}, "activation must be one of"),
        ("vae", {"beta": -1}, "beta must be >= 0"),
        ("ae", {"latent_dim": 4.5}, "latent_dim must be a whole number, got 4.5"),
        ("ae", {"latent_dim": True}, "latent_dim must be a whole number, got True"),
        ("vae", {"beta": "strong"}, "beta must be a finite number, got 'strong'"),
        ("vae", {"beta": float("inf")}, "beta must be a finite number"),
        ("ae", {"activation": 3}, "activation must be a string, got 3"),
        ("ae", {"hidden": [64, "x"]}, "hidden[1] must be a whole number"),
        (
            "dae",
            {"latent_dim": 32, "hidden": [128, 16]},
            "latent_dim 32 is wider than the hidden layer of 16",
        ),
        ("vae", {"latent_dim": 600}, "latent_dim 600 is wider than the hidden layer of 512"),
    ],
)
def test_bad_model_config_is_rejected(name, params, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        models.build_model(name, params)


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    model = models.build_model(name, {"latent_dim": 3}).eval()
    models.save(tmp_path / name, model)
    loaded = models.load(tmp_path / name)
    assert not loaded.training
    x = batch()
    assert torch.equal(model.reconstruct(x), loaded.reconstruct(x))
    assert torch.equal(model.encode(x), loaded.encode(x))


def test_loading_a_folder_that_is_no_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(ConfigError, match="not a checkpoint directory"):
        models.load(tmp_path)


class RunsCode:
    """Unpickling this would create the file it names."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _empty(folder):
    (folder / "model.pt").write_bytes(b"")


def _truncated_json(folder):
    (folder / "config.json").write_text('{"model": "ae", "model_con')


def _code(folder):
    torch.save({"evil": RunsCode(folder / "code-ran")}, folder / "model.pt")


def _other_model(folder):
    torch.save(models.build_model("vae").state_dict(), folder / "model.pt")


@pytest.mark.parametrize(
    "damage, message",
    [
        (_empty, "model.pt is empty; the checkpoint is damaged"),
        (_truncated_json, "config.json: unreadable or not JSON"),
        (_code, "model.pt is not a plain-weights torch file .* never runs"),
        (_other_model, "model.pt: its weights do not fit the ae"),
    ],
    ids=["empty weights", "truncated json", "pickled code", "another model's weights"],
)
def test_a_damaged_or_hostile_checkpoint_is_refused_naming_the_file(damage, message, tmp_path):
    models.save(tmp_path, models.build_model("ae"))
    damage(tmp_path)
    with pytest.raises(ConfigError, match=message) as caught:
        models.load(tmp_path)
    assert str(tmp_path) in str(caught.value)
    assert "weights_only=False unless you trust" in str(caught.value) or damage is not _code
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize("name", ["dae", "sdae"])
def test_latent_dim_is_the_real_bottleneck_of_the_denoising_stacks(name):
    widths = lambda m: [layer.out_features for layer in m.encoder_layers]  # noqa: E731
    assert widths(models.build_model(name, {"latent_dim": 2})) == [128, 64, 10, 2]  # the seed's
    wide = models.build_model(name, {"latent_dim": 32})
    assert widths(wide) == [128, 64, 32]
    assert min(m.out_features for m in wide.modules() if isinstance(m, torch.nn.Linear)) >= 32


def test_numbers_yaml_left_as_strings_are_read_as_numbers():
    assert models.build_model("vae", {"beta": "1e-1"}).config.beta == 0.1
    assert models.build_model("ae", {"latent_dim": 4.0}).config.latent_dim == 4
