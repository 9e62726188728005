"""The evaluation runner: `mats eval` and ``evaluate()``.

    evaluate(["user/mats-clap", "ckpt/"], "classify", "ESC-50/audio", "ESC-50/meta/esc50.csv",
             santa=[0, 0.3, 0.6], out="results/esc50")

One run = one task (classify | caption | qa) on one folder of clips and its metadata CSV, for one or more
checkpoints and one or more Santa strengths (lambda). For each model the clips are decoded and embedded by
its encoder once (``model.embed_clips``); every lambda then only re-mixes the cached embeddings
(``model.condition``) and decodes (``model.generate_from_embeddings``) in batches, so a sweep costs one
audio pass. Models whose encoders have the same config share the cached embeddings.

Metadata formats (detected from the CSV header):

* classify: ESC-50 (filename,category,...), UrbanSound8K (slice_file_name,...,class; header optional),
  generic (file|filename|file_name|clip|path, label|category|class).
* caption: Clotho (file_name,caption_1..caption_5), AudioCaps (audiocap_id,youtube_id,start_time,caption;
  one row per caption, grouped by (youtube_id, start_time)), generic (file|..., caption).
* qa: Clotho-AQA (file_name,QuestionText,answer), generic (file|..., question, answer).

A metadata file name is found in the clips folder (searched recursively) by its relative path, then its
name, then its stem with any audio extension (so ESC-50's ``*.wav`` names find ``*.flac`` clips), then a
loose form of the stem (lower case, letters and digits only) when that is unambiguous. AudioCaps rows name
no file: see ``audiocaps_candidates`` for the naming rule. Rows without a clip are counted and reported;
clips that cannot be decoded are listed in results.json and report.md and skipped, never silently.

Outputs (``out``): results.json (every number, config, versions, clip counts, timings), predictions.jsonl
(one line per model x method x lambda x item), report.md (tables) and PNG plots (metric vs lambda per model;
per-class accuracy). This module imports torch lazily, so ``mats --help`` stays fast.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mats.audio import AUDIO_SUFFIXES as AUDIO_EXTS
from mats.quantize import NO_QUANTIZE_HELP
from mats.errors import ConfigError, DataError
from mats.formats import (AUDIOCAPS, CLOTHO, CLOTHO_AQA, ESC50, FILE_COLUMNS, LABEL_COLUMNS, URBANSOUND8K, US8K_COLUMNS,
                          caption_columns, column, csv_kind, first_row, headerless_us8k, open_text)
from mats.prompts import EVAL_TASK_ALIASES, EVAL_TASKS, LABEL_TEMPLATE, eval_task, label_prompt
from mats.metrics import (
    MAPPING_RULE,
    accuracy,
    caption_metrics,
    confusion_summary,
    map_to_labels,
    normalize_answer,
    per_class_accuracy,
    qa_exact_match,
    text_similarity,
)

__all__ = ["evaluate", "add_eval_args", "eval_from_cli", "load_eval_data", "EvalData", "Item",
           "read_label_csv", "read_caption_csv", "read_qa_csv", "audiocaps_candidates", "DEFAULT_TEMPLATE"]

TASKS = EVAL_TASKS  # hearing: mats.hearing (speech / music / mixtures); "qa" is an old name for "ask"
DEFAULT_TEMPLATE = LABEL_TEMPLATE
TOP_K = 5  # top-5 accuracy is reported when the label set has at least this many labels
MAX_LISTED = 20  # missing clips / notes kept by name in results.json (the count covers all)

_LOOSE_RE = re.compile(r"[^a-z0-9]+")


# ============================================================================================== metadata


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """(lower-cased header, data rows) of a CSV; blank lines dropped. The header is the raw first row."""
    if not path.is_file():
        raise DataError(f"{path}: metadata file not found; pass --meta with the labels / references / QA CSV.")
    try:
        with open_text(path) as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}). Re-save the file as UTF-8.") from e
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e}).") from e
    if not rows:
        raise DataError(f"{path}: the file is empty; it needs a header line and at least one row.")
    return [h.strip().lower() for h in rows[0]], rows[1:]


def _records(path: Path, header: list[str], rows: list[list[str]], notes: list[str]):
    """Yield {column: stripped value} per row; rows with the wrong number of fields are skipped and noted."""
    bad = 0
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            bad += 1
            if bad <= 3:
                notes.append(f"{path.name} line {n}: {len(row)} fields, expected {len(header)}; row skipped")
            continue
        yield {h: " ".join(v.split()) for h, v in zip(header, row)}
    if bad > 3:
        notes.append(f"{path.name}: {bad} rows in all had the wrong number of fields and were skipped")


def read_label_csv(path) -> tuple[str, list[tuple[str, str]], list[str]]:
    """Classification metadata -> (format, [(file, label)], notes).

    ESC-50 (filename,category,...; also shared clips/esc50/labels.csv), UrbanSound8K (slice_file_name,...,class,
    with or without its header line; also clips/us8k/labels.csv), or generic (a file column named one of
    file/filename/file_name/clip/path and a label column named label/category/class).
    """
    path = Path(path)
    header, rows = _read_csv(path)
    notes: list[str] = []
    kind = csv_kind(header)
    if kind in ("esc50", "urbansound8k"):
        fmt = ESC50 if kind == "esc50" else URBANSOUND8K
        fcol, lcol = fmt["file"], fmt["label"]
        if kind == "urbansound8k" and headerless_us8k(header):  # the first row is data: read it too
            rows = [[h for h in first_row(path)], *rows]
            header = list(US8K_COLUMNS)
            notes.append(f"{path.name}: no header line; assumed the official UrbanSound8K column order")
    else:
        fcol, lcol = column(header, FILE_COLUMNS), column(header, LABEL_COLUMNS)
        if fcol is None or lcol is None:
            raise DataError(
                f"{path}: cannot tell which columns hold the file and the label (header {header[:8]}). "
                "Use ESC-50 (filename,category), UrbanSound8K (slice_file_name,class) or a CSV with "
                "columns 'file' and 'label'."
            )
        kind = "generic"
    out = []
    for rec in _records(path, header, rows, notes):
        if rec[fcol] and rec[lcol]:
            out.append((rec[fcol], rec[lcol]))
        else:
            notes.append(f"{path.name}: a row with an empty {fcol if not rec[fcol] else lcol} was skipped")
    return kind, out, notes


def _start_seconds(value: str) -> str:
    """'20' / '20.0' -> '20'; '12.5' stays '12.5' (AudioCaps writes whole seconds)."""
    try:
        x = float(value)
    except ValueError:
        return value
    return str(int(x)) if x.is_integer() else f"{x:g}"


def audiocaps_candidates(youtube_id: str, start_time: str, audiocap_ids: Sequence[str] = ()) -> list[str]:
    """File stems tried, in order, for one AudioCaps clip (any audio extension, anywhere under the folder):

    1. ``{youtube_id}_{start}``  (start in whole seconds, e.g. ``7fmOlUlwoNg_20.wav``: the aac-datasets
       naming, and what `yt-dlp` scripts for AudioCaps usually write);
    2. ``Y{youtube_id}_{start}``, then AudioSet's ``Y{youtube_id}_{start}.000_{start+10}.000`` (with and
       without the leading Y);
    3. ``{youtube_id}`` and ``Y{youtube_id}`` (one file per video);
    4. the ``audiocap_id`` of any of the clip's caption rows (e.g. ``103549.wav``).
    """
    start = _start_seconds(start_time)
    cands = [f"{youtube_id}_{start}", f"Y{youtube_id}_{start}"]
    try:
        s = float(start_time)
        cands += [f"Y{youtube_id}_{s:.3f}_{s + 10:.3f}", f"{youtube_id}_{s:.3f}_{s + 10:.3f}"]
    except ValueError:
        pass
    cands += [youtube_id, f"Y{youtube_id}", *audiocap_ids]
    return list(dict.fromkeys(c for c in cands if c))


def read_caption_csv(path) -> tuple[str, list[tuple[list[str], list[str]]], list[str]]:
    """Captioning references -> (format, [(candidate file names, captions)], notes).

    Clotho (file_name, caption_1..caption_5: one row per clip), AudioCaps (audiocap_id, youtube_id,
    start_time, caption: one row per caption, grouped by (youtube_id, start_time); file names from
    ``audiocaps_candidates``), or generic (file column + 'caption', one row per caption, grouped by file).
    """
    path = Path(path)
    header, rows = _read_csv(path)
    notes: list[str] = []
    groups: dict[tuple, tuple[list[str], list[str]]] = {}
    kind = csv_kind(header)
    if kind == "clotho":
        cols, fcol = caption_columns(header), CLOTHO["file"]
        for rec in _records(path, header, rows, notes):
            caps = [rec[c] for c in cols if rec[c]]
            if rec[fcol] and caps:
                entry = groups.setdefault((rec[fcol],), ([rec[fcol]], []))
                entry[1].extend(caps)
    elif kind == "audiocaps" and AUDIOCAPS["start"] in header:
        yt, start, cap, cap_id = (AUDIOCAPS[k] for k in ("group", "start", "caption", "id"))
        ids: dict[tuple, list[str]] = {}
        for rec in _records(path, header, rows, notes):
            if not (rec[yt] and rec[cap]):
                continue
            key = (rec[yt], _start_seconds(rec[start]))
            groups.setdefault(key, ([], []))[1].append(rec[cap])
            if rec.get(cap_id):
                ids.setdefault(key, []).append(rec[cap_id])
        for key, (cands, _) in groups.items():
            cands.extend(audiocaps_candidates(key[0], key[1], ids.get(key, [])))
    else:
        fcol = column(header, FILE_COLUMNS)
        if fcol is None or "caption" not in header:
            raise DataError(
                f"{path}: not a captioning references CSV (header {header[:8]}). Use Clotho "
                "(file_name,caption_1..caption_5), AudioCaps (audiocap_id,youtube_id,start_time,caption) "
                "or a CSV with columns 'file' and 'caption'."
            )
        kind = "generic"
        for rec in _records(path, header, rows, notes):
            if rec[fcol] and rec["caption"]:
                groups.setdefault((rec[fcol],), ([rec[fcol]], []))[1].append(rec["caption"])
    return kind, list(groups.values()), notes


def read_qa_csv(path) -> tuple[str, list[tuple[str, str, str]], list[str]]:
    """QA metadata -> (format, [(file, question, answer)], notes): Clotho-AQA (file_name,QuestionText,answer)
    or generic (file column, question, answer). Each row is one item (Clotho-AQA repeats a question once per
    annotator; every row is scored, as in the Clotho-AQA paper)."""
    path = Path(path)
    header, rows = _read_csv(path)
    notes: list[str] = []
    if csv_kind(header) == "clotho_aqa":
        kind, fcol, qcol = "clotho_aqa", CLOTHO_AQA["file"], CLOTHO_AQA["question"]
    else:
        kind, fcol, qcol = "generic", column(header, FILE_COLUMNS), "question"
        if fcol is None or not {"question", "answer"} <= set(header):
            raise DataError(
                f"{path}: not a QA CSV (header {header[:8]}). Use Clotho-AQA (file_name,QuestionText,answer) "
                "or a CSV with columns 'file', 'question' and 'answer'."
            )
    out = [(r[fcol], r[qcol], r["answer"]) for r in _records(path, header, rows, notes)
           if r[fcol] and r[qcol] and r["answer"]]
    return kind, out, notes


# ============================================================================================== clips


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


# ============================================================================================== dataset


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


# ============================================================================================== running


def _parse_santa(value) -> list[float] | None:
    if value is None or value == "":
        return None
    raw = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in raw:
        try:
            lam = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"--santa takes numbers between 0 and 1 separated by commas, e.g. 0,0.3; got {v!r}")
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"Santa strength must be between 0 and 1 (got {lam}); 0 = audio only")
        out.append(lam)
    return list(dict.fromkeys(out))


def _lam_key(lam: float) -> str:
    return f"{lam:g}"


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


def _generate(model, z, instructions: list[str], batch_size: int, gen: dict, bar) -> list[str]:
    out: list[str] = []
    for start in range(0, len(instructions), batch_size):
        chunk = instructions[start : start + batch_size]
        out += model.generate_from_embeddings(z[start : start + len(chunk)], chunk, **gen)
        bar.update(len(chunk))
    return out


def _class_scores(ranked: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    per_class = per_class_accuracy(ranked, targets, labels)
    return {
        "n": int(len(targets)),
        "top1": accuracy(ranked, targets, k=1),
        "top5": accuracy(ranked, targets, k=TOP_K) if len(labels) >= TOP_K else None,
        "balanced_top1": float(np.mean(list(per_class.values()))),
        "per_class": per_class,
        "confusion": [{"true": t, "predicted": p, "count": c} for t, p, c in confusion_summary(ranked, targets, labels)],
    }


def _run_classify(model, name, data, keys, emb, lambdas, template, batch_size, gen, progress, timings, preds,
                  rank: bool = False):
    from mats.prompts import instruction_for

    labels = data.labels
    label_index = {l: i for i, l in enumerate(labels)}
    row = {k: i for i, k in enumerate(keys)}
    items = [it for it in data.items if it.clip in row]
    targets = np.array([label_index[it.reference] for it in items], dtype=np.int64)
    rows = [row[it.clip] for it in items]
    result: dict = {"labels": labels, "template": template}

    # CLAP zero-shot: the encoder alone, independent of lambda.
    t0 = time.perf_counter()
    scores = model.zero_shot(emb, labels, template)
    probs = np.array([[s[l] for l in labels] for s in scores])[rows]
    ranked = np.argsort(-probs, axis=1, kind="stable")
    timings["zero_shot_s"] = time.perf_counter() - t0
    result["zero_shot"] = _class_scores(ranked, targets, labels)
    for it, r, t in zip(items, ranked, targets):
        preds.append({"model": name, "method": "zero_shot", "santa": None, "clip": it.clip, "task": "classify",
                      "output": labels[r[0]], "top5": [labels[j] for j in r[:TOP_K]],
                      "reference": it.reference, "correct": bool(r[0] == t)})

    instruction = instruction_for("classify")
    result["mats"] = {}
    if rank:
        result["mats_rank"], timings["rank_s"] = {}, {}
    for lam in lambdas:
        t0 = time.perf_counter()
        z = model.condition(emb, lam)
        with _bar(len(keys), f"{name}: classify λ={_lam_key(lam)}", progress) as bar:
            texts = _generate(model, z, [instruction] * len(keys), batch_size, gen, bar)
        timings["generate_s"][_lam_key(lam)] = time.perf_counter() - t0
        ranked = map_to_labels(model.encoder, texts, labels, template)[rows]
        result["mats"][_lam_key(lam)] = _class_scores(ranked, targets, labels)
        for it, r, t in zip(items, ranked, targets):
            preds.append({"model": name, "method": "mats", "santa": lam, "clip": it.clip, "task": "classify",
                          "output": texts[row[it.clip]], "predicted": labels[r[0]],
                          "top5": [labels[j] for j in r[:TOP_K]], "reference": it.reference,
                          "correct": bool(r[0] == t)})
        if rank:
            t0 = time.perf_counter()
            ranked = _rank_labels(model, z, labels, batch_size)[rows]
            timings["rank_s"][_lam_key(lam)] = time.perf_counter() - t0
            result["mats_rank"][_lam_key(lam)] = _class_scores(ranked, targets, labels)
            for it, r, t in zip(items, ranked, targets):
                preds.append({"model": name, "method": "mats_rank", "santa": lam, "clip": it.clip,
                              "task": "classify", "output": labels[r[0]], "top5": [labels[j] for j in r[:TOP_K]],
                              "reference": it.reference, "correct": bool(r[0] == t)})
    return result


def round_trip(model, labels: Sequence[str], template: str = DEFAULT_TEMPLATE, noise_variance: float = 0.0,
               seed: int = 0, batch_size: int = 16, gen: dict | None = None) -> dict:
    """The text-only part alone: hand the mapper + LM the *text* embedding of ``template`` for each label (plus
    Gaussian noise of ``noise_variance``, as in training, when > 0), ask the classify question, and map the answer
    back onto ``labels`` with ``MAPPING_RULE``. If this is low, no audio can do better: the LM cannot decode even
    its own training signal. Santa is not used (λ = 0)."""
    import torch

    from mats.prompts import instruction_for
    from mats.santa import add_noise

    labels = list(labels)
    texts = [label_prompt(l, template) for l in labels]
    # add_noise is the training noise (normalise, add N(0, var), normalise); variance 0 only normalises.
    z = add_noise(model.encoder.embed_text(texts).float(), noise_variance, torch.Generator().manual_seed(seed))
    z = z.to(model.device)
    gen = {k: v for k, v in (gen or {}).items() if v is not None}
    with _bar(len(labels), "round trip", False) as bar:
        out = _generate(model, z, [instruction_for("classify")] * len(labels), batch_size, gen, bar)
    ranked = map_to_labels(model.encoder, out, labels, template)
    hits = ranked[:, 0] == np.arange(len(labels))
    # The same embeddings, the LM choosing among the labels itself (no free text, no mapping).
    best = _rank_labels(model, z, labels, batch_size)[:, 0]
    rank_hits = best == np.arange(len(labels))
    return {"top1": float(hits.mean()), "rank_top1": float(rank_hits.mean()), "n": len(labels),
            "noise_variance": noise_variance,
            "failures": [{"label": l, "answer": a, "mapped_to": labels[r[0]]}
                         for l, a, r, h in zip(labels, out, ranked, hits) if not h],
            "rank_failures": [{"label": l, "ranked_first": labels[b]}
                              for l, b, h in zip(labels, best, rank_hits) if not h]}


def _rank_labels(model, z, labels: Sequence[str], batch_size: int) -> np.ndarray:
    """[N, L] label indices, best first, by the LM's log-likelihood of each label as the whole answer."""
    scores = np.concatenate([model.label_log_likelihoods(z[s : s + batch_size], labels).numpy()
                             for s in range(0, len(z), batch_size)])
    return np.argsort(-scores, axis=1, kind="stable")


