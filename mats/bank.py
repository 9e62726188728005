"""Text embeddings computed once, and Santa banks built from them.

The encoder's text tower is frozen, so a caption's embedding never changes: each unique text is embedded
once per encoder and cached on disk (keyed by the encoder's config and the text). Training looks
embeddings up instead of re-embedding the corpus every step; the noise is added per step.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file

from mats.lm import cache_dir


def encoder_key(encoder) -> str:
    return hashlib.sha256(json.dumps(encoder.to_config(), sort_keys=True).encode()).hexdigest()[:16]


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class TextEmbeddingCache:
    """On-disk cache of text embeddings for one encoder: shards of safetensors + a JSON index."""

    def __init__(self, encoder, root: str | Path | None = None, batch_size: int = 256):
        self.encoder = encoder
        self.batch_size = batch_size
        self.dir = Path(root or cache_dir() / "text_embeddings") / encoder_key(encoder)
        self.index: dict[str, tuple[int, int]] = {}
        self.shards: list[torch.Tensor] = []
        self.calls = 0  # encoder.embed_text calls made through this cache (tests count them)
        self._load()

    def _load(self) -> None:
        idx = self.dir / "index.json"
        if not idx.is_file():
            return
        meta = json.loads(idx.read_text())
        for i in range(meta["shards"]):
            self.shards.append(load_file(str(self.dir / f"shard-{i:05d}.safetensors"))["embeddings"])
        self.index = {k: tuple(v) for k, v in meta["index"].items()}

    def embed(self, texts: Sequence[str], progress: bool = False) -> torch.Tensor:
        """[len(texts), D] embeddings; only texts never seen before go through the encoder."""
        missing = list(dict.fromkeys(t for t in texts if _text_key(t) not in self.index))
        # Similar lengths in one batch: padding to the longest text otherwise costs 2-3x the compute.
        missing.sort(key=len)
        if missing:
            from tqdm.auto import tqdm

            outs = []
            for i in tqdm(range(0, len(missing), self.batch_size), desc="embedding texts", disable=not progress):
                outs.append(self.encoder.embed_text(missing[i : i + self.batch_size]).float().cpu())
                self.calls += 1
            new = torch.cat(outs)
            shard = len(self.shards)
            self.shards.append(new)
            for row, t in enumerate(missing):
                self.index[_text_key(t)] = (shard, row)
            self._save_shard(shard, new)
        rows = [self.index[_text_key(t)] for t in texts]
        return torch.stack([self.shards[s][r] for s, r in rows]) if rows else torch.empty(0, self.encoder.dim)

    def _save_shard(self, shard: int, tensor: torch.Tensor) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            save_file({"embeddings": tensor.contiguous()}, str(self.dir / f"shard-{shard:05d}.safetensors"))
            tmp = self.dir / "index.json.tmp"
            tmp.write_text(json.dumps({"encoder": self.encoder.to_config(), "shards": len(self.shards),
                                       "index": self.index}))
            tmp.replace(self.dir / "index.json")
        except OSError as e:  # a read-only cache only costs time, so say so and go on
            import warnings

            warnings.warn(f"could not write the text-embedding cache in {self.dir} ({e}); embeddings stay in memory")


def build_bank(cache: TextEmbeddingCache, texts: Sequence[str], santa_cfg, noise_variance: float):
    """Santa bank from captions: unique texts, sampled to ``bank_size`` with the config's seed."""
    from mats.santa import SantaBank

    unique = sorted(set(t for t in texts if t.strip()))
    if not unique:
        raise ValueError("no caption texts to build a Santa bank from")
    rng = random.Random(santa_cfg.seed)
    chosen = rng.sample(unique, santa_cfg.bank_size) if len(unique) > santa_cfg.bank_size else unique
    emb = cache.embed(chosen)
    bank_noise = santa_cfg.bank_noise_variance  # None: the training noise (the paper's bank)
    return SantaBank.build(emb, chosen, n_clusters=santa_cfg.n_clusters, top_k=santa_cfg.top_k, tau=santa_cfg.tau,
                           strength=santa_cfg.strength, seed=santa_cfg.seed,
                           noise_variance=noise_variance if bank_noise is None else bank_noise)


def rebuild_bank(model_path: str, text_files: Sequence[str], out: str | None = None, size: int | None = None,
                 clusters: int | None = None, seed: int = 0, noise: float | None = None, tau: float | None = None,
                 top_k: int | None = None) -> Path:
    """`mats bank build`: replace a checkpoint's Santa bank with one built from other captions. ``noise``,
    ``tau``, ``top_k`` (None: keep) become the checkpoint's santa settings, so they travel with the bank."""
    import shutil

    from mats.config import MATSConfig
    from mats.data import load_source
    from mats.encoders import load_encoder
    from mats.hub import resolve_checkpoint
    from mats.santa import SantaBank

    folder = resolve_checkpoint(model_path)
    config = MATSConfig.load(folder)
    texts: list[str] = []
    for f in text_files:
        samples, report = load_source(f)
        texts += [s.text for s in samples if s.task in ("caption", "music_caption")]
        if report.skipped:
            print(report.summary())
    if size:
        config.santa.bank_size = size
    if clusters:
        config.santa.n_clusters = clusters
    config.santa.seed = seed
    if noise is not None:
        if noise < 0:
            from mats.errors import ConfigError

            raise ConfigError(f"--noise is a variance and must be 0 or more, got {noise}")
        config.santa.bank_noise_variance = noise
    if tau is not None:
        config.santa.tau = tau
    if top_k is not None:
        config.santa.top_k = top_k
    encoder = load_encoder(config.encoder, base_dir=folder)
    bank = build_bank(TextEmbeddingCache(encoder), texts, config.santa, config.noise_variance)
    target = Path(out) if out else folder
    if out:
        shutil.copytree(folder, target, dirs_exist_ok=True)
        # A part named relative to the checkpoint but outside it ("../encoders/sfx-minilm") must still be found
        # from the new folder.
        config.encoder, config.lm = _rebase(config.encoder, folder, target), _rebase(config.lm, folder, target)
    bank.save(target)
    config.train_info = {**config.train_info, "santa_bank_sources": list(map(str, text_files)), "santa_bank_size": len(bank)}
    config.save(target)
    SantaBank.load(target)  # fail now, not at the user's next caption, if anything went wrong
    return target


def _rebase(spec: dict, old: Path, new: Path) -> dict:
    """``spec`` with its "../" paths (relative to ``old``, pointing outside it) re-expressed relative to ``new``."""
    import os

    spec = dict(spec)
    for key in ("id", "path"):
        value = spec.get(key)
        if isinstance(value, str) and value.startswith("../"):
            moved = os.path.relpath((Path(old) / value).resolve(), Path(new).resolve())
            spec[key] = moved if moved.startswith("../") else "./" + moved
    return spec

