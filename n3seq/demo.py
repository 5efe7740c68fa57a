"""Core demo: continuous vs hard kNN as the temperature falls, and an N3Block on a token set.

Run with ``python -m n3seq.demo`` (or ``make demo`` before the image demo existed).
"""

from __future__ import annotations

import torch

from n3seq import N3Block, continuous_knn, hard_knn, knn_aggregate


def _fmt(row: torch.Tensor) -> str:
    return " ".join(f"{v + 0.0:5.2f}" for v in row.tolist())


def main() -> None:
    torch.manual_seed(0)
    points = torch.randn(1, 8, 2)
    query = points[:, :1]
    scores = -(query - points).square().sum(-1)[0]  # distances from token 0 to all 8
    mask = torch.ones(8, dtype=torch.bool)
    mask[0] = False  # the query is not its own neighbour
    k = 3
    hard = hard_knn(scores, k, mask)
    print("Scores (−squared distance) of token 0 to tokens 0…7:")
    print(f"   {_fmt(scores)}\n")
    print(f"{'t':>8} | round | {'continuous kNN weights':<47} | hard kNN")
    for t in (10.0, 1.0, 0.3, 0.1, 0.01):
        soft = continuous_knn(scores, k, t, mask)
        for j in range(k):
            label = f"{t:8.2g}" if j == 0 else " " * 8
            print(f"{label} |   {j + 1}   | {_fmt(soft[j])} | {_fmt(hard[j])}")
        gap = (soft - hard).abs().max().item()
        print(f"{'':8} | max |continuous − hard| = {gap:.3g}\n")

    x = torch.randn(4, 256, 16)
    block = N3Block(dim=16, k=7)
    y = block(x)
    nb = knn_aggregate(x, x, x, k=7, temperature=1e-4, exclude_self=True)
    print(f"N3Block(dim=16, k=7): input {tuple(x.shape)} -> output {tuple(y.shape)}")
    d = (x[:, :, None] - x[:, None]).square().sum(-1)
    d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    nearest = x.gather(1, d.argmin(-1, keepdim=True).expand(-1, -1, 16))
    err = (nb[:, :, 0] - nearest).abs().max().item()
    print(f"knn_aggregate at t=1e-4: first neighbour vs exact nearest one, max error {err:.2e}")


if __name__ == "__main__":
    main()
