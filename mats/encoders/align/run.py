"""`mats align`: fit the offline encoder's projection end to end (clips -> cached features -> fit -> test) and save
the encoder with its split, results, model card and licence notes."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mats.encoders.align.args import align_settings, parse_args
from mats.encoders.align.card import write_license_notes, write_model_card
from mats.encoders.align.data import (Clip, add_caption_neighbours, embed_captions, fit_splits, gather_clips,
                                       training_captions, write_split_files)
from mats.encoders.align.features import backbone_id, cached_features
from mats.encoders.align.fit import evaluate_split, fit_and_embed, select_settings
from mats.encoders.align.progress import log
from mats.encoders.offline import OfflineEncoder


def save_encoder(args, enc: OfflineEncoder, clips: list[Clip], sample_waves: dict, results: dict, aisfx: Path,
                 t0: float) -> None:
    """Write the encoder (fp16), its held-out split, results, model card and licence notes; check the reload."""
    args.out.mkdir(parents=True, exist_ok=True)
    write_split_files(args.out, clips, args.test_fold, args.fit_on)
    enc.save_pretrained(args.out, dtype=torch.float16)
    reloaded = OfflineEncoder.from_pretrained(args.out)
    waves = np.stack(list(sample_waves.values()))
    e32, e16 = enc.embed_audio(waves), reloaded.embed_audio(waves)
    cos = (e32 * e16).sum(1)
    results["reload_check"] = {"min_audio_cosine_fp32_vs_saved_fp16": round(float(cos.min()), 6)}
    results["train_time_s"] = round(time.time() - t0, 1)
    log(f"reloaded from {args.out}: audio cosine fp32 vs saved fp16 min {cos.min():.5f}", t0)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_model_card(args.out, results)
    write_license_notes(args.out, Path(aisfx).parent, args.tune_block4)


def run(args: argparse.Namespace) -> int:
    """One alignment run with the settings of `mats align` (``args``: its flags, checked by check_align_args)."""
    if args.backbone == "yamnet":
        from mats.encoders.align.audioset import run_audioset

        return run_audioset(args)
    t0 = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    aisfx = args.aisfx or args.data / "backbones" / "aisfx" / "model.safetensors"
    enc = OfflineEncoder.build(aisfx, text_model=args.text_model, pool=args.pool, proj_hidden=args.proj_hidden,
                               proj_dropout=args.proj_dropout)
    clips, counts = gather_clips(args, enc, t0)
    feats = cached_features(args, enc, clips, t0, backbone_id(aisfx))
    t_feat = time.time() - t0
    sample_waves = {i: clips[i].wave for i in range(0, len(clips), max(1, len(clips) // 12))}
    for c in clips:
        c.wave = None  # 7 k windows of 5 s are 6 GB as float32; the features are all we need now

    if args.caption_neighbours:
        add_caption_neighbours(clips, enc, training_captions(args.data), args.caption_neighbours, args.cache_dir, t0)
    texts, text, cap_ids = embed_captions(clips, enc)
    log(f"{len(texts)} distinct captions embedded", t0)

    tr, va, te, fit_idx = fit_splits(clips, args)
    selection, cfg = [], {"pool": args.pool, "proj_hidden": args.proj_hidden}
    if args.select:
        cfg, selection = select_settings(args, enc, feats, clips, tr, va, text, cap_ids, t0)

    # Report: train+val -> test (the shipped weights are exactly this fit; --fit-on train: train -> test).
    enc.audio_settings.update(cfg)
    proj, emb, block4 = fit_and_embed(enc, feats, clips, fit_idx, te, text, cap_ids, cfg, args, t0, "final")
    enc.audio_proj = proj
    enc.audio_settings["proj_hidden"] = proj.net[0].out_features if len(proj.net) == 4 else 0  # an ensemble is wider
    if block4 is not None:
        enc.audio_net.conv_block4.load_state_dict(block4.state_dict())
    test = evaluate_split(enc, emb, [clips[i] for i in te])
    log("test: " + json.dumps(test), t0)
    results = {
        "test": test,
        "selection_on_val": selection,
        "chosen": cfg,
        "fit_on": args.fit_on,
        "test_fold": args.test_fold,
        "split": ("train / val / test. Synthesized corpus: whole espeak voices, languages, GM programs and drum kits, "
                  "and seeds per split (mats corpus). Real clips: recording-grouped ESC-50/UrbanSound8K "
                  "folds, fold 2 train, fold 1 val, fold 0 test (split.json; never seen by the shipped weights). "
                  "Settings chosen on val; the shipped weights are fit on train + val and scored once on test."
                  + (f" Rotated for cross-validation (--test-fold {args.test_fold}): real fold {args.test_fold} is test, "
                     f"fold {(args.test_fold + 1) % 3} val, and the corpus splits moved with them."
                     if args.test_fold else "")),
        "sizes": {f"{s}/{d}": n for (s, d), n in sorted(counts.items())},
        "captions": len(texts),
        "feature_time_s": round(t_feat, 1),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": torch.__version__,
    }
    if args.results_json:
        args.results_json.parent.mkdir(parents=True, exist_ok=True)
        args.results_json.write_text(json.dumps(results, indent=2) + "\n")
    if args.no_save:
        log(f"total {time.time() - t0:.1f}s (no model saved: --no-save)", t0)
        return 0
    save_encoder(args, enc, clips, sample_waves, results, aisfx, t0)
    log(f"wrote {args.out}; total {time.time() - t0:.1f}s", t0)
    return 0


def align_from_cli(a: argparse.Namespace) -> int:
    """`mats align`: the namespace the `mats` command parsed, less its own fields."""
    return run(align_settings(a))


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
