"""One training set from many sources: split by recording, mixed with weights, in a seeded order.

    train, val, reports = build_dataset([{"path": ..., "weight": 2.0}, ...], seed=0, val_fraction=0.05)
    for i in train.epoch_indices(epoch): sample = train.samples[i]

``split_by_group`` hashes each sample's group (the recording it describes, ``mats.data``), so no recording is
ever on both sides of a train/validation split, even across datasets (shared/data/SOURCES.md, rules 1-3).
"""
from __future__ import annotations

import hashlib
import math
from typing import Mapping, Sequence

from mats.data import LoadReport, Sample, _rng, load_source
from mats.errors import ConfigError


def _group_unit(group: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) for a group: the same on every run, machine and order."""
    digest = hashlib.blake2b(f"{seed}:{group}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_by_group(samples: Sequence[Sample], val_fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split into (train, val) so that no group (recording) is on both sides.

    Each group goes to validation when the hash of (seed, group) falls below ``val_fraction``, so the split
    does not depend on file order and a recording lands on the same side in every dataset that has it.
    The validation share is val_fraction of the groups, so of the samples only approximately.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    train: list[Sample] = []
    val: list[Sample] = []
    side: dict[str, bool] = {}
    for s in samples:
        is_val = side.get(s.group)
        if is_val is None:
            is_val = side[s.group] = _group_unit(s.group, seed) < val_fraction
        (val if is_val else train).append(s)
    return train, val


class Mixture:
    """Named sample lists mixed with weights, in a seeded order that depends only on (seed, epoch).

    A weight is the number of times each sample of that source is drawn per epoch on average: 1.0 = once,
    2.0 = twice (oversampled), 0.5 = a different random half every epoch, 0 = never. The epoch length is
    therefore sum(weight * len(source)). Indices refer to ``self.samples`` (all sources concatenated).
    """

    def __init__(self, sources: Mapping[str, Sequence[Sample]], weights: Mapping[str, float] | None = None,
                 seed: int = 0):
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(sources))
        if unknown:
            raise ConfigError(f"weights for unknown source(s) {unknown}; sources are {sorted(sources)}.")
        self.names = list(sources)
        self.seed = seed
        self.weights = {}
        for name in self.names:
            w = float(weights.get(name, 1.0))
            if not math.isfinite(w) or w < 0:
                raise ConfigError(f"weight for source {name!r} must be a finite number >= 0, got {w}.")
            self.weights[name] = w
        self.samples: list[Sample] = []
        self._offsets: list[int] = []
        for name in self.names:
            self._offsets.append(len(self.samples))
            self.samples.extend(sources[name])
        self._sizes = [len(sources[name]) for name in self.names]

    def counts(self) -> dict[str, int]:
        """Draws per source in one epoch."""
        return {name: math.floor(w) * n + round((w - math.floor(w)) * n)
                for name, n, w in zip(self.names, self._sizes, self.weights.values())}

    def __len__(self) -> int:
        return sum(self.counts().values())

    def epoch_indices(self, epoch: int = 0) -> list[int]:
        """The shuffled indices into ``self.samples`` for one epoch; the same for the same (seed, epoch)."""
        indices: list[int] = []
        for name, offset, n, count in zip(self.names, self._offsets, self._sizes, self.counts().values()):
            rng = _rng(self.seed, "mixture", epoch, name)
            full, rest = divmod(count, n) if n else (0, 0)
            for _ in range(full):  # whole passes: every sample once per pass
                indices.extend(offset + i for i in range(n))
            if rest:  # the fractional part: a random subset, different every epoch
                indices.extend(offset + i for i in rng.sample(range(n), rest))
        _rng(self.seed, "mixture", epoch).shuffle(indices)
        return indices


def build_dataset(sources: Sequence[Mapping], seed: int = 0, val_fraction: float = 0.05
                  ) -> tuple[Mixture, list[Sample], list[LoadReport]]:
    """Load several files, split them by group and mix the training side.

    Each entry: {"path": ..., "kind": optional, "weight": optional (default 1.0), "max_samples": optional,
    "name": optional (default: the kind; repeated names get _2, _3...), plus loader options such as
    "captions" for clotho_aqa or "labels" for audioset}. ``max_samples`` keeps a seeded random subset
    before the split. All sources are split with the same seed, so a recording shared by two datasets is
    on the same side in both. Returns (train mixture, validation samples, one report per file).
    """
    if not sources:
        raise ConfigError("build_dataset needs at least one source ({'path': ...}).")
    train_parts: dict[str, list[Sample]] = {}
    weights: dict[str, float] = {}
    val: list[Sample] = []
    reports: list[LoadReport] = []
    for i, entry in enumerate(sources):
        if not isinstance(entry, Mapping) or "path" not in entry:
            raise ConfigError(f"data source #{i} must be a mapping with a 'path' key, got {entry!r}.")
        opts = dict(entry)
        path = opts.pop("path")
        kind = opts.pop("kind", None)
        weight = opts.pop("weight", 1.0)
        max_samples = opts.pop("max_samples", None)
        name = opts.pop("name", None)
        opts.setdefault("seed", seed)
        samples, report = load_source(path, kind, **opts)
        reports.append(report)
        if max_samples is not None:
            if int(max_samples) < 0:
                raise ConfigError(f"max_samples for {path} must be >= 0, got {max_samples}.")
            if len(samples) > int(max_samples):
                keep = sorted(_rng(seed, "max_samples", path).sample(range(len(samples)), int(max_samples)))
                samples = [samples[k] for k in keep]
                report.notes.append(f"kept a seeded subset of {len(samples)} samples (max_samples)")
        base = name or report.kind
        name, n = base, 2
        while name in train_parts:
            name, n = f"{base}_{n}", n + 1
        train, held = split_by_group(samples, val_fraction, seed)
        train_parts[name] = train
        weights[name] = weight
        val.extend(held)
    return Mixture(train_parts, weights, seed), val, reports
