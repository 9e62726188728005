"""Audio in: decode any common format, downmix, resample, cut into deterministic windows.

Everything that reaches the encoder goes through ``load_clip`` and ``windows``:

* ``load_clip`` accepts a path (anything libsndfile reads: wav, flac, ogg, mp3 with libsndfile 1.1+),
  a Gradio ``(sample_rate, array)`` tuple, a bare array with ``sr=``, or an existing ``Clip``, and
  returns float32 mono at ``target_sr``. Channels are averaged (never interleaved), integer PCM is
  scaled to [-1, 1], and resampling is done by soxr (a hand-rolled resampler aliases).
* ``windows`` cuts a waveform into fixed-size windows: stride = window, plus one final window aligned
  to the end when there is a remainder, so no sample is dropped and the same clip always gives the
  same windows (no random crop). Clips shorter than a window are tiled.

Bad input raises ``mats.errors.AudioError`` whose message says what was wrong and what to do. A clip with
nothing to hear (too short, silent, a constant level) still loads, flagged in ``info.no_signal``;
``check_signal`` refuses it, as ``MATS`` and the demo do before answering.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mats.errors import AudioError

# File suffixes taken for audio when a folder is scanned (what libsndfile and its mp3/opus support read).
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus"}

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000
# An axis this small is taken as the channel axis when the other axis is longer (surround is <= 8).
MAX_CHANNELS = 8
DEFAULT_MAX_SECONDS = 600.0
# Nothing to hear (the one rule the library and the demo share, see ``signal_problem``): shorter than this,
MIN_SIGNAL_SECONDS = 0.05
# or a peak below -80 dBFS (a muted or unplugged microphone), after removing any constant (DC) offset.
SILENCE_PEAK = 1e-4

_CONVERT_HINT = "convert it to wav or flac (e.g. `ffmpeg -i input output.wav`)"
# File extensions whose libsndfile major-format name differs from the extension.
_EXT_ALIASES = {"aif": "AIFF", "aifc": "AIFF", "oga": "OGG", "opus": "OGG", "snd": "AU", "wave": "WAV"}


@dataclass
class ClipInfo:
    """What ``load_clip`` found and did, for logs and for the app to show the user."""

    duration_s: float
    orig_sample_rate: int
    sample_rate: int
    channels: int
    resampled: bool
    downmixed: bool
    capped: bool = False  # over-long clips raise instead of being trimmed, so this stays False
    n_windows: int | None = None
    source: str = "array"
    nonfinite_replaced: int = 0  # NaN/inf samples set to 0
    silent: bool = False  # every sample is zero
    no_signal: str | None = None  # why there is nothing to hear (``signal_problem``), None when there is


@dataclass
class Clip:
    """Float32 mono waveform at ``sample_rate`` plus what was done to get it."""

    waveform: np.ndarray
    sample_rate: int
    info: ClipInfo


# ----------------------------------------------------------------------------------------------
# public API


def load_clip(
    clip: Any,
    sr: int | None = None,
    target_sr: int = 48000,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> Clip:
    """Turn a path, Gradio tuple, array (+ ``sr``) or ``Clip`` into float32 mono at ``target_sr``.

    ``max_seconds`` (None = no limit) is checked before decoding or resampling, from the file header
    for files, so a huge upload is refused without reading it.
    """
    target_sr = _check_rate(target_sr, "target_sr")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise AudioError(f"max_seconds must be a positive number or None, got {max_seconds!r}.")

    if clip is None or (isinstance(clip, str) and not clip.strip()):
        raise AudioError("No audio clip was given. Record or upload a clip (wav, flac, ogg, mp3) and try again.")

    if isinstance(clip, Clip):
        return _from_clip(clip, target_sr, max_seconds)

    if isinstance(clip, (str, os.PathLike)):
        data, orig_sr, source = _read_file(Path(clip).expanduser(), max_seconds)
        return _finish(data, orig_sr, target_sr, max_seconds, source)

    if isinstance(clip, tuple):
        tuple_sr, array = _split_tuple(clip)
        if sr is not None and _check_rate(sr, "sr") != _check_rate(tuple_sr, "sample rate"):
            raise AudioError(
                f"The clip tuple says {tuple_sr} Hz but sr={sr} was also passed; pass only one of them."
            )
        sr = tuple_sr
    elif isinstance(clip, (np.ndarray, list)) or hasattr(clip, "__array__"):
        array = clip
    else:
        raise AudioError(
            f"Cannot use a {type(clip).__name__} as audio. Pass a file path, a (sample_rate, array) tuple "
            "as Gradio gives, or a NumPy array with sr=."
        )

    if sr is None:
        raise AudioError("A bare array has no sample rate. Pass sr= (e.g. load_clip(array, sr=16000)).")
    orig_sr = _check_rate(sr, "sample rate")
    return _finish(_to_float_2d(array), orig_sr, target_sr, max_seconds, "array")


def windows(waveform: np.ndarray, window_samples: int) -> np.ndarray:
    """Cut a 1-D waveform into deterministic windows -> float32 ``[n, window_samples]``.

    Longer than a window: windows start at 0, W, 2W, ...; if samples remain, one more window is
    aligned to the end of the clip (it overlaps the previous one) so nothing is lost. Exactly one
    window: itself. Shorter: the clip is tiled (repeat-padded) up to the window length, which keeps
    the content's statistics instead of diluting them with silence.
    """
    if isinstance(window_samples, bool) or not isinstance(window_samples, (int, np.integer)) or window_samples <= 0:
        raise AudioError(f"window_samples must be a positive integer, got {window_samples!r}.")
    w = np.asarray(waveform, dtype=np.float32)
    if w.ndim != 1:
        raise AudioError(
            f"windows() needs a 1-D mono waveform, got shape {w.shape}. Load it with load_clip() first."
        )
    n, size = len(w), int(window_samples)
    if n == 0:
        raise AudioError("Cannot cut windows from an empty waveform; the clip has no samples.")
    if n <= size:
        reps = math.ceil(size / n)
        return np.ascontiguousarray(np.tile(w, reps)[:size][None, :])
    return np.stack([w[s:e] for s, e in window_bounds(n, size)]).astype(np.float32, copy=False)


def window_bounds(n_samples: int, window_samples: int) -> list[tuple[int, int]]:
    """(start, end) sample of each window ``windows`` cuts (a clip shorter than a window: the clip itself)."""
    n, size = int(n_samples), int(window_samples)
    if n <= size:
        return [(0, n)]
    starts = list(range(0, n - size + 1, size))
    if starts[-1] + size < n:
        starts.append(n - size)
    return [(s, s + size) for s in starts]


def try_load_clip(source: Any, target_sr: int, max_seconds: float | None = DEFAULT_MAX_SECONDS
                  ) -> tuple["Clip | None", str | None]:
    """``(clip, None)`` for a clip with something to hear, else ``(None, reason)``: how ``mats eval`` and the demo's
    batch tab load many files, where one bad file must not stop the rest."""
    from mats.errors import MATSError

    try:
        return check_signal(load_clip(source, target_sr=target_sr, max_seconds=max_seconds)), None
    except (MATSError, OSError, RuntimeError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"


def signal_problem(mono: np.ndarray, sample_rate: int) -> str | None:
    """Why a mono waveform (at its original rate) holds nothing to hear, or None when it has a signal.

    Too short, all zeros, below -80 dBFS, or a constant level (pure DC offset): captioning such a clip only
    makes the model invent a sound ("rain falls and thunder roars" for silence), so callers refuse it.
    """
    x = np.asarray(mono, dtype=np.float64)
    if x.size < MIN_SIGNAL_SECONDS * sample_rate:
        return (f"The clip is only {x.size} sample{'s' if x.size != 1 else ''} ({1000 * x.size / sample_rate:.1f} ms) "
                f"long: too short to hear anything. Record or upload at least {MIN_SIGNAL_SECONDS:g} s.")
    peak = float(np.max(np.abs(x)))
    if peak == 0.0:
        return "The clip is silent (every sample is zero). Check that the microphone is not muted, then record again."
    if peak < SILENCE_PEAK:
        return (f"The clip is practically silent (peak {20 * math.log10(peak):.0f} dBFS). "
                "Move closer to the microphone or raise its input level, then record again.")
    if float(np.max(np.abs(x - x.mean()))) < SILENCE_PEAK:
        return ("The clip holds no sound: every sample has the same value (a constant DC offset). "
                "Check the recording device or the export, then try again.")
    return None


def check_signal(clip: "Clip") -> "Clip":
    """Raise ``AudioError`` when ``signal_problem`` found nothing to hear in the clip; else return it."""
    if clip.info.no_signal:
        raise AudioError(clip.info.no_signal)
    return clip


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling with soxr (quality "HQ") -> float32. Same rate returns a float32 copy."""
    orig_sr = _check_rate(orig_sr, "orig_sr")
    target_sr = _check_rate(target_sr, "target_sr")
    x = np.ascontiguousarray(waveform, dtype=np.float32)
    if orig_sr == target_sr or x.shape[0] == 0:
        return x.copy()
    try:
        import soxr
    except ImportError as e:  # pragma: no cover - soxr is a hard dependency
        raise AudioError("Resampling needs the `soxr` package: pip install soxr") from e
    return np.ascontiguousarray(soxr.resample(x, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# helpers


def _check_rate(rate: Any, name: str) -> int:
    """Sample rates must be whole numbers within [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] Hz."""
    ok_type = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, (bool, np.bool_))
    if not ok_type or not math.isfinite(float(rate)) or float(rate) != int(rate):
        raise AudioError(f"The {name} must be a whole number of Hz (e.g. 44100), got {rate!r}.")
    rate = int(rate)
    if rate <= 0:
        raise AudioError(f"The {name} must be positive, got {rate} Hz. Pass the rate the audio was recorded at.")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"The {name} {rate} Hz is outside the supported range {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; "
            "check that the rate is in Hz (not kHz) and that it was not swapped with the samples."
        )
    return rate


