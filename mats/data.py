"""Text-only training samples from caption, label and QA files.

MATS never trains on audio: every sample is text. ``text`` is what the frozen encoder's text tower embeds
(it stands in for the audio), ``prompt`` is the instruction the language model sees, ``answer`` is the target.

    samples, report = load_source("captions/audiocaps_v1/train.csv")   # format detected from the header

Splitting by recording and mixing sources with weights into one training set is ``mats.mixture``.

Every sample carries a ``group``: the id of the recording it describes, namespaced so that the same
recording gets the same group in every dataset ("youtube:<id>" for AudioCaps / AudioSet / MusicCaps,
"freesound:<id>" for ESC-50 / UrbanSound8K / FSD50K, "clotho:<file>" for Clotho and Clotho-AQA).
``mats.mixture.split_by_group`` hashes the group, so no recording is ever on both sides of a train/validation split,
even across datasets (see shared/data/SOURCES.md, rules 1-3).

Malformed rows are skipped, counted and reported (first reasons kept, one warning per file), never
dropped silently. Plain Python only (csv, json): no torch, no numpy.
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from mats.errors import ConfigError, DataError
from mats.formats import (CLOTHO_AQA, DESCRIPTIONS, ESC50, URBANSOUND8K, US8K_COLUMNS, caption_columns, csv_kind,
                          first_row, headerless_us8k, is_class_list, open_text, supported_formats)
# Task names and phrasings live in mats.prompts; re-exported here, where the trainer's data has always found them.
from mats.prompts import (CAPTION_PROMPTS, CLASSIFY_PROMPTS, LABEL_SEPARATOR, MUSIC_CAPTION_PROMPTS,  # noqa: F401
                        PROMPTS, TASKS, humanise_label)

log = logging.getLogger(__name__)

# Label-only datasets have no caption to embed, so a caption-like sentence is built from the label(s).
LABEL_TEXT_TEMPLATES = (
    "the sound of {labels}",
    "{labels}",
    "a recording of {labels}",
    "{labels} can be heard",
    "an audio clip with {labels}",
)

MAX_REASONS = 5  # skip reasons kept per file; the count covers all of them

_AUDIO_NAME = re.compile(r"\S+\.(wav|flac|mp3|ogg|m4a|aac|au)\b", re.IGNORECASE)
_DAMAGED_YTID = "#NAME?"  # what Excel made of YouTube ids starting with "-" (SOURCES.md)


@dataclass(frozen=True, slots=True)
class Sample:
    """One text-only training example."""

    text: str  # embedded by the encoder's text tower (a caption, or a sentence built from labels)
    task: str  # one of TASKS
    prompt: str  # instruction or question shown to the LM
    answer: str  # target text
    source: str  # dataset name, e.g. "audiocaps"
    group: str  # recording id, e.g. "youtube:r1nicOVtvkQ"; never split across train / validation

    def __post_init__(self):
        if self.task not in TASKS:
            raise DataError(f"Sample task {self.task!r} is not one of {TASKS}.")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoadReport:
    """What happened while reading one file."""

    path: str
    kind: str
    rows_read: int = 0  # data rows (or JSON items) read, blank lines excluded
    samples: int = 0  # samples made
    skipped: int = 0  # rows skipped (for multi-caption rows, each unusable caption counts once)
    reasons: list[str] = field(default_factory=list)  # the first MAX_REASONS skip reasons
    notes: list[str] = field(default_factory=list)  # things worth knowing that are not skips

    def skip(self, where: str, why: str) -> None:
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"{where}: {why}")

    def summary(self) -> str:
        text = f"{self.path} [{self.kind}]: {self.rows_read} rows, {self.samples} samples, {self.skipped} skipped"
        if self.reasons:
            text += " (first: " + "; ".join(self.reasons) + ")"
        return text

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------- helpers


def _clean(value: object) -> str:
    """Strip and collapse whitespace; None (a missing field) becomes ""."""
    return " ".join(str(value).split()) if value is not None else ""


def _join_natural(labels: Sequence[str]) -> str:
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def _rng(seed: int, *parts: object) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, so this is stable across runs and platforms.
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def _clotho_group(file_name: str) -> str:
    # Clotho file names are spelled differently across releases ("Geese1 - (...) 18.44 05.10.wav" in
    # Clotho-AQA, "geese1_-_(...)_18_44_05.10.wav" in the caption CSVs, underscores for spaces in OpenAQA):
    # keep only lower-case letters and digits so every spelling gives the same group. A few distinct clips
    # whose names differ only in case or punctuation ("Car Keys.wav", "Car_Keys.wav") then share a group:
    # that only makes the train/validation split stricter.
    stem = re.sub(r"\.(wav|flac|mp3|ogg)$", "", Path(file_name.strip()).name.lower())
    return "clotho:" + (re.sub(r"[^a-z0-9]+", "_", stem).strip("_") or stem)


def _group_from_audio_id(audio_id: str, dataset: str) -> str:
    """Turn an LTU/OpenAQA audio path into the same namespaced group the other loaders use."""
    path = audio_id.replace("\\", "/").lower()
    stem = Path(audio_id).stem
    ds = dataset.lower()
    if "clotho" in path or "clotho" in ds:
        return _clotho_group(Path(audio_id).name)
    if "fsd50k" in path or "freesound" in path or "fsd50k" in ds or "freesound" in ds:
        return f"freesound:{stem}"
    if "soundbible" in path or "sound_bible" in ds:
        return f"soundbible:{stem}"
    if "vggsound" in path or "vggsound" in ds:
        return f"youtube:{stem[:11]}"  # "<ytid>_<start>": the recording is the YouTube id
    if "audioset" in path or ds.startswith(("as_", "audiocaps")):
        return f"youtube:{stem[1:] if stem.startswith('Y') and len(stem) == 12 else stem}"
    return f"{ds or 'ltu'}:{stem}"


def _csv_rows(path: Path, report: LoadReport, required: Sequence[str], columns: Sequence[str] | None = None):
    """Yield (line number, {lower-cased column: value}) for well-formed rows; skip and report the rest.

    ``columns`` names the columns of a header-less file; otherwise the first line is the header.
    """
    try:
        with open_text(path) as f:
            reader = csv.reader(f)
            if columns is None:
                header = [h.strip().lower() for h in next(reader, [])]
            else:
                header = list(columns)
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {missing} for the {report.kind} format "
                    f"(found {header}). Check the file or pass the right kind=."
                )
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # blank line: not a row
                report.rows_read += 1
                where = f"line {reader.line_num}"
                if len(row) != len(header):
                    what = "missing column" if len(row) < len(header) else "extra column (unquoted comma?)"
                    report.skip(where, f"{len(row)} fields, expected {len(header)} ({what})")
                    continue
                yield where, dict(zip(header, row))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}). Re-save the file as UTF-8.") from e
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e}).") from e


def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON ({e}).") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}). Re-save the file as UTF-8.") from e


def _caption_sample(text: str, task: str, source: str, group: str, rng: random.Random) -> Sample:
    # The paper trains captioning on the caption itself: embed it, then reproduce it.
    return Sample(text=text, task=task, prompt=rng.choice(PROMPTS[task]), answer=text, source=source, group=group)


def _label_sample(labels: Sequence[str], source: str, group: str, rng: random.Random, separator: str) -> Sample:
    names = [humanise_label(lab) for lab in labels]
    text = rng.choice(LABEL_TEXT_TEMPLATES).format(labels=_join_natural(names))
    return Sample(
        text=text, task="classify", prompt=rng.choice(CLASSIFY_PROMPTS), answer=separator.join(names),
        source=source, group=group,
    )


# ----------------------------------------------------------------------------------------------- loaders
# Each loader: (path, *, seed=0, ...) -> (samples, report). `seed` picks prompts and templates.


def load_audiocaps(path, *, seed: int = 0) -> tuple[list[Sample], LoadReport]:
    """AudioCaps CSV: audiocap_id,youtube_id,start_time,caption (v1 and v2)."""
    path, report, rng, out = _start(path, "audiocaps", seed)
    for where, row in _csv_rows(path, report, ["youtube_id", "caption"]):
        caption, ytid = _clean(row["caption"]), _clean(row["youtube_id"])
        if not caption:
            report.skip(where, "empty caption")
        elif not ytid:
            report.skip(where, "empty youtube_id")
        else:
            out.append(_caption_sample(caption, "caption", "audiocaps", f"youtube:{ytid}", rng))
    return _finish(out, report)


def load_clotho(path, *, seed: int = 0) -> tuple[list[Sample], LoadReport]:
    """Clotho captions CSV: file_name,caption_1..caption_5 (one sample per non-empty caption)."""
    path, report, rng, out = _start(path, "clotho", seed)
    for file_name, captions, where in _clotho_rows(path, report):
        for caption in captions:
            out.append(_caption_sample(caption, "caption", "clotho", _clotho_group(file_name), rng))
    return _finish(out, report)


def _clotho_rows(path: Path, report: LoadReport) -> Iterator[tuple[str, list[str], str]]:
    caption_cols = caption_columns([h.strip().lower() for h in first_row(path)])
    if not caption_cols:
        raise DataError(f"{path}: no caption_1..caption_5 columns for the clotho format (found {header}).")
    for where, row in _csv_rows(path, report, ["file_name"]):
        file_name = _clean(row["file_name"])
        if not file_name:
            report.skip(where, "empty file_name")
            continue
        captions = []
        for col in caption_cols:
            caption = _clean(row[col])
            if caption:
                captions.append(caption)
            else:
                report.skip(where, f"empty {col}")
        yield file_name, captions, where


def load_wavcaps(path, *, seed: int = 0) -> tuple[list[Sample], LoadReport]:
    """WavCaps JSON: {"data": [{"id", "caption", ...}]} (sb_final.json and its siblings)."""
    path, report, rng, out = _start(path, "wavcaps", seed)
    data = _load_json(path)
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DataError(f'{path}: expected a WavCaps JSON object with a "data" list.')
    # The recording namespace depends on which WavCaps subset this is (by its file name).
    name = path.name.lower()
    namespace = ("soundbible" if name.startswith("sb") else "freesound" if name.startswith("fsd")
                 else "youtube" if name.startswith("as") else "bbc" if name.startswith("bbc") else "wavcaps")
    for i, item in enumerate(items):
        report.rows_read += 1
        where = f"item {i}"
        if not isinstance(item, dict):
            report.skip(where, "not an object")
            continue
        caption, rid = _clean(item.get("caption")), _clean(item.get("id"))
        if not caption:
            report.skip(where, "empty caption")
            continue
        if namespace == "youtube":  # AudioSet_SL ids look like "Y<ytid>.wav"
            rid = Path(rid).stem[1:] if rid.startswith("Y") else Path(rid).stem
        out.append(_caption_sample(caption, "caption", "wavcaps", f"{namespace}:{rid or f'item{i}'}", rng))
    return _finish(out, report)


def load_musiccaps(path, *, seed: int = 0) -> tuple[list[Sample], LoadReport]:
    """MusicCaps CSV: ytid,start_s,end_s,...,aspect_list,caption,... (task music_caption)."""
    path, report, rng, out = _start(path, "musiccaps", seed)
    for where, row in _csv_rows(path, report, ["ytid", "caption"]):
        caption, ytid = _clean(row["caption"]), _clean(row["ytid"])
        if not caption:
            report.skip(where, "empty caption")
        elif not ytid:
            report.skip(where, "empty ytid")
        else:
            out.append(_caption_sample(caption, "music_caption", "musiccaps", f"youtube:{ytid}", rng))
    return _finish(out, report)


def load_brain2music(path, *, seed: int = 0) -> tuple[list[Sample], LoadReport]:
    """brain2music GTZAN captions CSV: ID,DescEN (task music_caption; group = the GTZAN track)."""
    path, report, rng, out = _start(path, "brain2music", seed)
    for where, row in _csv_rows(path, report, ["id", "descen"]):
        caption, track = _clean(row["descen"]), _clean(row["id"])
        if not caption:
            report.skip(where, "empty caption")
        elif not track:
            report.skip(where, "empty ID")
        else:
            track = re.sub(r"_\d+s$", "", track)  # "blues.00000_15s": the 15 s excerpt of blues.00000
            out.append(_caption_sample(caption, "music_caption", "brain2music", f"gtzan:{track}", rng))
    return _finish(out, report)


def load_text(path, *, seed: int = 0, task: str = "caption") -> tuple[list[Sample], LoadReport]:
    """Plain text, one caption per line (blank lines and '#' comments ignored); each line is its own group."""
    if task not in ("caption", "music_caption"):
        raise ConfigError(f"task={task!r} for a plain text file: use 'caption' or 'music_caption'.")
    path, report, rng, out = _start(path, "text", seed)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}). Re-save the file as UTF-8.") from e
    for n, line in enumerate(lines, start=1):
        caption = _clean(line)
        if not caption or caption.startswith("#"):
            continue
        report.rows_read += 1
        if _AUDIO_NAME.fullmatch(caption):
            report.skip(f"line {n}", "looks like an audio file path, not a caption")
            continue
        out.append(_caption_sample(caption, task, path.stem, f"{path.stem}:{n}", rng))
    return _finish(out, report)


def load_esc50(path, *, seed: int = 0, separator: str = LABEL_SEPARATOR) -> tuple[list[Sample], LoadReport]:
    """ESC-50 CSV: filename,fold,target,category,esc10,src_file,take (also clips/esc50/labels.csv)."""
    path, report, rng, out = _start(path, "esc50", seed)
    for where, row in _csv_rows(path, report, list(ESC50.values())):
        label, src = _clean(row[ESC50["label"]]), _clean(row[ESC50["group"]])
        if not label:
            report.skip(where, "empty category")
        elif not src:
            report.skip(where, "empty src_file")
        else:
            # src_file is the Freesound id: the same namespace as UrbanSound8K's fsID (SOURCES.md rule 3).
            out.append(_label_sample([label], "esc50", f"freesound:{src}", rng, separator))
    return _finish(out, report)


def load_urbansound8k(path, *, seed: int = 0, separator: str = LABEL_SEPARATOR) -> tuple[list[Sample], LoadReport]:
    """UrbanSound8K CSV, with or without the header slice_file_name,fsID,start,end,salience,fold,classID,class."""
    path, report, rng, out = _start(path, "urbansound8k", seed)
    columns = US8K_COLUMNS if headerless_us8k(first_row(path)) else None
    if columns is not None:
        report.notes.append("no header line: assumed the official UrbanSound8K column order")
    for where, row in _csv_rows(path, report, [URBANSOUND8K["group"], URBANSOUND8K["label"]], columns=columns):
        label, fsid = _clean(row[URBANSOUND8K["label"]]), _clean(row[URBANSOUND8K["group"]])
        if not label:
            report.skip(where, "empty class")
        elif not fsid:
            report.skip(where, "empty fsID")
        else:
            out.append(_label_sample([label], "urbansound8k", f"freesound:{fsid}", rng, separator))
    return _finish(out, report)


def read_class_map(path) -> dict[str, str]:
    """mid -> display name, from class_labels_indices.csv (index,mid,display_name) or AudioSet ontology.json."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class list not found. Pass labels= with AudioSet's class_labels_indices.csv "
                        "or ontology.json.")
    if path.suffix.lower() == ".json":
        data = _load_json(path)
        if not isinstance(data, list):
            raise DataError(f"{path}: expected the AudioSet ontology (a JSON list of {{id, name}}).")
        return {str(c["id"]): str(c["name"]) for c in data if isinstance(c, dict) and "id" in c and "name" in c}
    report = LoadReport(str(path), "class_map")
    mapping = {_clean(r["mid"]): _clean(r["display_name"]) for _, r in _csv_rows(path, report, ["mid", "display_name"])}
    if report.skipped:
        log.warning("%s", report.summary())
    return mapping


