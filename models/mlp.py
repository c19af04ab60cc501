"""Fully connected autoencoders: the plain AE, the denoising AE and the stacked denoising AE."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from models.base import (
    PIXELS,
    AEOutput,
    AutoEncoder,
    ModelConfig,
    activation,
    apply_activation,
    check_bottleneck,
    check_output_for_loss,
    reconstruction_loss,
)
from models.errors import ConfigError
from models.noise import corrupt, validate_noise

SEED_DAE_HIDDEN = (128, 64, 10)
# The widest hidden layer a space may ask for: 784 x 16,384 weights is 51 MB; wider asks for
# gigabytes on a 28x28 digit (a typo such as hidden=[1000000000] would fail in the allocator).
MAX_WIDTH = 16_384


@dataclass
class AEConfig(ModelConfig):
    """Seed AE: 784 -> Dense(latent, relu) -> Dense(784, relu), MSE."""

    # Widths between the input and the code, mirrored in the decoder; None: the seed DAE's stack
    # (see `widths`).
    hidden: tuple[int, ...] | None = ()
    code_activation: str = "same"  # "same" applies `activation` to the code (seed AE); or "linear"
    output_activation: str = "relu"

    def widths(self) -> tuple[int, ...]:
        """The hidden widths the model is built with. None gives the seed DAE's 128-64-10 without
        the layers no wider than the code, so `latent_dim` is always the bottleneck: the seed's
        784-128-64-10-2 at latent 2, 784-128-64-32 at latent 32."""
        if self.hidden is None:
            return tuple(w for w in SEED_DAE_HIDDEN if w > self.latent_dim)
        return self.hidden

    def validate(self) -> None:
        super().validate()
        if any(not 1 <= h <= MAX_WIDTH for h in self.widths()):
            raise ConfigError(
                f"hidden sizes must lie in [1, {MAX_WIDTH}], got {list(self.widths())}"
            )
        check_bottleneck(self.latent_dim, self.widths())
        if self.code_activation not in ("same", "linear"):
            raise ConfigError(
                f"code_activation must be 'same' or 'linear'; got {self.code_activation!r}"
            )
        check_output_for_loss(self.output_activation, self.recon_loss)


@dataclass
class DAEConfig(AEConfig):
    """Seed DAE: 784-128-64-10-latent (linear code), tanh output, trained on x + 0.5·N(0,1)
    (clipped) against the clean image (the seed's target was the noisy one: not copied)."""

    hidden: tuple[int, ...] | None = None  # the seed's 128-64-10, narrowed to the code (widths)
    code_activation: str = "linear"
    output_activation: str = "tanh"
    noise_kind: str = "gaussian"
    noise: float = 0.5

    def validate(self) -> None:
        super().validate()
        validate_noise(self.noise_kind, self.noise)


@dataclass
class SDAEConfig(DAEConfig):
    """The seed DAE's stack, greedily pretrained layer by layer, then trained end to end."""

    pretrain_epochs: int = 2  # per layer; 0 skips pretraining (then it is the `dae`)

    def validate(self) -> None:
        super().validate()
        if self.pretrain_epochs < 0:
            raise ConfigError(f"pretrain_epochs must be >= 0, got {self.pretrain_epochs}")


class MLPAutoEncoder(AutoEncoder):
    """Plain fully connected autoencoder (`ae`)."""

    config_class = AEConfig
    name = "ae"

    def __init__(self, config: AEConfig) -> None:
        super().__init__(config)
        widths = [PIXELS, *config.widths(), config.latent_dim]
        code_act = config.activation if config.code_activation == "same" else "linear"
        back = widths[::-1]
        self.encoder_acts = [config.activation] * (len(widths) - 2) + [code_act]
        self.decoder_acts = [config.activation] * (len(back) - 2) + [config.output_activation]
        self.encoder = _stack(widths, self.encoder_acts)
        # The output activation is applied by `decode`; training works on its input (logits).
        self.decoder = _stack(back, [*self.decoder_acts[:-1], "linear"])

    @property
    def output_activation(self) -> str:
        return self.config.output_activation

    @property
    def encoder_layers(self) -> list[nn.Linear]:
        return list(self.encoder[::2])

    @property
    def decoder_layers(self) -> list[nn.Linear]:
        return list(self.decoder[::2])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.reshape(x.shape[0], -1))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(z.shape[0], 1, 28, 28)