def _split_tuple(clip: tuple) -> tuple[Any, Any]:
    """Gradio gives ``(sample_rate, array)``; ``(array, sample_rate)`` (librosa order) is accepted too."""
    if len(clip) != 2:
        raise AudioError(
            f"An audio tuple must be (sample_rate, array) as Gradio gives it; got a tuple of {len(clip)} items."
        )
    a, b = clip
    if b is None or a is None:
        raise AudioError("The (sample_rate, array) tuple has no audio in it. Record or upload a clip again.")
    if np.ndim(a) == 0:
        return a, b
    if np.ndim(b) == 0:
        return b, a
    raise AudioError("An audio tuple must be (sample_rate, array); neither item is a single sample rate.")


def _to_float_2d(array: Any) -> np.ndarray:
    """Any supported array -> float32 [samples, channels]; integer PCM is scaled to [-1, 1]."""
    try:
        a = np.asarray(array)
    except Exception as e:  # ragged lists, odd objects
        raise AudioError(f"Could not turn the clip into an array of samples ({e}).") from e
    if a.dtype == object:
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise AudioError("The clip array holds non-numeric values; pass numbers (int16, int32 or float).") from e
    if a.dtype.kind == "b" or a.dtype.kind == "c" or a.dtype.kind not in "iuf":
        raise AudioError(
            f"Unsupported sample type {a.dtype}; pass int16, int32, uint8 or float samples."
        )
    if a.ndim == 0 or a.ndim > 2:
        raise AudioError(
            f"The clip array has {a.ndim} dimensions (shape {a.shape}); expected 1-D (samples) or "
            "2-D (samples, channels). Split a batch into separate clips."
        )
    if a.size == 0:
        raise AudioError(f"The clip is empty (shape {a.shape}, no samples). Record or upload a longer clip.")
    if a.ndim == 1:
        a = a[:, None]
    else:
        a = _channels_last(a)

    if a.dtype.kind == "f":
        out = a.astype(np.float32)
    elif a.dtype == np.int16:
        out = (a.astype(np.float64) / 32768.0).astype(np.float32)
    elif a.dtype == np.int32:
        out = (a.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif a.dtype == np.int8:
        out = (a.astype(np.float64) / 128.0).astype(np.float32)
    elif a.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        out = ((a.astype(np.float64) - 128.0) / 128.0).astype(np.float32)
    else:
        # int64 usually means "np.array(list of ints)": the true PCM width is unknown, so guessing a
        # scale would silently make the clip far too loud or too quiet.
        raise AudioError(
            f"Cannot tell how to scale {a.dtype} samples to [-1, 1]; cast the array to int16 or int32 "
            "(its real PCM width) or to float in [-1, 1]."
        )
    return out


def _channels_last(a: np.ndarray) -> np.ndarray:
    """Gradio/soundfile use (samples, channels); (channels, samples) is recognised and transposed."""
    rows, cols = a.shape
    if cols <= MAX_CHANNELS and rows >= cols:
        return a
    if rows <= MAX_CHANNELS and cols > rows:
        return a.T
    raise AudioError(
        f"Cannot tell which axis of the shape {a.shape} is channels (expected at most {MAX_CHANNELS} "
        "channels); pass (samples, channels) or a 1-D mono array."
    )


def _read_file(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int, str]:
    """Decode a file with soundfile -> float32 [samples, channels], sample rate, file name."""
    name = path.name
    if not path.exists():
        raise AudioError(f"Audio file not found: {path}. Check the path and that the file was uploaded.")
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file. Pass the path of a single audio file.")
    if path.stat().st_size == 0:
        raise AudioError(f"The audio file {name} is empty (0 bytes). Record or export it again.")
    try:
        import soundfile as sf
    except (ImportError, OSError) as e:  # OSError: the libsndfile shared library is missing
        raise AudioError(f"Reading audio files needs `soundfile` with libsndfile: pip install soundfile ({e})") from e
    sf_errors = (getattr(sf, "SoundFileError", RuntimeError), RuntimeError, OSError, ValueError, TypeError, EOFError)

    try:
        header = sf.info(str(path))
    except sf_errors as e:
        raise _unreadable(path, sf, e) from e

    orig_sr = _check_rate(header.samplerate, f"sample rate in the header of {name}")
    frames = int(header.frames) if header.frames is not None else -1
    # Refuse over-long files from the header alone so a 2-hour upload is never decoded.
    if 0 < frames and max_seconds is not None and frames / orig_sr > max_seconds:
        raise _too_long(frames / orig_sr, max_seconds, name)

    try:
        data, read_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except sf_errors as e:
        raise AudioError(
            f"Could not decode {name}: the file looks corrupt or truncated ({e}). Re-export it or {_CONVERT_HINT}."
        ) from e
    if data.shape[0] == 0:
        raise AudioError(f"The audio file {name} has no samples. Record or export it again.")
    return data, int(read_sr), name


def _unreadable(path: Path, sf: Any, err: Exception) -> AudioError:
    """Tell 'this libsndfile cannot read that format' apart from 'this file is broken'."""
    ext = path.suffix.lower().lstrip(".")
    known = {k.upper() for k in sf.available_formats()}
    fmt = _EXT_ALIASES.get(ext, ext.upper())
    if ext == "mp3" and "MP3" not in known:
        return AudioError(
            f"Cannot read {path.name}: this soundfile/libsndfile ({getattr(sf, '__libsndfile_version__', '?')}) "
            f"has no mp3 support (needs soundfile>=0.12 with libsndfile 1.1+). Upgrade soundfile or {_CONVERT_HINT}."
        )
    if ext and fmt not in known:
        return AudioError(
            f"Unsupported audio format '.{ext}' ({path.name}); supported here: "
            f"{', '.join(sorted(k.lower() for k in known))}. Please {_CONVERT_HINT}."
        )
    return AudioError(
        f"Could not read {path.name}: the file is corrupt or not really a {fmt or 'known'} audio file ({err}). "
        f"Re-export it or {_CONVERT_HINT}."
    )


def _too_long(duration: float, max_seconds: float, source: str) -> AudioError:
    return AudioError(
        f"The clip {source} is {duration:.1f} s long, more than the maximum of {max_seconds:g} s. "
        "Trim it to a shorter excerpt, or raise max_seconds if you really need the whole clip."
    )


def _finish(
    data: np.ndarray, orig_sr: int, target_sr: int, max_seconds: float | None, source: str
) -> Clip:
    """[samples, channels] float32 -> checked, cleaned, downmixed, resampled Clip."""
    n, channels = data.shape
    duration = n / orig_sr
    if max_seconds is not None and duration > max_seconds:
        raise _too_long(duration, max_seconds, source)

    finite = np.isfinite(data)
    n_bad = int(data.size - np.count_nonzero(finite))
    if n_bad == data.size:
        raise AudioError(
            f"Every sample of the clip ({source}) is NaN or infinite; the audio is broken. Record or export it again."
        )
    if n_bad:
        # A few bad samples (e.g. a glitch in a float file) would turn the whole embedding into NaN.
        data = np.where(finite, data, np.float32(0.0))

    # Average channels so left/right do not get interleaved into one double-length signal.
    mono = data[:, 0] if channels == 1 else data.mean(axis=1, dtype=np.float32)
    wave = resample(mono, orig_sr, target_sr)
    info = ClipInfo(
        duration_s=duration,
        orig_sample_rate=orig_sr,
        sample_rate=target_sr,
        channels=channels,
        resampled=orig_sr != target_sr,
        downmixed=channels > 1,
        source=source,
        nonfinite_replaced=n_bad,
        silent=not np.any(mono),
        no_signal=signal_problem(mono, orig_sr),  # judged before resampling, whose edges would ring
    )
    return Clip(waveform=wave, sample_rate=target_sr, info=info)


def _from_clip(clip: Clip, target_sr: int, max_seconds: float | None) -> Clip:
    """An already-loaded Clip: re-check the limit and resample only if the target rate differs."""
    wave = np.asarray(clip.waveform, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise AudioError(
            f"The Clip's waveform must be non-empty 1-D, got shape {wave.shape}; reload it with load_clip()."
        )
    rate = _check_rate(clip.sample_rate, "Clip sample rate")
    duration = wave.size / rate
    if max_seconds is not None and duration > max_seconds:
        raise _too_long(duration, max_seconds, clip.info.source)
    if rate == target_sr:
        return clip
    info = replace(
        clip.info,
        sample_rate=target_sr,
        resampled=clip.info.orig_sample_rate != target_sr,
        n_windows=None,
    )
    return Clip(waveform=resample(wave, rate, target_sr), sample_rate=target_sr, info=info)
