"""Log-log plots of time and peak memory vs N from a benchmark JSON payload."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from n3seq._files import atomic_write


def _series(payload: dict[str, Any], suite: str, key: str) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in payload["results"]:
        value = row["result"].get(key)
        if row["suite"] == suite and value is not None:
            out[row["label"]].append((row["size"], value))
    return {k: sorted(v) for k, v in out.items()}


def _save(fig: Any, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, bbox_inches="tight"), suffix=".png")
    return path


def plot_all(payload: dict[str, Any], folder: Path) -> list[Path]:
    """Writes ``bench_<suite>.png`` (time and memory vs N, log-log) for sets and windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suite, xlabel in (("sets", "set size N (= M)"), ("windows", "sequence length N")):
        times = _series(payload, suite, "median_s")
        if not times:
            continue
        mem = _series(payload, suite, "call_mib")
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, data, ylabel in ((axes[0], times, "median time (s)"),
                                 (axes[1], mem, "peak memory of the call (MiB)")):
            for label, points in data.items():
                xs, ys = zip(*points)
                style: dict[str, Any] = {"marker": "o", "ls": "-"}
                if label.startswith("hard"):
                    style.update(color="k", lw=2.5)
                elif label.startswith("floor"):
                    style.update(ls="--", alpha=0.6)
                ax.plot(xs, [max(y, 1e-3) for y in ys], label=label, **style)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
                   fontsize=8, frameon=False)
        fig.suptitle(f"{suite}: E = F = 64, k = 7 (hard kNN in black, floors dashed)")
        written.append(_save(fig, folder / f"bench_{suite}.png"))
        plt.close(fig)
    return written
