"""Run the benchmark suites, print a table, write JSON (and plots).

Usage::

    python -m benchmarks.run                       # every suite, default sizes (make bench)
    python -m benchmarks.run --quick               # small sizes, a few minutes
    python -m benchmarks.run --suites sets --sizes 1024,4096 --repeats 5

Suites: ``sets`` (global knn_aggregate vs hard kNN and a naive full-matrix relaxation),
``windows`` (1-D windows), ``image`` (N3Net inference vs the same convolutions without N³),
``train`` (N3Net vs DnCNN-17 training step), ``cuda`` (the sets suite on a GPU with fp16/bf16
autocast; skipped without CUDA), ``denoise`` (the shipped σ = 25 N3Net through
``n3seq-image denoise``'s code path on a noisy photo mosaic at precision float32, auto and
bfloat16, with PSNR and seconds per megapixel). Times are medians; ratios are to the baseline
of the same group, measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.cases import CASES, ScoredCall
from benchmarks.measure import interleaved_times, median_time, peak_memory
from n3seq._files import atomic_write
from n3seq._provenance import run_metadata

SUITES = ("sets", "windows", "image", "train", "cuda", "denoise")
#: Precisions of the denoise comparison groups; the first is the baseline.
DENOISE_PRECISIONS = ("float32", "auto", "bfloat16")


@dataclass
class Job:
    """One measured call: ``CASES[case](**params)``; ``group`` shares one baseline."""

    suite: str
    label: str
    case: str
    params: dict[str, Any]
    group: str
    size: int
    baseline: bool = False
    memory: bool = True
    result: dict[str, Any] = field(default_factory=dict)


def _sets_jobs(sizes: list[int], suite: str = "sets", device: str = "cpu",
               autocasts: tuple[str | None, ...] = (None,), full: bool = False) -> list[Job]:
    jobs = []
    for n in sizes:
        group = f"{suite} N={n}"
        base = {"n": n, "device": device}
        jobs.append(Job(suite, "hard kNN", "sets_hard", base, group, n, baseline=True))
        if device == "cpu" and n <= 16384:
            jobs.append(Job(suite, "floor: distance + k weighted-sum matmuls only",
                            "sets_floor", base, group, n))
            jobs.append(Job(suite, "floor: the matmuls + one exp per candidate and round",
                            "sets_floor", {**base, "exps": True}, group, n))
        for ac in autocasts:
            tag = f" {ac}" if ac else ""
            extra = {"autocast": ac} if ac else {}
            if n <= 16384 or full or device != "cpu":
                jobs.append(Job(suite, f"n3 forward{tag}", "sets_n3", {**base, **extra}, group,
                                n))
            if n <= 16384:
                jobs.append(Job(suite, f"n3 forward+backward{tag}", "sets_n3",
                                {**base, **extra, "grad": True}, group, n))
        if device == "cpu":
            # k full N×N matrices: 4 GiB at N = 8192 forward, several times that with grad.
            if n <= 4096:
                jobs.append(Job(suite, "naive forward", "sets_naive", base, group, n))
                jobs.append(Job(suite, "naive forward+backward", "sets_naive",
                                {**base, "grad": True}, group, n))
            jobs.append(Job(suite, "approx L=32 forward", "sets_approx", base, group, n))
            jobs.append(Job(suite, "approx L=32 forward+backward", "sets_approx",
                            {**base, "grad": True}, group, n))
            if importlib.util.find_spec("faiss") is not None:
                jobs.append(Job(suite, "approx L=32 forward, FAISS pre-selection",
                                "sets_approx", {**base, "backend": "faiss"}, group, n))
    return jobs


def _denoise_jobs(args: argparse.Namespace) -> list[Job]:
    """The ``denoise`` suite: per ``--denoise-sizes`` a group float32 (baseline) / auto /
    bfloat16; per ``--denoise-auto-sizes`` a group of the default (auto) alone, with float32
    beside it as baseline under ``--denoise-baseline``."""
    jobs = []
    labels = {"float32": "precision float32", "auto": "precision auto (default)",
              "bfloat16": "precision bfloat16"}
    compared = set(args.denoise_sizes)
    sizes = [(size, DENOISE_PRECISIONS) for size in args.denoise_sizes]
    sizes += [(size, ("float32", "auto") if args.denoise_baseline else ("auto",))
              for size in args.denoise_auto_sizes if size not in compared]
    for (h, w), precisions in sizes:
        group = f"denoise {h}x{w}"
        for precision in precisions:
            jobs.append(Job("denoise", labels[precision], "denoise_image",
                            {"height": h, "width": w, "precision": precision}, group, h * w,
                            baseline=precision == "float32"))
    return jobs


def build_jobs(args: argparse.Namespace) -> tuple[list[Job], dict[str, str]]:
    jobs: list[Job] = []
    skipped: dict[str, str] = {}
    suites = args.suites
    if "sets" in suites:
        jobs += _sets_jobs(args.sizes, full=args.full)
    if "windows" in suites:
        for n in args.window_sizes:
            group = f"windows N={n}"
            p = {"n": n, "radius": args.radius}
            jobs += [Job("windows", "hard kNN", "windows_hard", p, group, n, baseline=True),
                     Job("windows", "n3 forward", "windows_n3", p, group, n),
                     Job("windows", "n3 forward+backward", "windows_n3", {**p, "grad": True},
                         group, n)]
    needs_image = ("image", "train", "denoise")
    if any(s in suites for s in needs_image):
        try:
            import n3seq_image  # noqa: F401
        except ImportError as err:
            for s in needs_image:
                if s in suites:
                    skipped[s] = f"n3seq_image not importable: {err}"
            suites = [s for s in suites if s not in needs_image]
    # Each image / train comparison runs twice: NCHW and channels-last (what the CLI uses on
    # CPU, see n3seq_image.memory_format); baseline and N3Net always share the format.
    formats = (("", False), (" channels-last", True))
    if "image" in suites:
        for (h, w), (suffix, cl) in itertools.product(args.image_sizes, formats):
            group = f"image {h}x{w}{suffix}"
            p = {"height": h, "width": w, "channels_last": cl}
            jobs.append(Job("image", "convolutions only (N3 removed)", "image_n3net",
                            {**p, "without_n3": True}, group, h * w, baseline=True))
            jobs.append(Job("image", "floor: all convolutions incl. N³ embedding/temperature",
                            "image_n3net", {**p, "without_n3": True, "block_cnns": True}, group,
                            h * w))
            jobs.append(Job("image", "N3Net (fast)", "image_n3net", p, group, h * w))
            if h * w <= 256 * 256 and not args.quick and not cl:
                jobs.append(Job("image", "N3Net (reference)", "image_n3net",
                                {**p, "backend": "reference"}, group, h * w))
    if "train" in suites:
        for suffix, cl in formats:
            group = f"train batch {args.train_batch}x80x80{suffix}"
            p = {"batch": args.train_batch, "size": 80, "channels_last": cl}
            jobs.append(Job("train", "DnCNN-17 step", "train_step", {**p, "model": "dncnn"},
                            group, args.train_batch, baseline=True))
            jobs.append(Job("train", "floor: N3Net convolutions incl. N³ CNNs, no matching",
                            "train_step", {**p, "model": "n3net-cnns"}, group,
                            args.train_batch))
            jobs.append(Job("train", "N3Net step", "train_step", {**p, "model": "n3net"},
                            group, args.train_batch))
    if "denoise" in suites:
        jobs += _denoise_jobs(args)
    if "cuda" in suites:
        if torch.cuda.is_available():
            jobs += _sets_jobs(args.sizes, "cuda", "cuda", (None, "float16", "bfloat16"))
        else:
            skipped["cuda"] = "no CUDA device available (torch.cuda.is_available() is False)"
    return jobs, skipped


def run_jobs(jobs: list[Job], args: argparse.Namespace) -> None:
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.group, []).append(job)
    done = 0
    for group, members in groups.items():
        done += len(members)
        print(f"[{done}/{len(jobs)}] {group}: {', '.join(j.label for j in members)} ...",
              file=sys.stderr, flush=True)
        fns = {}
        for i, job in enumerate(members):
            try:
                fns[str(i)] = CASES[job.case](**job.params)
            except (RuntimeError, MemoryError) as err:  # e.g. out of memory
                job.result["error"] = f"{type(err).__name__}: {str(err)[:200]}"
        try:
            if args.interleave:
                timed = interleaved_times(fns, args.repeats, args.budget)
            else:
                timed = {key: median_time(fn, args.repeats, args.budget)
                         for key, fn in fns.items()}
            for key, fn in fns.items():  # e.g. the PSNR of a denoised image, untimed
                if isinstance(fn, ScoredCall):
                    timed[key].update(fn.metrics())
        except (RuntimeError, MemoryError) as err:
            for key in fns:
                members[int(key)].result["error"] = f"{type(err).__name__}: {str(err)[:200]}"
            continue
        finally:
            del fns
        for key, result in timed.items():
            members[int(key)].result.update(result)
        for job in members:
            if job.memory and not args.no_memory and "median_s" in job.result:
                job.result.update(peak_memory(job.case, job.params, args.threads))
    baselines = {j.group: j for j in jobs if j.baseline}
    for job in jobs:
        base = baselines.get(job.group)
        r = job.result
        if base and "median_s" in r and "median_s" in base.result:
            r["ratio"] = r["median_s"] / base.result["median_s"]
        if "median_s" in r and "megapixels" in r:
            r["s_per_mp"] = r["median_s"] / r["megapixels"]
        if base and "psnr_db" in r and "psnr_db" in base.result:
            r["psnr_delta_db"] = r["psnr_db"] - base.result["psnr_db"]


def format_table(jobs: list[Job]) -> str:
    """The printed table; with denoise rows also s/MP, autocast dtype, PSNR and its Δ."""
    quality = any("psnr_db" in j.result for j in jobs)
    head = ("group", "case", "median ms", "ratio", "peak MiB", "call MiB", "n")
    if quality:
        head += ("s/MP", "dtype", "PSNR dB", "Δ dB")
    rows = [head]
    for j in jobs:
        r = j.result
        if "error" in r and "median_s" not in r:
            rows.append((j.group, j.label, "error", "", "", "", r["error"][:40])
                        + ("", "", "", "") * quality)
            continue
        row = (
            j.group, j.label + (" [baseline]" if j.baseline else ""),
            f"{1e3 * r['median_s']:.1f}", f"{r['ratio']:.2f}" if "ratio" in r else "",
            f"{r['peak_mib']:.0f}" if "peak_mib" in r else r.get("error", "")[:20],
            f"{r['call_mib']:.0f}" if "call_mib" in r else "", str(r.get("repeats", "")),
        )
        if quality:
            row += (f"{r['s_per_mp']:.2f}" if "s_per_mp" in r else "", r.get("dtype", ""),
                    f"{r['psnr_db']:.3f}" if "psnr_db" in r else "",
                    f"{r['psnr_delta_db']:+.3f}" if "psnr_delta_db" in r else "")
        rows.append(row)
    widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1)))


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _image_sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",") if s]  # type: ignore


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suites", default=",".join(SUITES),
                   help=f"comma-separated subset of {','.join(SUITES)}")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    p.add_argument("--full", action="store_true",
                   help="also the exact forward at N > 16384 (about 7 minutes per call at 64k "
                        "on 2 CPU threads)")
    p.add_argument("--sizes", type=_ints, default=None,
                   help="set sizes N of the sets suite (default 1024,4096,16384,65536)")
    p.add_argument("--window-sizes", type=_ints, default=None,
                   help="sequence lengths of the windows suite (default 25000,50000,100000)")
    p.add_argument("--radius", type=int, default=16, help="window radius")
    p.add_argument("--image-sizes", type=_image_sizes, default=None,
                   help="HxW list (default 256x256,481x321,1024x1024)")
    p.add_argument("--train-batch", type=int, default=None, help="training batch (default 32)")
    p.add_argument("--denoise-sizes", type=_image_sizes, default=None,
                   help="HxW list of the denoise suite's groups float32 (baseline) / auto / "
                        "bfloat16 (default 1024x1024; --quick 128x128)")
    p.add_argument("--denoise-auto-sizes", type=_image_sizes, default=None,
                   help="HxW list of denoise groups with the default precision (auto) alone; "
                        "'' for none (default 2000x2000; --quick 160x160)")
    p.add_argument("--denoise-baseline", action="store_true",
                   help="also time float32 (the baseline) beside auto in the "
                        "--denoise-auto-sizes groups (one more full-size run per repeat)")
    p.add_argument("--only", type=lambda x: [w for w in x.split(",") if w], default=None,
                   help="comma-separated words: keep only cases whose label contains one "
                        "(plus the baselines), e.g. --only approx")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5)")
    p.add_argument("--budget", type=float, default=60.0,
                   help="seconds per case before repeats are reduced")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory subprocesses")
    p.add_argument("--no-interleave", dest="interleave", action="store_false",
                   help="time each case's repeats back to back instead of alternating the "
                        "cases of a group (alternating keeps ratios fair under drifting load)")
    p.add_argument("--out", type=Path, default=Path("results/bench/bench.json"))
    p.add_argument("--plots", type=Path, default=None,
                   help="folder for PNG plots (e.g. docs/img); none by default")
    args = p.parse_args(argv)
    args.suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown:
        p.error(f"unknown suites {unknown}; choose from {list(SUITES)}")
    q = args.quick
    args.sizes = args.sizes or ([1024, 4096] if q else [1024, 4096, 16384, 65536])
    args.window_sizes = args.window_sizes or ([10000, 20000] if q else [25000, 50000, 100000])
    args.image_sizes = args.image_sizes or (
        [(256, 256)] if q else [(256, 256), (481, 321), (1024, 1024)])
    args.train_batch = args.train_batch or (4 if q else 32)
    if args.denoise_sizes is None:
        args.denoise_sizes = [(128, 128)] if q else [(1024, 1024)]
    if args.denoise_auto_sizes is None:
        args.denoise_auto_sizes = [(160, 160)] if q else [(2000, 2000)]
    args.repeats = args.repeats or (3 if q else 5)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    jobs, skipped = build_jobs(args)
    if args.only:
        jobs = [j for j in jobs if j.baseline or any(w in j.label for w in args.only)]
    started = time.time()
    run_jobs(jobs, args)
    table = format_table(jobs)
    print(table)
    for suite, reason in skipped.items():
        print(f"skipped {suite}: {reason}")
    provenance = run_metadata()
    payload = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:],
            "torch": torch.__version__, "threads": args.threads, "python": sys.version.split()[0],
            "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "wall_s": time.time() - started,
            **{k: provenance[k] for k in ("commit", "dirty", "machine")},
        },
        "skipped": skipped,
        "results": [asdict(j) for j in jobs],
    }
    write_json_atomic(args.out, payload)
    print(f"wrote {args.out}")
    if args.plots is not None:
        from benchmarks.plots import plot_all

        for path in plot_all(payload, args.plots):
            print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
