"""Text embeddings computed once, and Santa banks built from them.

The encoder's text tower is frozen, so a caption's embedding never changes: each unique text is embedded
once per encoder and cached on disk (keyed by the encoder's config and the text). Training looks
embeddings up instead of re-embedding the corpus every step; the noise is added per step.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file

from mats.errors import DataError
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


# ----------------------------------------------------------------------------------- your own caption bank
MAX_CAPTIONS = 50_000  # lines a caption file may hold (the page's limit for a bring-your-own bank)
MAX_CAPTION_FILE_BYTES = 20 * 1024 * 1024
MAX_CAPTION_CHARS = 500  # longer lines are not captions (pasted paragraphs, base64)
CAPTION_COLUMNS = ("caption", "captions", "text", "description", "sentence")
_AUDIO_PATH = re.compile(r"\S+\.(wav|flac|ogg|mp3|aiff?|au|opus|m4a)", re.IGNORECASE)


@dataclass
class CaptionFile:
    """The captions read from one file, and what was skipped and why."""

    texts: list[str]
    lines: int = 0  # non-blank lines (or CSV rows) read
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why lines were skipped -> how many
    column: str | None = None  # the CSV column read

    def skip(self, why: str) -> None:
        self.skipped += 1
        self.reasons[why] = self.reasons.get(why, 0) + 1

    def summary(self) -> str:
        out = f"{len(self.texts):,} captions from {self.lines:,} lines"
        if self.column:
            out += f" (column '{self.column}')"
        if self.skipped:
            why = "; ".join(f"{n:,} {r}" for r, n in sorted(self.reasons.items(), key=lambda kv: -kv[1]))
            out += f"; skipped {self.skipped:,} ({why})"
        return out


def read_captions(path, max_lines: int | None = MAX_CAPTIONS, name: str | None = None) -> CaptionFile:
    """Captions from a ``.txt`` (one per line; blank lines and ``#`` comments ignored) or a ``.csv`` with a caption
    column (``caption``, ``text``, ``description``..., or Clotho's ``caption_1``..``caption_5``).

    Bad lines (not UTF-8, control characters, too long, audio file names) are skipped and counted; a file that is
    empty, binary, over ``max_lines`` or without a caption column is a DataError that says so. ``name``: the file
    name to show in messages (an upload's own name rather than the server's temporary path).
    """
    from mats.errors import DataError

    path = Path(path)
    shown = name or path.name
    suffix = Path(shown).suffix.lower() or path.suffix.lower()
    if suffix not in (".txt", ".csv", ".tsv"):
        raise DataError(f"{shown}: a caption bank is a .txt file (one caption per line) or a .csv with a 'caption' "
                        f"column, not {suffix or 'a file without extension'}.")
    size = path.stat().st_size
    if size > MAX_CAPTION_FILE_BYTES:
        raise DataError(f"{shown} is {size / 2**20:.0f} MB; a caption file may be at most "
                        f"{MAX_CAPTION_FILE_BYTES // 2**20} MB ({MAX_CAPTIONS:,} lines).")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{shown} is empty: put one caption per line (or a 'caption' column in a CSV).")
    head = raw[:8192]
    if b"\x00" in head or sum(b < 9 or 13 < b < 32 for b in head) > len(head) * 0.05:
        raise DataError(f"{shown} looks binary (not text). Upload a .txt with one caption per line or a .csv with "
                        "a 'caption' column, saved as UTF-8.")
    text = raw.decode("utf-8-sig", errors="replace")
    out = CaptionFile(texts=[])
    if suffix == ".txt":
        rows = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        out.lines = len(rows)
        _check_count(out.lines, max_lines, shown)
        for ln in rows:
            _take(out, ln)
    else:
        reader = csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
        try:
            header = [h.strip().lower() for h in next(reader, [])]
            body = [r for r in reader if any(c.strip() for c in r)]
        except csv.Error as e:
            raise DataError(f"{shown}: malformed CSV ({e}).") from e
        cols = [i for i, h in enumerate(header) if h in CAPTION_COLUMNS] or \
               [i for i, h in enumerate(header) if re.fullmatch(r"caption_\d+", h)]
        if not cols:
            raise DataError(f"{shown} has no caption column (its columns: {', '.join(header[:10]) or 'none'}). "
                            f"Name the column 'caption', or upload a .txt with one caption per line.")
        cols = cols[:1] if header[cols[0]] in CAPTION_COLUMNS else cols
        out.column = ", ".join(header[i] for i in cols)
        out.lines = len(body) * len(cols)
        _check_count(out.lines, max_lines, shown)
        for row in body:
            for i in cols:
                if i >= len(row):
                    out.skip("rows with too few columns")
                else:
                    _take(out, row[i])
    if not out.texts:
        raise DataError(f"{shown}: no usable caption among {out.lines:,} lines ({out.summary()}).")
    return out


def _check_count(n: int, max_lines: int | None, shown: str) -> None:
    from mats.errors import DataError

    if max_lines is not None and n > max_lines:
        raise DataError(f"{shown} has {n:,} caption lines; the limit is {max_lines:,}. Keep the most typical "
                        f"captions of your domain (a few thousand are plenty) and upload again.")


def _take(out: CaptionFile, line: str) -> None:
    t = " ".join(line.split())
    if not t:
        out.skip("empty cells")
    elif "\ufffd" in t:
        out.skip("lines that are not UTF-8 text")
    elif any(ord(c) < 32 for c in t):
        out.skip("lines with control characters")
    elif len(t) > MAX_CAPTION_CHARS:
        out.skip(f"lines over {MAX_CAPTION_CHARS} characters")
    elif _AUDIO_PATH.fullmatch(t):
        out.skip("audio file names, not captions")
    else:
        out.texts.append(t)


@dataclass
class CaptionBank:
    """A Santa bank built from your captions, and how it was built."""

    bank: object  # mats.santa.SantaBank
    source: CaptionFile
    unique: int
    seconds: float


def caption_bank(encoder, captions: CaptionFile | Sequence[str], santa_cfg, noise_variance: float,
                 cache: TextEmbeddingCache | None = None) -> CaptionBank:
    """A Santa bank holding every unique caption given, built with ``encoder`` (the model's own) and the model's Santa
    settings: what the page's "your caption bank" and ``mats bank build`` both run. Identical lines are embedded once;
    without ``cache`` the embeddings are computed in a temporary folder that is removed afterwards."""
    import dataclasses

    source = captions if isinstance(captions, CaptionFile) else CaptionFile(texts=list(captions), lines=len(captions))
    # Clusters hold top_k captions on average, as the paper's bank does (5,000 in 100): a small bank of your own
    # is not split into clusters of one caption each, which would leave Santa a single caption to mix in.
    unique = len(set(source.texts))
    santa_cfg = dataclasses.replace(santa_cfg, bank_size=max(1, unique),  # every caption, none sampled away
                                    n_clusters=max(1, min(santa_cfg.n_clusters, unique // max(1, santa_cfg.top_k))))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mats-bank-") as tmp:
        cache = cache or TextEmbeddingCache(encoder, root=tmp)
        bank = build_bank(cache, source.texts, santa_cfg, noise_variance)
        if bank.clean is None:  # a noisy bank: its captions are embedded already, read them back clean
            bank.clean = cache.embed(bank.texts).float()
    return CaptionBank(bank=bank, source=source, unique=len(bank), seconds=time.perf_counter() - start)


def _dataset_csv(path) -> bool:
    """A CSV that ``mats.data`` knows as a dataset (AudioCaps, Clotho, MusicCaps...): read with its own loader."""
    from mats.data import detect_kind
    from mats.errors import DataError

    if Path(path).suffix.lower() != ".csv":
        return False
    try:
        return detect_kind(path) != "text"
    except DataError:
        return False


def build_bank(cache: TextEmbeddingCache, texts: Sequence[str], santa_cfg, noise_variance: float):
    """Santa bank from captions: unique texts, sampled to ``bank_size`` with the config's seed."""
    from mats.santa import SantaBank

    unique = sorted(set(t for t in texts if t.strip()))
    if not unique:
        raise DataError("no caption texts to build a Santa bank from: give a file with one caption per line")
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
    from mats.paths import portable
    from mats.santa import SantaBank

    folder = resolve_checkpoint(model_path)
    config = MATSConfig.load(folder)
    texts: list[str] = []
    for f in text_files:
        if Path(f).suffix.lower() in (".txt", ".csv", ".tsv") and not _dataset_csv(f):
            read = read_captions(f, max_lines=None)  # the page's reader: one rule for what a caption line is
            texts += read.texts
            if read.skipped:
                print(f"{f}: {read.summary()}")
            continue
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
        config.encoder, config.lm = (portable(config.encoder, folder, target, copied=True),
                                      portable(config.lm, folder, target, copied=True))
    bank.save(target)
    config.train_info = {**config.train_info, "santa_bank_sources": list(map(str, text_files)), "santa_bank_size": len(bank)}
    config.save(target)
    SantaBank.load(target)  # fail now, not at the user's next caption, if anything went wrong
    return target
