"""N³ on real time series against the classical forecasters and smoothers, with and without N³.

Three series (weekly CO₂ and yearly sunspots from statsmodels, half-hourly electricity demand
``taylor`` from pmdarima), split in time 80/20 and standardised with training statistics. Tasks:
forecasting (rolling origins in the test span; ``taylor``: a day and a week ahead), imputation
(a gap slid over the test span, with context before and after it) and denoising (the test
span plus Gaussian noise, several draws). Every method sees exactly the same episodes and is
scored on the same points (all in the test span).

Ours is a **hybrid** :class:`~n3seq.timeseries.SeriesModel` (``use_base=True``): a classical
base — the peer (TBATS excepted) with the lowest MSE on validation episodes from the last
20 % of the training span, per dataset and task — and the network predicting its
correction; "with N³" has the global N³ stage (each window searches all windows of its
context), "without N³" replaces it by a dense residual layer at the same
parameter budget, everything else equal. Both train on the same pool of training-span
episodes, for several seeds (initialisation and draws); forecasters also predict the 10 % and
90 % quantiles. The classical peers (Holt-Winters, STLForecast, SARIMAX with an order search,
an UnobservedComponents Kalman smoother, TBATS, seasonal naive (also re-anchored to the
current level), linear interpolation, Savitzky–Golay) choose their configuration on the
training span only (AIC or a noisy training copy) and are refitted on each context
(Holt-Winters, STL) or run with their training-span parameters (state-space models, TBATS).

Writes ``results.json`` (rows, a per-task summary and provenance, for
``scripts/render_docs_tables.py``), ``table.md`` and ``timeseries.png`` (a ``taylor``
week-ahead forecast with its interval) to ``--out``.

Usage (the docs run, one dataset at a time; see docs/timeseries.md)::

    OMP_NUM_THREADS=1 nice -n 10 python examples/timeseries_experiment.py --datasets taylor \
        --seeds 0 1 2 --out results/timeseries-taylor \
        --json docs/results/timeseries-taylor.json --figure docs/img/timeseries.png
    python scripts/render_docs_tables.py docs/timeseries.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from n3seq._files import atomic_write
from n3seq._provenance import run_metadata, write_results_json
from n3seq.ablation import count_parameters
from n3seq.timeseries import (
    HoltWinters,
    Peer,
    SavitzkyGolayPeer,
    SeasonalLevelPeer,
    SeasonalNaivePeer,
    SeriesModel,
    StateSpacePeer,
    STLPeer,
    TBATSPeer,
    fit_on_episodes,
    linear_interpolation,
    load_split,
    masked_mae,
    masked_mse,
    matching_width,
    peer_predict,
    select_by_aic,
    select_state_space,
)

TBATS_FIT = 1344  # TBATS is fitted on the last four weeks of taylor's training span

# Episode layout per dataset and task. forecast: context steps before each origin, horizon,
# origin spacing; impute: gap length, context before/after the gap, gap spacing; denoise:
# noise draws of the test span. "train" is the size of the training-span episode pool.
CONFIGS = {
    "co2": {
        "window": 16, "stride": 8, "noise": 0.1, "pool": 256,
        "tasks": {"forecast": {"horizon": 52, "context": 520, "every": 13},
                  "impute": {"gap": 26, "before": 260, "after": 52, "every": 8},
                  "denoise": {"draws": 3, "length": 457}},
    },
    "sunspots": {
        "window": 4, "stride": 2, "noise": 0.3, "pool": 256,
        "tasks": {"forecast": {"horizon": 11, "context": 100, "every": 1},
                  "impute": {"gap": 8, "before": 100, "after": 16, "every": 1},
                  "denoise": {"draws": 5, "length": 62}},
    },
    "taylor": {
        "window": 48, "stride": 24, "noise": 0.1, "pool": 192,
        "tasks": {"forecast (day)": {"horizon": 48, "context": 1344, "every": 24},
                  "forecast (week)": {"horizon": 336, "context": 1344, "every": 48},
                  "impute": {"gap": 48, "before": 1344, "after": 336, "every": 24},
                  "denoise": {"draws": 2, "length": 806}},
    },
}


def kind(task: str) -> str:
    return task.split(" ")[0]


def spans(task: str, spec: dict, lo: int, hi: int, every: int | None = None) -> list[tuple]:
    """``(start, stop, hidden_start, hidden_stop)`` of every episode whose hidden (scored)
    steps lie in ``[lo, hi)``; context may reach back before ``lo`` (never before 0)."""
    every = every or spec.get("every", 1)
    if kind(task) == "forecast":
        h, c = spec["horizon"], spec["context"]
        return [(o - c, o + h, o, o + h) for o in range(max(lo, c), hi - h + 1, every)]
    if kind(task) == "impute":
        g, before, after = spec["gap"], spec["before"], spec["after"]
        return [(max(0, s - before), min(hi, s + g + after), s, s + g)
                for s in range(max(lo, 1), hi - g, every)]
    length = spec["length"]
    return [(s, s + length, s, s + length) for s in range(lo, hi - length + 1, every)]


def build_episodes(full: np.ndarray, layout: list[tuple], task: str, noise: float,
                   gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A padded episode batch (the dict of :func:`~n3seq.timeseries.make_episode`)."""
    total = max(b - a for a, b, _, _ in layout)
    n = len(layout)
    target = torch.zeros(n, total, 1)
    mask = torch.zeros(n, total, dtype=torch.bool)
    hidden = torch.zeros(n, total, 1, dtype=torch.bool)
    for i, (a, b, h0, h1) in enumerate(layout):
        target[i, :b - a, 0] = torch.as_tensor(full[a:b, 0])
        mask[i, :b - a] = True
        hidden[i, h0 - a:h1 - a] = True
    inputs = target.clone()
    if kind(task) == "denoise":
        inputs = (target + noise * torch.randn(target.shape, generator=gen)) * mask[..., None]
        observed, score = mask[..., None].clone(), mask[..., None] & hidden
    else:
        observed = mask[..., None] & ~hidden
        score = hidden
        inputs = torch.where(observed, inputs, torch.zeros_like(inputs))
    return {"inputs": inputs, "observed": observed, "mask": mask, "target": target,
            "score": score}


