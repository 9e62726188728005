"""Many clips at once: a caption, tags and zero-shot scores per file, one row each, failures included.

Files are decoded with ``mats.audio.try_load_clip``, the loader ``mats eval`` uses, so a file that fails here
fails there with the same reason. A ``.zip`` is opened member by member with limits that stop path traversal
(``../``, absolute names, links) and zip bombs (declared and actual sizes, compression ratio) before anything is
written, and only into the folder given.
"""
from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import torch

from mats.audio import AUDIO_SUFFIXES, DEFAULT_MAX_SECONDS, try_load_clip
from mats.errors import MATSError
from mats.prompts import instruction_for, tags_text

MAX_FILES = 200
MAX_TOTAL_BYTES = 500 * 1024 * 1024
MAX_RATIO = 200  # uncompressed / compressed size of one zip member; audio compresses ~1.1-3x
Progress = Callable[[int, int, str], None]  # (done, total, what)


@dataclass
class BatchFile:
    name: str  # what the user called it (an upload's name, or the member's path inside a zip)
    path: Path | None  # None when it could not be used
    problem: str | None = None


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def gather(files: Sequence, folder: str | Path, names: Sequence[str] | None = None) -> list[BatchFile]:
    """Uploaded files (audio or .zip) -> the list to run, with limits: at most ``MAX_FILES`` audio files and
    ``MAX_TOTAL_BYTES`` in all (zips counted unpacked). Zip members are unpacked into ``folder``."""
    if not files:
        raise MATSError("No files given: upload audio files (wav, flac, ogg, mp3) or a .zip of them.")
    folder = Path(folder)
    names = list(names) if names is not None else [Path(f).name for f in files]
    out: list[BatchFile] = []
    budget = [MAX_TOTAL_BYTES]
    for i, (f, name) in enumerate(zip(files, names)):
        path = Path(f)
        if path.suffix.lower() == ".zip" or name.lower().endswith(".zip"):
            out += _unzip(path, name, folder / f"zip{i}", budget)
            continue
        size = path.stat().st_size
        budget[0] -= size
        if budget[0] < 0:
            raise MATSError(f"The files add up to more than {_mb(MAX_TOTAL_BYTES)}; upload at most "
                            f"{_mb(MAX_TOTAL_BYTES)} at a time.")
        out.append(_as_audio(name, path))
    audio = sum(1 for b in out if b.path is not None)
    if audio > MAX_FILES:
        raise MATSError(f"{audio} audio files is more than the limit of {MAX_FILES} per batch; split them.")
    if not out:
        raise MATSError("The upload holds no files.")
    return out


def _as_audio(name: str, path: Path) -> BatchFile:
    suffix = PurePosixPath(name).suffix.lower() or path.suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        return BatchFile(name, None, f"not an audio file ({suffix or 'no extension'}); use "
                                     f"{', '.join(sorted(AUDIO_SUFFIXES))}")
    return BatchFile(name, path)


def _unzip(path: Path, name: str, dest: Path, budget: list[int]) -> list[BatchFile]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise MATSError(f"{name} is not a readable zip file ({e}).") from None
    out: list[BatchFile] = []
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        members = [m for m in members if not m.filename.startswith("__MACOSX/")
                   and not PurePosixPath(m.filename).name.startswith("._")]  # macOS metadata, not clips
        if len(members) > MAX_FILES * 5:
            raise MATSError(f"{name} holds {len(members):,} files; a batch takes at most {MAX_FILES} clips.")
        declared = sum(m.file_size for m in members)
        if declared > budget[0]:
            raise MATSError(f"{name} unpacks to {_mb(declared)}; the limit is {_mb(MAX_TOTAL_BYTES)} in all.")
        for m in members:
            shown = f"{name}/{m.filename}"
            problem = _unsafe(m)
            if problem:
                out.append(BatchFile(shown, None, problem))
                continue
            entry = _as_audio(m.filename, Path(m.filename))
            if entry.path is None:
                out.append(BatchFile(shown, None, entry.problem))
                continue
            target = dest / f"{len(out):04d}{PurePosixPath(m.filename).suffix.lower()}"
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_limited(zf, m, target, budget, name)
            out.append(BatchFile(shown, target))
    return out


def _unsafe(m: zipfile.ZipInfo) -> str | None:
    """Why a zip member must not be unpacked, or None."""
    p = PurePosixPath(m.filename.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        return "unsafe path in the zip (absolute or with '..'); not unpacked"
    if stat.S_ISLNK(m.external_attr >> 16):
        return "a link inside the zip; not unpacked"
    if m.flag_bits & 0x1:
        return "encrypted zip member; not unpacked"
    if m.file_size > 1024 * 1024 and m.file_size > MAX_RATIO * max(m.compress_size, 1):
        return f"compressed {m.file_size // max(m.compress_size, 1):,}x, like a zip bomb; not unpacked"
    if p.suffix.lower() == ".zip":
        return "a zip inside the zip is not opened; unpack it first"
    return None


def _copy_limited(zf: zipfile.ZipFile, m: zipfile.ZipInfo, target: Path, budget: list[int], name: str) -> None:
    """Unpack one member, never writing more than it declared (a lying header) or than the budget left."""
    allowed = min(m.file_size, budget[0])
    written = 0
    with zf.open(m) as src, open(target, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            written += len(chunk)
            if written > allowed:
                dst.close()
                target.unlink(missing_ok=True)
                raise MATSError(f"{name}: {m.filename} unpacks to more than it declares or than the "
                                f"{_mb(MAX_TOTAL_BYTES)} limit; the zip was refused.")
            dst.write(chunk)
    budget[0] -= written



@torch.inference_mode()
def run_batch(model, files: Sequence[BatchFile], labels: Sequence[str] | None = None, santa: float | None = None,
              batch_size: int = 8, max_seconds: float | None = DEFAULT_MAX_SECONDS, progress: Progress | None = None,
              **gen) -> list[dict]:
    """One row per file: ``file``, ``caption``, ``tags``, ``scores`` ({label: probability} when ``labels``) and
    ``error`` (why the file was skipped; the others go on)."""
    report = progress or (lambda done, n, what: None)
    rows: list[dict] = []
    todo = list(files)
    cap, tag = instruction_for("caption"), instruction_for("classify")
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        loaded = []
        for f in chunk:
            row = {"file": f.name, "caption": "", "tags": "", "scores": None, "error": f.problem or ""}
            rows.append(row)
            if f.path is None:
                continue
            clip, problem = try_load_clip(f.path, model.encoder.sample_rate, max_seconds=max_seconds)
            if problem:
                # The user's file name, not the temporary path; the reason without the exception class.
                reason = re.sub(r"^\w+Error: ", "", problem)
                row["error"] = reason.replace(str(f.path.parent) + "/", "").replace(f.path.name, f.name)
            else:
                loaded.append((row, clip))
        if loaded:
            audio = model.embed_clips([c for _, c in loaded])
            z = model.condition(audio, santa)
            captions = model.generate_from_embeddings(z, [cap] * len(loaded), **gen)
            # Tags for a given label set: Santa over those labels, as MATS.classify does.
            z_tags = model.condition(audio, santa, labels=labels) if labels else z
            tags = model.generate_from_embeddings(z_tags, [tag] * len(loaded), **gen)
            scores = model.zero_shot(audio, labels) if labels else [None] * len(loaded)
            for (row, _), c, t, s in zip(loaded, captions, tags, scores):
                row.update(caption=c, tags=tags_text(t), scores=s)
        report(min(start + batch_size, len(todo)), len(todo), "clips")
    return rows
