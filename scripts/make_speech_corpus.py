"""Generates a small offline speech-denoising corpus with espeak-ng (not committed).

Clean utterances are synthesised with the Debian package ``espeak-ng`` (apt-get install
espeak-ng) from randomly composed English sentences, with varied voices, speeds and pitches,
and resampled to 16 kHz. Three disjoint pools are written:

    OUT/train/*.wav      clean training utterances (training mixes noise on the fly)
    OUT/babble/*.wav     other talkers, used only to build babble noise
    OUT/test/{white,pink,babble}/NNN_{clean,noisy}.wav   fixed test mixtures at 0–10 dB SNR
    OUT/manifest.json    the settings and, per test item, voice / speed / SNR

Test sentences and voices are disjoint from the training ones.

Usage:
    python scripts/make_speech_corpus.py OUT [--train 400] [--test 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torchaudio.functional as AF

from n3seq.audio.io import read_audio, write_audio
from n3seq.audio.noise import NOISE_TYPES, mix_at_snr
from n3seq.audio.training import make_noise

RATE = 16000
SUBJECTS = ["the old man", "my sister", "a small dog", "the teacher", "our neighbour",
            "the pilot", "a tired student", "the baker", "her brother", "the committee",
            "a young girl", "the farmer", "his cousin", "the doctor", "every child",
            "the captain", "a quiet woman", "the engineer", "my grandfather", "the singer"]
VERBS = ["carried", "painted", "found", "opened", "watched", "borrowed", "cleaned", "lifted",
         "repaired", "described", "dropped", "ordered", "followed", "measured", "hid",
         "noticed", "sold", "wrapped", "counted", "remembered"]
OBJECTS = ["a heavy box", "the red door", "seven apples", "the broken radio", "a long letter",
           "the blue kettle", "three candles", "the wooden chair", "a silver coin",
           "the morning paper", "a bag of rice", "the garden gate", "two green bottles",
           "the kitchen window", "a paper map", "the yellow bicycle", "a warm blanket",
           "the station clock", "four small stones", "the evening train"]
PLACES = ["near the river", "before lunch", "in the dark hall", "after the storm",
          "behind the school", "on a cold morning", "at the market", "under the bridge",
          "during the concert", "beside the lake", "in the busy street", "late at night",
          "on the top shelf", "across the field", "at the harbour", "in the small village"]
EXTRAS = ["and then went home", "without saying a word", "very slowly", "with great care",
          "because it was raining", "while the bells were ringing", "for the second time",
          "as quickly as possible", "and laughed", "but nobody noticed"]
QUESTIONS = ["Why did {s} {v_base} {o}?", "Did {s} really {v_base} {o} {p}?",
             "Where is {o} now?", "How many people saw {s} {p}?"]
BASE = {"carried": "carry", "painted": "paint", "found": "find", "opened": "open",
        "watched": "watch", "borrowed": "borrow", "cleaned": "clean", "lifted": "lift",
        "repaired": "repair", "described": "describe", "dropped": "drop", "ordered": "order",
        "followed": "follow", "measured": "measure", "hid": "hide", "noticed": "notice",
        "sold": "sell", "wrapped": "wrap", "counted": "count", "remembered": "remember"}

TRAIN_VOICES = ["en-us+m1", "en-us+m3", "en-us+f1", "en-us+f3", "en-gb+m2", "en-gb+f2",
                "en-gb-scotland+m4", "en-029+f4", "en-gb-x-rp+m7", "en-us+klatt2"]
BABBLE_VOICES = ["en-us+m5", "en-gb+f5", "en-gb-x-gbclan+m6", "en-us+klatt4"]
TEST_VOICES = ["en-us+m2", "en-us+f2", "en-gb+m3", "en-gb-x-gbcwmd+f1", "en-029+m1"]


def sentence(rng: random.Random) -> str:
    s, v, o, p = (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS),
                  rng.choice(PLACES))
    form = rng.random()
    if form < 0.2:
        return rng.choice(QUESTIONS).format(s=s, v_base=BASE[v], o=o, p=p).capitalize()
    text = f"{s} {v} {o} {p}"
    if form < 0.6:
        text += " " + rng.choice(EXTRAS)
    return text.capitalize() + "."


def synthesise(text: str, voice: str, speed: int, pitch: int, tmpdir: Path) -> torch.Tensor:
    """espeak-ng → 16 kHz mono float waveform ``(L,)``."""
    wav = tmpdir / "utt.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w",
                    str(wav), text], check=True, capture_output=True)
    x, rate = read_audio(wav)
    x = x.mean(0)
    if rate != RATE:
        x = AF.resample(x, rate, RATE)
    return 0.5 * x / x.abs().max().clamp_min(1e-6)


def make_pool(name: str, count: int, voices: list[str], rng: random.Random, used: set[str],
              out: Path, tmpdir: Path, exclude: set[str]) -> list[dict]:
    items = []
    for i in range(count):
        text = sentence(rng)
        while text in exclude:
            text = sentence(rng)
        used.add(text)
        voice, speed, pitch = rng.choice(voices), rng.randint(130, 210), rng.randint(25, 75)
        x = synthesise(text, voice, speed, pitch, tmpdir)
        path = out / f"{i:04d}.wav"
        write_audio(path, x, RATE, subtype="PCM_16")
        items.append({"file": str(path.relative_to(out.parent)), "text": text, "voice": voice,
                      "speed": speed, "pitch": pitch, "seconds": x.shape[-1] / RATE})
    print(f"{name}: {count} utterances, {sum(i['seconds'] for i in items) / 60:.1f} min")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--train", type=int, default=400, help="training utterances")
    parser.add_argument("--babble", type=int, default=60, help="babble-talker utterances")
    parser.add_argument("--test", type=int, default=40, help="test utterances per noise type")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("error: espeak-ng not found; install it with: apt-get install -y espeak-ng",
              file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    for sub in ("train", "babble", "test"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    manifest: dict = {"sample_rate": RATE, "seed": args.seed, "snr_db": [0, 10]}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        test_texts: set[str] = set()
        test_clean = make_pool("test", args.test * len(NOISE_TYPES), TEST_VOICES, rng,
                               test_texts, args.out / "test", tmpdir, set())
        seen: set[str] = set()
        manifest["train"] = make_pool("train", args.train, TRAIN_VOICES, rng, seen,
                                      args.out / "train", tmpdir, test_texts)
        manifest["babble"] = make_pool("babble", args.babble, BABBLE_VOICES, rng, seen,
                                       args.out / "babble", tmpdir, test_texts)
    babble = [read_audio(args.out / i["file"])[0][0] for i in manifest["babble"]]
    tests = []
    for j, item in enumerate(test_clean):
        kind = NOISE_TYPES[j % len(NOISE_TYPES)]
        clean = read_audio(args.out / item["file"])[0][0]
        (args.out / item["file"]).unlink()
        snr = float(torch.empty(()).uniform_(0, 10, generator=gen))
        noisy = mix_at_snr(clean, make_noise(kind, clean.shape[-1], babble, gen), snr)
        peak = max(1.0, float(noisy.abs().max()) / 0.99)
        folder = args.out / "test" / kind
        folder.mkdir(exist_ok=True)
        stem = f"{j:04d}"
        write_audio(folder / f"{stem}_clean.wav", clean / peak, RATE, subtype="FLOAT")
        write_audio(folder / f"{stem}_noisy.wav", noisy / peak, RATE, subtype="FLOAT")
        tests.append({**item, "file": f"test/{kind}/{stem}", "noise": kind, "snr_db": snr})
    manifest["test"] = tests
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"test: {len(tests)} mixtures; wrote {args.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