def state_space_candidates(name: str, task: str, split, cfg: dict) -> list[StateSpacePeer]:
    """The state-space models a user would try on this series (chosen by AIC on train)."""
    denoise = kind(task) == "denoise"
    if name == "co2":
        return [StateSpacePeer("UC", "uc", level="lltrend",
                               freq_seasonal=[{"period": 52, "harmonics": k}])
                for k in (2, 3, 4)]
    if name == "sunspots":
        return [StateSpacePeer("SARIMAX", "sarimax", order=(p, 0, q), trend="c",
                               measurement_error=denoise)
                for p in (2, 3, 6, 9) for q in (0, 1)]
    return [StateSpacePeer("UC", "uc", level="llevel", autoregressive=1,
                           freq_seasonal=[{"period": 48, "harmonics": 6},
                                          {"period": 336, "harmonics": 6}])]


def fitted_state_space(name: str, task: str, split, cfg: dict, noisy_train: np.ndarray,
                       cache: dict) -> StateSpacePeer:
    key = (name, kind(task) == "denoise")
    if key not in cache:
        train = noisy_train if kind(task) == "denoise" else split.train[:, 0]
        peer = select_state_space(train.astype(np.float64),
                                  state_space_candidates(name, task, split, cfg))
        label = "UnobservedComponents" if peer.kind == "uc" else "SARIMAX"
        spec = peer.spec
        detail = (f"order {spec['order']}" if peer.kind == "sarimax" else
                  ", ".join(f"season {s['period']}×{s['harmonics']}"
                            for s in spec["freq_seasonal"]))
        peer.name = f"{label} ({detail})" + (" + noise" if kind(task) == "denoise" else "")
        cache[key] = peer
    return cache[key]


def level_peer(name: str, train: np.ndarray, period: int, cache: dict) -> SeasonalLevelPeer:
    """Seasonal naive re-anchored to the current level, its window chosen on the training span."""
    if ("level", name) not in cache:
        cache[("level", name)] = SeasonalLevelPeer(period).fit(train)
    return cache[("level", name)]