def _run_caption(model, name, data, keys, emb, lambdas, batch_size, gen, progress, timings, preds):
    from mats.prompts import instruction_for

    row = {k: i for i, k in enumerate(keys)}
    items = [it for it in data.items if it.clip in row]
    instruction = instruction_for("caption")
    result: dict = {"mats": {}}
    for lam in lambdas:
        t0 = time.perf_counter()
        z = model.condition(emb, lam)
        with _bar(len(keys), f"{name}: caption λ={_lam_key(lam)}", progress) as bar:
            texts = _generate(model, z, [instruction] * len(keys), batch_size, gen, bar)
        timings["generate_s"][_lam_key(lam)] = time.perf_counter() - t0
        hyps = {it.clip: texts[row[it.clip]] for it in items}
        refs = {it.clip: it.reference for it in items}
        scores = caption_metrics(hyps, refs)
        sims = text_similarity(model.encoder, [hyps[it.clip] for it in items], [it.reference for it in items])
        scores["text_similarity"] = float(np.mean(sims))
        scores["n"] = len(items)
        result["mats"][_lam_key(lam)] = scores
        for it, sim in zip(items, sims):
            preds.append({"model": name, "method": "mats", "santa": lam, "clip": it.clip, "task": "caption",
                          "output": hyps[it.clip], "reference": it.reference, "correct": None,
                          "text_similarity": sim})
    return result


