"""mats.audio: decoding, downmix, integer scaling, resampling, deterministic windows, clear errors."""
from __future__ import annotations

import glob

import re

import numpy as np
import pytest
import soundfile as sf

from mats.audio import Clip, ClipInfo, load_clip, resample, windows
from mats.errors import AudioError

ESC50 = sorted(glob.glob("/work/shared/data/clips/esc50/*.flac"))


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float(np.argmax(spec) * sr / len(x))


# ---------------------------------------------------------------- downmix and scaling


def test_stereo_is_averaged_not_interleaved():
    n = 4800
    stereo = np.stack([np.ones(n), -np.ones(n)], axis=1).astype(np.float32)  # (N, 2), channels-last
    clip = load_clip(stereo, sr=48000)
    assert clip.waveform.shape == (n,)  # interleaving would give 2N samples
    assert clip.waveform.dtype == np.float32
    np.testing.assert_allclose(clip.waveform, 0.0, atol=1e-7)
    assert clip.info.channels == 2 and clip.info.downmixed and not clip.info.resampled


def test_stereo_file_is_averaged(tmp_path):
    n = 16000
    left, right = sine(440, 1.0, n), np.zeros(n, np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), n, subtype="FLOAT")
    clip = load_clip(path, target_sr=n)
    np.testing.assert_allclose(clip.waveform, left / 2, atol=1e-6)
    assert clip.info.source == "stereo.wav"


def test_channels_first_array_is_transposed():
    n = 4800
    left, right = sine(300, 0.1, 48000), sine(700, 0.1, 48000)
    first = load_clip(np.stack([left, right]), sr=48000)  # (2, N)
    last = load_clip(np.stack([left, right], axis=1), sr=48000)  # (N, 2)
    assert first.waveform.shape == (n,)
    np.testing.assert_allclose(first.waveform, (left + right) / 2, atol=1e-6)
    np.testing.assert_array_equal(first.waveform, last.waveform)


def test_int16_scaled():
    a = np.array([32767, -32768, 0, 16384] * 100, dtype=np.int16)
    w = load_clip(a, sr=16000, target_sr=16000).waveform
    np.testing.assert_allclose(w[:4], [32767 / 32768, -1.0, 0.0, 0.5], atol=1e-6)
    assert w.max() <= 1.0 and w.min() >= -1.0


def test_int32_scaled():
    a = np.array([2**31 - 1, -(2**31), 2**30, 0] * 100, dtype=np.int32)
    w = load_clip(a, sr=16000, target_sr=16000).waveform
    np.testing.assert_allclose(w[:4], [1.0, -1.0, 0.5, 0.0], atol=1e-6)


def test_uint8_centred():
    a = np.array([128, 255, 0, 192] * 100, dtype=np.uint8)
    w = load_clip(a, sr=8000, target_sr=8000).waveform
    np.testing.assert_allclose(w[:4], [0.0, 127 / 128, -1.0, 0.5], atol=1e-6)


def test_int64_refused_with_advice():
    with pytest.raises(AudioError, match="int16 or int32"):
        load_clip(np.zeros(1000, dtype=np.int64), sr=16000)


# ---------------------------------------------------------------- resampling


def test_resampled_length_and_info():
    clip = load_clip(sine(1000, 1.0, 44100), sr=44100, target_sr=48000)
    assert abs(len(clip.waveform) - 48000) <= 1
    assert clip.sample_rate == 48000
    assert clip.info.resampled and clip.info.orig_sample_rate == 44100
    assert clip.info.sample_rate == 48000


def test_resample_keeps_pitch():
    out = resample(sine(1000, 1.0, 44100), 44100, 16000)
    assert out.dtype == np.float32
    assert abs(len(out) - 16000) <= 1
    assert abs(peak_hz(out, 16000) - 1000) < 2
    # Band-limited: a tone above the new Nyquist is removed, not aliased down into the band.
    aliased = resample(sine(12000, 1.0, 44100), 44100, 16000)
    assert np.sqrt(np.mean(aliased**2)) < 0.01