class DenoisingAutoEncoder(MLPAutoEncoder):
    """The AE with corrupted inputs and the clean image as target (`dae`)."""

    config_class = DAEConfig
    name = "dae"

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return corrupt(x, self.config.noise_kind, self.config.noise, generator)


class StackedDenoisingAutoEncoder(DenoisingAutoEncoder):
    """Stacked DAE (`sdae`): each layer pretrained as a DAE on the codes of the one below.

    `pretrain_stages()` hands the trainer one small DAE per layer; the trainer fits them in order and
    then trains the whole stack end to end like any other model.
    """

    config_class = SDAEConfig
    name = "sdae"

    def pretrain_stages(self) -> list[PretrainStage]:
        if self.config.pretrain_epochs == 0:
            return []
        n = len(self.encoder_layers)
        stages = []
        for i in range(n):
            # Stage i reconstructs layer i's input; the pixel stage uses the model's output layer.
            dec_index = n - 1 - i
            out_act = self.decoder_acts[dec_index] if i == 0 else "linear"
            stages.append(
                PretrainStage(
                    encoder=self.encoder_layers[i],
                    encoder_act=self.encoder_acts[i],
                    decoder=self.decoder_layers[dec_index],
                    decoder_act=out_act,
                    below=self.encoder_layers[:i],
                    below_acts=self.encoder_acts[:i],
                    noise_kind=self.config.noise_kind,
                    noise=self.config.noise,
                    recon_loss=self.config.recon_loss if i == 0 else "mse",
                    is_pixel_stage=i == 0,
                    epochs=self.config.pretrain_epochs,
                )
            )
        return stages


class PretrainStage(nn.Module):
    """One greedy layer of a stacked DAE: a one-layer DAE on the frozen codes of the layers below.

    The encoder and decoder layers are the stacked model's own modules, so pretraining writes
    straight into the stack. Pixels are corrupted like the model's inputs; hidden codes (not
    pixels) get the same noise unclipped, or masking for the pixel-only kinds.
    """

    def __init__(
        self,
        *,
        encoder: nn.Linear,
        encoder_act: str,
        decoder: nn.Linear,
        decoder_act: str,
        below: list[nn.Linear],
        below_acts: list[str],
        noise_kind: str,
        noise: float,
        recon_loss: str,
        is_pixel_stage: bool,
        epochs: int,
    ) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.enc_act, self.dec_act = activation(encoder_act), decoder_act
        self._below = nn.Sequential(*_interleave(below, below_acts))
        self.noise_kind = noise_kind if is_pixel_stage or noise_kind == "gaussian" else "masking"
        self.noise = noise
        self.recon_loss = recon_loss
        self.is_pixel_stage = is_pixel_stage
        self.epochs = epochs  # how long the trainer fits this stage

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    @torch.no_grad()
    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """This stage's input: the frozen codes of the layers below for clean images `x`."""
        return self._below(x.reshape(x.shape[0], -1))

    def corrupt(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return corrupt(h, self.noise_kind, self.noise, generator, clip=self.is_pixel_stage)

    def forward(self, h_noisy: torch.Tensor, h_clean: torch.Tensor) -> AEOutput:
        z = self.enc_act(self.encoder(h_noisy))
        logits = self.decoder(z)
        loss = reconstruction_loss(logits, h_clean, self.recon_loss, self.dec_act)
        recon = apply_activation(self.dec_act)(logits.detach())
        return AEOutput(
            loss=loss, recon_loss=loss, reg_loss=torch.zeros_like(loss), recon=recon, z=z
        )


def _interleave(layers: list[nn.Linear], acts: list[str]) -> list[nn.Module]:
    out: list[nn.Module] = []
    for layer, act in zip(layers, acts, strict=True):
        out += [layer, activation(act)]
    return out


def _stack(widths: list[int], acts: list[str]) -> nn.Sequential:
    """Linear layers through `widths`, each followed by its activation (layers at even indices)."""
    layers = [nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
    return nn.Sequential(*_interleave(layers, acts))
