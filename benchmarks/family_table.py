"""Train each model of the family with the seed's settings and print a held-out comparison table.

    .venv/bin/python benchmarks/family_table.py --latent-dim 16 --epochs 10
    .venv/bin/python benchmarks/family_table.py --latent-dim 2 --epochs 10

Rows beside the five models: the plain AE with the (stacked) DAE's shape and the CAE with the seed's
noise, so each denoising model can be compared with a non-denoising twin of the same shape.
The mean-digit row is the trivial baseline (predict the training mean for every input).
"""

from __future__ import annotations

import argparse

from study.trial.data import load_splits
from study.trial.trainer import train

DAE_SHAPE = {"hidden": [128, 64, 10], "code_activation": "linear", "output_activation": "tanh"}
ROWS: list[tuple[str, dict]] = [
    ("ae (seed: relu)", {"model": "ae"}),
    ("ae tanh", {"model": "ae", "activation": "tanh"}),
    ("ae, dae shape", {"model": "ae", **DAE_SHAPE}),
    ("dae", {"model": "dae"}),
    ("sdae", {"model": "sdae"}),
    ("cae (seed: no noise)", {"model": "cae"}),
    ("cae + noise 0.5", {"model": "cae", "noise": 0.5}),
    ("vae bce", {"model": "vae", "recon_loss": "bce"}),
    ("vae mse", {"model": "vae", "recon_loss": "mse"}),
]
COLUMNS = ("val_mse", "val_bce", "denoise_mse", "probe_acc", "train_loss", "params")


def mean_digit_mse() -> float:
    data = load_splits("mnist-5k")
    mean = data.train_x.mean(0, keepdim=True)
    return ((data.val_x - mean) ** 2).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"mnist-5k, latent_dim={args.latent_dim}, {args.epochs} epochs, seed {args.seed}, batch 64"
    )
    print(f"| model | {' | '.join(COLUMNS)} | s/epoch |")
    print(f"|---|{'---|' * (len(COLUMNS) + 1)}")
    print(f"| mean digit | {mean_digit_mse():.4f} | | | | | | |")
    for label, row in ROWS:
        config = {**row, "latent_dim": args.latent_dim, "epochs": args.epochs, "seed": args.seed}
        last = train(config)[-1]
        cells = [f"{last[c]:.4f}" if c != "params" else f"{int(last[c]):,}" for c in COLUMNS]
        print(f"| {label} | {' | '.join(cells)} | {last['epoch_seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
