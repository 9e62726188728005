"""Tests for mats.data: loaders on the real files in shared/data, skip reporting, splitting, mixing."""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from mats.data import (
    CAPTION_PROMPTS,
    CLASSIFY_PROMPTS,
    MUSIC_CAPTION_PROMPTS,
    PROMPTS,
    TASKS,
    LoadReport,
    Sample,
    detect_kind,
    load_source,
)
from mats.mixture import Mixture, build_dataset, split_by_group
from mats.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "data"


def _find_data() -> Path | None:
    candidates = [os.environ.get("MATS_SHARED_DATA"), REPO / "shared" / "data", REPO.parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "SOURCES.md").is_file():
            return Path(c)
    return None


DATA = _find_data()
needs_data = pytest.mark.skipif(DATA is None, reason="shared/data not found (set MATS_SHARED_DATA)")
CLOTHO_CAPTIONS = [f"captions/clotho_v2/clotho_captions_{s}.csv" for s in ("development", "validation", "evaluation")]

# (path under shared/data, detected kind, data rows per SOURCES.md, samples expected, task)
REAL_FILES = [
    ("captions/audiocaps_v1/train.csv", "audiocaps", 49838, 49838, "caption"),
    ("captions/audiocaps_v1/val.csv", "audiocaps", 2475, 2475, "caption"),
    ("captions/audiocaps_v1/test.csv", "audiocaps", 4875, 4875, "caption"),
    ("captions/audiocaps_v2/val.csv", "audiocaps", 2475, 2475, "caption"),
    ("captions/clotho_v2/clotho_captions_development.csv", "clotho", 3839, 3839 * 5, "caption"),
    ("captions/clotho_v2/clotho_captions_validation.csv", "clotho", 1044, 1044 * 5, "caption"),
    ("captions/clotho_v2/clotho_captions_evaluation.csv", "clotho", 1038, 1038 * 5, "caption"),
    ("captions/wavcaps/sb_final.json", "wavcaps", 1232, 1232, "caption"),
    ("captions/musiccaps/musiccaps-public.csv", "musiccaps", 5521, 5521, "music_caption"),
    ("captions/gtzan_brain2music/brain2music-captions.csv", "brain2music", 540, 540, "music_caption"),
    ("labels/esc50/esc50.csv", "esc50", 2000, 2000, "classify"),
    ("labels/urbansound8k/UrbanSound8K.csv", "urbansound8k", 8732, 8732, "classify"),
    ("labels/urbansound8k/UrbanSound8K_with_header.csv", "urbansound8k", 8732, 8732, "classify"),
    ("labels/audioset/balanced_train_segments.csv", "audioset", 22160, 22160, "classify"),
    ("clips/esc50/labels.csv", "esc50", 262, 262, "classify"),
    ("clips/us8k/labels.csv", "urbansound8k", 568, 568, "classify"),
    ("qa/clotho_aqa/binary_train_eng.csv", "clotho_aqa", 14064, 14064, "ask"),
    ("qa/clotho_aqa/single_word_train.csv", "clotho_aqa", 7032, 7032, "ask"),
    ("qa/clotho_aqa/binary_val_eng_unanimus.csv", "clotho_aqa", 818, 818, "ask"),
    ("qa/ltu/openaqa_toy.json", "ltu", 6306, 6306, "ask"),
]


@needs_data
@pytest.mark.parametrize("rel, kind, rows, n_samples, task", REAL_FILES, ids=[r[0] for r in REAL_FILES])
def test_real_file_loads(rel, kind, rows, n_samples, task):
    path = DATA / rel
    assert detect_kind(path) == kind
    samples, report = load_source(path)
    assert isinstance(report, LoadReport) and report.kind == kind
    assert report.rows_read == rows  # counts from SOURCES.md
    assert report.samples == len(samples) == n_samples
    assert report.skipped == 0 and report.reasons == []
    for s in samples:
        assert isinstance(s, Sample)
        assert s.task == task
        assert s.text.strip() and s.answer.strip() and s.prompt.strip() and s.group.strip()
        assert s.text == s.text.strip() and "  " not in s.answer
    if task in PROMPTS:
        assert {s.prompt for s in samples} <= set(PROMPTS[task])