def peers_for(name: str, task: str, split, cfg: dict, noisy_train: np.ndarray,
              cache: dict) -> list[Peer]:
    """The classical peers of one row, each configured on the training span only."""
    train = split.train[:, 0].astype(np.float64)
    period = {"co2": 52, "sunspots": 11, "taylor": 336}[name]
    t = kind(task)
    state = fitted_state_space(name, task, split, cfg, noisy_train, cache)
    if t == "forecast":
        if ("stl", name) not in cache:  # configurations chosen by AIC on the training span
            if name != "taylor":
                cache[("hw", name)] = select_by_aic(train, [
                    HoltWinters(period, trend) for trend in (None, "add", "add_damped")])
            if name == "co2":
                stl = [STLPeer(52, order, "t") for order in ((1, 1, 0), (2, 1, 0), (0, 1, 1))]
            elif name == "sunspots":
                stl = [STLPeer(11, (p, 0, 0), "c") for p in (2, 3, 9)]
            else:
                stl = [STLPeer(336, (p, 0, 0), "c", robust=False) for p in (1, 2)]
            cache[("stl", name)] = select_by_aic(train[-TBATS_FIT:] if name == "taylor"
                                                 else train, stl)
        # statsmodels' Holt-Winters has a single season; on taylor (season 48) it was far
        # behind seasonal naive in development runs and its refits dominated the run time
        peers: list[Peer] = [SeasonalNaivePeer(period), level_peer(name, train, period, cache),
                             cache[("stl", name)]]
        if name != "taylor":
            peers.insert(1, cache[("hw", name)])
        if name == "taylor":
            if "tbats" not in cache:  # fitted on the last four training weeks (the fit is slow)
                cache["tbats"] = TBATSPeer((48, 336), use_arma_errors=False).fit(
                    train[-TBATS_FIT:])
            peers.append(cache["tbats"])
        peers.append(state)
    elif t == "impute":
        peers = [SeasonalNaivePeer(period), level_peer(name, train, period, cache), state]
    else:
        if ("sg", name) not in cache:
            cache[("sg", name)] = SavitzkyGolayPeer(cfg["noise"]).fit(train)
        peers = [cache[("sg", name)], state]
    return peers


def base_candidates(peers: list[Peer]) -> list[Peer]:
    """The peers our hybrid may take as its base: all but TBATS, which is fitted on the last
    four training weeks, i.e. on the validation span the base is chosen on."""
    return [peer for peer in peers if not isinstance(peer, TBATSPeer)]


def predict_peer(peer: Peer, ep: dict, task: str, layout: list[tuple], full: np.ndarray,
                 n_train: int, fitted: bool = False) -> torch.Tensor:
    if isinstance(peer, TBATSPeer):  # runs from where its fit started through all history
        pred = ep["inputs"].clone()
        first = n_train - TBATS_FIT
        for i, (a, _, o, e) in enumerate(layout):
            pred[i, o - a:e - a, 0] = torch.as_tensor(peer.forecast(full[first:o, 0], e - o))
        return pred
    return peer_predict(peer, ep, kind(task), fitted=fitted)


def scores(pred: torch.Tensor, ep: dict) -> dict[str, float]:
    return {"mse": float(masked_mse(pred, ep["target"], ep["score"])),
            "mae": float(masked_mae(pred, ep["target"], ep["score"]))}


def conformalise(quant: torch.Tensor, val_quant: torch.Tensor, val: dict,
                 level: float = 0.8) -> torch.Tensor:
    """Conformalised quantile regression (Romano et al., 2019): widens (or narrows) the
    interval by the ``level`` quantile of the validation points' conformity scores
    ``max(lo − y, y − hi)``, so that it covers ``level`` of the validation points."""
    y = val["target"][val["score"]]
    lo, hi = val_quant[..., 0][val["score"]], val_quant[..., -1][val["score"]]
    n = len(y)
    q = min(1.0, level * (1 + 1 / n))
    margin = torch.quantile(torch.maximum(lo - y, y - hi), q)
    return torch.stack([quant[..., 0] - margin, quant[..., -1] + margin], dim=-1)


def coverage(quant: torch.Tensor, ep: dict) -> float:
    inside = (quant[..., 0] <= ep["target"]) & (ep["target"] <= quant[..., -1])
    return float(inside[ep["score"]].float().mean())


def build_model(cfg: dict, width: int, use_n3: bool, seed: int, task: str,
                fill: bool = False) -> SeriesModel:
    torch.manual_seed(seed)
    quantiles = (0.1, 0.9) if kind(task) == "forecast" else ()
    return SeriesModel(1, use_base=True, fill_from_base=fill, quantiles=quantiles,
                       window=cfg["window"], stride=cfg["stride"], width=width, depth=2, k=4,
                       use_n3=use_n3)