def _answer_type(answer: str) -> str:
    return "yes_no" if normalize_answer(answer) in ("yes", "no") else "single_word"


def _run_qa(model, name, data, keys, emb, lambdas, batch_size, gen, progress, timings, preds):
    import torch

    from mats.prompts import instruction_for

    row = {k: i for i, k in enumerate(keys)}
    items = [it for it in data.items if it.clip in row]
    # Clotho-AQA repeats each (clip, question) once per annotator: decode each pair once.
    pairs = list(dict.fromkeys((it.clip, it.question) for it in items))
    pair_rows = torch.tensor([row[c] for c, _ in pairs], device=emb.device)
    instructions = [instruction_for("ask", q) for _, q in pairs]
    types = [_answer_type(it.reference) for it in items]
    result: dict = {"mats": {}}
    for lam in lambdas:
        t0 = time.perf_counter()
        z = model.condition(emb, lam)[pair_rows]
        with _bar(len(pairs), f"{name}: qa λ={_lam_key(lam)}", progress) as bar:
            texts = _generate(model, z, instructions, batch_size, gen, bar)
        timings["generate_s"][_lam_key(lam)] = time.perf_counter() - t0
        answer = dict(zip(pairs, texts))
        outs = [answer[(it.clip, it.question)] for it in items]
        correct = [normalize_answer(o) == normalize_answer(it.reference) for o, it in zip(outs, items)]
        scores: dict = {"n": len(items), "questions": len(pairs), "accuracy": qa_exact_match(outs, [it.reference for it in items])}
        for kind in ("yes_no", "single_word"):
            sel = [c for c, t in zip(correct, types) if t == kind]
            scores[kind] = {"n": len(sel), "accuracy": float(np.mean(sel)) if sel else None}
        result["mats"][_lam_key(lam)] = scores
        for it, out, ok in zip(items, outs, correct):
            preds.append({"model": name, "method": "mats", "santa": lam, "clip": it.clip, "task": "ask",
                          "question": it.question, "output": out, "reference": it.reference, "correct": bool(ok)})
    return result


