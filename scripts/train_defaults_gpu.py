"""Train both default MATS checkpoints within a wall-clock budget each (how the shipped ones were made on a GPU).

    MATS_DATA=../shared/data python scripts/train_defaults_gpu.py --seconds-gpt2 200 --seconds-smollm2 220

Text only, like every MATS training run. The learning-rate schedule needs its step count up front, so each model
first gets a short probe run that measures steps/s on this machine; the real run then gets as many steps as fit
its budget. Batches are larger than the CPU configs' (a GPU has room), everything else comes from
configs/mats-*.yaml. Each finished model is copied to ``--out/<name>/`` (model folder, log, config) before the next
one starts, so a run cut short still leaves the first.

Then, on any machine: ``install_checkpoint(Path("runs/gpu/gpt2-mini/model"), Path("assets/mats-gpt2-mini"))`` from
scripts/build_defaults.py (it points the encoder at assets/encoders/yamnet-minilm), and
``python scripts/evaluate_defaults.py ... --update-cards`` for the numbers in the model cards.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENCODER = ROOT / "assets" / "encoders" / "yamnet-minilm"

# Per model: the GPU batch settings layered over the config, and how many steps the probe runs.
GPU_SETTINGS = {
    "gpt2-mini": {"overrides": ["train.batch_size=128", "train.lr=0.001", "train.max_val_samples=1024"],
                  "probe_steps": 120},
    "smollm2": {"overrides": ["train.batch_size=64", "train.lr=0.001", "train.max_val_samples=512"],
                "probe_steps": 30},
}
WARMUP_FRACTION = 0.05  # of the real run's steps


def _train(name: str, out: Path, overrides: list[str], env: dict) -> float:
    """One `mats train` run; returns its wall time in seconds."""
    cmd = [sys.executable, "-m", "mats", "train", f"configs/mats-{name}.yaml", f"model.encoder.path={ENCODER}",
           *overrides, "--out", str(out)]
    print("$", " ".join(cmd), flush=True)
    t = time.time()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return time.time() - t


def steps_per_second(log_file: Path) -> float:
    """Training steps/s from the last logged record of a run (the trainer logs samples/s since its start)."""
    records = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    rated = [r for r in records if "samples_per_s" in r]
    if not rated:
        raise RuntimeError(f"{log_file} has no samples_per_s record; the probe run logged nothing")
    batch = json.loads((log_file.parent / "train_config.json").read_text())["train"]["batch_size"]
    return rated[-1]["samples_per_s"] / batch


def train_within(name: str, seconds: float, out_root: Path, env: dict, probe_steps: int | None = None,
                 safety: float = 0.85) -> dict:
    s = GPU_SETTINGS[name]
    probe_steps = probe_steps or s["probe_steps"]
    probe = out_root / f"{name}-probe"
    shutil.rmtree(probe, ignore_errors=True)
    log_every = max(1, probe_steps // 4)
    probe_wall = _train(name, probe, s["overrides"] + [
        f"train.max_steps={probe_steps}", f"train.warmup_steps={max(1, probe_steps // 10)}",
        f"train.log_every={log_every}", f"train.eval_every={probe_steps}", f"train.save_every={10 ** 9}"], env)
    rate = steps_per_second(probe / "log.jsonl")
    steps = max(probe_steps, int(seconds * rate * safety))
    print(f"[{name}] probe: {rate:.2f} steps/s ({probe_wall:.0f} s wall for {probe_steps} steps) -> {steps} steps "
          f"in a {seconds:.0f} s budget", flush=True)
    shutil.rmtree(probe, ignore_errors=True)
    run = out_root / f"{name}-run"
    shutil.rmtree(run, ignore_errors=True)
    wall = _train(name, run, s["overrides"] + [
        f"train.max_steps={steps}", f"train.warmup_steps={max(1, int(steps * WARMUP_FRACTION))}",
        f"train.log_every={max(1, steps // 50)}", f"train.eval_every={max(1, steps // 5)}",
        f"train.save_every={max(1, steps // 2)}"], env)
    final = out_root / name
    shutil.rmtree(final, ignore_errors=True)
    final.mkdir(parents=True)
    shutil.copytree(run / "model", final / "model")
    for f in ("log.jsonl", "train_config.json"):
        shutil.copy(run / f, final / f)
    info = {"name": name, "steps": steps, "probe_steps_per_s": rate, "wall_seconds": round(wall, 1)}
    (final / "gpu_run.json").write_text(json.dumps(info, indent=2))
    print(f"[{name}] done: {info}", flush=True)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("MATS_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--seconds-gpt2", type=float, default=200)
    ap.add_argument("--seconds-smollm2", type=float, default=220)
    ap.add_argument("--probe-steps", type=int, default=None, help="override the probe length (tests, CPU)")
    ap.add_argument("--only", default="", help="comma list: gpt2-mini,smollm2 (default both)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "gpu"))
    a = ap.parse_args(argv)
    env = {**os.environ, "MATS_DATA": str(Path(a.data).resolve()), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    out_root = Path(a.out)
    out_root.mkdir(parents=True, exist_ok=True)
    only = set(filter(None, a.only.split(","))) or set(GPU_SETTINGS)
    t0 = time.time()
    for name, seconds in (("gpt2-mini", a.seconds_gpt2), ("smollm2", a.seconds_smollm2)):
        if name in only:
            train_within(name, seconds, out_root, env, a.probe_steps)
    print(f"total {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
