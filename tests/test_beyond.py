"""Santa evidence, your own caption bank, long clips as a timeline and many clips at once: the library side."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mats.audio import window_bounds, windows
from mats.bank import MAX_CAPTIONS, caption_bank, read_captions
from mats.errors import DataError, MATSError
from mats.santa import SantaBank, familiarity

ROOT = Path(__file__).resolve().parent.parent
DOG = str(ROOT / "assets" / "examples" / "dog.flac")
RAIN = str(ROOT / "assets" / "examples" / "rain.flac")
GREEDY = dict(num_beams=1, max_new_tokens=4)


@pytest.fixture(scope="module")
def model(tiny_ckpt_gpt2):
    from mats import MATS

    return MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")


# ---------------------------------------------------------------------------------------------- Santa evidence
def test_explain_lists_the_captions_santa_mixes_in_with_their_weights(model):
    ev = model.explain(DOG, santa=0.4, top=3)
    assert ev.strength == 0.4 and 1 <= len(ev.captions) <= 3
    assert all(c["text"] in model.santa.texts for c in ev.captions)
    weights = [c["weight"] for c in ev.captions]
    assert weights == sorted(weights, reverse=True) and 0 < sum(weights) <= 1.0001
    # The weights are Santa's own: the same retrieval that conditions the answer.
    r = model.santa.retrieve(model.embed_clips([DOG]))
    top = r.weights[0].argsort(descending=True)[:3]
    assert [model.santa.texts[int(r.indices[0, j])] for j in top] == [c["text"] for c in ev.captions]
    assert ev.nearest in model.santa.texts and -1 <= ev.nearest_similarity <= 1
    assert ev.familiarity in ("familiar", "partly familiar", "unfamiliar") and ev.note
    assert set(ev.to_dict()) >= {"strength", "captions", "nearest", "nearest_similarity", "familiarity", "note"}
    many = model.explain([DOG, RAIN])
    assert len(many) == 2 and many[0].captions == model.explain(DOG).captions


def test_explain_refuses_clearly(model):
    with pytest.raises(MATSError, match="between 0 and 1"):
        model.explain(DOG, santa=2)
    with pytest.raises(MATSError, match="no Santa memory bank"):
        model.with_bank(None).explain(DOG)
    assert model.santa is not None  # the view did not change the shared model


def test_familiarity_words():
    assert familiarity(0.45)[0] == "familiar"
    assert familiarity(0.36)[0] == "partly familiar"
    level, words = familiarity(0.1)
    assert level == "unfamiliar" and "outside what the model can describe" in words


# ---------------------------------------------------------------------------------------------- your caption bank
def test_read_captions_txt_and_csv_skip_bad_lines_and_say_why(tmp_path):
    txt = tmp_path / "mine.txt"
    txt.write_bytes("a kettle whistles\n\n# comment\nbird.wav\n" .encode() + b"bad \xff\xfe bytes\n"
                    + ("x" * 600).encode() + b"\na kettle whistles\n")
    got = read_captions(txt)
    assert got.texts == ["a kettle whistles", "a kettle whistles"]
    assert got.skipped == 3 and "audio file names, not captions" in got.summary()
    csv_file = tmp_path / "mine.csv"
    csv_file.write_text('id,Caption\n1,"a drill, then silence"\n2,\n3,a tram bell\n')
    got = read_captions(csv_file)
    assert got.texts == ["a drill, then silence", "a tram bell"] and got.column == "caption" and got.skipped == 1


@pytest.mark.parametrize("name, content, words", [
    ("empty.txt", b"  \n\n", "is empty"),
    ("binary.txt", bytes(range(256)) * 8, "looks binary"),
    ("cols.csv", b"file,label\na.wav,dog\n", "has no caption column (its columns: file, label)"),
    ("over.txt", b"a caption\n" * (MAX_CAPTIONS + 1), "the limit is 50,000"),
    ("model.bin", b"abc", "not .bin"),
    ("paths.txt", b"a.wav\nb.flac\n", "no usable caption"),
])
def test_read_captions_refuses_bad_files_clearly(tmp_path, name, content, words):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_captions(p)


def test_caption_bank_keeps_every_unique_caption_and_answers_with_it(model, tmp_path):
    p = tmp_path / "domain.txt"
    p.write_text("\n".join([f"a machine hums at speed {i}" for i in range(30)] + ["a machine hums at speed 1"]))
    built = caption_bank(model.encoder, read_captions(p), model.config.santa, model.config.noise_variance)
    assert built.unique == 30 and len(built.bank) == 30 and built.seconds > 0
    assert built.bank.clean is not None and built.bank.clean.shape[0] == 30
    s = model.config.santa
    assert built.bank.centroids.shape[0] == min(s.n_clusters, 30 // s.top_k)  # clusters of top_k+ captions
    tiny = caption_bank(model.encoder, ["a bell", "a gong", "a horn"], s, model.config.noise_variance)
    assert tiny.bank.centroids.shape[0] == 1 and len(model.with_bank(tiny.bank).explain(DOG).captions) == 3
    mine = model.with_bank(built.bank)
    ev = mine.explain(DOG)
    assert all(c["text"].startswith("a machine hums") for c in ev.captions)
    assert model.explain(DOG).captions[0]["text"] in model.santa.texts  # the shared model kept its bank
    assert isinstance(mine.caption(DOG, **GREEDY), str)
    # Santa with the new bank conditions differently from the checkpoint's own.
    a = model.embed_clips([DOG])
    assert not torch.allclose(mine.condition(a, 0.5), model.condition(a, 0.5))


def test_mats_bank_build_reads_captions_the_same_way(tiny_ckpt_gpt2, tmp_path):
    from mats.bank import rebuild_bank

    p = tmp_path / "mine.csv"
    p.write_text("caption\nthe sea crashes on rocks\ngulls cry overhead\nbird.wav\n")
    out = rebuild_bank(str(tiny_ckpt_gpt2), [str(p)], out=str(tmp_path / "adapted"))
    assert sorted(SantaBank.load(out).texts) == ["gulls cry overhead", "the sea crashes on rocks"]


# ---------------------------------------------------------------------------------------------- timeline
def _long_clip(seconds: float, sr: int = 16000) -> tuple[int, np.ndarray]:
    t = np.arange(int(seconds * sr)) / sr
    return sr, (0.3 * np.sin(2 * np.pi * (200 + 20 * t) * t)).astype(np.float32)


def test_window_bounds_match_windows():
    wave = np.arange(25, dtype=np.float32)
    bounds = window_bounds(25, 10)
    assert bounds == [(0, 10), (10, 20), (15, 25)]
    assert all((w == wave[s:e]).all() for w, (s, e) in zip(windows(wave, 10), bounds))
    assert window_bounds(5, 10) == [(0, 5)]


def test_timeline_one_row_per_window_deterministic(model):
    from mats.timeline import timeline

    clip = _long_clip(25.0)
    seen = []
    rows = timeline(model, clip, batch_size=2, progress=lambda d, n, w: seen.append((d, n)), **GREEDY)
    assert [(r["start"], r["end"]) for r in rows] == [(0.0, 10.0), (10.0, 20.0), (15.0, 25.0)]
    assert all(isinstance(r["text"], str) and r["familiarity"] for r in rows)
    assert seen[-1] == (6, 6)
    again = timeline(model, clip, batch_size=3, **GREEDY)
    assert [r["text"] for r in again] == [r["text"] for r in rows]  # batching does not change the answers
    # Each window is answered as that window alone would be.
    sr, wave = clip
    alone = model.caption((sr, wave[15 * sr : 25 * sr]), **GREEDY)
    assert rows[2]["text"] == alone
    tags = timeline(model, DOG, task="classify", **GREEDY)
    assert len(tags) == 1 and tags[0]["end"] == 5.0
    with pytest.raises(MATSError, match="timeline task"):
        timeline(model, DOG, task="dance")


# ---------------------------------------------------------------------------------------------- batch
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_batch_rows_per_file_with_errors_and_zip_safety(model, tmp_path):
    from mats.batch import gather, run_batch

    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(16000, np.float32), 16000)
    bomb = zipfile.ZipInfo("bomb.wav")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    z = _zip(tmp_path / "clips.zip", {"a/dog.flac": Path(DOG).read_bytes(), "../evil.wav": b"x",
                                      "notes.txt": b"hello", "inner.zip": b"PK"})
    with zipfile.ZipFile(z, "a", zipfile.ZIP_DEFLATED) as zz:
        zz.writestr(bomb, b"\0" * (20 * 2**20))
    files = gather([DOG, str(silent), str(z)], tmp_path / "work", names=["dog.flac", "silent.wav", "clips.zip"])
    by = {f.name: f for f in files}
    assert by["clips.zip/../evil.wav"].problem.startswith("unsafe path")
    assert "zip bomb" in by["clips.zip/bomb.wav"].problem
    assert "not an audio file" in by["clips.zip/notes.txt"].problem
    assert "zip inside the zip" in by["clips.zip/inner.zip"].problem
    assert not (tmp_path / "evil.wav").exists() and not (tmp_path / "work" / "evil.wav").exists()
    rows = run_batch(model, files, labels=["dog", "rain"], batch_size=2, **GREEDY)
    assert [r["file"] for r in rows] == [f.name for f in files]
    good = [r for r in rows if not r["error"]]
    assert [r["file"] for r in good] == ["dog.flac", "clips.zip/a/dog.flac"]
    assert good[0]["caption"] == good[1]["caption"] and set(good[0]["scores"]) == {"dog", "rain"}
    # Tags for a label set: as MATS.classify (Santa over the labels); captions: the caption bank.
    want = model.classify(DOG, labels=["dog", "rain"], **GREEDY)
    assert good[0]["tags"] == ", ".join(want["tags"]) and good[0]["caption"] == model.caption(DOG, **GREEDY)
    assert "silent" in next(r for r in rows if r["file"] == "silent.wav")["error"]


def test_batch_limits(tmp_path, monkeypatch):
    import mats.batch as batch

    with pytest.raises(MATSError, match="No files"):
        batch.gather([], tmp_path)
    monkeypatch.setattr(batch, "MAX_FILES", 2)
    with pytest.raises(MATSError, match="more than the limit of 2"):
        batch.gather([DOG, DOG, DOG], tmp_path)
    monkeypatch.setattr(batch, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(MATSError, match="add up to more than"):
        batch.gather([DOG], tmp_path)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(MATSError, match="not a readable zip"):
        batch.gather([str(bad)], tmp_path)


def test_a_clean_bank_is_its_own_evidence_reference(tiny_ckpt_gpt2, tmp_path):
    """A bank built without noise (santa.bank_noise_variance 0, as shipped) is used as is for the familiarity
    cue: nothing is embedded again, and the nearest caption of a caption's own text embedding is that caption."""
    from mats import MATS
    from mats.cli import main

    texts = tmp_path / "captions.txt"
    texts.write_text("\n".join(f"a bell rings {i} times" for i in range(24)) + "\n")
    out = tmp_path / "clean"
    assert main(["bank", "build", str(tiny_ckpt_gpt2), str(texts), "--out", str(out), "--noise", "0"]) == 0
    m = MATS.from_pretrained(out, device="cpu")
    m.prepare_evidence()
    assert m.santa.clean is m.santa.embeddings
    ev = m.explain(audio_embeddings=m.encoder.embed_text([m.santa.texts[5]]))[0]
    assert ev.nearest == m.santa.texts[5] and ev.nearest_similarity == pytest.approx(1.0, abs=1e-4)


