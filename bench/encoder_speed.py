"""Encoding speed of the offline encoders on a 5 s clip, measured in one run (issue 25: target <= 60 ms on 2 cores).

    python bench/encoder_speed.py [--threads 2] [--repeats 20]

For each encoder folder: the time to embed one 5 s clip (``embed_clips`` on the waveform, already decoded and at the
encoder's rate: what every answer pays), and for a YAMNet encoder also ``tags`` on the same clip (the line under
each answer). Best of --repeats after a warm-up; the ratio between the encoders is what to read when the machine
is busy.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "examples" / "dog.flac"
ENCODERS = ("assets/encoders/yamnet-minilm", "assets/encoders/sfx-minilm")


def best(f, repeats: int) -> float:
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--encoder", action="append", default=None, help="encoder folders (default: both shipped)")
    a = ap.parse_args()
    import torch

    from mats.audio import load_clip
    from mats.encoders import load_encoder_folder

    torch.set_num_threads(a.threads)
    times = {}
    for folder in a.encoder or ENCODERS:
        enc = load_encoder_folder(ROOT / folder)
        wave = load_clip(CLIP, target_sr=enc.sample_rate).waveform[: int(5 * enc.sample_rate)]
        times[folder] = best(lambda: enc.embed_clips([wave]), a.repeats)
        print(f"{folder}: embed a 5 s clip {1000 * times[folder]:.1f} ms ({a.threads} threads)")
        if hasattr(enc, "tags"):
            t = best(lambda: enc.tags([wave], top=5), a.repeats)
            print(f"{folder}: AudioSet tags of the same clip {1000 * t:.1f} ms")
    if len(times) == 2:
        (n1, t1), (n2, t2) = times.items()
        print(f"ratio {Path(n1).name} / {Path(n2).name}: {t1 / t2:.2f}")


if __name__ == "__main__":
    main()
