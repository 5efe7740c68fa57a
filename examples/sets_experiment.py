"""Correspondence classification with and without N³ (the third experiment of Plötz & Roth).

Both networks are :class:`~n3seq.sets.CorrespondenceNet`: the same per-point MLP with context
normalisation, trained with the same budget (steps, batch, learning rate, data stream, seed).
One has an N³ block over the whole set; the other has a dense residual layer in its place
and a token width raised until the parameter counts match. Data: random homographies,
50–90 % outliers, 1 px noise, 50–120 correspondences per set (padded batches).

Writes ``results.json`` (rows per seed, method and outlier bin; mean ± sd over seeds; the
commit and machine), ``table.md`` and ``sets.png`` to ``--out``. Results go to stdout,
progress bars and per-network timings to stderr. The tables of docs/sets.md are rendered
from a copy of ``results.json`` in docs/results/ (``scripts/render_docs_tables.py``).

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python examples/sets_experiment.py --out results/sets
    OMP_NUM_THREADS=1 nice -n 10 python examples/sets_experiment.py --seed 0 1 2 --out results/sets
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from n3seq._files import atomic_write
from n3seq._provenance import run_metadata, write_results_json
from n3seq.sets import (
    CorrespondenceNet,
    count_parameters,
    fit_correspondence_net,
    make_correspondences,
    matching_width,
    mean_average_precision,
    precision_recall_f1,
)

# Outlier-fraction bins; the realised fraction can fall slightly outside 50–90 % because the
# inlier count is rounded, so the outer bins are open-ended.
BINS = (("all", 0.0, 1.0), ("50–70 %", 0.0, 0.7), ("70–80 %", 0.7, 0.8), ("80–90 %", 0.8, 1.0))


def build(width: int, use_n3: bool, k: int, seed: int) -> CorrespondenceNet:
    torch.manual_seed(seed)
    return CorrespondenceNet(width=width, depth=2, k=k, use_n3=use_n3)


def evaluate(logits: torch.Tensor, data: dict, select: torch.Tensor | None = None) -> dict:
    if select is None:
        select = torch.ones(len(logits), dtype=torch.bool)
    lo, lab, mask = logits[select], data["labels"][select], data["mask"][select]
    return {**precision_recall_f1(lo, lab, mask), "mAP": mean_average_precision(lo, lab, mask),
            "sets": int(select.sum())}


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and sample standard deviation over seeds, per method and outlier bin."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["outliers"]), []).append(r)
    summary = []
    for (method, outliers), group in groups.items():
        entry = {"method": method, "outliers": outliers, "seeds": len(group),
                 "params": group[0]["params"], "sets": group[0]["sets"]}
        for key in ("precision", "recall", "f1", "mAP"):
            values = torch.tensor([g[key] for g in group], dtype=torch.float64)
            entry[f"{key}_mean"] = float(values.mean())
            entry[f"{key}_sd"] = float(values.std()) if len(group) > 1 else 0.0
        summary.append(entry)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/sets"),
                        help="folder for results.json, table.md and sets.png")
    parser.add_argument("--steps", type=int, default=500, help="training steps per network")
    parser.add_argument("--batch", type=int, default=16, help="sets per training step")
    parser.add_argument("--width", type=int, default=48, help="token width of the N³ network")
    parser.add_argument("--k", type=int, default=6, help="neighbours of the N³ block")
    parser.add_argument("--test-sets", type=int, default=240, help="fixed test sets")
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="one or more seeds (initialisation and training data stream); "
                             "with several, results.json also holds mean ± sd over them")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-plot", action="store_true", help="skip sets.png (no matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    meta = run_metadata()  # at the start: the code this run loaded
    data_kwargs = {"min_points": 50, "max_points": 120, "outlier_ratio": (0.5, 0.9),
                   "noise_px": 1.0}
    test = make_correspondences(args.test_sets, generator=torch.Generator().manual_seed(123),
                                **data_kwargs)
    n3_params = count_parameters(build(args.width, True, args.k, 0))
    plain_width = matching_width(n3_params, lambda w: build(w, False, args.k, 0))
    rows, first_logits = [], {}
    for seed in args.seed:
        for label, width, use_n3 in (("with N³", args.width, True),
                                     ("without N³", plain_width, False)):
            model = build(width, use_n3, args.k, seed)
            t0 = time.time()
            losses = fit_correspondence_net(model, steps=args.steps, batch=args.batch, lr=2e-3,
                                            seed=seed, progress=not args.no_progress,
                                            **data_kwargs)
            train_s = time.time() - t0
            with torch.no_grad():
                logits = model(test["x"], test["mask"])
            if seed == args.seed[0]:
                first_logits[label] = logits
            ratio = test["outlier_ratio"]
            for name, lo, hi in BINS:
                select = (ratio >= lo) & (ratio < hi)
                if not select.any():  # tiny test sets can leave a bin empty
                    continue
                rows.append({"method": label, "seed": seed, "width": width,
                             "params": count_parameters(model), "outliers": name,
                             **evaluate(logits, test, select), "train_s": round(train_s, 1),
                             "final_train_loss": sum(losses[-20:]) / len(losses[-20:])})
            print(f"seed {seed}, {label}: trained in {train_s:.0f} s", file=sys.stderr)
    elapsed = time.time() - started
    settings = {"steps": args.steps, "batch": args.batch, "width": args.width, "k": args.k,
                "test_sets": args.test_sets, "seeds": args.seed, "threads": args.threads}
    meta["wall_s"] = round(elapsed, 1)
    write_results_json(args.out / "results.json", rows, meta,
                       summary=summarise(rows), settings=settings)
    table = markdown_table(rows)
    atomic_write(args.out / "table.md", lambda tmp: tmp.write_text(table + "\n"))
    if not args.no_plot:
        plot(test, first_logits, args.out / "sets.png")
    print(table)
    print(f"done in {elapsed:.0f} s -> {args.out}")


def markdown_table(rows: list[dict]) -> str:
    """The per-seed results as a markdown table (the docs render theirs from results.json)."""
    lines = ["| method | seed | params | outliers | sets | precision | recall | F1 | mAP |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['seed']} | {r['params']} | {r['outliers']} | "
                     f"{r['sets']} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['f1']:.3f} | {r['mAP']:.3f} |")
    return "\n".join(lines)


def plot(test: dict, logits: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratio = test["outlier_ratio"]
    b = int(torch.argmin((ratio - 0.8).abs()))  # a set with about 80 % outliers
    mask, labels = test["mask"][b], test["labels"][b]
    pix = test["pixels"][b][mask]
    labels = labels[mask]
    # Each correspondence is drawn as the segment from its point in image 1 (dot) to its
    # point in image 2, in one frame: inliers form the smooth flow field of the homography.
    fig, axes = plt.subplots(1, len(logits), figsize=(5 * len(logits), 4.2))
    for ax, (name, lo) in zip(axes, logits.items()):
        pred = lo[b][mask] > 0
        ax.add_patch(plt.Rectangle((0, 0), 640, 480, fill=False, color="0.5", lw=0.8))
        kinds = (("true negative", ~pred & ~labels, "0.85", 0.4),
                 ("false negative", ~pred & labels, "orange", 1.0),
                 ("false positive", pred & ~labels, "red", 1.0),
                 ("true positive", pred & labels, "green", 1.0))
        for kind, sel, colour, alpha in kinds:
            p = pix[sel]
            for i in range(len(p)):
                ax.plot([p[i, 0], p[i, 2]], [p[i, 1], p[i, 3]], color=colour, lw=0.7,
                        alpha=alpha, label=kind if i == 0 else None)
            ax.scatter(p[:, 0], p[:, 1], s=4, color=colour, alpha=alpha)
        tp, fp = int((pred & labels).sum()), int((pred & ~labels).sum())
        fn = int((~pred & labels).sum())
        ax.set_title(f"{name}: TP {tp}, FP {fp}, FN {fn} ({len(labels)} matches, "
                     f"{int(labels.sum())} inliers)", fontsize=9)
        ax.set_xlim(-60, 700)
        ax.set_ylim(540, -60)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.legend(fontsize=7, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80), suffix=".png")


if __name__ == "__main__":
    main()
