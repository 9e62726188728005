"""The real ESC-50 / UrbanSound8K clips the offline encoder is aligned on: their recording-grouped folds, the split
each fold is, and the hand-written sentences of every class.

One home for these facts because two builders need the same answer: the corpus maker (``mats corpus``) mixes real
clips into its scenes from the fold of the scene's own split, and the aligner (``mats align``) trains and scores on
those folds. If each kept its own copy, a scene could carry a test recording into training. Neither builder imports
the other for them, so there is no import circle. Torch-free (numpy and csv only).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mats.errors import DataError

# Hand-written sentences, 6 per class (data, not code: mats/encoder_sentences.json, shipped as package data), and
# the sounds that two datasets name differently (clips of one concept are positives of each other in the loss).
_SENTENCES = json.loads((Path(__file__).resolve().parent / "encoder_sentences.json").read_text())
ESC50_SENTENCES, US8K_SENTENCES = _SENTENCES["esc50"], _SENTENCES["us8k"]
SAME_CONCEPT = _SENTENCES["same_concept"]

REAL_SPLIT = {0: "test", 1: "val", 2: "train"}  # recording-grouped folds (fold 0 is the held-out split.json)
FOLD_OF_SPLIT = {s: f for f, s in REAL_SPLIT.items()}


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
    """(dataset, file, label, fold) with the recording-grouped folds the encoder uses (fold 0 is held out)."""
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


def rotated_split(split: str, test_fold: int) -> str:
    """The split a clip of ``split`` (as the shipped encoder sees it) belongs to when ``test_fold`` is held out.

    The corpus's splits rotate with the real folds: its scenes mix in real clips of the fold of the same split
    (mats.corpus), so a scene moves with its recordings, and the corpus's held-out voices, languages and GM
    programs stay on one side. ``test_fold`` 0 is the identity (the shipped split)."""
    return REAL_SPLIT[(FOLD_OF_SPLIT[split] - test_fold) % len(REAL_SPLIT)]