def test_same_rate_is_untouched():
    x = sine(440, 0.5, 48000)
    np.testing.assert_array_equal(load_clip(x, sr=48000).waveform, x)


def test_clip_input_is_reresampled():
    first = load_clip(sine(440, 1.0, 44100), sr=44100, target_sr=48000)
    assert load_clip(first, target_sr=48000) is first
    again = load_clip(first, target_sr=16000)
    assert abs(len(again.waveform) - 16000) <= 1
    assert again.sample_rate == 16000 and again.info.orig_sample_rate == 44100
    assert first.sample_rate == 48000  # the input Clip is not modified
    with pytest.raises(AudioError, match="maximum"):
        load_clip(first, max_seconds=0.5)


# ---------------------------------------------------------------- windows


def test_long_clip_windows_cover_and_are_deterministic():
    sr, window = 1000, 10_000
    x = np.arange(25 * sr, dtype=np.float32)  # 25 s: windows at 0 s, 10 s, and one ending at 25 s
    w1, w2 = windows(x, window), windows(x, window)
    assert w1.shape == (3, window) and w1.dtype == np.float32
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(w1[0], x[:window])
    np.testing.assert_array_equal(w1[1], x[window : 2 * window])
    np.testing.assert_array_equal(w1[2], x[-window:])  # last window aligned to the end
    assert set(np.unique(w1).astype(int)) == set(range(len(x)))  # every sample is covered


def test_exact_multiple_has_no_extra_window():
    x = np.arange(20, dtype=np.float32)
    w = windows(x, 10)
    assert w.shape == (2, 10)
    np.testing.assert_array_equal(w.ravel(), x)
    np.testing.assert_array_equal(windows(x[:10], 10), x[None, :10])


def test_short_clip_repeat_padded():
    w = windows(np.array([1, 2, 3], dtype=np.float32), 7)
    np.testing.assert_array_equal(w, [[1, 2, 3, 1, 2, 3, 1]])


def test_clip_windows_count():
    clip = load_clip(np.zeros(25_000, np.float32), sr=1000, target_sr=1000)
    assert windows(clip.waveform, 10_000).shape == (3, 10_000)


@pytest.mark.parametrize(
    "wave, size, msg",
    [
        (np.zeros(0, np.float32), 10, "empty"),
        (np.zeros((10, 2), np.float32), 5, "1-D"),
        (np.zeros(10, np.float32), 0, "positive integer"),
    ],
)
def test_windows_bad_input(wave, size, msg):
    with pytest.raises(AudioError, match=msg):
        windows(wave, size)


# ---------------------------------------------------------------- files


def test_real_esc50_clip():
    if not ESC50:
        pytest.skip("ESC-50 clips not present")
    clip = load_clip(ESC50[0])
    assert abs(len(clip.waveform) - 5 * 48000) <= 1
    assert clip.waveform.dtype == np.float32 and np.all(np.isfinite(clip.waveform))
    assert np.abs(clip.waveform).max() <= 1.5
    assert clip.info.orig_sample_rate == 44100 and clip.info.resampled
    assert abs(clip.info.duration_s - 5.0) < 1e-3
    assert clip.info.channels == 1 and not clip.info.downmixed
    assert windows(clip.waveform, 10 * 48000).shape == (1, 480000)  # 5 s tiled into one 10 s window


def test_flac_round_trip(tmp_path):
    x = sine(440, 1.0, 22050)
    sf.write(tmp_path / "a.flac", x, 22050)  # PCM_16
    clip = load_clip(tmp_path / "a.flac", target_sr=22050)
    np.testing.assert_allclose(clip.waveform, x, atol=1e-4)


