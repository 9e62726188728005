"""Turn what the audio widget hands over into a clip the model can use, plus the facts the page shows.

No Gradio here: errors are ``mats.errors.AudioError`` with a message a user can act on; the handlers
turn them into ``gr.Error``.
"""
from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mats.audio import (DEFAULT_MAX_SECONDS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, Clip, check_signal, load_clip,
                        window_bounds)
from mats.errors import AudioError

# The demo answers about the first minute; longer clips are capped (and the page says so). Clips longer
# than the library's hard limit are refused before decoding.
DEMO_MAX_SECONDS = 60.0
HARD_MAX_SECONDS = DEFAULT_MAX_SECONDS
# Requests that may wait for the device. A Space's visitors arrive in bursts; past this many, a new request is
# refused at once (the page says the queue is full; gradio_client raises QueueError) instead of waiting for minutes.
QUEUE_SIZE = 64
NO_CLIP = "No clip yet: record one with the microphone, upload a file, or click an example below the player."


@dataclass
class PreparedClip:
    clip: Clip  # mono, at the encoder's rate, capped
    facts: list[str]  # human-readable lines: what the clip is and what was done to it
    peak: float


def _precheck_length(path: Path, hard_max: float) -> None:
    """Refuse a very long file from its header alone, with a message for the page (not the library's)."""
    try:
        import soundfile as sf

        info = sf.info(str(path))
        if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
            return  # a header that says 1 Hz is a bad rate, not a 13-hour clip: load_clip says so
        seconds = info.frames / info.samplerate if info.frames > 0 else 0.0
    except Exception:  # unreadable: load_clip produces the right message (corrupt / unsupported format)
        return
    if seconds > hard_max:
        raise AudioError(
            f"{path.name} is {_duration(seconds)} long; the demo accepts clips up to {_duration(hard_max)} "
            f"and listens to the first {_duration(DEMO_MAX_SECONDS)}. Trim it first "
            f"(e.g. `ffmpeg -i {path.name} -t 60 short.wav`) and upload the excerpt."
        )


def html_text(text: str) -> str:
    """Text for a place that renders HTML: escaped once (quotes stay readable; they are harmless in text)."""
    return html.escape(str(text), quote=False)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def markdown_literal(text: str) -> str:
    """Text for a Markdown panel, shown as typed: a file named ``_x_ [y](javascript:…).flac`` is neither
    emphasis nor a link."""
    return html_text(_MARKDOWN_SPECIAL.sub(r"\\\1", str(text)))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def count_windows(n_samples: int, window_samples: int) -> int:
    """How many windows ``mats.audio.windows`` makes: its own ``window_bounds``, counted."""
    return len(window_bounds(n_samples, window_samples))


def prepare_clip(audio, target_sr: int, window_seconds: float, max_seconds: float = DEMO_MAX_SECONDS,
                 hard_max_seconds: float = HARD_MAX_SECONDS) -> PreparedClip:
    """Decode, downmix, resample (to the encoder's rate) and cap a clip; describe each step.

    ``audio`` is what gr.Audio(type="filepath") gives (a path or None); a ``(rate, array)`` tuple works too.
    """
    if audio is None or (isinstance(audio, str) and not audio.strip()):
        raise AudioError(NO_CLIP)
    if isinstance(audio, dict) and "path" in audio:  # FileData-like dicts from API callers
        audio = audio["path"]
    if isinstance(audio, (str, Path)):
        _precheck_length(Path(audio), hard_max_seconds)
    try:
        clip = load_clip(audio, target_sr=target_sr, max_seconds=hard_max_seconds)
    except AudioError as e:
        if not isinstance(audio, (str, Path)):
            raise
        # Users see the file name they uploaded, not the server's upload folder.
        raise AudioError(str(e).replace(str(Path(audio).parent) + os.sep, "")) from e
    info = clip.info
    check_signal(clip)  # the library's one rule for "nothing to hear"
    peak = float(np.max(np.abs(clip.waveform)))

    cap = int(round(max_seconds * target_sr))
    capped = clip.waveform.size > cap
    if capped:
        info.capped = True
        clip = Clip(waveform=np.ascontiguousarray(clip.waveform[:cap]), sample_rate=target_sr, info=info)

    window = int(round(window_seconds * target_sr))
    n_win = count_windows(clip.waveform.size, window)
    info.n_windows = n_win
    ch = "mono" if info.channels == 1 else f"{info.channels} channels"
    facts = [f"**{info.duration_s:.2f} s**, {info.orig_sample_rate} Hz, {ch} ({markdown_literal(info.source)})"]
    if info.downmixed:
        facts.append(f"downmixed {info.channels} channels to mono by averaging")
    facts.append(
        f"resampled {info.orig_sample_rate} Hz → {target_sr} Hz for the encoder" if info.resampled
        else f"already at the encoder's {target_sr} Hz (not resampled)"
    )
    if capped:
        facts.append(f"capped to the first {_duration(max_seconds)} (the demo's limit)")
    if n_win == 1 and clip.waveform.size < window:
        facts.append(f"1 window of {window_seconds:g} s (the clip is repeated to fill it)")
    else:
        facts.append(f"{n_win} window{'s' if n_win != 1 else ''} of {window_seconds:g} s, embeddings averaged")
    if info.nonfinite_replaced:
        facts.append(f"replaced {info.nonfinite_replaced} NaN/inf samples with 0")
    facts.append(f"peak level {20 * math.log10(max(peak, 1e-12)):.1f} dBFS")
    return PreparedClip(clip=clip, facts=facts, peak=peak)


# ---------------------------------------------------------------------------------------------- spectrogram
def _mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """HTK mel triangles [n_mels, n_fft // 2 + 1] up to 16 kHz, for a picture: transformers' maintained filter bank
    (the one the offline encoder's front end uses too), not a second hand-written one."""
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                           max_frequency=min(sr / 2, 16000.0), sampling_rate=sr, norm=None, mel_scale="htk").T


def log_mel(waveform: np.ndarray, sr: int, n_mels: int = 64, max_frames: int = 600) -> tuple[np.ndarray, float]:
    """Log-mel power in dB [n_mels, frames] and the hop in seconds; the hop grows for long clips."""
    n_fft = 1 << max(8, int(round(math.log2(sr * 0.025))))  # ~25 ms window
    hop = max(n_fft // 4, int(math.ceil(len(waveform) / max_frames)))
    x = np.asarray(waveform, dtype=np.float32)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = x[idx] * np.hanning(n_fft).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = _mel_filterbank(sr, n_fft, n_mels) @ power.T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db, db.max() - 80.0), hop / sr


def spectrogram_image(waveform: np.ndarray, sr: int, width_px: int = 640, height_px: int = 220,
                      markers: Sequence[tuple[float, float]] = ()) -> np.ndarray:
    """A labelled log-mel spectrogram as an RGB uint8 image (matplotlib's object API: thread-safe, no pyplot).

    ``markers``: (start, end) seconds of windows, drawn as boundaries with the window's number above it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    db, hop_s = log_mel(waveform, sr)
    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.08, 0.22, 0.9, 0.72))
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=(0, db.shape[1] * hop_s, 0, db.shape[0]))
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("mel band", fontsize=8)
    ax.tick_params(labelsize=7)
    for i, (start, end) in enumerate(markers):
        for x in (start, end):
            ax.axvline(x, color="white", linewidth=0.8, linestyle="--", alpha=0.9)
        if len(markers) <= 40:
            ax.text((start + end) / 2, db.shape[0] * 0.92, str(i + 1), color="white", fontsize=6, ha="center",
                    va="top")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
