"""Plots the continuous kNN weights against temperature: the paper's recursion vs the
authors' released code (scores divided by t once, then t = 1).

    python examples/relaxation_plot.py [--out docs/img/relaxation_temperature.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from n3seq import continuous_knn

SCORES = torch.tensor([-1.0, -1.5, -2.5, -4.0, -4.5], dtype=torch.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/img/relaxation_temperature.png"))
    args = parser.parse_args()
    temps = torch.logspace(-2.5, 1.5, 200, dtype=torch.float64)
    k = 3
    variants = {
        "paper: wʲ = softmax(aʲ/t), aʲ⁺¹ = aʲ + log(1−wʲ)": lambda t: continuous_knn(SCORES, k, t),
        "released code: continuous_knn(scores / t, k)": lambda t: continuous_knn(SCORES / t, k),
    }
    fig, axes = plt.subplots(2, k, figsize=(12, 6), sharex=True, sharey=True)
    for row, (title, fn) in enumerate(variants.items()):
        w = torch.stack([fn(float(t)) for t in temps])  # (T, k, O)
        for j in range(k):
            ax = axes[row, j]
            for o in range(len(SCORES)):
                ax.plot(temps, w[:, j, o], label=f"candidate {o + 1} (score {SCORES[o]:g})")
            ax.set_xscale("log")
            ax.set_title(f"round {j + 1}" + ("" if j else f"\n{title}"), loc="left", fontsize=9)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("temperature t")
        axes[row, 0].set_ylabel("weight wʲ")
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.suptitle("Continuous kNN weights as t → 0: only the paper's recursion tends to hard kNN")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
