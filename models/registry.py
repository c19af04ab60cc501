"""The one model registry: name -> model class (each class names its config dataclass)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from models.base import AutoEncoder, ModelConfig
from models.conv import ConvAutoEncoder
from models.errors import ConfigError, did_you_mean
from models.mlp import DenoisingAutoEncoder, MLPAutoEncoder, StackedDenoisingAutoEncoder
from models.typecheck import checked_fields
from models.vae import VariationalAutoEncoder

MODELS: dict[str, type[AutoEncoder]] = {
    cls.name: cls
    for cls in (
        MLPAutoEncoder,
        DenoisingAutoEncoder,
        StackedDenoisingAutoEncoder,
        ConvAutoEncoder,
        VariationalAutoEncoder,
    )
}

DENOISING_MODELS = ("dae", "sdae", "cae")


def model_class(name: str) -> type[AutoEncoder]:
    if name not in MODELS:
        raise ConfigError(
            f"unknown model {name!r}{did_you_mean(name, MODELS)}; choose one of {', '.join(MODELS)}"
        )
    return MODELS[name]


def model_fields(name: str) -> list[str]:
    """The config keys model `name` accepts."""
    return model_class(name).config_class.field_names()


def make_config(name: str, params: dict[str, Any]) -> ModelConfig:
    """Build and validate the config of model `name`; unknown keys are rejected loudly."""
    config_class = model_class(name).config_class
    allowed = {f.name: f for f in fields(config_class)}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no parameter {', '.join(unknown)}"
            f"{did_you_mean(unknown[0], allowed)}; it accepts {', '.join(allowed)}"
        )
    config = config_class(**checked_fields(config_class, params))
    config.validate()
    return config


def build_model(name: str, params: dict[str, Any] | None = None) -> AutoEncoder:
    """Instantiate model `name` from its (validated) parameters; missing keys take the seed's defaults."""
    config = make_config(name, params or {})
    return model_class(name)(config)


def config_dict(model: AutoEncoder) -> dict[str, Any]:
    """The model's full config as plain JSON-able values."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(model.config).items()}