@needs_data
def test_caption_samples_reproduce_the_caption():
    samples, _ = load_source(DATA / "captions/audiocaps_v1/train.csv")
    first = samples[0]
    assert first.text == first.answer == "A woman talks nearby as water pours"
    assert first.group == "youtube:r1nicOVtvkQ" and first.source == "audiocaps"


@needs_data
def test_clotho_five_captions_share_one_group():
    samples, _ = load_source(DATA / "captions/clotho_v2/clotho_captions_development.csv")
    groups = Counter(s.group for s in samples)
    # A few Clotho files differ only in case or punctuation ("Car Keys.wav", "Car_Keys.wav"); they share a
    # group on purpose: merging can only make the split stricter.
    assert 3800 < len(groups) <= 3839 and all(n % 5 == 0 for n in groups.values())
    assert samples[0].group == "clotho:distorted_am_radio_noise"


@needs_data
def test_esc50_labels_are_humanised_and_grouped_by_freesound_recording():
    samples, _ = load_source(DATA / "labels/esc50/esc50.csv")
    answers = {s.answer for s in samples}
    assert len(answers) == 50 and "chirping birds" in answers
    assert not any("_" in a for a in answers)
    bird = next(s for s in samples if s.answer == "chirping birds")
    assert "chirping birds" in bird.text and bird.prompt in CLASSIFY_PROMPTS
    assert samples[0].group == "freesound:100032"  # src_file, namespaced like UrbanSound8K's fsID
    # Takes A, B, ... of one recording share a group.
    assert max(Counter(s.group for s in samples).values()) > 1


@needs_data
def test_urbansound8k_with_and_without_header_agree():
    a, ra = load_source(DATA / "labels/urbansound8k/UrbanSound8K.csv")
    b, rb = load_source(DATA / "labels/urbansound8k/UrbanSound8K_with_header.csv")
    assert [(s.answer, s.group) for s in a] == [(s.answer, s.group) for s in b]
    assert any("no header" in n for n in ra.notes) and not rb.notes
    assert a[0].answer == "dog bark" and a[0].group == "freesound:100032"


@needs_data
def test_audioset_multilabel_names_and_damaged_ids():
    samples, report = load_source(DATA / "labels/audioset/balanced_train_segments.csv")
    first = samples[0]  # "#NAME?,30,40,  /m/09x0r,/t/dd00088 ,,,"
    assert first.answer == "speech, gush"
    assert "speech" in first.text and "gush" in first.text
    damaged = [s for s in samples if s.group == "audioset:damaged-youtube-id"]
    assert len(damaged) == 371  # SOURCES.md: 371 ids became #NAME?
    assert any("371" in n for n in report.notes)
    # "-0DdlOuIFUI,50,60,  /m/0130jx,/m/02jz0l,/m/0838f ,,,": 3 labels spread over 3 columns. AudioSet names
    # can contain commas themselves, so the answer is compared whole.
    row = next(s for s in samples if s.group == "youtube:-0DdlOuIFUI")
    assert row.answer == "sink (filling or washing), water tap, faucet, water"
    assert row.text.endswith("sink (filling or washing), water tap, faucet and water")


@needs_data
def test_audioset_needs_a_class_list(tmp_path):
    seg = tmp_path / "segments.csv"
    seg.write_text("# YTID, start_seconds, end_seconds, positive_labels\nabcdefghijk,0,10,\"/m/09x0r\"\n")
    with pytest.raises(DataError, match="class"):
        load_source(seg)
    samples, _ = load_source(seg, labels=DATA / "labels/audioset/class_labels_indices.csv")
    assert samples[0].answer == "speech" and samples[0].group == "youtube:abcdefghijk"
    samples, _ = load_source(seg, labels=DATA / "labels/audioset/ontology.json")
    assert samples[0].answer == "speech"


@needs_data
def test_clotho_aqa_text_from_clotho_captions():
    path = DATA / "qa/clotho_aqa/single_word_train.csv"
    plain, _ = load_source(path)
    assert all(s.text == s.prompt for s in plain)  # no captions given: text = the question
    assert plain[0].answer == "three"  # "THREE" lower-cased
    with_caps, report = load_source(path, captions=[DATA / p for p in CLOTHO_CAPTIONS])
    assert len(with_caps) == len(plain)
    captioned = [s for s in with_caps if s.text != s.prompt]
    assert len(captioned) > 0.7 * len(with_caps)
    texts: dict[str, set[str]] = {}
    for rel in CLOTHO_CAPTIONS:
        for s in load_source(DATA / rel)[0]:
            texts.setdefault(s.group, set()).add(s.text)
    assert all(s.text in texts[s.group] for s in captioned)  # a caption of that very file
    first = with_caps[0]  # AmbianceBackyard_Quiet_bip.wav, "How many birds are squawking?"
    assert first.group == "clotho:ambiancebackyard_quiet_bip" and first.prompt == "How many birds are squawking?"
    assert any("no Clotho caption" in n for n in report.notes)


