"""Speech denoising experiment: N³ vs an equal-parameter local layer vs a Wiener filter.

Needs a corpus made by ``scripts/make_speech_corpus.py`` (espeak-ng speech + white, pink and
babble noise at 0–10 dB SNR). Both networks are the same :class:`SpectralDenoiser`; only the
non-local layer differs (N³ over ±radius frames, or a local conv mixer with the same parameter
count). They see identical batches (same seed) for the same number of steps. The Wiener
filter's settings are chosen on training mixtures (grid search), never on the test set.

Usage (each stage can run on its own, so the two trainings can run in parallel):

    python examples/audio_denoising.py CORPUS RESULTS                 # everything
    python examples/audio_denoising.py CORPUS RESULTS --stage train --variant n3
    python examples/audio_denoising.py CORPUS RESULTS --stage train --variant local
    python examples/audio_denoising.py CORPUS RESULTS --stage evaluate
    ... --export-weights n3seq/audio/weights/speech16k_n3.safetensors  # ship the N³ model

RESULTS gets ``{n3,local}.safetensors``, ``{n3,local}_log.json``, ``results.json`` (the
table's rows as text under ``rows``, the numbers behind them, the commit and machine under
``meta``), ``table.md`` (mean SI-SDR improvement per noise type) and ``spectrograms.png``.
Results go to stdout, training progress bars to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from n3seq._files import atomic_write
from n3seq._provenance import run_metadata, write_results_json
from n3seq.audio import (
    NOISE_TYPES,
    DenoiserConfig,
    SpectralDenoiser,
    count_parameters,
    load_denoiser,
    mixture_batch,
    read_audio,
    save_denoiser,
    si_sdr,
    train_denoiser,
    wiener_filter,
)

VARIANTS = ("n3", "local")
#: Extra variant: N³ searching all frames of the signal (radius=None) instead of ±16 frames.
EXTRA_VARIANTS = ("n3-global",)


def load_pool(corpus: Path, name: str) -> list[torch.Tensor]:
    manifest = json.loads((corpus / "manifest.json").read_text())
    return [read_audio(corpus / item["file"])[0][0] for item in manifest[name]]


def load_test(corpus: Path) -> list[dict]:
    manifest = json.loads((corpus / "manifest.json").read_text())
    items = []
    for item in manifest["test"]:
        clean = read_audio(corpus / f"{item['file']}_clean.wav")[0][0]
        noisy = read_audio(corpus / f"{item['file']}_noisy.wav")[0][0]
        items.append({**item, "clean": clean, "noisy": noisy})
    return items


def train_stage(args: argparse.Namespace, variant: str) -> None:
    torch.manual_seed(args.seed)
    train, babble = load_pool(args.corpus, "train"), load_pool(args.corpus, "babble")
    if variant == "n3-global":
        config = DenoiserConfig(nonlocal_kind="n3", radius=None)
    else:
        config = DenoiserConfig(nonlocal_kind=variant)
    model = SpectralDenoiser(config)
    length = int(args.segment * config.sample_rate)

    def batch_fn(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        # The same batch for both variants: the generator is seeded by the step.
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        return mixture_batch(train, args.batch, length, babble, generator=gen)

    start = time.monotonic()
    log = train_denoiser(model, batch_fn, args.steps, lr=args.lr,
                         max_seconds=args.max_minutes * 60)
    minutes = (time.monotonic() - start) / 60
    info = {"variant": variant, "steps_done": log[-1]["step"], "steps_planned": args.steps,
            "batch": args.batch, "segment_s": args.segment, "lr": args.lr,
            "threads": torch.get_num_threads(), "train_minutes": round(minutes, 2),
            "parameters": count_parameters(model), "train_utterances": len(train),
            "final_loss": log[-1]["loss"]}
    args.results.mkdir(parents=True, exist_ok=True)
    save_denoiser(model, args.results / f"{variant}.safetensors", info)
    (args.results / f"{variant}_log.json").write_text(json.dumps({**info, "log": log}, indent=1))
    print(json.dumps(info))


def tune_wiener(args: argparse.Namespace) -> dict:
    """Grid search of the Wiener settings on training mixtures (not the test set)."""
    train, babble = load_pool(args.corpus, "train"), load_pool(args.corpus, "babble")
    gen = torch.Generator().manual_seed(12345)
    noisy, clean = mixture_batch(train, args.wiener_mixtures, 3 * 16000, babble, generator=gen)
    best, best_score = {}, -float("inf")
    grid = itertools.product([0.1, 0.2, 0.3, 0.5], [0.8, 0.9, 0.95, 0.98], [0.01, 0.03, 0.1, 0.3])
    for quantile, alpha, floor in grid:
        kw = {"quantile": quantile, "alpha": alpha, "gain_floor": floor}
        score = float(si_sdr(wiener_filter(noisy, **kw), clean).mean())
        if score > best_score:
            best, best_score = kw, score
    print(f"wiener settings {best} (train-mixture SI-SDR {best_score:.2f} dB)")
    return best


def evaluate_stage(args: argparse.Namespace) -> None:
    started, meta = time.monotonic(), run_metadata()  # at the start: the code this run loaded
    test = load_test(args.corpus)
    found = [v for v in VARIANTS + EXTRA_VARIANTS if (args.results / f"{v}.safetensors").is_file()]
    models = {v: load_denoiser(args.results / f"{v}.safetensors") for v in found}
    wiener_kw = tune_wiener(args)
    methods = {"Wiener filter": lambda x: wiener_filter(x, **wiener_kw)}
    methods |= {f"local ({count_parameters(models['local'])} params)": models["local"],
                f"N³ ({count_parameters(models['n3'])} params)": models["n3"]}
    if "n3-global" in models:
        methods[f"N³ global ({count_parameters(models['n3-global'])} params)"] = models["n3-global"]
    rows: dict[str, dict[str, list[float]]] = {m: {n: [] for n in NOISE_TYPES} for m in methods}
    inputs: dict[str, list[float]] = {n: [] for n in NOISE_TYPES}
    outputs: dict[str, dict] = {}
    with torch.inference_mode():
        for i, item in enumerate(test):
            noisy, clean = item["noisy"][None], item["clean"][None]
            base = float(si_sdr(noisy, clean))
            inputs[item["noise"]].append(base)
            for name, fn in methods.items():
                est = fn(noisy)
                rows[name][item["noise"]].append(float(si_sdr(est, clean)) - base)
                if i == args.figure_item:
                    outputs[name] = est[0]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    table = ["| method | " + " | ".join(NOISE_TYPES) + " | all |",
             "|---" * (len(NOISE_TYPES) + 2) + "|",
             "| input SI-SDR (dB) | " + " | ".join(f"{mean(inputs[n]):.2f}" for n in NOISE_TYPES)
             + f" | {mean(list(itertools.chain(*inputs.values()))):.2f} |"]
    summary = {"input_si_sdr": {n: mean(inputs[n]) for n in NOISE_TYPES}, "si_sdr_i": {},
               "wiener_settings": wiener_kw, "test_items": len(test)}
    for name, per in rows.items():
        allv = list(itertools.chain(*per.values()))
        summary["si_sdr_i"][name] = {**{n: mean(per[n]) for n in NOISE_TYPES}, "all": mean(allv)}
        table.append(f"| {name} SI-SDRi (dB) | "
                     + " | ".join(f"{mean(per[n]):.2f}" for n in NOISE_TYPES)
                     + f" | {mean(allv):.2f} |")
    # Paired differences to the local model on the same test items (mean ± standard error).
    local_name = next(name for name in rows if name.startswith("local"))
    summary["paired_vs_local"] = {}
    for name, per in rows.items():
        if not name.startswith("N³"):
            continue
        cells, stats = [], {}
        for n in [*NOISE_TYPES, "all"]:
            a = per[n] if n != "all" else list(itertools.chain(*per.values()))
            b = (rows[local_name][n] if n != "all"
                 else list(itertools.chain(*rows[local_name].values())))
            d = torch.tensor(a) - torch.tensor(b)
            se = float(d.std() / len(d) ** 0.5) if len(d) > 1 else None  # None: one item
            stats[n] = {"mean": float(d.mean()), "se": se}
            cells.append(f"{float(d.mean()):+.2f}" + (f" ± {se:.2f}" if se is not None else ""))
        summary["paired_vs_local"][name] = stats
        table.append(f"| {name.split(' (')[0]} − local, paired (dB ± s.e.) | "
                     + " | ".join(cells) + " |")
    summary["per_item_si_sdr_i"] = rows
    for v in found:
        summary[f"{v}_training"] = json.loads((args.results / f"{v}_log.json").read_text())
        summary[f"{v}_training"].pop("log")
    # ``rows`` holds the table's cells as text, for scripts/render_docs_tables.py.
    table_rows = [dict(zip(["method", *NOISE_TYPES, "all"],
                           [c.strip() for c in line.strip("|").split(" | ")]))
                  for line in table[2:]]
    write_results_json(args.results / "results.json", table_rows,
                       {**meta, "wall_s": round(time.monotonic() - started, 1)}, **summary)
    atomic_write(args.results / "table.md", lambda tmp: tmp.write_text("\n".join(table) + "\n"))
    print("\n".join(table))
    item = test[args.figure_item]
    plot_spectrograms(args.results / "spectrograms.png", item, outputs)
    if args.export_weights:
        shutil.copyfile(args.results / "n3.safetensors", args.export_weights)
        log = json.loads((args.results / "n3_log.json").read_text())
        log["test_si_sdr_i"] = summary["si_sdr_i"]
        args.export_weights.with_suffix(".json").write_text(json.dumps(log, indent=1))
        print(f"exported {args.export_weights}")


def plot_spectrograms(path: Path, item: dict, outputs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {f"noisy ({item['noise']}, {item['snr_db']:.1f} dB SNR)": item["noisy"],
              "clean": item["clean"], **outputs}
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.6 * len(panels)), sharex=True)
    window = torch.hann_window(512)
    for ax, (title, wave) in zip(axes, panels.items()):
        spec = torch.stft(wave.float(), 512, 128, window=window, return_complex=True)
        db = 10 * torch.log10(spec.abs().square() + 1e-10)
        top = float(db.max())
        ax.imshow(db.numpy(), origin="lower", aspect="auto", vmin=top - 80, vmax=top,
                  extent=(0, wave.shape[-1] / 16000, 0, 8), cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    try:  # a 128-colour palette keeps the PNG small enough for the docs
        from PIL import Image

        Image.open(path).convert("RGB").quantize(128).save(path, optimize=True)
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="folder made by make_speech_corpus.py")
    parser.add_argument("results", type=Path, help="results folder (created)")
    parser.add_argument("--stage", choices=("all", "train", "evaluate"), default="all")
    parser.add_argument("--variant", choices=VARIANTS + EXTRA_VARIANTS, default=None,
                        help="with --stage train: train only this variant")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--segment", type=float, default=1.5, help="seconds per example")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-minutes", type=float, default=20.0,
                        help="wall-time cap per model (the log records where it stopped)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure-item", type=int, default=0)
    parser.add_argument("--wiener-mixtures", type=int, default=60,
                        help="training mixtures (3 s) for the Wiener filter's grid search")
    parser.add_argument("--export-weights", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.corpus / "manifest.json").is_file():
        print(f"error: {args.corpus}/manifest.json not found; run "
              f"scripts/make_speech_corpus.py first", file=sys.stderr)
        return 1
    if args.stage in ("all", "train"):
        for variant in [args.variant] if args.variant else VARIANTS:
            train_stage(args, variant)
    if args.stage in ("all", "evaluate"):
        evaluate_stage(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
