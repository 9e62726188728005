"""`mats align-cv`: cross-validate the `mats align` recipe over the three recording-grouped folds.

Why and how: ``CROSS_VALIDATION`` in mats.encoders.align.args (the text of `mats align-cv --help`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mats.encoders.align.args import add_cv_args
from mats.encoders.align.card import write_model_card
from mats.encoders.align.fit import SELECT_KEYS
from mats.encoders.align.run import main as run_align

# Checks whose clip count is recorded: pooled as correct / clips over the folds. Others: the mean of the folds.
POOLED = {"zero_shot_esc50": "esc50_clips", "zero_shot_us8k": "us8k_clips", "family": "family_clips",
          "mixture_source_top5": "mixture_sources"}
# The recipe's settings that a refit must repeat (the chosen pool and width come from results["chosen"]).
RECIPE = ("seed", "proj_dropout", "augment", "augment_style", "batching", "ensemble", "align_weight", "real_weight",
          "epochs", "batch_size", "lr", "weight_decay", "fit_on")


def pool_folds(folds: list[dict]) -> dict:
    """Pooled figures over per-fold test results (each one `mats align` results["test"])."""
    out = {}
    for key in SELECT_KEYS:
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
    if st.get("backbone") == "yamnet":  # the AudioSet encoder: its head and the YAMNet weights it was fit on
        yamnet = st["yamnet"] if (Path(st["yamnet"]) / "yamnet.safetensors").is_file() else str(args.encoder)
        argv += ["--backbone", "yamnet", "--yamnet", yamnet, "--design", cfg["design"], "--fuse-weight",
                 str(cfg.get("fuse_weight", 1.0)), "--top-k", str(st["top_k"]), "--tag-template", st["tag_template"]]
    return argv


def cross_validate(args: argparse.Namespace) -> int:
    """Score folds 1 and 2 (refit, no model saved), pool them with fold 0 and update the encoder's results and card."""
    path = args.encoder / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: --encoder must be a folder written by `mats align`")
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
        run_align(refit_argv(results, args, fold, out))
        folds.append(json.loads(out.read_text())["test"])
    results["cross_validation"] = {
        "pooled": pool_folds(folds),
        "folds": [{k: f.get(k) for k in SELECT_KEYS + tuple(POOLED.values())} for f in folds],
        "note": ("the same recipe refit with each recording-grouped fold held out (mats align --test-fold; the "
                 "corpus splits rotate with the real folds their scenes use); fold 0 is the shipped weights' test; "
                 "pooled = correct / clips over the three folds"),
    }
    path.write_text(json.dumps(results, indent=2) + "\n")
    if results.get("backbone") == "yamnet":
        from mats.encoders.align.audioset import write_audioset_card

        write_audioset_card(args.encoder, results)
    else:
        write_model_card(args.encoder, results)
    print(json.dumps(results["cross_validation"]["pooled"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mats align-cv", formatter_class=argparse.RawDescriptionHelpFormatter)
    return cross_validate(add_cv_args(ap).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