@needs_data
def test_ltu_groups_and_caption_only_items():
    samples, _ = load_source(DATA / "qa/ltu/openaqa_toy.json")
    prefixes = Counter(s.group.split(":")[0] for s in samples)
    assert {"youtube", "freesound", "clotho", "soundbible"} <= set(prefixes)
    assert samples[1].group == "clotho:wind_turbine_blades"
    eval600, report = load_source(DATA / "qa/ltu/as_strong_eval_sample_600.json")
    assert len(eval600) == 600 and all(s.task == "caption" and s.text == s.answer for s in eval600)
    assert report.notes


@needs_data
@pytest.mark.parametrize("rel", ["labels/audioset/class_labels_indices.csv", "labels/fsd50k/vocabulary_reconstructed.csv",
                                 "labels/gtzan/train_filtered.txt", "qa/clotho_aqa/output_classes.json"])
def test_non_sample_files_are_refused(rel):
    with pytest.raises(DataError, match=Path(rel).name):
        load_source(DATA / rel)


# --------------------------------------------------------------------------------- malformed input


def test_bad_rows_are_counted_and_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="mats.data"):
        samples, report = load_source(FIXTURES / "bad_audiocaps.csv")
    assert report.kind == "audiocaps"
    assert report.rows_read == 8  # the blank line is not a row
    assert [s.answer for s in samples] == ["A dog barks twice", "A car passes by", "A man speaks, then laughs"]
    assert report.samples == 3 and report.skipped == 5
    assert report.reasons == [
        "line 3: empty caption",
        "line 4: 3 fields, expected 4 (missing column)",
        "line 5: empty caption",
        "line 8: 5 fields, expected 4 (extra column (unquoted comma?))",
        "line 9: empty youtube_id",
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "5 skipped" in warnings[0].getMessage()


def test_bad_clotho_rows():
    samples, report = load_source(FIXTURES / "bad_clotho.csv")
    assert report.rows_read == 3 and report.samples == len(samples) == 4
    assert report.skipped == 3
    assert report.reasons[0] == "line 2: empty caption_3"
    assert "missing column" in report.reasons[1] and "empty file_name" in report.reasons[2]
    assert {s.group for s in samples} == {"clotho:rain"}


def test_reasons_are_capped_but_count_is_not(tmp_path):
    path = tmp_path / "many.csv"
    path.write_text("audiocap_id,youtube_id,start_time,caption\n" + "".join(f"{i},x{i},0,\n" for i in range(20)))
    samples, report = load_source(path)
    assert samples == [] and report.skipped == 20 and len(report.reasons) == 5
    assert "20 skipped" in report.summary()


def test_missing_file_raises_data_error_naming_file_and_formats(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError) as err:
        load_source(missing)
    assert "nope.csv" in str(err.value) and "audiocaps" in str(err.value) and "clotho_aqa" in str(err.value)
    with pytest.raises(DataError, match="nope.csv"):
        load_source(missing, kind="esc50")


def test_unknown_format_and_kind(tmp_path):
    odd = tmp_path / "odd.csv"
    odd.write_text("foo,bar\n1,2\n")
    with pytest.raises(DataError, match="odd.csv.*Supported formats"):
        load_source(odd)
    with pytest.raises(DataError, match="unknown kind"):
        load_source(odd, kind="vggsound")
    with pytest.raises(DataError, match="missing column"):
        load_source(odd, kind="audiocaps")  # explicit kind, wrong header
    weird = tmp_path / "data.xml"
    weird.write_text("<a/>")
    with pytest.raises(DataError, match="unsupported file type"):
        load_source(weird)
    with pytest.raises(ConfigError, match="not understood"):
        load_source(FIXTURES / "bad_audiocaps.csv", captions="x.csv")


def test_plain_text_captions(tmp_path):
    path = tmp_path / "my_captions.txt"
    path.write_text("A dog barks.\n\n# a comment\n  Rain  on a tin roof \n")
    samples, report = load_source(path)
    assert report.kind == "text" and report.rows_read == 2
    assert [s.text for s in samples] == ["A dog barks.", "Rain on a tin roof"]
    assert all(s.text == s.answer and s.task == "caption" for s in samples)
    assert len({s.group for s in samples}) == 2
    music, _ = load_source(path, task="music_caption")
    assert all(s.prompt in MUSIC_CAPTION_PROMPTS for s in music)


# ------------------------------------------------------------------------------------ prompts


def test_sample_task_is_checked():
    with pytest.raises(DataError, match="not one of"):
        Sample("t", "transcribe", "p", "a", "src", "g")


def test_prompt_constants():
    assert set(PROMPTS) | {"ask"} == set(TASKS)
    for prompts in PROMPTS.values():
        assert len(prompts) == 5 and len(set(prompts)) == 5


def test_prompt_variety_and_seeding(tmp_path):
    path = tmp_path / "caps.txt"
    path.write_text("".join(f"caption number {i}\n" for i in range(100)))
    a, _ = load_source(path, seed=0)
    assert len({s.prompt for s in a}) >= 3
    assert {s.prompt for s in a} <= set(CAPTION_PROMPTS)
    assert a == load_source(path, seed=0)[0]  # same seed, same prompts
    b, _ = load_source(path, seed=1)
    assert [s.prompt for s in a] != [s.prompt for s in b]


# ------------------------------------------------------------------------------------ splitting


def _samples(groups, source="src"):
    return [Sample(f"t{i}", "caption", "p", f"a{i}", source, g) for i, g in enumerate(groups)]


def test_split_never_shares_a_group_and_is_stable():
    rng = random.Random(0)
    samples = _samples([f"g{rng.randrange(400)}" for _ in range(3000)])
    train, val = split_by_group(samples, 0.2, seed=3)
    assert len(train) + len(val) == len(samples)
    assert not {s.group for s in train} & {s.group for s in val}
    n_groups = len({s.group for s in samples})
    assert 0.12 < len({s.group for s in val}) / n_groups < 0.28
    shuffled = samples[:]
    rng.shuffle(shuffled)
    _, val2 = split_by_group(shuffled, 0.2, seed=3)
    assert {s.group for s in val2} == {s.group for s in val}  # independent of order
    _, val3 = split_by_group(samples, 0.2, seed=4)
    assert {s.group for s in val3} != {s.group for s in val}
    assert split_by_group(samples, 0.0)[1] == []
    with pytest.raises(ConfigError):
        split_by_group(samples, 1.0)


@needs_data
def test_split_keeps_shared_freesound_recordings_on_one_side():
    esc, _ = load_source(DATA / "labels/esc50/esc50.csv")
    us8k, _ = load_source(DATA / "labels/urbansound8k/UrbanSound8K_with_header.csv")
    shared = {s.group for s in esc} & {s.group for s in us8k}
    assert "freesound:175855" in shared  # SOURCES.md rule 3
    for seed in range(3):
        train, val = split_by_group(esc + us8k, 0.3, seed)
        assert not {s.group for s in train} & {s.group for s in val}


# ------------------------------------------------------------------------------------ mixing


def test_mixture_order_is_seeded():
    sources = {"a": _samples([f"a{i}" for i in range(300)], "a"), "b": _samples([f"b{i}" for i in range(100)], "b")}
    m = Mixture(sources, seed=7)
    e0 = m.epoch_indices(0)
    assert e0 == Mixture(sources, seed=7).epoch_indices(0)
    assert sorted(e0) == list(range(400))  # weight 1: every sample once
    assert e0 != m.epoch_indices(1)
    assert e0 != Mixture(sources, seed=8).epoch_indices(0)
    assert sorted(m.samples[i].source for i in e0) == ["a"] * 300 + ["b"] * 100


def test_mixture_weights_are_respected():
    sources = {"a": _samples([f"a{i}" for i in range(1000)], "a"), "b": _samples([f"b{i}" for i in range(500)], "b"),
               "c": _samples([f"c{i}" for i in range(400)], "c"), "d": _samples(["d"] * 50, "d")}
    m = Mixture(sources, {"a": 1.0, "b": 2.0, "c": 0.5, "d": 0.0}, seed=0)
    assert m.counts() == {"a": 1000, "b": 1000, "c": 200, "d": 0}
    assert len(m) == 2200
    idx = m.epoch_indices(0)
    drawn = Counter(m.samples[i].source for i in idx)
    assert drawn == Counter({"a": 1000, "b": 1000, "c": 200})
    b_draws = Counter(i for i in idx if m.samples[i].source == "b")
    assert set(b_draws.values()) == {2}  # weight 2: each sample exactly twice
    c0 = {i for i in idx if m.samples[i].source == "c"}
    c1 = {i for i in m.epoch_indices(1) if m.samples[i].source == "c"}
    assert len(c0) == len(c1) == 200 and c0 != c1  # a fresh half each epoch
    # Sources are interleaved, not blocked: the first 10% of the epoch holds both big sources.
    head = Counter(m.samples[i].source for i in idx[:220])
    assert head["a"] > 50 and head["b"] > 50


def test_mixture_rejects_bad_weights():
    sources = {"a": _samples(["x"])}
    with pytest.raises(ConfigError, match="unknown source"):
        Mixture(sources, {"zzz": 1.0})
    with pytest.raises(ConfigError, match=">= 0"):
        Mixture(sources, {"a": -1.0})


# ------------------------------------------------------------------------------------ build_dataset


def test_build_dataset_from_fixtures(tmp_path):
    caps = tmp_path / "caps.txt"
    caps.write_text("".join(f"caption {i}\n" for i in range(200)))
    train, val, reports = build_dataset(
        [{"path": caps, "weight": 2.0}, {"path": FIXTURES / "bad_audiocaps.csv"},
         {"path": caps, "max_samples": 50, "name": "small"}, {"path": caps}],
        seed=1, val_fraction=0.25,
    )
    assert [r.kind for r in reports] == ["text", "audiocaps", "text", "text"]
    assert reports[1].skipped == 5
    assert train.names == ["text", "audiocaps", "small", "text_2"]
    assert isinstance(train, Mixture) and all(isinstance(s, Sample) for s in val)
    sizes = dict(zip(train.names, train._sizes))
    assert sizes["small"] <= 50
    counts = train.counts()
    assert counts["text"] == 2 * sizes["text"]
    assert not {s.group for s in train.samples} & {s.group for s in val}
    # Same inputs, same everything.
    train2, val2, _ = build_dataset([{"path": caps, "weight": 2.0}, {"path": FIXTURES / "bad_audiocaps.csv"},
                                     {"path": caps, "max_samples": 50, "name": "small"}, {"path": caps}],
                                    seed=1, val_fraction=0.25)
    assert train2.epoch_indices(3) == train.epoch_indices(3) and val2 == val


def test_build_dataset_errors(tmp_path):
    with pytest.raises(ConfigError):
        build_dataset([], seed=0)
    with pytest.raises(ConfigError, match="path"):
        build_dataset([{"kind": "audiocaps"}], seed=0)
    with pytest.raises(DataError, match="missing.csv"):
        build_dataset([{"path": tmp_path / "missing.csv"}], seed=0)


@needs_data
def test_build_dataset_real_sources():
    train, val, reports = build_dataset(
        [
            {"path": DATA / "captions/clotho_v2/clotho_captions_development.csv", "weight": 2.0},
            {"path": DATA / "qa/clotho_aqa/binary_train_eng.csv", "captions": [DATA / p for p in CLOTHO_CAPTIONS],
             "max_samples": 2000},
            {"path": DATA / "labels/esc50/esc50.csv"},
            {"path": DATA / "labels/urbansound8k/UrbanSound8K.csv", "weight": 0.5},
        ],
        seed=0, val_fraction=0.1,
    )
    assert [r.rows_read for r in reports] == [3839, 14064, 2000, 8732]
    train_groups, val_groups = {s.group for s in train.samples}, {s.group for s in val}
    assert not train_groups & val_groups  # also across Clotho / Clotho-AQA and ESC-50 / UrbanSound8K
    n_all = 3839 * 5 + 2000 + 2000 + 8732
    assert 0.05 < len(val) / n_all < 0.15
    assert {s.task for s in train.samples} == {"caption", "ask", "classify"}
    assert len(train.epoch_indices(0)) == len(train)