def load_audioset(path, *, seed: int = 0, labels=None, separator: str = LABEL_SEPARATOR) -> tuple[list[Sample], LoadReport]:
    """AudioSet segments CSV: "# YTID, start_seconds, end_seconds, positive_labels" then one row per clip.

    Handles the Excel-damaged copy: labels spread over several (possibly quoted) columns. ``labels`` is the
    class list (default: class_labels_indices.csv next to the file). Rows whose YouTube id became "#NAME?"
    are kept (their labels are intact) and share one group, so they all land on the same side of a split.
    """
    path, report, rng, out = _start(path, "audioset", seed)
    labels_path = Path(labels) if labels is not None else path.with_name("class_labels_indices.csv")
    if labels is None and not labels_path.is_file():
        raise DataError(f"{path}: needs the AudioSet class list to name its labels; none found at {labels_path}. "
                        "Pass labels=<class_labels_indices.csv or ontology.json>.")
    names = read_class_map(labels_path)
    damaged = 0
    unknown: list[str] = []
    try:
        with open_text(path) as f:
            reader = csv.reader(f)
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                first = row[0].strip()
                if first.startswith("#") and first != _DAMAGED_YTID:
                    continue  # the "# YTID, start_seconds, ..." header comment
                report.rows_read += 1
                where = f"line {reader.line_num}"
                if len(row) < 4:
                    report.skip(where, f"{len(row)} fields, expected YTID, start, end, labels (missing column)")
                    continue
                mids = [m.strip().strip('"').strip() for cell in row[3:] for m in cell.split(",")]
                mids = [m for m in mids if m]
                known = [names[m] for m in mids if m in names]
                unknown.extend(m for m in mids if m not in names)
                if not known:
                    report.skip(where, "no known labels" if mids else "empty labels")
                    continue
                if first == _DAMAGED_YTID or not first:
                    damaged += 1
                    group = "audioset:damaged-youtube-id"
                else:
                    group = f"youtube:{first}"
                out.append(_label_sample(known, "audioset", group, rng, separator))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}). Re-save the file as UTF-8.") from e
    if damaged:
        report.notes.append(f"{damaged} rows have a damaged YouTube id ({_DAMAGED_YTID}); they share one group")
    if unknown:
        report.notes.append(f"{len(unknown)} label ids not in {labels_path.name} were dropped "
                            f"(e.g. {sorted(set(unknown))[:3]})")
    return _finish(out, report)