def episode_mse(pred: torch.Tensor, ep: dict) -> np.ndarray:
    """The MSE of every episode over its scored points, ``(E,)``."""
    err = ((pred - ep["target"]).square() * ep["score"]).sum((1, 2))
    return (err / ep["score"].sum((1, 2)).clamp(min=1)).numpy()


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def run_dataset(name: str, args, rows: list[dict], figure: dict) -> None:
    cfg, split = CONFIGS[name], load_split(name)
    full = np.concatenate([split.train, split.test]).astype(np.float64)
    n_train = len(split.train)
    noisy_train = split.train[:, 0] + cfg["noise"] * np.random.default_rng(11).standard_normal(
        n_train)
    cache: dict = {}
    for task, spec in cfg["tasks"].items():
        if args.tasks and kind(task) not in args.tasks:
            continue
        t0 = time.time()
        layout = spans(task, spec, n_train, len(full))
        if kind(task) == "denoise":
            layout = layout[:1] * spec["draws"]
        ep = build_episodes(full, layout, task, cfg["noise"], torch.Generator().manual_seed(1))
        points = int(ep["score"].sum())
        # training pool and validation episodes (for early stopping): the same layout, hidden
        # steps in the first 80 % / the last 20 % of the training span (context never reaches
        # past the training span)
        val_lo = int(0.8 * n_train)
        if kind(task) == "denoise":
            short = {**spec, "length": min(spec["length"], val_lo // 2)}
            pool_layout = spans(task, short, 0, val_lo, every=max(1, val_lo // 64))
            pool_layout = (pool_layout * (cfg["pool"] // len(pool_layout) + 1))[:cfg["pool"]]
            val_layout = [(n_train - short["length"], n_train) * 2] * 4
        else:
            pool_layout = spans(task, spec, 0, val_lo, every=1)
            pick = np.random.default_rng(5).permutation(len(pool_layout))[:cfg["pool"]]
            pool_layout = [pool_layout[i] for i in sorted(pick)]
            val_layout = spans(task, spec, val_lo, n_train, every=1)
            val_layout = val_layout[::max(1, len(val_layout) // 48)]
        pool = build_episodes(full, pool_layout, task, cfg["noise"],
                              torch.Generator().manual_seed(2))
        val = build_episodes(full, val_layout, task, cfg["noise"],
                             torch.Generator().manual_seed(3))

        stem = f"{name}-{task.replace(' ', '_')}"
        peer_file = args.cache / f"{stem}-peers-v3.json" if args.cache else None
        peers: list[Peer] | None = None
        val_bases: dict[str, torch.Tensor] = {}
        if peer_file is not None and peer_file.exists():
            saved_rows = json.loads(peer_file.read_text())
            peer_rows, choice = saved_rows["rows"], saved_rows["choice"]
            log(f"{name} {task}: peer scores from the cache {peer_file}")
        else:
            peers = peers_for(name, task, split, cfg, noisy_train, cache)
            peer_rows = []
            for peer in peers:
                t1 = time.time()
                pred = predict_peer(peer, ep, task, layout, full, n_train)
                peer_rows.append({"dataset": name, "task": task, "method": peer.name,
                                  "kind": "peer", "params": "–", "points": points,
                                  "episodes": len(layout), **scores(pred, ep),
                                  "seconds": round(time.time() - t1, 1)})
                log(peer_rows[-1])
            if kind(task) == "impute":
                pred = linear_interpolation(ep["inputs"], ep["observed"])
                peer_rows.append({"dataset": name, "task": task,
                                  "method": "linear interpolation", "kind": "peer",
                                  "params": "–", "points": points, "episodes": len(layout),
                                  **scores(pred, ep), "seconds": 0.0})
            # the hybrid's base: the candidate with the lowest MSE on the validation episodes
            # (last 20 % of the training span; never the test span)
            choice = {}
            for peer in base_candidates(peers):
                t1 = time.time()
                val_bases[peer.name] = predict_peer(peer, val, task, val_layout, full, n_train,
                                                    fitted=True)
                choice[peer.name] = scores(val_bases[peer.name], val)["mse"]
                log(f"{name} {task}: validation MSE of {peer.name}: {choice[peer.name]:.5g} "
                    f"({time.time() - t1:.0f} s)")
            base_name = min(choice, key=choice.get)
            choice = {"base": base_name, "validation_mse": choice}
            for row in peer_rows:
                row["hybrid_base"] = row["method"] == base_name
                if row["method"] in choice["validation_mse"]:
                    row["validation_mse"] = choice["validation_mse"][row["method"]]
            if peer_file is not None:
                peer_file.parent.mkdir(parents=True, exist_ok=True)
                peer_file.write_text(json.dumps({"rows": peer_rows, "choice": choice}))
        base_name = choice["base"]
        slug = "".join(c if c.isalnum() else "_" for c in base_name)
        base_file = args.cache / f"{stem}-bases-v2-{slug}-{len(pool_layout)}-{len(val_layout)}.pt" \
            if args.cache else None
        if base_file is not None and base_file.exists():
            saved = torch.load(base_file, weights_only=True)
            ep["base"], pool["base"], val["base"] = saved["ep"], saved["pool"], saved["val"]
        else:
            if peers is None:
                peers = peers_for(name, task, split, cfg, noisy_train, cache)
            base_peer = next(peer for peer in peers if peer.name == base_name)
            t1 = time.time()
            for batch, lay in ((ep, layout), (pool, pool_layout), (val, val_layout)):
                batch["base"] = val_bases[base_name] if batch is val and val_bases else \
                    predict_peer(base_peer, batch, task, lay, full, n_train, fitted=True)
            log(f"{name} {task}: bases ({base_name}) in {time.time() - t1:.0f} s")
            if base_file is not None:
                torch.save({"ep": ep["base"], "pool": pool["base"], "val": val["base"]},
                           base_file)
        log(f"{name} {task}: {len(layout)} test episodes, {points} points; pool "
            f"{len(pool_layout)}, validation {len(val_layout)} episodes; base {base_name} "
            f"(validation MSE {choice['validation_mse']})")
        rows.extend(peer_rows)

        fill, steps = args.fill_from_base, args.steps or cfg.get("steps", 150)
        n3_params = count_parameters(build_model(cfg, args.width, True, 0, task, fill))
        plain_width = matching_width(
            n3_params, lambda w, t=task, f=fill: build_model(cfg, w, False, 0, t, f),
            range(args.width, 4 * args.width))
        per_episode: dict[bool, np.ndarray] = {}
        variants = (("with N³", args.width, True), ("without N³", plain_width, False))
        for label, width, use_n3 in variants:
            params = count_parameters(build_model(cfg, width, use_n3, 0, task, fill))
            per_seed, preds, train_s = [], [], []
            for seed in args.seeds:
                model = build_model(cfg, width, use_n3, seed, task, fill)
                t1 = time.time()
                fit_on_episodes(model, pool, steps=steps, batch=args.batch, lr=args.lr,
                                seed=seed, validation=val, eval_every=args.eval_every)
                train_s.append(time.time() - t1)
                with torch.no_grad():
                    pred, quant = model.predict(ep["inputs"], ep["observed"], ep["mask"],
                                                ep["base"])
                    if quant is not None:  # conformalised on the validation episodes
                        quant = conformalise(quant, model.predict(
                            val["inputs"], val["observed"], val["mask"], val["base"])[1], val)
                per_seed.append(scores(pred, ep))
                if quant is not None:
                    per_seed[-1]["coverage"] = coverage(quant, ep)
                preds.append((pred, quant))
            mses = np.array([s["mse"] for s in per_seed])
            maes = np.array([s["mae"] for s in per_seed])
            row = {"dataset": name, "task": task, "method": f"hybrid {label}", "kind": "ours",
                   "base": base_name,
                   "params": params, "points": points, "episodes": len(layout),
                   "mse": float(mses.mean()), "mse_sd": float(mses.std(ddof=1)),
                   "mae": float(maes.mean()), "mae_sd": float(maes.std(ddof=1)),
                   "seeds": len(args.seeds), "mse_per_seed": [float(f"{m:.5g}") for m in mses],
                   "steps": steps, "seconds": round(float(np.mean(train_s)), 1)}
            if "coverage" in per_seed[0]:
                row["coverage_80"] = float(np.mean([s["coverage"] for s in per_seed]))
            # per-episode MSE, averaged over the seeds (for the paired comparison)
            per_episode[use_n3] = np.mean([episode_mse(p, ep) for p, _ in preds], axis=0)
            if not use_n3:
                diff = per_episode[True] - per_episode[False]
                n3_row = next(r for r in rows if r["dataset"] == name and r["task"] == task
                              and r["method"] == "hybrid with N³")
                n3_row.update(paired_wins=int((diff < 0).sum()), paired_episodes=len(diff),
                              paired_diff=float(diff.mean()),
                              paired_se=float(diff.std(ddof=1) / np.sqrt(len(diff))))
            rows.append(row)
            ensemble = torch.stack([p for p, _ in preds]).mean(0)
            rows.append({**{k: row[k] for k in ("dataset", "task", "kind", "params",
                                                 "points", "episodes")},
                         "method": f"hybrid {label}, {len(args.seeds)}-seed ensemble",
                         **scores(ensemble, ep), "seconds": row["seconds"]})
            log(row)
            if name == "taylor" and task == "forecast (week)" and use_n3:
                figure.update(ep=ep, pred=preds[0][0], quant=preds[0][1], layout=layout,
                              base=base_name)
        figure.setdefault("peers", {})[(name, task)] = None
        log(f"{name} {task}: done in {time.time() - t0:.0f} s")


def mark_best(rows: list[dict]) -> None:
    """Adds ``best_peer`` (its name and MSE) and ``beats_peers`` / ``beats_plain`` flags."""
    for key in {(r["dataset"], r["task"]) for r in rows}:
        group = [r for r in rows if (r["dataset"], r["task"]) == key]
        best = min((r for r in group if r["kind"] == "peer"), key=lambda r: r["mse"])
        for r in group:
            r["best_peer"], r["best_peer_mse"] = best["method"], best["mse"]
            if r["kind"] == "ours":
                plain = next(p for p in group if p["method"] == r["method"].replace(
                    "with N³", "without N³"))
                r["beats_peers"] = r["mse"] < best["mse"]
                r["beats_plain"] = r["mse"] < plain["mse"]


def add_cells(rows: list[dict]) -> None:
    """Text cells for the docs tables (mean ± sd over seeds where there are seeds)."""
    for r in rows:
        for key in ("mse", "mae"):
            r[f"{key}_cell"] = f"{r[key]:.4g}" + (f" ± {r[key + '_sd']:.2g}"
                                                  if f"{key}_sd" in r else "")
        r["coverage_cell"] = f"{100 * r['coverage_80']:.0f} %" if "coverage_80" in r else "–"
        r["validation_cell"] = (f"{r['validation_mse']:.4g}" + (" (base)" if r.get("hybrid_base")
                                                                 else "")
                                if "validation_mse" in r else "–")
        r["seeds_cell"] = str(r.get("seeds", "–"))


def summary(rows: list[dict]) -> list[dict]:
    """One row per dataset × task: ours with/without N³ (mean ± sd, ensemble) vs the best peer."""
    out = []
    keys = list(dict.fromkeys((r["dataset"], r["task"]) for r in rows))
    for key in keys:
        group = {r["method"]: r for r in rows if (r["dataset"], r["task"]) == key}
        with_n3, plain = group["hybrid with N³"], group["hybrid without N³"]
        ens = [m for m in group if m.startswith("hybrid with N³,")]
        ens_plain = [m for m in group if m.startswith("hybrid without N³,")]
        peer_mse, plain_mse = with_n3["best_peer_mse"], plain["mse"]
        verdict = [
            "beats the best peer" if with_n3["beats_peers"] else
            "**equals the best peer**" if abs(with_n3["mse"] - peer_mse) <= 1e-9 * peer_mse
            else "**loses to the best peer**",
            "beats the model without N³" if with_n3["beats_plain"] else
            "**equals the model without N³**" if abs(with_n3["mse"] - plain_mse) <= 1e-9 *
            plain_mse else "**worse than without N³**"]
        out.append({"dataset": key[0], "task": key[1], "points": with_n3["points"],
                    "episodes": with_n3["episodes"], "base": with_n3["base"],
                    "with_n3": with_n3["mse_cell"], "without_n3": plain["mse_cell"],
                    "ensemble_with_n3": f"{group[ens[0]]['mse']:.4g}",
                    "ensemble_without_n3": f"{group[ens_plain[0]]['mse']:.4g}",
                    "best_peer": with_n3["best_peer"],
                    "best_peer_mse": f"{with_n3['best_peer_mse']:.4g}",
                    "seeds": with_n3["seeds"],
                    "paired": f"{with_n3['paired_wins']} of {with_n3['paired_episodes']}",
                    "paired_diff": f"{with_n3['paired_diff']:+.2g} ± {with_n3['paired_se']:.2g}",
                    "verdict": "; ".join(verdict)})
    return out


def write_table(rows: list[dict], path: Path) -> None:
    lines = ["| dataset | task | method | params | points | MSE | MAE |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        mse = f"{r['mse']:.4f}" + (f" ± {r['mse_sd']:.4f}" if "mse_sd" in r else "")
        mae = f"{r['mae']:.4f}" + (f" ± {r['mae_sd']:.4f}" if "mae_sd" in r else "")
        lines.append(f"| {r['dataset']} | {r['task']} | {r['method']} | {r['params']} | "
                     f"{r['points']} | {mse} | {mae} |")
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))


def plot(figure: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep, pred, quant, layout = figure["ep"], figure["pred"], figure["quant"], figure["layout"]
    i = len(layout) // 2
    a, _, o, e = layout[i]
    show = np.arange(o - a - 336, e - a)
    fig, ax = plt.subplots(figsize=(11, 3.4))
    t = show / 48
    ax.plot(t, ep["target"][i, show, 0], color="k", lw=1, label="truth")
    hidden = np.arange(o - a, e - a)
    ax.fill_between(hidden / 48, quant[i, hidden, 0, 0], quant[i, hidden, 0, -1], color="C3",
                    alpha=0.25, label="80 % interval (conformalised quantiles)")
    ax.plot(hidden / 48, pred[i, hidden, 0], color="C3", lw=1.3, label="hybrid with N³")
    ax.plot(hidden / 48, ep["base"][i, hidden, 0], color="C2", lw=1, ls="--",
            label=f"{figure['base']} (its base)")
    ax.axvline((o - a) / 48, color="0.5", lw=0.8)
    ax.set_xlabel("day in episode")
    ax.set_ylabel("standardised demand")
    ax.set_title("taylor: a week-ahead forecast with its 80 % interval")
    ax.legend(fontsize=8, loc="upper left", ncol=4)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80), suffix=".png")


def resummarise(path: Path) -> None:
    """Recomputes the derived fields (flags, cells, summary) of a results JSON in place; the
    measured rows are kept as they are."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    rows = payload["rows"]
    mark_best(rows)
    add_cells(rows)
    write_results_json(path, rows, payload["meta"], summary=summary(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/timeseries"))
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: the dataset's, 150 unless configured)")
    parser.add_argument("--fill-from-base", action="store_true",
                        help="fill the unobserved steps with the base instead of zeros (the "
                             "hybrid's fill_from_base=True)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=25,
                        help="steps between validation checks (early stopping)")
    parser.add_argument("--datasets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--tasks", nargs="*", default=[],
                        choices=["forecast", "impute", "denoise"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the results JSON (default: OUT/results.json)")
    parser.add_argument("--figure", type=Path, default=None,
                        help="where to write the figure (default: OUT/timeseries.png)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="reuse the peers' scores and the hybrid bases stored here by an "
                             "earlier run (for iterating on the network; delete it when the "
                             "peers or episodes change)")
    parser.add_argument("--resummarise", type=Path, nargs="+", default=None, metavar="JSON",
                        help="only recompute the derived fields of these results files")
    args = parser.parse_args()
    if args.resummarise:
        for path in args.resummarise:
            resummarise(path)
        return
    if len(args.seeds) < 2:
        parser.error("--seeds needs at least two seeds (the spread is reported)")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    figure: dict = {}
    started = time.time()
    for name in args.datasets:
        run_dataset(name, args, rows, figure)
    mark_best(rows)
    add_cells(rows)
    meta = run_metadata(time.time() - started, sys.argv)
    meta.update(steps=args.steps or {d: CONFIGS[d].get("steps", 150) for d in args.datasets},
                batch=args.batch, lr=args.lr, width=args.width, seeds=args.seeds,
                fill_from_base=args.fill_from_base)
    write_results_json(args.json or args.out / "results.json", rows, meta,
                       summary=summary(rows))
    write_table(rows, args.out / "table.md")
    if "ep" in figure:
        plot(figure, args.figure or args.out / "timeseries.png")
    log(f"done in {time.time() - started:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