def _model_name(model, i: int, taken: set[str]) -> str:
    base = str(model) if isinstance(model, (str, Path)) else (getattr(model, "source", None) or f"model{i + 1}")
    name, n = base, 2
    while name in taken:
        name, n = f"{base} ({n})", n + 1
    taken.add(name)
    return name


def _versions() -> dict:
    from importlib import metadata

    import mats

    out = {"mats": mats.__version__, "python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "transformers", "peft", "numpy", "soundfile", "soxr"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def evaluate(models: Sequence, task: str, clips_dir, meta, santa=None, labels: Sequence[str] | None = None,
             out=None, limit: int | None = None, batch_size: int = 8, gen: dict | None = None,
             template: str = DEFAULT_TEMPLATE, device=None, progress: bool = True, rank: bool = True,
             quantize: str | bool = "auto") -> dict:
    """Evaluate checkpoints (folder paths, Hub ids or loaded ``MATS`` objects) on one task; returns the results
    dict (the content of results.json). ``santa``: list of lambdas (default: each checkpoint's own).
    ``out``: folder for results.json, predictions.jsonl, report.md and plots (None: write nothing).
    ``gen``: generation overrides such as ``{"num_beams": 4, "max_new_tokens": 30}``.
    ``rank`` (classify): also let the LM rank the labels itself (``MATS.label_log_likelihoods``), reported as
    ``mats_rank`` next to the generate-and-map ``mats``. ``quantize``: as ``MATS.from_pretrained`` (fp16 packed
    LM weights on a CPU by default)."""
    task = eval_task(task)
    if isinstance(models, (str, Path)) or not isinstance(models, Sequence):
        models = [models]
    if not models:
        raise ConfigError("give at least one model (--model CHECKPOINT)")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if task == "hearing":
        raise ConfigError("the hearing checks run through mats.hearing.evaluate_hearing (or `mats eval --task hearing`)")
    if task == "classify" and "{label}" not in template:
        raise ConfigError(f"--template must contain '{{label}}', got {template!r}")
    lambdas_arg = _parse_santa(santa)
    gen = {k: v for k, v in (gen or {}).items() if v is not None}
    started = time.time()
    data = load_eval_data(task, clips_dir, meta, labels=labels, limit=limit)

    cache: dict = {}  # encoder key -> {clip: embedding}: one audio pass per encoder
    skipped: dict[str, str] = {}
    predictions: list[dict] = []
    model_results = []
    taken: set[str] = set()
    for i, spec in enumerate(models):
        t_model = time.perf_counter()
        if isinstance(spec, (str, Path)):
            from mats.model import MATS

            model = MATS.from_pretrained(spec, device=device, quantize=quantize)
        else:
            model = spec
        name = _model_name(spec, i, taken)
        timings: dict = {"load_s": time.perf_counter() - t_model, "generate_s": {}}
        lambdas = lambdas_arg if lambdas_arg is not None else [float(model.config.santa.strength)]

        t0 = time.perf_counter()
        n_cached = sum(c in cache.get(_encoder_key(model.encoder), {}) for c in data.clips)
        keys, emb = _embed(model, data, cache, skipped, batch_size, progress, name)
        timings["encode_s"] = time.perf_counter() - t0
        entry: dict = {
            "name": name,
            "source": getattr(model, "source", None),
            "encoder": model.encoder.to_config() if hasattr(model.encoder, "to_config") else None,
            "lm": dict(model.config.lm),
            "santa_bank": model.santa is not None,
            "santa": lambdas,
            "generation": model._gen_kwargs(**gen),
            "clips_evaluated": len(keys),
            "embeddings_reused": n_cached,
        }
        if model.santa is None and any(l > 0 for l in lambdas):
            entry["note"] = "this checkpoint has no Santa bank: every lambda is audio only"
        if emb is None:
            entry["results"] = None
            entry["note"] = "no clip could be read; nothing evaluated"
        else:
            args = (model, name, data, keys, emb, lambdas)
            if task == "classify":
                entry["results"] = _run_classify(*args, template, batch_size, gen, progress, timings, predictions,
                                                 rank=rank)
            elif task == "caption":
                entry["results"] = _run_caption(*args, batch_size, gen, progress, timings, predictions)
            else:
                entry["results"] = _run_qa(*args, batch_size, gen, progress, timings, predictions)
        timings["total_s"] = time.perf_counter() - t_model
        work = timings["total_s"] - timings["load_s"]
        # One "clip evaluation" = one clip at one lambda (encoding, generation and scoring all counted).
        timings["clips_per_s"] = len(keys) * len(lambdas) / work if work > 0 and keys else None
        entry["timings"] = timings
        model_results.append(entry)
        if spec is not model:
            del model  # free a model we loaded before loading the next one

    results = {
        "task": task,
        "config": {
            "models": [str(m) if isinstance(m, (str, Path)) else r["name"] for m, r in zip(models, model_results)],
            "clips_dir": str(clips_dir), "meta": str(meta), "santa": lambdas_arg, "labels": list(labels) if labels else None,
            "template": template if task == "classify" else None, "limit": limit, "batch_size": batch_size,
            "gen": gen, "device": str(device) if device is not None else None, "quantize": quantize,
        },
        "versions": _versions(),
        "data": {
            "format": data.format, "metadata_entries": data.rows, "clips_matched": len(data.clips),
            "items": len(data.items), "clips_skipped": len(skipped),
            "skipped": [{"clip": c, "reason": r} for c, r in skipped.items()],
            "missing_clips": len(data.missing), "missing_examples": data.missing[:MAX_LISTED],
            "unlisted_files": data.unlisted, "notes": data.notes[:MAX_LISTED],
            "labels": data.labels,
        },
        "mapping_rule": MAPPING_RULE if task == "classify" else None,
        "models": model_results,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "elapsed_s": time.time() - started,
    }
    if out is not None:
        write_outputs(results, predictions, out)
    return results


