"""Dataset file formats: what each known dataset's metadata looks like, and how to tell them apart.

The one home of this knowledge. The trainer's loaders (``mats.data``: text-only samples) and the evaluation
readers (``mats.eval.metadata``: clips with labels, references or questions) both read the same files, so both ask
here which format a file is and which columns hold what. Column names are compared lower-cased.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from mats.errors import DataError

# kind -> what a user sees in messages
DESCRIPTIONS = {
    "audiocaps": "AudioCaps CSV (audiocap_id,youtube_id,start_time,caption)",
    "clotho": "Clotho captions CSV (file_name,caption_1..caption_5)",
    "wavcaps": 'WavCaps JSON ({"data": [{"id","caption"}]})',
    "musiccaps": "MusicCaps CSV (ytid,...,caption)",
    "brain2music": "brain2music CSV (ID,DescEN)",
    "text": "plain text, one caption per line (.txt)",
    "esc50": "ESC-50 CSV (filename,fold,target,category,esc10,src_file,take)",
    "urbansound8k": "UrbanSound8K CSV (slice_file_name,fsID,...,class; header optional)",
    "audioset": "AudioSet segments CSV (# YTID, start_seconds, end_seconds, positive_labels) + class list",
    "clotho_aqa": "Clotho-AQA CSV (file_name,QuestionText,answer)",
    "ltu": "LTU/OpenAQA JSON (list of {instruction, output, audio_id})",
}

# Where each CSV format keeps the clip's file, its label / caption / question, and its recording (the group a
# train/validation split must not cut: ESC-50's src_file and UrbanSound8K's fsID are both Freesound ids).
ESC50 = {"file": "filename", "label": "category", "group": "src_file"}
URBANSOUND8K = {"file": "slice_file_name", "label": "class", "group": "fsid"}
CLOTHO = {"file": "file_name", "captions": "caption_"}  # caption_1..caption_5, one row per clip
AUDIOCAPS = {"id": "audiocap_id", "group": "youtube_id", "start": "start_time", "caption": "caption"}  # row per caption
CLOTHO_AQA = {"file": "file_name", "question": "questiontext", "answer": "answer"}
# UrbanSound8K.csv also circulates without its header line; these are its columns, in the official order.
US8K_COLUMNS = ["slice_file_name", "fsid", "start", "end", "salience", "fold", "classid", "class"]
US8K_SLICE = re.compile(r"^\d+-\d+-\d+-\d+\.\w+$")  # a slice file name: fsID-classID-occurrence-slice.wav

# A generic CSV names its columns one of these ways.
FILE_COLUMNS = ("file", "filename", "file_name", "fname", "clip", "path", "audio", "audio_file")
LABEL_COLUMNS = ("label", "category", "class", "tag")


def supported_formats() -> str:
    return "Supported formats (kind=...): " + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()) + "."


def open_text(path: Path):
    return open(path, encoding="utf-8-sig", newline="")  # utf-8-sig: brain2music starts with a BOM


def first_row(path: Path) -> list[str]:
    """The first CSV row of ``path`` (a header, or data for a header-less file), as written."""
    try:
        with open_text(path) as f:
            return next(csv.reader(f), [])
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}). Re-save the file as UTF-8.") from e
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e}).") from e


def headerless_us8k(row: list[str]) -> bool:
    """Whether ``row``, a file's first row, is UrbanSound8K data rather than a header line."""
    return bool(row) and bool(US8K_SLICE.match(row[0].strip())) and len(row) == len(US8K_COLUMNS)


def caption_columns(header: list[str]) -> list[str]:
    """Clotho's caption_1..caption_5 (whatever number a file has), in file order."""
    return [h for h in header if h.startswith(CLOTHO["captions"])]


def csv_kind(row: list[str]) -> str | None:
    """The known format whose header ``row`` is (or whose first data row, for header-less UrbanSound8K); None
    when it is none of them (a generic CSV, or a class list)."""
    header = {h.strip().lower() for h in row}
    if {AUDIOCAPS["group"], AUDIOCAPS["caption"]} <= header:
        return "audiocaps"
    if CLOTHO["file"] in header and caption_columns(sorted(header)):
        return "clotho"
    if {"ytid", "caption"} <= header:
        return "musiccaps"
    if {"id", "descen"} <= header:
        return "brain2music"
    if {ESC50["file"], ESC50["label"]} <= header:
        return "esc50"
    if {URBANSOUND8K["file"], URBANSOUND8K["label"]} <= header or headerless_us8k(row):
        return "urbansound8k"
    if row and row[0].strip().lower().startswith("# ytid") or "positive_labels" in header:
        return "audioset"
    if set(CLOTHO_AQA.values()) <= header:
        return "clotho_aqa"
    return None


def is_class_list(row: list[str]) -> bool:
    """AudioSet's class_labels_indices.csv (index,mid,display_name): labels for segments, not samples."""
    header = {h.strip().lower() for h in row}
    return {"mid", "display_name"} <= header or (len(row) == 3 and row[2].strip().startswith("/m/"))


def column(header, names) -> str | None:
    """The first of ``names`` that ``header`` has (a generic CSV's file or label column)."""
    return next((n for n in names if n in header), None)
