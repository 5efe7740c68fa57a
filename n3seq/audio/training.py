"""Random noisy/clean training batches and a small training loop for the denoisers."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from n3seq.audio.metrics import SISDRLoss
from n3seq.audio.noise import NOISE_TYPES, babble_noise, mix_at_snr, pink_noise, white_noise


def random_crop(signal: Tensor, length: int, generator: torch.Generator | None = None) -> Tensor:
    """A random excerpt of ``length`` samples of a 1-D signal (zero-padded if shorter)."""
    if signal.shape[-1] < length:
        return torch.nn.functional.pad(signal, (0, length - signal.shape[-1]))
    start = int(torch.randint(signal.shape[-1] - length + 1, (1,), generator=generator))
    return signal[start:start + length]


def make_noise(kind: str, length: int, babble_sources: Sequence[Tensor] | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """One noise signal ``(L,)`` of the given kind (``"white"``, ``"pink"`` or ``"babble"``)."""
    if kind == "white":
        return white_noise((length,), generator)
    if kind == "pink":
        return pink_noise((length,), generator)
    if kind == "babble":
        if not babble_sources:
            raise ValueError("babble noise needs babble_sources (other talkers' utterances)")
        return babble_noise(list(babble_sources), length, generator=generator)
    raise ValueError(f"noise kind must be one of {NOISE_TYPES}, got {kind!r}")


def mixture_batch(
    clean_sources: Sequence[Tensor], batch_size: int, length: int,
    babble_sources: Sequence[Tensor] | None = None,
    noise_types: Sequence[str] = NOISE_TYPES, snr_range: tuple[float, float] = (0.0, 10.0),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Random (noisy, clean) pairs: utterance crops mixed with random noise at a random SNR.

    Returns:
        ``(noisy, clean)``, each ``(batch_size, length)``.
    """
    if not clean_sources:
        raise ValueError("clean_sources is empty")
    clean, noisy = [], []
    lo, hi = snr_range
    for _ in range(batch_size):
        src = clean_sources[int(torch.randint(len(clean_sources), (1,), generator=generator))]
        s = random_crop(src.float(), length, generator)
        kind = noise_types[int(torch.randint(len(noise_types), (1,), generator=generator))]
        n = make_noise(kind, length, babble_sources, generator)
        snr = lo + (hi - lo) * float(torch.rand((), generator=generator))
        clean.append(s)
        noisy.append(mix_at_snr(s, n, snr))
    return torch.stack(noisy), torch.stack(clean)


def train_denoiser(
    model: nn.Module, batch_fn: Callable[[int], tuple[Tensor, Tensor]], steps: int,
    lr: float = 2e-3, max_seconds: float | None = None, progress: bool = True,
    log_every: int = 25,
) -> list[dict]:
    """Trains ``model`` with Adam (cosine learning-rate decay) on negative SI-SDR.

    Args:
        model: maps noisy ``(B, L)`` to an estimate ``(B, L)``.
        batch_fn: ``step → (noisy, clean)``; called once per step.
        steps: number of optimisation steps.
        lr: peak learning rate.
        max_seconds: stop early after this wall time (the log says where it stopped).
        progress: show a tqdm bar.
        log_every: record the mean loss every this many steps.

    Returns:
        The log: a list of ``{"step", "loss", "seconds", "skipped_steps"}`` dicts; steps whose
        gradient was not finite are skipped and counted.
    """
    loss_fn = SISDRLoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    model.train()
    log: list[dict] = []
    running, count, skipped, start = 0.0, 0, 0, time.monotonic()
    bar = tqdm(range(steps), disable=not progress, desc="train", leave=False,
               file=sys.stderr)
    for step in bar:
        noisy, clean = batch_fn(step)
        loss = loss_fn(model(noisy), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        if torch.isfinite(norm):
            opt.step()
        else:  # a non-finite gradient would poison Adam's state: skip the step, count it
            skipped += 1
        sched.step()
        running, count = running + loss.item(), count + 1
        elapsed = time.monotonic() - start
        last = step == steps - 1 or (max_seconds is not None and elapsed > max_seconds)
        if (step + 1) % log_every == 0 or last:
            log.append({"step": step + 1, "loss": running / count, "seconds": elapsed,
                        "skipped_steps": skipped})
            bar.set_postfix(loss=f"{running / count:.2f}")
            running, count = 0.0, 0
        if last:
            break
    model.eval()
    return log