# ============================================================================================== outputs


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]


def summary_table(results: dict) -> list[str]:
    """The main results table (markdown lines): what `mats eval` prints and report.md starts with."""
    task, rows = results["task"], []
    if task == "classify":
        for m in results["models"]:
            r = m["results"]
            if r is None:
                continue
            zs = r["zero_shot"]
            rows.append([m["name"], "CLAP zero-shot", "-", zs["top1"], zs["top5"], zs["balanced_top1"], zs["n"]])
            for lam, s in r["mats"].items():
                rows.append([m["name"], "MATS classify", lam, s["top1"], s["top5"], s["balanced_top1"], s["n"]])
            for lam, s in r.get("mats_rank", {}).items():
                rows.append([m["name"], "MATS rank", lam, s["top1"], s["top5"], s["balanced_top1"], s["n"]])
        return _table(["model", "method", "λ", "top-1", "top-5", "balanced top-1", "clips"], rows)
    if task == "caption":
        names = ["bleu_1", "bleu_4", "rouge_l", "cider_d", "meteor", "spice", "spider", "text_similarity"]
        for m in results["models"]:
            for lam, s in (m["results"] or {"mats": {}})["mats"].items():
                rows.append([m["name"], lam, *[s[k] for k in names], s["n"]])
        return _table(["model", "λ", "BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr-D", "METEOR", "SPICE", "SPIDEr",
                       "text sim.", "clips"], rows)
    for m in results["models"]:
        for lam, s in (m["results"] or {"mats": {}})["mats"].items():
            rows.append([m["name"], lam, s["accuracy"], s["yes_no"]["accuracy"], s["yes_no"]["n"],
                         s["single_word"]["accuracy"], s["single_word"]["n"], s["n"]])
    return _table(["model", "λ", "exact match", "yes/no", "n yes/no", "single word", "n single word", "questions"], rows)


