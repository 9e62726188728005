"""Long clips as a timeline: one answer per deterministic window, instead of one answer for the whole clip.

A clip is cut by ``mats.audio.windows`` (the windows the encoder always uses: fixed stride, one more aligned to
the end, so the same clip always gives the same rows). The windows go through the encoder and the LM in
batches, which keeps a 5-minute clip practical on a CPU. Each row carries the Santa familiarity cue of its
window, so a stretch the model cannot describe shows as "unfamiliar" instead of as a confident caption.
"""
from __future__ import annotations

from typing import Callable

import torch

from mats.audio import DEFAULT_MAX_SECONDS, check_signal, load_clip, window_bounds, windows
from mats.errors import MATSError
from mats.prompts import instruction_for, tags_text

TASKS = ("caption", "classify")
Progress = Callable[[int, int, str], None]  # (done, total, what)



@torch.inference_mode()
def timeline(model, clip, task: str = "caption", santa: float | None = None, sr: int | None = None,
             batch_size: int = 16, max_seconds: float | None = DEFAULT_MAX_SECONDS,
             progress: Progress | None = None, **gen) -> list[dict]:
    """One row per window: ``start``/``end`` (seconds), ``text`` (a caption, or tags for ``task="classify"``),
    ``familiarity``, ``similarity`` (to the nearest bank caption) and ``nearest`` (that caption).

    ``clip``: anything ``load_clip`` takes (path, ``(sr, array)``, array + ``sr``), up to ``max_seconds``.
    ``gen``: generation settings as for ``MATS.caption`` (greedy keeps the rows deterministic).
    """
    if task not in TASKS:
        raise MATSError(f"timeline task must be one of {', '.join(TASKS)}, got {task!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise MATSError(f"batch_size must be a whole number of at least 1, got {batch_size!r}.")
    enc = model.encoder
    loaded = check_signal(load_clip(clip, sr=sr, target_sr=enc.sample_rate, max_seconds=max_seconds))
    size = enc.window_samples
    bounds = window_bounds(len(loaded.waveform), size)
    wins = windows(loaded.waveform, size)
    total = 2 * len(wins)  # encoder pass + LM pass
    report = progress or (lambda done, n, what: None)
    emb = []
    for i in range(0, len(wins), batch_size):
        emb.append(enc.embed_audio(wins[i : i + batch_size]).float())
        report(min(i + batch_size, len(wins)), total, "listening")
    audio = torch.cat(emb).to(model.device)
    evidence = model.explain(audio_embeddings=audio, santa=santa) if model.santa is not None else None
    z = model.condition(audio, santa)
    instruction = instruction_for(task)
    texts: list[str] = []
    for i in range(0, len(wins), batch_size):
        chunk = z[i : i + batch_size]
        texts += model.generate_from_embeddings(chunk, [instruction] * len(chunk), **gen)
        report(len(wins) + min(i + batch_size, len(wins)), total, "describing")
    rate = float(loaded.sample_rate)
    rows = []
    for i, ((s, e), text) in enumerate(zip(bounds, texts)):
        ev = evidence[i] if evidence is not None else None
        rows.append({
            "start": round(s / rate, 2), "end": round(e / rate, 2),
            "text": tags_text(text) if task == "classify" else text,
            "familiarity": ev.familiarity if ev else "unknown (no Santa bank)",
            "similarity": ev.nearest_similarity if ev else None,
            "nearest": ev.nearest if ev else None,
        })
    return rows
