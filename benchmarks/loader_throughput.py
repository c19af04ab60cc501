"""Training throughput: the project's loop (whole set as one tensor, batches sliced) against a
torchvision-style `DataLoader` (PIL image -> ToTensor per digit), same model, same steps.

    .venv/bin/python benchmarks/loader_throughput.py [--rounds 5] [--epochs 2] [--device cpu]

Prints digits/second for each loop and their ratio, for the MLP (seed AE) and the conv model
(seed CAE), measured side by side in one run: each round times both loops, in alternating
order, and the figures are medians over rounds (on a shared machine one run alone says little).
Both loops use the trainer's optimizer (`study.trial.trainer.adam`): only the data path differs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

import models
from study.trial.data import load_splits
from study.trial.trainer import adam, resolve_device, run_epoch


class PILDigits(Dataset):
    """What a torchvision data set does per item: a PIL image through ToTensor."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = [Image.fromarray(np.uint8(x[0].numpy() * 255)) for x in images]
        self.to_tensor = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.to_tensor(self.images[i])


def project_loop(model, x: torch.Tensor, epochs: int, batch: int) -> float:
    opt = adam(model.parameters(), 1e-3)
    gen = torch.Generator(device=x.device).manual_seed(0)
    start = time.perf_counter()

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        clean = x[idx]  # as study.trial.trainer.train does: one gather per batch
        return model(clean, clean).loss

    for _ in range(epochs):
        run_epoch(batch_loss, opt, len(x), batch, gen, "bench")
    return epochs * len(x) / (time.perf_counter() - start)


def dataloader_loop(model, images: torch.Tensor, epochs: int, batch: int, device) -> float:
    opt = adam(model.parameters(), 1e-3)
    loader = DataLoader(PILDigits(images), batch_size=batch, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        for xb in loader:
            xb = xb.to(device)
            loss = model(xb, xb).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return epochs * len(images) / (time.perf_counter() - start)


def one_round(
    name: str, train_x: torch.Tensor, args, device, ours_first: bool
) -> tuple[float, float]:
    """Digits/s of the project's loop and of the DataLoader loop, each on a fresh model."""

    def ours() -> float:
        torch.manual_seed(0)
        model = models.build_model(name).to(device)
        return project_loop(model, train_x.to(device), args.epochs, args.batch_size)

    def theirs() -> float:
        torch.manual_seed(0)
        model = models.build_model(name).to(device)
        return dataloader_loop(model, train_x, args.epochs, args.batch_size, device)

    if ours_first:
        a = ours()
        return a, theirs()
    b = theirs()
    return ours(), b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    train_x = load_splits("mnist-5k").train_x
    print(
        f"device={device}  torch threads={torch.get_num_threads()}  digits={len(train_x)}  "
        f"medians of {args.rounds} rounds"
    )
    print(f"{'model':<6} {'project loop':>16} {'DataLoader':>16} {'speed-up':>9}")
    for name in ("ae", "cae"):
        rounds = [one_round(name, train_x, args, device, r % 2 == 0) for r in range(args.rounds)]
        ours = statistics.median(r[0] for r in rounds)
        theirs = statistics.median(r[1] for r in rounds)
        ratio = statistics.median(r[0] / r[1] for r in rounds)  # per round: both under one load
        print(f"{name:<6} {ours:>11.0f} dig/s {theirs:>11.0f} dig/s {ratio:>8.1f}×")


if __name__ == "__main__":
    main()