def test_ogg_round_trip(tmp_path):
    x = sine(440, 1.0, 22050)
    sf.write(tmp_path / "a.ogg", x, 22050)  # vorbis: lossy, so compare loosely
    clip = load_clip(str(tmp_path / "a.ogg"), target_sr=22050)
    assert abs(len(clip.waveform) - len(x)) <= 1
    assert np.corrcoef(clip.waveform[: len(x)], x[: len(clip.waveform)])[0, 1] > 0.95
    assert abs(peak_hz(clip.waveform, 22050) - 440) < 2


def test_mp3_round_trip_or_clear_error(tmp_path):
    x = sine(440, 1.0, 44100)
    if "MP3" not in sf.available_formats():
        (tmp_path / "a.mp3").write_bytes(b"ID3" + bytes(2000))
        with pytest.raises(AudioError, match="mp3"):
            load_clip(tmp_path / "a.mp3")
        return
    sf.write(tmp_path / "a.mp3", x, 44100)
    clip = load_clip(tmp_path / "a.mp3", target_sr=44100)
    assert abs(clip.info.duration_s - 1.0) < 0.1
    assert abs(peak_hz(clip.waveform, 44100) - 440) < 3


def test_too_long_file_refused_from_header(tmp_path, monkeypatch):
    sf.write(tmp_path / "long.wav", np.zeros(3 * 8000, np.float32), 8000)

    def no_decode(*args, **kwargs):
        raise AssertionError("the file should be refused before it is decoded")

    monkeypatch.setattr(sf, "read", no_decode)
    with pytest.raises(AudioError, match=r"3\.0 s long.*maximum of 2 s.*Trim"):
        load_clip(tmp_path / "long.wav", max_seconds=2)


def test_too_long_array_refused():
    with pytest.raises(AudioError, match="maximum of 1 s"):
        load_clip(np.zeros(3000, np.float32), sr=1000, max_seconds=1)
    assert load_clip(np.zeros(3000, np.float32), sr=1000, max_seconds=None).info.duration_s == 3.0


# ---------------------------------------------------------------- Gradio input


def test_gradio_tuple_int16_stereo():
    sr, n = 44100, 44100
    left = (sine(500, 1.0, sr) * 32767).astype(np.int16)
    data = np.stack([left, left], axis=1)  # Gradio: (samples, channels) int16
    clip = load_clip((sr, data))
    assert clip.waveform.dtype == np.float32 and clip.waveform.ndim == 1
    assert clip.sample_rate == 48000 and abs(len(clip.waveform) - 48000) <= 1
    assert clip.info.channels == 2 and clip.info.downmixed
    assert 0.45 < np.abs(clip.waveform).max() < 0.55
    assert isinstance(clip, Clip) and isinstance(clip.info, ClipInfo)
    assert clip.info.orig_sample_rate == 44100 and abs(clip.info.duration_s - 1.0) < 1e-3


def test_gradio_tuple_mono_matches_bare_array():
    x = sine(300, 0.5, 16000)
    np.testing.assert_array_equal(load_clip((16000, x)).waveform, load_clip(x, sr=16000).waveform)


# ---------------------------------------------------------------- odd but valid input


def test_silent_clip_is_valid():
    clip = load_clip(np.zeros(16000, np.int16), sr=16000)
    assert len(clip.waveform) == 48000 and not np.any(clip.waveform)
    assert clip.info.silent and clip.info.no_signal is not None


@pytest.mark.parametrize("wave, sr, msg", [
    (np.zeros(16000, np.int16), 16000, "silent .every sample is zero"),
    (np.full(16000, 1e-6, np.float32), 16000, "practically silent .peak -120 dBFS"),
    (np.full(16000, 0.5, np.float32), 16000, "constant DC offset"),
    (np.full((16000, 2), -0.25, np.float32), 16000, "constant DC offset"),
    (np.array([0.5], np.float32), 16000, "only 1 sample .0.1 ms"),
    (np.array([0.5, -0.5] * 100, np.float32), 16000, "only 200 samples .12.5 ms"),
])
def test_nothing_to_hear_is_flagged_and_refused(wave, sr, msg):
    from mats.audio import check_signal

    clip = load_clip(wave, sr=sr)  # still decodes: evaluation and the clip panel describe it
    assert re.search(msg, clip.info.no_signal)
    with pytest.raises(AudioError, match=msg):
        check_signal(clip)
    with pytest.raises(AudioError, match=msg):
        check_signal(load_clip(clip, target_sr=16000))  # the flag survives re-resampling


