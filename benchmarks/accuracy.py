"""Full-MNIST test accuracy of both presets, with epochs and wall time.

    python benchmarks/accuracy.py --data auto|PATH/mnist.npz [--epochs 5]

Trains each preset with the CLI's defaults (Adam, lr 1e-3, batch 32, seed 0) and prints
a Markdown table. It takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time

from labkit.data import load_mnist
from labkit.models import MODELS
from labkit.optim import Adam
from labkit.train import Trainer


def train_preset(name: str, data, epochs: int, batch_size: int, seed: int) -> dict:
    """Train one preset; return its per-epoch test accuracies and wall time."""
    network = MODELS[name](seed=seed)
    trainer = Trainer(network, Adam(network, lr=1e-3), batch_size=batch_size, seed=seed)
    start = time.perf_counter()
    result = trainer.fit(data, epochs)
    return {
        "model": name,
        "accuracies": [epoch.test_accuracy for epoch in result.epochs],
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("LABKIT_DATA", "auto"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=["lenet", "tutorial"])
    args = parser.parse_args()
    data = load_mnist(args.data)
    print(f"data: {data.source}; {len(data.x_train)} train / {len(data.x_test)} test")
    rows = [train_preset(m, data, args.epochs, args.batch_size, args.seed) for m in args.models]
    print("\n| model | test accuracy per epoch | best | wall time |")
    print("|---|---|---|---|")
    for row in rows:
        per_epoch = ", ".join(f"{a:.2%}" for a in row["accuracies"])
        best = max(row["accuracies"])
        print(f"| {row['model']} | {per_epoch} | {best:.2%} | {row['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
