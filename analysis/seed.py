"""The seed report's numbers (see ../shared/BRIEF.md section 1), each with what it measured, and
which of our held-out numbers it should be read against."""

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
    where: tuple[tuple[str, str], ...] = ()  # which of our rows: (column, value) pairs


SEED_NUMBERS = (
    SeedNumber("ae", "tanh, latent 2, 100 epochs", "0.0685", "seed: MSE on training data (60k), converged loss",
               "val_mse", "per-pixel MSE, held-out digits", (("activation", "tanh"),)),
    SeedNumber("ae", "relu, latent 2", "worse than tanh (no number)", "seed: training curve, codes stuck on the axes",
               "val_mse", "per-pixel MSE, held-out digits", (("activation", "relu"),)),
    SeedNumber("sdae", "784-128-64-10-2, 20 epochs", "0.09-0.096", "seed: MSE against the *noisy* image, training data",
               "denoise_mse", "MSE of the denoised held-out digit against the clean one"),
    SeedNumber("sdae", "supervised phase", "0.95", "seed: accuracy read off the training curve",
               "finetune_acc", "accuracy on held-out digits after fine-tuning"),
    SeedNumber("cae", "Conv16-Conv8, 20 epochs", "0.07", "seed: BCE on training data",
               "val_bce", "per-pixel BCE, held-out digits"),
    SeedNumber("cae", "supervised phase", "0.99", "seed: accuracy read off the training curve (head on the reconstruction)",
               "finetune_acc", "accuracy on held-out digits, head on the code"),
    SeedNumber("vae", "BCE + KL, latent 2, 50 epochs", "145", "seed: BCE summed over pixels + KL, training data",
               "-elbo", "BCE summed + KL per held-out digit (−ELBO)", (("recon_loss", "bce"),)),
    SeedNumber("vae", "MSE + KL, latent 2, 50 epochs", "36.7", "seed: MSE summed over pixels + KL, training data",
               "-elbo", "MSE summed + KL per held-out digit", (("recon_loss", "mse"),)),
)  # fmt: skip


def seed_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """The seed's numbers beside ours, read from the comparison `table` (one row per model type)."""
    rows = []
    for s in SEED_NUMBERS:
        ours = "-"
        match = table[table["model"] == s.model] if "model" in table else table.iloc[0:0]
        for column, wanted in s.where:
            if column in match:  # a table not split by this column: its best row stands in
                match = match[match[column].astype(str) == wanted]
        column = s.ours.removeprefix("-")
        if len(match) and column in match and pd.notna(match.iloc[0][column]):
            value = float(match.iloc[0][column])
            ours = f"{-value if s.ours.startswith('-') else value:.4g}"
        rows.append({"model": s.model, "seed setting": s.setting, "seed": s.value, "seed measured": s.measured,
                     "ours": ours, "our metric": s.ours, "ours measures": s.ours_measures})  # fmt: skip
    return pd.DataFrame(rows)