# ---------------------------------------------------------------------------------------------- another audio tower
def test_with_encoder_listens_through_another_audio_tower_of_the_same_text_space(model):
    import copy

    before = model.embed_clips([DOG])
    other = copy.deepcopy(model.encoder)
    with torch.no_grad():  # a different audio side, the same text tower (a validation encoder is exactly this)
        for p in other.model.audio_projection.parameters():
            p.add_(torch.randn_like(p))
    view = model.with_encoder(other)
    assert view.encoder is other and model.encoder is not other
    assert not torch.allclose(view.embed_clips([DOG]), before, atol=1e-3)  # the view hears through `other`
    assert torch.equal(model.embed_clips([DOG]), before)  # and the original still through its own
    # Weights are shared, not copied: the view answers through the same mapper and LM.
    assert view.mapper is model.mapper and view.lm is model.lm
    assert isinstance(view.caption(DOG, **GREEDY), str)


def test_with_encoder_refuses_an_encoder_of_another_text_space(model):
    from mats.encoders.clap import ClapEncoder
    from mats.errors import ConfigError
    from mats.testing import tiny_clap

    stranger = ClapEncoder(*tiny_clap(seed=1), name_or_path="tiny-other")
    with pytest.raises(ConfigError, match="text tower differs"):
        model.with_encoder(stranger)
