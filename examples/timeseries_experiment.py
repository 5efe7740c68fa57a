"""N³ on real time series: denoising, imputation and forecasting, with and without N³.

For each dataset shipped with statsmodels (weekly CO₂, yearly sunspots) and each task, the
same :class:`~n3seq.timeseries.SeriesModel` is trained twice with an identical budget (steps,
batch, crops, seed): once with its N³ stage, once with the N³ stage replaced by a dense
residual layer and the token width raised until the parameter counts match. Classical
baselines: Savitzky–Golay and moving average (denoising, window/order tuned on the train
split), linear interpolation (imputation), seasonal naive (forecasting).

Writes ``table.md``, ``results.json`` and ``timeseries.png`` to ``--out``.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python examples/timeseries_experiment.py --out results/timeseries
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from n3seq.ablation import count_parameters
from n3seq.timeseries import (
    SeriesModel,
    fit_series_model,
    linear_interpolation,
    load_split,
    make_episode,
    masked_mae,
    masked_mse,
    matching_width,
    moving_average,
    savitzky_golay,
    seasonal_naive,
)

CONFIGS = {
    "co2": {"window": 8, "stride": 4, "min_len": 120, "max_len": 208, "noise": 0.1,
            "horizon": 52, "gap": (8, 40), "eval_gap": 26},
    "sunspots": {"window": 4, "stride": 2, "min_len": 40, "max_len": 64, "noise": 0.3,
                 "horizon": 11, "gap": (3, 12), "eval_gap": 8},
}


def build(cfg: dict, width: int, use_n3: bool, seed: int) -> SeriesModel:
    torch.manual_seed(seed)
    return SeriesModel(1, window=cfg["window"], stride=cfg["stride"], width=width, depth=2,
                       k=4, use_n3=use_n3)


def eval_episodes(split, cfg: dict, task: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """Deterministic test episodes whose scored points all lie in the test split."""
    gen = torch.Generator().manual_seed(seed)
    full = np.concatenate([split.train, split.test])
    start_test = len(split.train)
    if task == "denoise":
        clean = torch.as_tensor(split.test)[None]
        return make_episode(clean, torch.tensor([clean.shape[1]]), task, noise=cfg["noise"],
                            generator=gen)
    length = cfg["max_len"]
    if task == "impute":
        length = min(length, len(split.test))
        starts = list(range(start_test, len(full) - length + 1, max(1, length // 4)))
        starts = [s for s in starts for _ in range(4)]  # four gap draws per crop
        gap = (cfg["eval_gap"], cfg["eval_gap"])
        extra = {"gap": gap}
    else:
        horizon = cfg["horizon"]
        first = max(start_test, length - horizon) - (length - horizon)
        starts = list(range(first, len(full) - length + 1, max(1, horizon // 4)))
        extra = {"horizon": horizon}
    clean = torch.as_tensor(np.stack([full[s:s + length] for s in starts]))
    lengths = torch.full((len(starts),), length)
    return make_episode(clean, lengths, task, generator=gen, **extra)


def tune_smoother(split, cfg: dict) -> dict[str, tuple]:
    """Window (and order) of the smoothers that minimise the MSE on a noisy train copy."""
    ep = make_episode(torch.as_tensor(split.train)[None], torch.tensor([len(split.train)]),
                      "denoise", noise=cfg["noise"], generator=torch.Generator().manual_seed(7))
    noisy, clean = ep["inputs"], ep["target"]
    best_ma = min(range(1, 52, 2), key=lambda w: float(masked_mse(moving_average(noisy, w),
                                                                  clean)))
    best_sg = min(((w, o) for w in range(5, 52, 2) for o in range(1, 5) if o < w),
                  key=lambda p: float(masked_mse(savitzky_golay(noisy, *p), clean)))
    return {"moving_average": (best_ma,), "savitzky_golay": best_sg}


def baseline(name: str, ep: dict, cfg: dict, split, params: dict) -> torch.Tensor:
    if name == "moving_average":
        return moving_average(ep["inputs"], *params["moving_average"])
    if name == "savitzky_golay":
        return savitzky_golay(ep["inputs"], *params["savitzky_golay"])
    if name == "linear_interpolation":
        return linear_interpolation(ep["inputs"], ep["observed"])
    horizon = cfg["horizon"]
    history = ep["inputs"][:, :-horizon]
    forecast = seasonal_naive(history, horizon, split.period)
    return torch.cat([history, forecast], dim=1)


BASELINES = {"denoise": ["savitzky_golay", "moving_average"],
             "impute": ["linear_interpolation"], "forecast": ["seasonal_naive"]}


def scores(pred: torch.Tensor, ep: dict) -> dict[str, float]:
    return {"mse": float(masked_mse(pred, ep["target"], ep["score"])),
            "mae": float(masked_mae(pred, ep["target"], ep["score"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/timeseries"))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--datasets", nargs="+", default=list(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, curves, started = [], {}, time.time()

    for name in args.datasets:
        cfg, split = CONFIGS[name], load_split(name)
        params = tune_smoother(split, cfg)
        n3_params = count_parameters(build(cfg, args.width, True, 0))
        plain_width = matching_width(n3_params, lambda w, c=cfg: build(c, w, False, 0),
                                     range(args.width, 4 * args.width))
        plain_params = count_parameters(build(cfg, plain_width, False, 0))
        print(f"{name}: N3 width {args.width} ({n3_params} params), plain width "
              f"{plain_width} ({plain_params} params); smoothers {params}")
        for task in ("denoise", "impute", "forecast"):
            ep = eval_episodes(split, cfg, task)
            episode_kwargs = {"noise": cfg["noise"], "horizon": cfg["horizon"],
                              "gap": cfg["gap"]}
            for label, width, use_n3, count in (("with N³", args.width, True, n3_params),
                                                ("without N³", plain_width, False,
                                                 plain_params)):
                model = build(cfg, width, use_n3, args.seed)
                t0 = time.time()
                losses = fit_series_model(model, split.train, task, steps=args.steps,
                                          batch=args.batch, min_len=cfg["min_len"],
                                          max_len=cfg["max_len"], seed=args.seed,
                                          progress=True, **episode_kwargs)
                with torch.no_grad():
                    pred = model(ep["inputs"], ep["observed"], ep["mask"])
                rows.append({"dataset": name, "task": task, "method": label,
                             "params": count, **scores(pred, ep),
                             "train_s": round(time.time() - t0, 1),
                             "final_train_loss": float(np.mean(losses[-20:]))})
                curves[(name, task, label)] = pred
                print(rows[-1])
            for base in BASELINES[task]:
                pred = baseline(base, ep, cfg, split, params)
                rows.append({"dataset": name, "task": task, "method": base.replace("_", " "),
                             "params": 0, **scores(pred, ep)})
                curves[(name, task, base)] = pred
                print(rows[-1])
        curves[(name, "episodes")] = {t: eval_episodes(split, cfg, t) for t in
                                      ("impute", "forecast")}

    write_table(rows, args, time.time() - started)
    plot(curves, args.datasets, args.out / "timeseries.png")
    print(f"done in {time.time() - started:.0f} s -> {args.out}")


def write_table(rows: list[dict], args, elapsed: float) -> None:
    lines = ["| dataset | task | method | params | MSE | MAE |", "|---|---|---|---:|---:|---:|"]
    for r in rows:
        params = r["params"] or "–"
        lines.append(f"| {r['dataset']} | {r['task']} | {r['method']} | {params} | "
                     f"{r['mse']:.4f} | {r['mae']:.4f} |")
    lines.append("")
    lines.append(f"steps={args.steps}, batch={args.batch}, seed={args.seed}, "
                 f"threads={args.threads}, total {elapsed:.0f} s")
    for path, text in ((args.out / "table.md", "\n".join(lines) + "\n"),
                       (args.out / "results.json", json.dumps(rows, indent=1))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def plot(curves: dict, datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.2 * len(datasets)),
                             squeeze=False)
    for row, name in enumerate(datasets):
        episodes = curves[(name, "episodes")]
        for col, (task, base) in enumerate((("impute", "linear_interpolation"),
                                            ("forecast", "seasonal_naive"))):
            ep, ax = episodes[task], axes[row, col]
            i = len(ep["target"]) // 2
            steps = np.arange(ep["target"].shape[1])
            hidden = ~ep["observed"][i, :, 0].numpy()
            ax.plot(steps, ep["target"][i, :, 0], color="0.6", lw=1, label="truth")
            ax.plot(steps[~hidden], ep["target"][i, ~hidden, 0], color="k", lw=1.2,
                    label="observed")
            for key, colour in (("with N³", "C3"), ("without N³", "C0"), (base, "C2")):
                pred = curves[(name, task, key)][i, :, 0].numpy()
                ax.plot(steps[hidden], pred[hidden], color=colour, lw=1.4,
                        label=key.replace("_", " "))
            ax.axvspan(steps[hidden][0], steps[hidden][-1], color="0.9", zorder=0)
            ax.set_title(f"{name}: {'imputed gap' if task == 'impute' else 'forecast'}")
            ax.set_xlabel("step in episode")
            ax.set_ylabel("standardised value")
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
