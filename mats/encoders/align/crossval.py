"""Cross-validate the offline encoder's recipe over the three recording-grouped folds.

    python scripts/cross_validate_encoder.py --data ../shared/data --corpus ~/.cache/mats/corpus \\
        --cache-dir ~/.cache/mats --encoder assets/encoders/sfx-minilm        # ~8 min with cached CNN features

One held-out fold is 87 ESC-50 clips (under two per class), so a single fold's figure moves by several clips with
nothing changed (the encoder card: a sub-hop shift of the audio moves it by up to 4). Fold 0 is the shipped
encoder's own test (its results.json, scored once); folds 1 and 2 refit the same recipe (the settings stored in
that results.json) with ``train_encoder.py --test-fold``, which rotates the real folds and, with them, the corpus
splits whose scenes use their recordings. The figures pooled over the three folds (correct / clips) go into the
encoder's results.json as "cross_validation" and into its model card. Only scores: no fold model is saved.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_encoder as te  # noqa: E402

# Checks whose clip count is recorded: pooled as correct / clips over the folds. Others: the mean of the folds.
POOLED = {"zero_shot_esc50": "esc50_clips", "zero_shot_us8k": "us8k_clips", "family": "family_clips",
          "mixture_source_top5": "mixture_sources"}
# The recipe's settings that a refit must repeat (the chosen pool and width come from results["chosen"]).
RECIPE = ("seed", "proj_dropout", "augment", "augment_style", "batching", "ensemble", "align_weight", "real_weight",
          "epochs", "batch_size", "lr", "weight_decay", "fit_on")


def pool_folds(folds: list[dict]) -> dict:
    """Pooled figures over per-fold test results (each one train_encoder results["test"])."""
    out = {}
    for key in te.SELECT_KEYS:
        have = [f for f in folds if f.get(key) is not None]
        if not have:
            continue
        n = POOLED.get(key)
        if n and all(f.get(n) for f in have):
            total = sum(f[n] for f in have)
            out[key] = round(sum(f[key] * f[n] for f in have) / total, 4)
            out[n] = total
        else:
            out[key] = round(sum(f[key] for f in have) / len(have), 4)
    return out


def refit_argv(results: dict, args: argparse.Namespace, fold: int, out: Path) -> list[str]:
    st, cfg = results["settings"], results["chosen"]
    argv = ["--data", str(args.data), "--corpus", str(args.corpus), "--test-fold", str(fold), "--no-save",
            "--results-json", str(out), "--pool", cfg["pool"], "--proj-hidden", str(cfg["proj_hidden"]),
            "--threads", str(args.threads)]
    if args.cache_dir:
        argv += ["--cache-dir", str(args.cache_dir)]
    for k in RECIPE:
        argv += [f"--{k.replace('_', '-')}", str(st[k])]
    return argv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--encoder", type=Path, default=Path("assets/encoders/sfx-minilm"),
                    help="the encoder folder whose results.json gives the recipe and fold 0, and receives the result")
    ap.add_argument("--work", type=Path, default=None,
                    help="per-fold results, reused when the recipe is unchanged (default ~/.cache/mats/cv-<encoder name>)")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    path = args.encoder / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: --encoder must be a folder written by scripts/train_encoder.py")
    results = json.loads(path.read_text())
    if results.get("test_fold", 0) != 0:
        raise SystemExit(f"{path} holds a fold-{results['test_fold']} run; give the fold-0 (shipped) encoder")
    work = args.work or Path.home() / ".cache" / "mats" / f"cv-{args.encoder.name}"
    folds = [results["test"]]
    for fold in (1, 2):
        out = work / f"fold{fold}.json"
        if out.is_file():  # a fold already scored with these settings is not fitted again
            prev = json.loads(out.read_text())
            if all(prev["settings"].get(k) == results["settings"][k] for k in RECIPE):
                folds.append(prev["test"])
                continue
        te.main(refit_argv(results, args, fold, out))
        folds.append(json.loads(out.read_text())["test"])
    results["cross_validation"] = {
        "pooled": pool_folds(folds),
        "folds": [{k: f.get(k) for k in te.SELECT_KEYS + tuple(POOLED.values())} for f in folds],
        "note": ("the same recipe refit with each recording-grouped fold held out (train_encoder.py --test-fold; the "
                 "corpus splits rotate with the real folds their scenes use); fold 0 is the shipped weights' test; "
                 "pooled = correct / clips over the three folds"),
    }
    path.write_text(json.dumps(results, indent=2) + "\n")
    te.write_model_card(args.encoder, results)
    print(json.dumps(results["cross_validation"]["pooled"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
