"""Metadata readers for the evaluation runner: which clip, which label / references / question.

Formats (detected from the CSV header; the column names live in ``mats.formats``, shared with the trainer):

* classify: ESC-50 (filename,category,...), UrbanSound8K (slice_file_name,...,class; header optional),
  generic (file|filename|file_name|clip|path, label|category|class).
* caption: Clotho (file_name,caption_1..caption_5), AudioCaps (audiocap_id,youtube_id,start_time,caption;
  one row per caption, grouped by (youtube_id, start_time)), generic (file|..., caption).
* qa: Clotho-AQA (file_name,QuestionText,answer), generic (file|..., question, answer).

Rows with the wrong number of fields or empty values are skipped and noted, never silently.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from mats.errors import DataError
from mats.formats import (AUDIOCAPS, CLOTHO, CLOTHO_AQA, ESC50, FILE_COLUMNS, LABEL_COLUMNS, URBANSOUND8K, US8K_COLUMNS,
                          caption_columns, column, csv_kind, first_row, headerless_us8k, open_text)

__all__ = ["read_label_csv", "read_caption_csv", "read_qa_csv", "audiocaps_candidates"]


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
