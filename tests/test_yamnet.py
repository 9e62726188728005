"""YAMNet in PyTorch (mats.encoders.yamnet) against Google's TFLite interpreter, and the encoder built on it.

The fixture (tests/fixtures/yamnet_reference.safetensors) holds one 0.975 s window of each example clip and what
ai-edge-litert 2.3.0 computed for it once (scripts/convert_yamnet.py --fixture): scores, embedding, log-mel.

Tolerances, with the error measured when they were set (shipped fp16 weights):
* body alone, fed the interpreter's own log-mel: scores within 0.02 (measured 0.013), embedding within 0.1
  (measured 0.07 on values up to 6.4). The interpreter runs some layers as hybrid int8 kernels that also
  quantise their inputs, so the float port cannot match it exactly.
* front end: the interpreter's DFT matrices are int8 (steps of 1/127), which raises a noise floor in quiet bins
  (log-mel differs by up to 5.4 there). Where the interpreter's log-mel is above 0 (half the bins, where the
  sound is) the port is within 0.3 (measured 0.22); the mean over all bins within 0.15 (measured 0.13).
* end to end: the same top class for every clip, scores within 0.35 (measured 0.32) and embedding cosine
  >= 0.8 (measured 0.81 for the dog, >= 0.97 for the others).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mats.encoders.audioset import AudioSetEncoder, tag_prior
from mats.encoders.yamnet import (PATCH_SAMPLES, Yamnet, YamnetFrontEnd, mel_matrix, patches, read_class_names)
from mats.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "yamnet_reference.safetensors"
ENCODER = ROOT / "assets" / "encoders" / "yamnet-minilm"


@pytest.fixture(scope="module")
def reference():
    from safetensors.torch import load_file

    return load_file(str(FIXTURE))


@pytest.fixture(scope="module")
def yamnet():
    return Yamnet().load(ENCODER / "yamnet.safetensors").eval()


def test_body_matches_interpreter_on_its_log_mel(yamnet, reference):
    with torch.no_grad():
        emb, scores = yamnet.net(reference["log_mel"])
    assert (scores - reference["scores"]).abs().max() < 0.02
    assert (emb - reference["embedding"]).abs().max() < 0.1


def test_front_end_matches_interpreter_where_there_is_sound(reference):
    with torch.no_grad():
        mel = patches(YamnetFrontEnd()(reference["wave"]))[:, 0]
    assert mel.shape == reference["log_mel"].shape == (5, 96, 64)
    diff = (mel - reference["log_mel"]).abs()
    loud = reference["log_mel"] > 0
    assert loud.float().mean() > 0.3  # the check covers a real share of the bins
    assert diff[loud].max() < 0.3
    assert diff.mean() < 0.15


def test_end_to_end_against_interpreter(yamnet, reference):
    with torch.no_grad():
        scores, emb, patch = yamnet(reference["wave"])
    assert scores.shape == (5, 1, 521) and emb.shape == (5, 1, 1024) and patch.shape == (5, 1, 96, 64)
    assert torch.equal(scores[:, 0].argmax(-1), reference["scores"].argmax(-1))
    assert (scores[:, 0] - reference["scores"]).abs().max() < 0.35
    cos = torch.nn.functional.cosine_similarity(emb[:, 0], reference["embedding"])
    assert cos.min() >= 0.8


def test_mel_matrix_is_tensorflows():
    m = mel_matrix()
    assert m.shape == (257, 64)
    assert torch.all(m[0] == 0)  # DC bin carries no weight
    assert m.max() <= 1.0 and m.max() > 0.9  # unnormalised triangles peak at 1
    assert torch.all(m.sum(0) > 0)  # every band has bins


def test_patch_count_and_short_input():
    net = Yamnet().eval()
    with torch.no_grad():
        for n_samples, n_patches in ((PATCH_SAMPLES, 1), (16000 * 5, 9), (100, 1)):
            scores, emb, _ = net(torch.zeros(2, n_samples))
            assert scores.shape == (2, n_patches, 521) and emb.shape == (2, n_patches, 1024)


def test_weights_refused_when_missing_or_wrong(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(CheckpointError, match="convert_yamnet"):
        Yamnet().load(tmp_path / "none.safetensors")
    save_file({"conv1.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="YAMNet"):
        Yamnet().load(tmp_path / "bad.safetensors")


def test_class_names_in_score_order():
    names = read_class_names(ENCODER / "yamnet_class_map.csv")
    assert len(names) == 521 and names[0] == "Speech" and "Dog" in names


def test_tag_prior_keeps_top_k():
    scores = torch.zeros(1, 3, 521)
    scores[0, :, 5] = 0.9
    scores[0, :, 7] = 0.5
    scores[0, 0, 9] = 0.3  # mean 0.1
    text = torch.eye(521)  # class c's text is the unit vector e_c, so the prior shows each class's weight
    out = tag_prior(scores, text, top_k=2)
    assert out[0, 5] == pytest.approx(0.9) and out[0, 7] == pytest.approx(0.5) and out[0, 9] == 0


@pytest.mark.parametrize("design,pool", [("tags", "mean"), ("projection", "meanmax"), ("corrected", "attention")])
def test_tiny_encoder_round_trip(tmp_path, design, pool):
    enc = AudioSetEncoder.tiny(design=design, pool=pool, proj_hidden=8)
    if design != "tags":
        with torch.no_grad():  # a non-zero head, so a save/load bug cannot hide behind the zero init
            for p in enc.head.parameters():
                p.normal_(0, 0.1)
    rng = np.random.default_rng(0)
    waves = rng.standard_normal((3, enc.window_samples)).astype(np.float32) * 0.1
    e = enc.embed_audio(waves)
    assert e.shape == (3, enc.dim)
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    enc.save_pretrained(tmp_path / "enc")
    back = AudioSetEncoder.from_pretrained(tmp_path / "enc")
    assert back.audio_settings == enc.audio_settings
    # YAMNet goes to disk in fp16: the embedding moves a little, never much
    assert torch.nn.functional.cosine_similarity(back.embed_audio(waves), e).min() > 0.99
    tags = back.tags([waves[0], waves[1][:8000]], top=4)
    assert [len(t) for t in tags] == [4, 4]
    assert all(a[1] >= b[1] for t in tags for a, b in zip(t, t[1:]))  # best first


def test_encoder_refuses_bad_settings_and_windows():
    with pytest.raises(ConfigError, match="design"):
        AudioSetEncoder.tiny(design="nope")
    with pytest.raises(ConfigError, match="pool"):
        AudioSetEncoder.tiny(design="projection", pool="median")
    enc = AudioSetEncoder.tiny()
    from mats.errors import AudioError

    with pytest.raises(AudioError, match="windows shaped"):
        enc.embed_audio(np.zeros((1, 123), np.float32))


def test_mats_tags_on_a_yamnet_checkpoint(tiny_ckpt_yamnet):
    from mats import MATS
    from mats.testing import tiny_clip

    m = MATS.from_pretrained(tiny_ckpt_yamnet)
    assert m.can_tag
    tags = m.tags(tiny_clip(3.0), top=3)
    assert len(tags) == 3 and all(isinstance(n, str) and 0 <= s <= 1 for n, s in tags)
    assert tags[0][1] >= tags[1][1] >= tags[2][1]
    # the same as the encoder's own clip-level scores, and a list gives a list
    many = m.tags([tiny_clip(3.0), tiny_clip(1.0, freq=880.0)], top=3)
    assert many[0] == tags and len(many) == 2
    assert isinstance(m.caption(tiny_clip(3.0)), str)  # the LM side works on this encoder
    with pytest.raises(ConfigError, match="top"):
        m.tags(tiny_clip(3.0), top=0)


def test_tags_refused_without_a_yamnet_encoder(tiny_ckpt_gpt2):
    from mats import MATS
    from mats.testing import tiny_clip

    m = MATS.from_pretrained(tiny_ckpt_gpt2)
    assert not m.can_tag
    with pytest.raises(ConfigError, match="YAMNet encoder"):
        m.tags(tiny_clip())


def test_mats_tags_command(tiny_ckpt_yamnet, tmp_path):
    import json
    import subprocess
    import sys

    import soundfile as sf

    from mats.testing import tiny_clip

    sr, wave = tiny_clip(2.0)
    sf.write(tmp_path / "a.wav", wave, sr)
    out = subprocess.run([sys.executable, "-m", "mats", "tags", str(tiny_ckpt_yamnet), str(tmp_path / "a.wav"),
                          "--top", "2", "-o", str(tmp_path / "t.jsonl")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    row = json.loads((tmp_path / "t.jsonl").read_text())
    assert row["clip"].endswith("a.wav") and len(row["tags"]) == 2


def test_checkpoints_naming_the_old_sfx_minilm_encoder_still_load(tmp_path):
    """The shipped checkpoints now listen through yamnet-minilm; one saved when sfx-minilm was the default (its
    config names that folder) loads and answers with it."""
    import json
    import shutil

    from mats import MATS
    from mats.encoders.offline import OfflineEncoder

    ckpt = tmp_path / "old-gpt2"
    shutil.copytree(ROOT / "assets" / "mats-gpt2-mini", ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["encoder"]["backend"] == "yamnet"  # the shipped default
    cfg["encoder"] = {"backend": "offline", "path": str(ROOT / "assets" / "encoders" / "sfx-minilm")}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    m = MATS.from_pretrained(ckpt)
    assert isinstance(m.encoder, OfflineEncoder) and not m.can_tag
    assert isinstance(m.caption(ROOT / "assets" / "examples" / "dog.flac", num_beams=1, max_new_tokens=8), str)


EXAMPLE_SOURCES = {"dog": ("dog", "bark"), "rain": ("rain", "water"), "speech": ("speak", "speech", "talk", "voice"),
                   "crying_baby": ("baby", "infant", "cry", "crie"), "church_bells": ("bell", "chime")}


def test_shipped_encoder_tags_the_examples_with_their_source():
    """What a visitor reads under each answer: the example clips' top AudioSet tags name what they are."""
    enc = AudioSetEncoder.from_pretrained(ENCODER)
    from mats.audio import load_clip

    for name, words in EXAMPLE_SOURCES.items():
        wave = load_clip(ROOT / "assets" / "examples" / f"{name}.flac", target_sr=enc.sample_rate).waveform
        tags = [n.lower() for n, _ in enc.tags([wave], top=3)[0]]
        assert any(w in t for t in tags for w in words), (name, tags)


@pytest.mark.slow
def test_shipped_smollm2_captions_every_example_with_its_source():
    """Issue 25's demo check: all five example clips captioned with their source (default λ, greedy as the page)."""
    from mats import MATS

    m = MATS.from_pretrained(ROOT / "assets" / "mats-smollm2")
    for name, words in EXAMPLE_SOURCES.items():
        caption = m.caption(ROOT / "assets" / "examples" / f"{name}.flac", num_beams=1).lower()
        assert any(w in caption for w in words), (name, caption)


def test_an_encoder_folder_loads_whatever_its_backend(tmp_path):
    from mats.encoders import load_encoder_folder

    AudioSetEncoder.tiny().save_pretrained(tmp_path / "enc")
    enc = load_encoder_folder(tmp_path / "enc")
    assert isinstance(enc, AudioSetEncoder) and not enc.training
    with pytest.raises(ConfigError, match="encoder folder"):
        load_encoder_folder(tmp_path / "missing")