def _report(results: dict, plots: dict[str, str]) -> str:
    d, task = results["data"], results["task"]
    L = [f"# MATS evaluation: {task}", ""]
    L += [f"- clips: `{results['config']['clips_dir']}`; metadata: `{results['config']['meta']}` ({d['format']} format)",
          f"- {d['clips_matched']} clips matched ({d['items']} items), {d['clips_skipped']} unreadable and skipped, "
          f"{d['missing_clips']} metadata entries without a clip, {d['unlisted_files']} files not in the metadata",
          f"- started {results['started']}, took {results['elapsed_s']:.1f} s; mats {results['versions']['mats']}, "
          f"torch {results['versions']['torch']}, transformers {results['versions']['transformers']}", ""]
    for m in results["models"]:
        g = m["generation"]
        L.append(f"- **{m['name']}**: λ {', '.join(_lam_key(l) for l in m['santa'])}; Santa bank: "
                 f"{'yes' if m['santa_bank'] else 'no'}; beams {g.get('num_beams')}, max new tokens "
                 f"{g.get('max_new_tokens')}" + (f" ({m['note']})" if m.get("note") else ""))
    L += ["", "## Results", ""] + summary_table(results) + [""]
    if task == "classify":
        L += ["Zero-shot: the encoder alone, prompt template "
              f"`{results['config']['template']}`, labels ranked by cosine similarity to the clip.",
              "", f"MATS classify mapping rule: {results['mapping_rule']}", ""]
        L += [f"Label set ({len(d['labels'])}): {', '.join(d['labels'])}", ""]
        for m in results["models"]:
            r = m["results"]
            if r is None:
                continue
            methods = [("zero-shot", r["zero_shot"])] + [(f"MATS λ={lam}", s) for lam, s in r["mats"].items()]
            L += [f"### Per-class top-1 accuracy: {m['name']}", ""]
            classes = list(methods[0][1]["per_class"])
            L += _table(["class", *[n for n, _ in methods]], [[c, *[s["per_class"][c] for _, s in methods]] for c in classes])
            L += ["", f"### Most frequent confusions: {m['name']}", ""]
            for n, s in methods:
                conf = ", ".join(f"{c['true']} → {c['predicted']} ({c['count']})" for c in s["confusion"]) or "none"
                L.append(f"- {n}: {conf}")
            L.append("")
    if task == "caption":
        un = {}
        for m in results["models"]:
            for s in (m["results"] or {"mats": {}})["mats"].values():
                un.update(s.get("unavailable", {}))
        for k, why in un.items():
            L.append(f"- {k.upper()} not computed: {why}")
        L += ["", "Text similarity: cosine, in the encoder's text space, between each caption and its closest "
              "reference (mean over clips).", ""]
    L += ["## Unreadable clips (skipped)", ""]
    L += [f"- `{s['clip']}`: {s['reason']}" for s in d["skipped"]] or ["none"]
    L += [""]
    if d["missing_clips"]:
        L += [f"{d['missing_clips']} metadata entries have no clip in the folder (e.g. "
              f"{', '.join(d['missing_examples'][:5])}).", ""]
    if d["notes"]:
        L += ["## Notes", ""] + [f"- {n}" for n in d["notes"]] + [""]
    L += ["## Throughput", ""]
    rows = [[m["name"], m["clips_evaluated"], len(m["santa"]), m["timings"]["load_s"], m["timings"]["encode_s"],
             sum(m["timings"]["generate_s"].values()), m["timings"]["clips_per_s"]] for m in results["models"]]
    L += _table(["model", "clips", "λ values", "load s", "encode s", "generate s", "clips/s (clip × λ)"], rows)
    L += [""]
    if plots:
        L += ["## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()] + [""]
    return "\n".join(L)


def _sweep_series(results: dict) -> tuple[str, dict[str, tuple[list[float], list[float]]], dict[str, float]]:
    """(metric name, model -> (lambdas, values), model -> zero-shot baseline) for the λ plot."""
    task = results["task"]
    metric = {"classify": ("top1", "top-1 accuracy"), "caption": ("cider_d", "CIDEr-D"),
              "ask": ("accuracy", "exact-match accuracy")}[eval_task(task)]
    series, baseline = {}, {}
    for m in results["models"]:
        r = m["results"]
        if r is None:
            continue
        pts = sorted((float(l), s[metric[0]]) for l, s in r["mats"].items() if s[metric[0]] is not None)
        series[m["name"]] = ([p[0] for p in pts], [p[1] for p in pts])
        if task == "classify":
            baseline[m["name"]] = r["zero_shot"]["top1"]
    return metric[1], series, baseline


def write_plots(results: dict, out: Path) -> tuple[dict[str, str], str | None]:
    """PNG plots (Agg canvas, no pyplot state). Returns ({title: file name}, reason when none were made)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return {}, "matplotlib is not installed (pip install matplotlib); plots skipped"
    made = {}
    ylabel, series, baseline = _sweep_series(results)
    if series:
        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for i, (name, (xs, ys)) in enumerate(series.items()):
            line = ax.plot(xs, ys, marker="o", label=f"{name} (MATS)")[0]
            if name in baseline:
                ax.axhline(baseline[name], color=line.get_color(), linestyle="--", label=f"{name} (zero-shot)")
        ax.set_xlabel("Santa strength λ")
        ax.set_ylabel(ylabel)
        if results["task"] == "caption":
            ax.set_ylim(bottom=0)
        else:  # accuracies: the whole 0..1 range, so sweeps of different runs compare at a glance
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{ylabel} vs λ")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "santa_sweep.png", dpi=120)
        made[f"{ylabel} vs λ"] = "santa_sweep.png"
    if results["task"] == "classify":
        models = [m for m in results["models"] if m["results"] is not None]
        if models:
            classes = list(models[0]["results"]["zero_shot"]["per_class"])
            fig = Figure(figsize=(5 * len(models) + 1, 1.5 + 0.28 * len(classes) * max(1, len(models[0]["santa"]) / 2)))
            FigureCanvasAgg(fig)
            for j, m in enumerate(models):
                ax = fig.add_subplot(1, len(models), j + 1)
                methods = [("zero-shot", m["results"]["zero_shot"])] + [
                    (f"MATS λ={l}", s) for l, s in m["results"]["mats"].items()]
                h = 0.8 / len(methods)
                y = np.arange(len(classes))
                for k, (label, s) in enumerate(methods):
                    ax.barh(y + k * h, [s["per_class"].get(c, 0.0) for c in classes], height=h, label=label)
                ax.set_yticks(y + 0.4 - h / 2, classes, fontsize=7)
                ax.invert_yaxis()
                ax.set_xlim(0, 1)
                ax.set_xlabel("top-1 accuracy")
                ax.set_title(m["name"], fontsize=9)
                ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(out / "per_class_accuracy.png", dpi=100)
            made["per-class accuracy"] = "per_class_accuracy.png"
    return made, None


def write_outputs(results: dict, predictions: list[dict], out) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots, why_not = write_plots(results, out)
    results["outputs"] = {"results": "results.json", "predictions": "predictions.jsonl", "report": "report.md",
                          "plots": list(plots.values()), "plots_skipped": why_not}
    (out / "predictions.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions),
                                           encoding="utf-8")
    (out / "report.md").write_text(_report(results, plots) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


# ============================================================================================== CLI


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", required=True, metavar="CKPT",
                   help="checkpoint folder or Hub id; repeat to compare several (--model A --model B)")
    p.add_argument("--task", required=True, choices=[*TASKS, *EVAL_TASK_ALIASES])
    p.add_argument("--clips", required=True, metavar="DIR", help="folder of audio clips (searched recursively)")
    p.add_argument("--meta", required=True, metavar="CSV",
                   help="classify: labels CSV (ESC-50, UrbanSound8K, file,label); caption: references "
                        "(Clotho, AudioCaps, file,caption); qa: Clotho-AQA or file,question,answer; "
                        "hearing: file,coarse,family,sources (scripts/make_corpus.py's corpus.csv)")
    p.add_argument("--labels", default=None, help="classify: comma-separated label set (default: every label in --meta)")
    p.add_argument("--santa", default=None, metavar="L1,L2", help="Santa strengths to sweep, e.g. 0,0.3,0.6 (default: each checkpoint's)")
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help="classify: text prompt for a label (default: %(default)r)")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only N clips, evenly spaced over the metadata (a quick look)")
    p.add_argument("--beams", type=int, default=None, help="beam size (default: checkpoint's)")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--no-quantize", action="store_true", help=NO_QUANTIZE_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-rank", action="store_true",
                   help="classify: skip 'MATS rank' (the LM scoring every label as its answer; costs one LM pass "
                        "over all labels per clip)")


def eval_from_cli(args) -> int:
    if args.task == "hearing":
        from mats.hearing import hearing_from_cli

        return hearing_from_cli(args)
    labels = [l.strip() for l in args.labels.split(",") if l.strip()] if args.labels else None
    results = evaluate(
        args.model, args.task, args.clips, args.meta, santa=args.santa, labels=labels, out=args.out,
        limit=args.limit, batch_size=args.batch_size, template=args.template, device=args.device,
        gen={"num_beams": args.beams, "max_new_tokens": args.max_new_tokens},
        progress=not getattr(args, "no_progress", False), rank=not getattr(args, "no_rank", False),
        quantize="none" if getattr(args, "no_quantize", False) else "auto",
    )
    print("\n".join(summary_table(results)))
    if results["mapping_rule"]:
        print(f"\nMATS classify mapping rule: {results['mapping_rule']}")
    d = results["data"]
    if d["clips_skipped"]:
        print(f"warning: {d['clips_skipped']} unreadable clip(s) skipped (listed in report.md): "
              + ", ".join(s["clip"] for s in d["skipped"][:5]), file=sys.stderr)
    if d["missing_clips"]:
        print(f"note: {d['missing_clips']} metadata entries have no clip in {args.clips}", file=sys.stderr)
    print(f"wrote {args.out}/results.json, predictions.jsonl, report.md and plots", file=sys.stderr)
    return 0