def read_clotho_captions(paths) -> dict[str, list[str]]:
    """Clotho group ("clotho:<file>") -> its captions, from one or more Clotho caption CSVs."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    captions: dict[str, list[str]] = {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise DataError(f"{p}: Clotho captions file not found (captions= for clotho_aqa).")
        report = LoadReport(str(p), "clotho")
        for file_name, caps, _ in _clotho_rows(p, report):
            captions.setdefault(_clotho_group(file_name), []).extend(caps)
        if report.skipped:
            log.warning("%s", report.summary())
    return captions


def load_clotho_aqa(path, *, seed: int = 0, captions=None, lowercase_answer: bool = True) -> tuple[list[Sample], LoadReport]:
    """Clotho-AQA CSV: file_name,QuestionText,answer[,confidence...] (task ask).

    ``text`` is one of that file's Clotho captions (``captions=`` one or more Clotho caption CSVs), chosen
    with the seeded rng; without captions, or for a file they do not cover, it is the question itself.
    Answers are lower-cased ("YES" -> "yes") unless lowercase_answer=False.
    """
    path, report, rng, out = _start(path, "clotho_aqa", seed)
    lookup = read_clotho_captions(captions) if captions is not None else {}
    uncaptioned = 0
    for where, row in _csv_rows(path, report, list(CLOTHO_AQA.values())):
        file_name, question, answer = (_clean(row[CLOTHO_AQA[k]]) for k in ("file", "question", "answer"))
        if not question:
            report.skip(where, "empty question")
            continue
        if not answer:
            report.skip(where, "empty answer")
            continue
        if not file_name:
            report.skip(where, "empty file_name")
            continue
        group = _clotho_group(file_name)
        caps = lookup.get(group)
        if not caps:
            uncaptioned += 1
        text = rng.choice(caps) if caps else question
        out.append(Sample(text=text, task="ask", prompt=question, answer=answer.lower() if lowercase_answer else answer,
                          source="clotho_aqa", group=group))
    if captions is not None and uncaptioned:
        report.notes.append(f"{uncaptioned} rows have no Clotho caption for their file: text = the question")
    return _finish(out, report)


def load_ltu(path, *, seed: int = 0) -> tuple[list[Sample], LoadReport]:
    """LTU / OpenAQA JSON: a list of {instruction|question, output|answer, input?, audio_id?, caption?}.

    Items with a question and an answer become ask samples (text = a caption-like field when present, else
    the answer). Items with only a caption (e.g. as_strong_eval_sample_600.json) become caption samples.
    """
    path, report, rng, out = _start(path, "ltu", seed)
    data = _load_json(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected an LTU/OpenAQA JSON list of {{instruction, output, ...}} objects.")
    caption_only = 0
    for i, item in enumerate(data):
        report.rows_read += 1
        where = f"item {i}"
        if not isinstance(item, dict):
            report.skip(where, "not an object")
            continue
        question = _clean(item.get("instruction") or item.get("question"))
        extra = _clean(item.get("input"))
        if extra:
            question = f"{question}\n{extra}" if question else extra
        answer = _clean(item.get("output") or item.get("answer"))
        caption = _clean(item.get("caption") or item.get("text") or item.get("description"))
        audio_id = _clean(item.get("audio_id") or item.get("id"))
        group = _group_from_audio_id(audio_id, _clean(item.get("dataset"))) if audio_id else f"ltu:{path.stem}:{i}"
        if question and answer:
            out.append(Sample(text=caption or answer, task="ask", prompt=question, answer=answer, source="ltu",
                              group=group))
        elif caption:
            caption_only += 1
            out.append(_caption_sample(caption, "caption", "ltu", group, rng))
        else:
            report.skip(where, "no question/answer and no caption")
    if caption_only:
        report.notes.append(f"{caption_only} items have no question/answer: made caption samples from 'caption'")
    return _finish(out, report)


def _start(path, kind: str, seed: int):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (kind {kind}). {supported_formats()}")
    return path, LoadReport(str(path), kind), _rng(seed, kind, path.name), []


def _finish(samples: list[Sample], report: LoadReport) -> tuple[list[Sample], LoadReport]:
    report.samples = len(samples)
    if report.skipped:
        log.warning("%s", report.summary())  # once per file, with the first reasons
    return samples, report


# ----------------------------------------------------------------------------------- format detection

LOADERS: dict[str, Callable[..., tuple[list[Sample], LoadReport]]] = {
    "audiocaps": load_audiocaps,
    "clotho": load_clotho,
    "wavcaps": load_wavcaps,
    "musiccaps": load_musiccaps,
    "brain2music": load_brain2music,
    "text": load_text,
    "esc50": load_esc50,
    "urbansound8k": load_urbansound8k,
    "audioset": load_audioset,
    "clotho_aqa": load_clotho_aqa,
    "ltu": load_ltu,
}

FORMATS = DESCRIPTIONS  # kind -> description (mats.formats)


def _check_caption_lines(path: Path) -> None:
    """Refuse text files that are lists of audio files (e.g. GTZAN splits) rather than captions."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}). Re-save the file as UTF-8.") from e
    lines = [ln for ln in lines if ln and not ln.startswith("#")][:50]
    with_files = sum(1 for ln in lines if _AUDIO_NAME.search(ln))
    if lines and with_files > len(lines) / 2:
        raise DataError(f"{path}: looks like a list of audio files, not captions (a .txt source needs one "
                        f"caption per line). {supported_formats()}")


