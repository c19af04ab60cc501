"""The seed report's numbers (see ../shared/BRIEF.md section 1), each with what it measured, and
which of our held-out numbers it should be read against.

Each seed number is matched to our trials by the conditions the seed fixed (model, activation,
reconstruction loss, latent size): the best-ranked trial that meets all of them stands beside it,
and where none does the row says "–" and which condition no trial met."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class SeedNumber:
    model: str  # our model type
    setting: str  # which of the seed's runs
    value: str  # as the seed reports it
    measured: str  # what the seed's number is
    ours: str  # our metric to read beside it
    ours_measures: str
    where: tuple[tuple[str, object], ...] = ()  # the seed's conditions: (parameter, value) pairs


SEED_NUMBERS = (
    SeedNumber(
        "ae",
        "tanh, latent 2, 100 epochs",
        "0.0685",
        "seed: MSE on training data (60k), converged loss",
        "val_mse",
        "per-pixel MSE, held-out digits",
        (("activation", "tanh"), ("latent_dim", 2)),
    ),
    SeedNumber(
        "ae",
        "relu, latent 2",
        "worse than tanh (no number)",
        "seed: training curve, codes stuck on the axes",
        "val_mse",
        "per-pixel MSE, held-out digits",
        (("activation", "relu"), ("latent_dim", 2)),
    ),
    SeedNumber(
        "sdae",
        "784-128-64-10-2, 20 epochs",
        "0.09-0.096",
        "seed: MSE against the *noisy* image, training data",
        "denoise_mse",
        "MSE of the denoised held-out digit against the clean one",
        (("latent_dim", 2),),
    ),
    SeedNumber(
        "sdae",
        "supervised phase",
        "0.95",
        "seed: accuracy read off the training curve",
        "finetune_acc",
        "accuracy on held-out digits after fine-tuning",
        (("latent_dim", 2),),
    ),
    SeedNumber(
        "cae",
        "Conv16-Conv8, 20 epochs",
        "0.07",
        "seed: BCE on training data",
        "val_bce",
        "per-pixel BCE, held-out digits",
        (("latent_dim", None),),
    ),
    SeedNumber(
        "cae",
        "supervised phase",
        "0.99",
        "seed: accuracy read off the training curve (head on the reconstruction)",
        "finetune_acc",
        "accuracy on held-out digits, head on the code",
        (("latent_dim", None),),
    ),
    SeedNumber(
        "vae",
        "BCE + KL, latent 2, 50 epochs",
        "145",
        "seed: BCE summed over pixels + KL, training data",
        "recon_kl",
        "BCE summed over pixels + KL per held-out digit (−ELBO)",
        (("recon_loss", "bce"), ("latent_dim", 2)),
    ),
    SeedNumber(
        "vae",
        "MSE + KL, latent 2, 50 epochs",
        "36.7",
        "seed: MSE summed over pixels + KL, training data",
        "recon_kl",
        "MSE summed over pixels + KL per held-out digit (not an ELBO)",
        (("recon_loss", "mse"), ("latent_dim", 2)),
    ),
)


def seed_comparison(ranked: pd.DataFrame) -> pd.DataFrame:
    """The seed's numbers beside ours, from the ranked trials (`study.trial.ranking.rank`)."""
    rows = []
    for s in SEED_NUMBERS:
        value, why = seed_match(ranked, s)
        ours = f"{value:.4g}" if value is not None else f"– ({why})"
        rows.append(
            {
                "model": s.model,
                "seed setting": s.setting,
                "seed": s.value,
                "seed measured": s.measured,
                "ours": ours,
                "our metric": s.ours,
                "ours measures": s.ours_measures,
            }
        )
    return pd.DataFrame(rows)


def seed_match(ranked: pd.DataFrame, s: SeedNumber) -> tuple[float | None, str]:
    """Our number for seed number `s`: the best-ranked trial meeting all of its conditions, or
    None and the first condition no trial met."""
    match = ranked[ranked["model"] == s.model] if "model" in ranked else ranked.iloc[0:0]
    if not len(match):
        return None, f"no finished {s.model} trial"
    for column, wanted in s.where:
        values = match[column] if column in match else pd.Series(None, index=match.index)
        if wanted is None:
            same = values.isna()
        elif isinstance(wanted, int | float):  # a column with gaps holds floats: 2.0 is 2
            same = pd.to_numeric(values, errors="coerce") == wanted
        else:
            same = values.astype(str) == str(wanted)
        match = match[same]
        if not len(match):
            shown = "its own feature map" if wanted is None else wanted
            return None, f"no {s.model} trial with {column} = {shown}"
    if s.ours not in match or match[s.ours].isna().all():
        return None, f"{s.ours} not measured"
    return float(match[s.ours].dropna().iloc[0]), ""
