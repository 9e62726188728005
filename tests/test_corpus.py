"""mats.corpus (`mats corpus`): the synthesized, captioned corpus the offline encoder is aligned on (tiny scale).

Needs espeak-ng, fluidsynth + fluid-soundfont-gm and sox. Without them these tests skip with the reason, unless
MATS_REQUIRE_AUDIO_TOOLS=1 (as CI sets after installing them): then a missing tool fails the run.
"""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from mats import corpus

MISSING = corpus.check_tools()
needs_tools = pytest.mark.skipif(
    bool(MISSING) and os.environ.get("MATS_REQUIRE_AUDIO_TOOLS") != "1",
    reason=f"missing {', '.join(MISSING)} (apt-get install espeak-ng fluidsynth fluid-soundfont-gm sox)",
)


def test_required_tools_are_present_when_required():
    if os.environ.get("MATS_REQUIRE_AUDIO_TOOLS") == "1":
        assert not MISSING, f"MATS_REQUIRE_AUDIO_TOOLS=1 but {MISSING} are missing"


def test_splits_hold_out_whole_voices_languages_and_programs():
    # Every voice, language and GM program has exactly one split, and each split has some of each kind.
    voices = corpus.MALE + corpus.FEMALE + corpus.ROBOTIC + corpus.WHISPER
    by_split = {s: [v for v in voices if corpus.voice_split(v) == s] for s in ("train", "val", "test")}
    assert all(by_split.values()), by_split
    assert {corpus.voice_kind(v) for v in by_split["test"]} >= {"man", "woman"}
    langs = {s: [l for l in corpus.SENTENCES if corpus.language_split(l) == s] for s in ("train", "val", "test")}
    assert all(langs.values()) and not set(langs["train"]) & set(langs["test"])
    for fam in corpus.EVAL_FAMILIES:
        progs = corpus.DRUM_KITS if fam == "drums" else corpus.GM[fam]
        splits = {sp for _, sp in progs.values()}
        assert {"train", "test"} <= splits, fam  # a held-out program of a family whose others are trained on
    assert corpus.split_of("voice:x") == corpus.split_of("voice:x")  # deterministic


def test_midi_writer_makes_a_valid_file(tmp_path):
    path = tmp_path / "a.mid"
    corpus.write_midi(path, [(0.0, 0.5, 60, 100), (0.5, 0.5, 64, 90)], program=40, drums=False)
    data = path.read_bytes()
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22  # track length field matches
    assert bytes([0xC0, 40]) in data and bytes([0x90, 60, 100]) in data


def test_realism_is_seeded_and_recorded():
    x = np.sin(np.arange(corpus.N) * 0.05).astype(np.float32)
    a, notes_a = corpus.realism(x, np.random.default_rng(3))
    b, notes_b = corpus.realism(x, np.random.default_rng(3))
    assert notes_a == notes_b and np.array_equal(a, b)
    assert "gain" in notes_a and a.shape == x.shape and np.isfinite(a).all()
    assert np.abs(a).max() <= 1.0


@needs_tools
def test_tiny_corpus_is_captioned_split_and_cached(tmp_path):
    import soundfile as sf

    counts = {"speech": 3, "music": 3, "signal": 2, "scene": 2}
    table = corpus.build(tmp_path, counts, seed=0, data=None, workers=1, log=lambda *_: None)
    rows = list(csv.DictReader(table.open()))
    assert [r["kind"] for r in rows].count("speech") == 3 and len(rows) == 10
    for r in rows:
        wave, sr = sf.read(tmp_path / r["file"], dtype="float32")
        assert sr == 44100 and len(wave) == corpus.N
        assert np.abs(wave).max() > 0.01, r  # something was synthesized
        assert r["split"] in ("train", "val", "test") and r["captions"] and r["realism"]
        assert r["coarse"] in ("speech", "music", "other")
        if r["kind"] == "speech":
            assert r["coarse"] == "speech" and corpus.voice_split(r["voice"].split("+")[0]) == r["split"]
        if r["kind"] == "music" and r["family"]:
            fam_programs = corpus.DRUM_KITS if r["family"] == "drums" else corpus.GM[r["family"]]
            assert fam_programs[int(r["program"].split(":")[1])][1] == r["split"]  # program's own split
        if r["kind"] == "scene":
            assert len(r["sources"].split(";")) >= 2
    # test.csv holds exactly the test rows; a rerun reuses the clips and gives the same table.
    assert sum(1 for _ in csv.DictReader((tmp_path / "test.csv").open())) == sum(r["split"] == "test" for r in rows)
    before = {r["file"]: (tmp_path / r["file"]).stat().st_mtime_ns for r in rows}
    again = list(csv.DictReader(corpus.build(tmp_path, counts, seed=0, workers=1, log=lambda *_: None).open()))
    assert again == rows
    assert before == {r["file"]: (tmp_path / r["file"]).stat().st_mtime_ns for r in rows}
