"""Clips for the evaluation runner: finding each metadata entry's file, the evaluation data, and the embeddings.

A metadata file name is found in the clips folder (searched recursively) by its relative path, then its
name, then its stem with any audio extension (so ESC-50's ``*.wav`` names find ``*.flac`` clips), then a
loose form of the stem (lower case, letters and digits only) when that is unambiguous. AudioCaps rows name
no file: see ``audiocaps_candidates`` for the naming rule. Rows without a clip are counted and reported;
clips that cannot be decoded are listed in results.json and report.md and skipped, never silently.

Each clip is decoded and embedded once per encoder (``_embed``): models whose encoders have the same config
share the cached embeddings (``_encoder_key``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mats.audio import AUDIO_SUFFIXES as AUDIO_EXTS
from mats.errors import ConfigError, DataError
from mats.eval.metadata import read_caption_csv, read_label_csv, read_qa_csv
from mats.prompts import EVAL_TASKS, eval_task

__all__ = ["ClipIndex", "Item", "EvalData", "load_eval_data"]

TASKS = EVAL_TASKS  # hearing: mats.hearing (speech / music / mixtures); "qa" is an old name for "ask"

_LOOSE_RE = re.compile(r"[^a-z0-9]+")


def _loose(stem: str) -> str:
    return _LOOSE_RE.sub("", stem.lower())


class ClipIndex:
    """Every audio file under a folder, findable by relative path, name, stem, or loose stem."""

    def __init__(self, root: Path):
        if not root.is_dir():
            raise DataError(f"{root}: clips folder not found; pass --clips with the folder of audio files.")
        self.root = root
        self.files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTS)
        if not self.files:
            raise DataError(f"{root}: no audio files found (looked for {', '.join(sorted(AUDIO_EXTS))}).")
        self.by_rel, self.by_name, self.by_stem, self.by_loose = {}, {}, {}, {}
        for p in self.files:
            self.by_rel[p.relative_to(root).as_posix()] = p
            self.by_name.setdefault(p.name, []).append(p)
            self.by_stem.setdefault(p.stem, []).append(p)
            self.by_loose.setdefault(_loose(p.stem), []).append(p)

    def find(self, names: Sequence[str]) -> Path | None:
        """The file for the first candidate name that resolves unambiguously, or None."""
        for tier in ("rel", "name", "stem", "loose"):
            for name in names:
                name = name.replace("\\", "/")
                if tier == "rel":
                    hit = [self.by_rel[name]] if name in self.by_rel else []
                elif tier == "name":
                    hit = self.by_name.get(Path(name).name, [])
                else:
                    stem = Path(name).stem if Path(name).suffix.lower() in AUDIO_EXTS else Path(name).name
                    hit = self.by_stem.get(stem, []) if tier == "stem" else self.by_loose.get(_loose(stem), [])
                if len(hit) == 1:
                    return hit[0]
        return None

    def key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


@dataclass
class Item:
    clip: str  # path relative to the clips folder
    reference: Any  # classify: label; caption: list of captions; qa: answer
    question: str | None = None


@dataclass
class EvalData:
    task: str
    format: str  # detected metadata format
    items: list[Item]
    paths: dict[str, Path]  # clip key -> file
    labels: list[str] | None = None  # classify: the label set, in index order
    rows: int = 0  # metadata entries read (rows, or clips for caption groups)
    missing: list[str] = field(default_factory=list)  # metadata entries whose clip is not in the folder
    unlisted: int = 0  # audio files in the folder that the metadata does not mention
    notes: list[str] = field(default_factory=list)

    @property
    def clips(self) -> list[str]:
        return list(dict.fromkeys(i.clip for i in self.items))


def _label_key(label: str) -> str:
    return " ".join(label.replace("_", " ").lower().split())


def load_eval_data(task: str, clips_dir, meta, labels: Sequence[str] | None = None,
                   limit: int | None = None) -> EvalData:
    """Read the metadata, find each entry's clip, apply the label set and ``limit`` (N clips evenly spaced
    in metadata order, deterministic)."""
    task = eval_task(task)
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if labels is not None and task != "classify":
        raise ConfigError("--labels only applies to --task classify")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive number of clips, got {limit}")
    index = ClipIndex(Path(clips_dir))
    meta = Path(meta)
    if task == "classify":
        kind, rows, notes = read_label_csv(meta)
        entries = [([f], lab, None) for f, lab in rows]
    elif task == "caption":
        kind, rows, notes = read_caption_csv(meta)
        entries = [(cands, caps, None) for cands, caps in rows]
    else:
        kind, rows, notes = read_qa_csv(meta)
        entries = [([f], ans, q) for f, q, ans in rows]
    if not entries:
        raise DataError(f"{meta}: no usable rows for the {task} task ({'; '.join(notes[:3]) or 'empty'}).")

    data = EvalData(task, kind, [], {}, rows=len(entries), notes=notes)
    label_set = None
    if task == "classify":
        if labels is not None:
            label_set = list(dict.fromkeys(l.strip() for l in labels if l and l.strip()))
            if not label_set:
                raise ConfigError("--labels is empty; give a comma-separated list such as 'dog,rain,siren'")
        else:
            # Every label of the metadata file, so held-out classes still compete (ESC-50 is 50-way).
            label_set = sorted({lab for _, lab, _ in entries})
        canonical = {}
        for lab in label_set:
            if _label_key(lab) in canonical:
                raise ConfigError(f"labels {canonical[_label_key(lab)]!r} and {lab!r} are the same label; "
                                  "make the label set distinct")
            canonical[_label_key(lab)] = lab
        data.labels = label_set

    found: dict[tuple, Path | None] = {}
    off_set = 0
    mentioned: set[Path] = set()  # files the metadata names, whether or not their label is in the set
    for cands, ref, question in entries:
        key = tuple(cands)
        if key not in found:
            found[key] = index.find(cands)
        path = found[key]
        if path is None:
            data.missing.append(cands[0])
            continue
        mentioned.add(path)
        if task == "classify":
            lab = canonical.get(_label_key(ref))
            if lab is None:
                off_set += 1
                continue
            ref = lab
        clip = index.key(path)
        data.paths[clip] = path
        data.items.append(Item(clip, ref, question))
    if off_set:
        data.notes.append(f"{off_set} rows have a label outside --labels and were left out")
    if task != "ask":  # one label / reference group per clip: keep the first, say so
        seen: dict[str, Item] = {}
        for item in data.items:
            if item.clip in seen:
                data.notes.append(f"{item.clip}: named by two metadata entries; kept the first")
            else:
                seen[item.clip] = item
        data.items = list(seen.values())
    data.unlisted = len(index.files) - len(mentioned)
    if limit is not None and limit < len(data.clips):
        # Spread over the metadata, not its head: label files are often sorted by class.
        clips = data.clips
        keep = {clips[i * len(clips) // limit] for i in range(limit)}
        data.notes.append(f"--limit {limit}: {limit} of {len(clips)} clips, evenly spaced in metadata order")
        data.items = [i for i in data.items if i.clip in keep]
        data.paths = {k: v for k, v in data.paths.items() if k in keep}
    if not data.items and off_set:
        raise ConfigError(f"no clip of {meta} has a label in --labels ({', '.join(label_set[:5])}...); "
                          "check the spelling, or leave --labels out to use the file's labels")
    if not data.items:
        raise DataError(
            f"none of the {len(entries)} entries of {meta} matched a clip in {clips_dir} "
            f"(first missing: {data.missing[:3]}). Check that --clips and --meta belong together."
        )
    return data


def _encoder_key(encoder) -> str:
    """Encoders with the same id/path config embed alike, so their clip embeddings can be shared."""
    try:
        cfg = encoder.to_config()
    except Exception:  # an encoder that cannot describe itself shares nothing
        cfg = None
    if not cfg or not (cfg.get("id") or cfg.get("path")):
        return f"object:{id(encoder)}"
    return json.dumps(cfg, sort_keys=True, default=str)


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="clip", disable=not enabled, dynamic_ncols=True, leave=False)


def _embed(model, data: EvalData, cache: dict, skipped: dict[str, str], batch_size: int, progress: bool, name: str):
    """Embed every clip not yet cached for this encoder: decode with load_clip (a clip that fails is recorded
    in ``skipped`` with the reason), then model.embed_clips on the decoded batch. Returns (clip keys, [N, D])."""
    import torch

    from mats.audio import try_load_clip

    store = cache.setdefault(_encoder_key(model.encoder), {})
    todo = [c for c in data.clips if c not in store and c not in skipped]
    with _bar(len(todo), f"{name}: encode", progress) as bar:
        for start in range(0, len(todo), batch_size):
            loaded = []
            for clip in todo[start : start + batch_size]:
                decoded, problem = try_load_clip(data.paths[clip], model.encoder.sample_rate)
                if problem:
                    skipped[clip] = problem
                else:
                    loaded.append((clip, decoded))
            if loaded:
                emb = model.embed_clips([c for _, c in loaded]).float().cpu()
                for (clip, _), row in zip(loaded, emb):
                    store[clip] = row
            bar.update(len(todo[start : start + batch_size]))
    keys = [c for c in data.clips if c in store]
    if not keys:
        return keys, None
    return keys, torch.stack([store[c] for c in keys]).to(model.device)