def detect_kind(path) -> str:
    """Guess the format of a data file from its extension, header line or JSON shape."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found. {supported_formats()}")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        _check_caption_lines(path)
        return "text"
    if suffix == ".json":
        data = _load_json(path)
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            items = data["data"]
            if items and isinstance(items[0], dict) and {"instruction", "output"} & set(items[0]):
                return "ltu"
            return "wavcaps"
        if isinstance(data, list) and data and isinstance(data[0], dict):
            if {"instruction", "question", "output", "answer", "caption"} & set(data[0]):
                return "ltu"
        raise DataError(f"{path}: unrecognised JSON layout. {supported_formats()}")
    if suffix in (".csv", ".tsv"):
        first = first_row(path)
        kind = csv_kind(first)
        if kind is not None:
            return kind
        if is_class_list(first):
            raise DataError(f"{path}: this is a class list, not training samples. Pass it as labels= to the "
                            "audioset loader, or load the segments / clips file that uses it.")
        raise DataError(f"{path}: unrecognised CSV header {first[:8]}. {supported_formats()}")
    raise DataError(f"{path}: unsupported file type {suffix!r}. {supported_formats()}")


def load_source(path, kind: str | None = None, **opts) -> tuple[list[Sample], LoadReport]:
    """Load one file into samples. ``kind`` (see FORMATS) is detected when omitted; ``opts`` go to the loader."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found. {supported_formats()}")
    kind = kind or detect_kind(path)
    if kind not in LOADERS:
        raise DataError(f"{path}: unknown kind {kind!r}. {supported_formats()}")
    loader = LOADERS[kind]
    accepted = [p for p in inspect.signature(loader).parameters if p != "path"]
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise ConfigError(f"{path}: option(s) {unknown} not understood by the {kind} loader; it accepts {accepted}.")
    return loader(path, **opts)
