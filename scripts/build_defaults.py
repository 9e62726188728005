"""Rebuild the offline defaults from data folders laid out like ../shared/data, in one command:

    python scripts/build_defaults.py --data ../shared/data

1. the synthesized corpus (`mats corpus`, ~18 min; needs apt-get install espeak-ng fluidsynth
   fluid-soundfont-gm sox) and the AudioSet encoder (`mats align --backbone yamnet`, ~20 min with the design
   comparison; YAMNet's converted weights are read from the shipped encoder folder itself, or from
   scripts/convert_yamnet.py's output with --yamnet) -> assets/encoders/yamnet-minilm
2. MATS-GPT2 (mini), text only (configs/mats-gpt2-mini.yaml) -> assets/mats-gpt2-mini
3. MATS-LLaMA (SmolLM2), text only (configs/mats-smollm2.yaml) -> assets/mats-smollm2
4. the evaluation on held-out clips (scripts/evaluate_defaults.py) -> assets/eval_results.json

Seeds are fixed in the configs; each step prints its progress and the script prints what each took.
``--steps-gpt2`` / ``--steps-smollm2`` trade time for quality. The defaults are a CPU-sized run (about 11 min each
here); the shipped checkpoints were trained longer on a GPU with scripts/train_defaults_gpu.py (see the README).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENCODER = ROOT / "assets" / "encoders" / "yamnet-minilm"


def _run(cmd: list[str], env: dict) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def install_checkpoint(run_model: Path, target: Path) -> None:
    """Copy a trained model into assets/, its encoder and LM paths re-expressed relative to the new folder."""
    from mats.config import MATSConfig
    from mats.hub import write_model_card
    from mats.paths import portable

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(run_model, target)
    cfg = MATSConfig.load(target)
    cfg.encoder, cfg.lm = (portable(cfg.encoder, run_model, target, copied=True),
                          portable(cfg.lm, run_model, target, copied=True))
    cfg.save(target)
    write_model_card(cfg, target)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--steps-gpt2", type=int, default=1100)
    ap.add_argument("--steps-smollm2", type=int, default=150)
    ap.add_argument("--corpus", default=str(Path.home() / ".cache" / "mats" / "corpus"),
                    help="where `mats corpus` writes the synthesized clips (about 1 GB; reused when present)")
    ap.add_argument("--yamnet", default=str(ENCODER),
                    help="a folder holding YAMNet's converted yamnet.safetensors (default: the shipped encoder's)")
    ap.add_argument("--skip", default="", help="comma list of steps to skip: encoder,gpt2,smollm2,eval")
    a = ap.parse_args(argv)
    skip = set(filter(None, a.skip.split(",")))
    env = {**os.environ, "MATS_DATA": str(Path(a.data).resolve()), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    times: dict[str, float] = {}
    t_all = time.time()
    if "encoder" not in skip:
        t = time.time()
        _run([sys.executable, "-m", "mats", "corpus", "--data", a.data, "--out", a.corpus], env)
        _run([sys.executable, "-m", "mats", "align", "--backbone", "yamnet", "--yamnet", a.yamnet, "--data", a.data,
              "--corpus", a.corpus, "--out", str(ENCODER), "--select", "--compare-aisfx", "--ensemble", "3",
              "--epochs", "40", "--seed", "0", "--cache-dir", str(Path.home() / ".cache" / "mats")], env)
        times["encoder"] = time.time() - t
    for name, steps in (("gpt2-mini", a.steps_gpt2), ("smollm2", a.steps_smollm2)):
        key = name.split("-")[0]
        if key in skip:
            continue
        t = time.time()
        out = ROOT / "runs" / f"mats-{name}"
        _run([sys.executable, "-m", "mats", "train", f"configs/mats-{name}.yaml", f"train.max_steps={steps}",
              f"model.encoder.path={ENCODER}", "--out", str(out)], env)
        install_checkpoint(out / "model", ROOT / "assets" / f"mats-{name}")
        times[name] = time.time() - t
    if "eval" not in skip:
        t = time.time()
        _run([sys.executable, "scripts/evaluate_defaults.py", "--data", a.data, "--split", str(ENCODER / "split.json"),
              "--model", "assets/mats-gpt2-mini", "--model", "assets/mats-smollm2", "--out", "assets/eval_results.json",
              "--hearing", str(Path(a.corpus) / "test.csv"), "--hearing-limit", "300"], env)
        times["eval"] = time.time() - t
    for k, v in times.items():
        print(f"{k:>10}: {v / 60:.1f} min")
    print(f"{'total':>10}: {(time.time() - t_all) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
