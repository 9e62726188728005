"""What the projection is trained and scored on: the real ESC-50 / UrbanSound8K windows (mats.realclips folds),
the synthesized corpus (mats.corpus), augmented copies of the real training clips, and the texts of each clip.

The fold and sentence facts themselves live in mats.realclips, shared with the corpus maker (its scenes draw real
clips of their own split), and re-exported here for the aligner's callers.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from mats.audio import load_clip, windows
from mats.corpus import realism, sound_of_captions
from mats.encoders.align.progress import log
from mats.encoders.offline import OfflineEncoder
from mats.errors import DataError
from mats.prompts import label_prompt
from mats.realclips import (ESC50_SENTENCES, FOLD_OF_SPLIT, REAL_SPLIT, SAME_CONCEPT, US8K_SENTENCES, Item,  # noqa: F401
                            real_folds, rotated_split)


def augment(wave: np.ndarray, partners: list[np.ndarray], rng: np.random.Generator, style: str = "basic") -> np.ndarray:
    """One random training copy: circular shift, gain, maybe a quieter second clip, maybe white noise.

    ``style="rich"`` also changes the speed (pitch and tempo together, 0.85-1.15x, as another dog or another engine
    would sound) and applies the corpus's room / microphone realism (mats.corpus) (reverb, band limit, hiss), so a class's few
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
        return realism(out, rng, strength=0.8)[0]
    if rng.random() < 0.5:
        snr_db = rng.uniform(10.0, 30.0)
        out = out + rng.standard_normal(len(out)).astype(np.float32) * rms * 10 ** (-snr_db / 20)
    gain = 10 ** (rng.uniform(-12.0, 6.0) / 20)  # matters only without peak normalisation
    return (out * gain).astype(np.float32)


@dataclass
class Clip:
    key: str  # unique id
    split: str  # train / val / test
    concept: str  # clips of one concept are positives of each other
    captions: list[str]  # training texts (one drawn per step)
    row: dict  # hearing-CSV fields: coarse, family, sources (+ dataset, label for real clips)
    wave: np.ndarray | None = None  # one window, float32, 44.1 kHz (dropped after feature extraction)


def real_clips(data: Path, window_samples: int, sample_rate: int, label_template: bool = False) -> list[Clip]:
    out = []
    for dataset, file, label, fold in real_folds(data):
        clip = load_clip(data / "clips" / dataset / file, target_sr=sample_rate, max_seconds=None)
        wave = windows(clip.waveform, window_samples)[0]  # ESC-50 clips are 5 s; US8K slices get repeat-padded
        table = ESC50_SENTENCES if dataset == "esc50" else US8K_SENTENCES
        if label not in table:
            raise DataError(f"No sentences for the {dataset} class {label!r}; add them to mats/encoder_sentences.json.")
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
        raise DataError(f"{table} not found; make it first with `mats corpus --out {corpus}`.")
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if limit:
        rows = rows[:: max(1, len(rows) // limit)]
    out = []
    for r in rows:
        clip = load_clip(corpus / r["file"], target_sr=sample_rate, max_seconds=None)
        if clip.info.no_signal:  # corpora made before mats.corpus redrew silent renders hold a few
            continue
        wave = windows(clip.waveform, window_samples)[0]
        caps = r["captions"].split("|")
        caps += [c for c in sound_of_captions(r) if c not in caps]  # corpora made before these forms existed
        out.append(Clip(r["id"], r["split"], r["concept"], caps,
                        {k: r[k] for k in ("file", "coarse", "family", "sources")} | {"dataset": "corpus"}, wave))
    return out


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


def embed_captions(clips: list[Clip], enc) -> tuple[list[str], torch.Tensor, list[list[int]]]:
    """Every distinct caption embedded once by the locked text tower: (texts, embeddings, each clip's caption ids)."""
    texts = sorted({t for c in clips for t in c.captions})
    tid = {t: j for j, t in enumerate(texts)}
    return texts, enc.embed_text(texts), [[tid[t] for t in c.captions] for c in clips]


def split_indices(clips: list[Clip], names: set[str], clean_only: bool = False) -> np.ndarray:
    """Indices of the clips in the splits ``names``; ``clean_only``: without the augmented copies (what is scored)."""
    return np.array([i for i, c in enumerate(clips) if c.split in names and not (clean_only and c.row.get("augmented"))])


def real_weighted(clips: list[Clip], idx: np.ndarray, weight: int) -> np.ndarray:
    """``idx`` with its real clips (and their copies) repeated ``weight`` times in all: an epoch sees them that often."""
    real = [i for i in idx if clips[i].row["dataset"] != "corpus"]
    return np.concatenate([idx] + [np.array(real, dtype=idx.dtype)] * (weight - 1))


def fit_splits(clips: list[Clip], args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test, fit) indices of one run: train and fit (``--fit-on``) with real clips repeated
    ``--real-weight`` times, val and test without augmented copies (what is scored)."""
    train = real_weighted(clips, split_indices(clips, {"train"}), args.real_weight)
    fit = real_weighted(clips, split_indices(clips, set(args.fit_on.split("+"))), args.real_weight)
    return train, split_indices(clips, {"val"}, True), split_indices(clips, {"test"}, True), fit


def write_split_files(out: Path, clips: list[Clip], test_fold: int, fit_on: str) -> None:
    """``split.json``: the real clips these weights never saw (by dataset); for a validation encoder
    (``--fit-on train``) also ``split-val.json``, the val fold that MATS settings are chosen on."""
    def write(name: str, split: str, fold: int, note: str) -> None:  # real clips of one split, no copies
        real = [c for c in clips if c.split == split and c.row["dataset"] != "corpus" and not c.row.get("augmented")]
        (out / name).write_text(json.dumps({"holdout_fold": fold, "note": note, **{
            ds: [c.key.split("/", 1)[1] for c in real if c.row["dataset"] == ds] for ds in ("esc50", "us8k")}}, indent=1))

    write("split.json", "test", test_fold, "real clips these weights never saw (grouped by recording)")
    if fit_on == "train":
        write("split-val.json", "val", (test_fold + 1) % len(REAL_SPLIT),
              "validation fold: real clips this validation encoder never saw")