def test_quiet_but_real_signal_passes():
    from mats.audio import check_signal

    t = np.arange(16000) / 16000
    hum = (0.3 + 1e-3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # a DC offset under a faint tone
    assert check_signal(load_clip(hum, sr=16000)).info.no_signal is None


def test_some_nan_replaced_with_zero():
    x = np.full(1000, 0.25, np.float32)
    x[[3, 10]] = np.nan
    x[20] = np.inf
    clip = load_clip(x, sr=8000, target_sr=8000)
    assert np.all(np.isfinite(clip.waveform))
    assert clip.waveform[3] == 0 and clip.waveform[20] == 0 and clip.waveform[0] == 0.25
    assert clip.info.nonfinite_replaced == 3


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "clip, kwargs, msg",
    [
        (None, {}, "No audio clip"),
        ("", {}, "No audio clip"),
        ((16000, None), {}, "no audio"),
        (np.zeros(0, np.float32), {"sr": 16000}, "empty"),
        (np.zeros((0, 2), np.float32), {"sr": 16000}, "empty"),
        (np.full(100, np.nan, np.float32), {"sr": 16000}, "NaN or infinite"),
        (np.full((100, 2), np.inf, np.float32), {"sr": 16000}, "NaN or infinite"),
        (np.zeros(100, np.float32), {"sr": 0}, "must be positive"),
        (np.zeros(100, np.float32), {"sr": -16000}, "must be positive"),
        (np.zeros(100, np.float32), {"sr": 500}, "outside the supported range"),
        (np.zeros(100, np.float32), {"sr": 1_000_000}, "outside the supported range"),
        (np.zeros(100, np.float32), {"sr": 44.1}, "whole number of Hz"),
        ((44.1, np.zeros(100, np.float32)), {}, "whole number of Hz"),
        ((0, np.zeros(100, np.float32)), {}, "must be positive"),
        (np.zeros((2, 100, 2), np.float32), {"sr": 16000}, "3 dimensions"),
        (np.zeros((100, 100), np.float32), {"sr": 16000}, "which axis"),
        (np.zeros(100, np.float32), {}, "Pass sr="),
        (np.zeros(100, np.complex64), {"sr": 16000}, "Unsupported sample type"),
        ({"audio": 1}, {}, "Cannot use a dict"),
        (np.zeros(100, np.float32), {"sr": 16000, "target_sr": 0}, "target_sr"),
    ],
)
def test_bad_input_raises_helpful_error(clip, kwargs, msg):
    with pytest.raises(AudioError, match=msg):
        load_clip(clip, **kwargs)


def test_audio_error_is_value_error():
    with pytest.raises(ValueError):
        load_clip(None)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found.*Check the path"):
        load_clip(tmp_path / "nope.wav")


def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="broken.wav.*corrupt.*wav or flac"):
        load_clip(path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_clip(tmp_path / "empty.wav")


def test_header_only_wav_has_no_samples(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no samples|empty"):
        load_clip(tmp_path / "zero.wav")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(500))
    with pytest.raises(AudioError, match=r"Unsupported audio format '\.m4a'.*convert it to wav or flac"):
        load_clip(path)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(AudioError, match="folder"):
        load_clip(tmp_path)


def test_bad_header_sample_rate(tmp_path):
    # libsndfile writes whatever rate it is given; the loader must still refuse it.
    sf.write(tmp_path / "slow.wav", np.zeros(100, np.float32), 200)
    with pytest.raises(AudioError, match="200 Hz is outside"):
        load_clip(tmp_path / "slow.wav")
