"""Peak memory of scoring labels with the LM (``MATS.label_log_likelihoods``): 1, 10 and 100 clips against the 50
ESC-50 labels, each size in a fresh subprocess, so one size's peak never hides another's.

    python bench/label_memory.py [--model assets/mats-gpt2-mini] [--clips 1 10 100] [--labels 50]

Reports, per size: peak RSS of the child process (VmHWM: model, clips and scoring together), its RSS after the
model and clips were loaded (so the difference is what scoring itself took) and the scoring time. The clips are
the example clips in assets/examples, repeated to the size asked for; Santa mixes in the labels, as
``MATS.classify`` does with a label set. Target (issue 26): 100 clips under 3 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GB = 1024**3


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def worker(model_path: str, clips: int, n_labels: int, chunk: int | None) -> dict:
    """One size, in this process: load, embed, score; peak RSS from /proc/self/status (VmHWM)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from mats.hearing import ESC50_LABELS
    from mats.model import MATS

    torch.manual_seed(0)
    model = MATS.from_pretrained(model_path, device="cpu")
    labels = list(ESC50_LABELS[:n_labels])
    examples = sorted((ROOT / "assets" / "examples").glob("*.flac"))
    audio = model.embed_clips([str(p) for p in examples])
    audio = audio[torch.arange(clips) % len(examples)]
    z = model.condition(audio, None, labels=labels)
    loaded_kb = _status_kb("VmRSS")
    kw = {} if chunk is None else {"chunk_size": chunk}
    t = time.perf_counter()
    scores = model.label_log_likelihoods(z, labels, **kw)
    seconds = time.perf_counter() - t
    assert scores.shape == (clips, len(labels)) and torch.isfinite(scores).all()
    return {"clips": clips, "labels": len(labels), "loaded_gb": round(loaded_kb * 1024 / GB, 3),
            "peak_gb": round(_status_kb("VmHWM") * 1024 / GB, 3), "seconds": round(seconds, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "assets" / "mats-gpt2-mini"))
    p.add_argument("--clips", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--labels", type=int, default=50)
    p.add_argument("--chunk", type=int, default=None, help="chunk_size (default: the library's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--target-gb", type=float, default=3.0)
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker is not None:
        print(json.dumps(worker(a.model, a.worker, a.labels, a.chunk)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "HF_HUB_OFFLINE": "1"}
    rows, ok = [], True
    for n in a.clips:
        cmd = [sys.executable, __file__, "--model", a.model, "--labels", str(a.labels), "--worker", str(n)]
        if a.chunk is not None:
            cmd += ["--chunk", str(a.chunk)]
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if run.returncode != 0:
            # Killed for memory (-9) or failed: say so, with the child's own peak where the OS kept it.
            row = {"clips": n, "labels": a.labels, "error": f"exit {run.returncode}: {run.stderr.strip()[-300:]}"}
            ok = False
        else:
            row = json.loads(run.stdout.strip().splitlines()[-1])
            ok &= row["peak_gb"] < a.target_gb
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"model {a.model}: {'all under' if ok else 'NOT all under'} {a.target_gb} GB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
