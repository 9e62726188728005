"""The evaluation runner (mats.eval) on tiny random models: file formats, clip matching, the lambda sweep's
single audio pass, a corrupt clip, values that can be recomputed by hand, and the output files.

The metric functions themselves are tested in test_metrics.py; here we test that the runner feeds them right.
"""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mats.errors import ConfigError, DataError
from mats.eval import (
    DEFAULT_TEMPLATE,
    audiocaps_candidates,
    evaluate,
    load_eval_data,
    read_caption_csv,
    read_label_csv,
    read_qa_csv,
)
from mats.metrics import caption_metrics, normalize_answer, text_similarity

SHARED = Path("/work/shared/data/clips")
GEN = {"num_beams": 1, "max_new_tokens": 4}


def write_csv(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def write_tone(path: Path, freq: float, seconds: float = 1.0, sr: int = 16000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def model(tiny_ckpt_gpt2):
    from mats import MATS

    return MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")


@pytest.fixture
def clips(tmp_path):
    """Four short tone clips (wav and flac) and one corrupt file, all in one folder."""
    d = tmp_path / "clips"
    d.mkdir()
    for name, freq in (("a.wav", 220), ("b.wav", 440), ("c.flac", 880), ("d.wav", 1760)):
        write_tone(d / name, freq)
    (d / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00garbage" * 8)
    return d


# ------------------------------------------------------------------------------------------ file formats


def test_label_csv_formats(tmp_path):
    esc = write_csv(tmp_path / "esc.csv", [["filename", "fold", "target", "category", "esc10", "src_file", "take"],
                                            ["1-1-A-0.wav", "1", "0", "dog", "True", "1", "A"],
                                            ["1-2-A-1.wav", "1", "1", "rooster", "False", "2", "A"]])
    assert read_label_csv(esc)[:2] == ("esc50", [("1-1-A-0.wav", "dog"), ("1-2-A-1.wav", "rooster")])
    us_rows = [["100032-3-0-0.wav", "100032", "0.0", "0.3", "1", "5", "3", "dog_bark"]]
    us = write_csv(tmp_path / "us.csv", [["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID",
                                          "class"], *us_rows])
    assert read_label_csv(us)[:2] == ("urbansound8k", [("100032-3-0-0.wav", "dog_bark")])
    kind, rows, notes = read_label_csv(write_csv(tmp_path / "us_nohead.csv", us_rows * 2))
    assert (kind, rows) == ("urbansound8k", [("100032-3-0-0.wav", "dog_bark")] * 2) and "no header" in notes[0]
    kind, rows, notes = read_label_csv(write_csv(tmp_path / "gen.csv", [["file", "label"], ["x.wav", "rain"],
                                                                       ["y.wav"], ["z.wav", "siren"]]))
    assert (kind, rows) == ("generic", [("x.wav", "rain"), ("z.wav", "siren")])
    assert "1 fields, expected 2" in notes[0]  # the short row is reported, not dropped silently
    with pytest.raises(DataError, match="file' and 'label"):
        read_label_csv(write_csv(tmp_path / "bad.csv", [["name", "what"], ["x.wav", "rain"]]))


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not present")
def test_shared_label_files_parse():
    kind, rows, _ = read_label_csv(SHARED / "esc50" / "labels.csv")
    assert kind == "esc50" and len(rows) == 262 and rows[0] == ("4-182395-A-0.flac", "dog")
    kind, rows, _ = read_label_csv(SHARED / "us8k" / "labels.csv")
    assert kind == "urbansound8k" and len(rows) == 568 and len({lab for _, lab in rows}) == 10


def test_caption_csv_formats(tmp_path):
    clotho = write_csv(tmp_path / "clotho.csv", [["file_name", *[f"caption_{i}" for i in range(1, 6)]],
                                                 ["Santa Motor.wav", "a machine whines", "clippers", "", "pump", "x"]])
    assert read_caption_csv(clotho)[:2] == ("clotho", [(["Santa Motor.wav"], ["a machine whines", "clippers", "pump", "x"])])
    ac = write_csv(tmp_path / "ac.csv", [["audiocap_id", "youtube_id", "start_time", "caption"],
                                         ["103549", "7fmOlUlwoNg", "20", "Constant rattling noise"],
                                         ["103550", "7fmOlUlwoNg", "20.0", "Rattling and vibrations"],
                                         ["103548", "6BJ455B1aAs", "0", "A rocket flies by"]])
    kind, groups, _ = read_caption_csv(ac)
    assert kind == "audiocaps" and len(groups) == 2  # one group per (youtube_id, start), captions pooled
    cands, caps = groups[0]
    assert caps == ["Constant rattling noise", "Rattling and vibrations"]
    assert cands[0] == "7fmOlUlwoNg_20" and {"103549", "103550"} <= set(cands)
    assert audiocaps_candidates("abc", "20.0", ["7"]) == [
        "abc_20", "Yabc_20", "Yabc_20.000_30.000", "abc_20.000_30.000", "abc", "Yabc", "7"]
    gen = write_csv(tmp_path / "gen.csv", [["file", "caption"], ["a.wav", "one"], ["a.wav", "two"], ["b.wav", "three"]])
    assert read_caption_csv(gen)[1] == [(["a.wav"], ["one", "two"]), (["b.wav"], ["three"])]
    with pytest.raises(DataError, match="captioning references"):
        read_caption_csv(write_csv(tmp_path / "bad.csv", [["file", "text"], ["a.wav", "x"]]))


def test_qa_csv_formats(tmp_path):
    aqa = write_csv(tmp_path / "aqa.csv", [["file_name", "QuestionText", "answer"],
                                           ["river.wav", "Are there waves?", "YES"],
                                           ["river.wav", "How many splashes?", "ELEVEN"]])
    assert read_qa_csv(aqa)[:2] == ("clotho_aqa", [("river.wav", "Are there waves?", "YES"),
                                                   ("river.wav", "How many splashes?", "ELEVEN")])
    gen = write_csv(tmp_path / "gen.csv", [["file", "question", "answer"], ["a.wav", "Is it loud?", "no"]])
    assert read_qa_csv(gen)[:2] == ("generic", [("a.wav", "Is it loud?", "no")])
    with pytest.raises(DataError, match="not a QA CSV"):
        read_qa_csv(write_csv(tmp_path / "bad.csv", [["file", "q", "a"], ["a.wav", "x", "y"]]))


def test_clip_matching_labels_and_limit(tmp_path, clips):
    # ESC-50 metadata names .wav files; the folder has c.flac: found by stem. A row without a clip is counted.
    meta = write_csv(tmp_path / "esc.csv", [["filename", "category"], ["a.wav", "dog"], ["c.wav", "rain"],
                                            ["gone.wav", "dog"], ["b.wav", "siren"]])
    data = load_eval_data("classify", clips, meta)
    assert data.format == "esc50" and data.labels == ["dog", "rain", "siren"]
    assert [(i.clip, i.reference) for i in data.items] == [("a.wav", "dog"), ("c.flac", "rain"), ("b.wav", "siren")]
    assert data.missing == ["gone.wav"] and data.unlisted == 2  # d.wav and broken.wav are not in the metadata
    # --labels: matched loosely (case, "_" vs space); rows outside the set are left out and said so.
    data = load_eval_data("classify", clips, meta, labels=["Dog", "siren", "car_horn"])
    assert [(i.clip, i.reference) for i in data.items] == [("a.wav", "Dog"), ("b.wav", "siren")]
    assert any("outside --labels" in n for n in data.notes)
    with pytest.raises(ConfigError, match="no clip of .* has a label in --labels"):
        load_eval_data("classify", clips, meta, labels=["cow"])
    assert [i.clip for i in load_eval_data("classify", clips, meta, limit=2).items] == ["a.wav", "c.flac"]
    # AudioCaps rows name no file: {youtube_id}_{start} and the audiocap_id are both found.
    write_tone(clips / "7fmOlUlwoNg_20.wav", 300)
    write_tone(clips / "103548.wav", 600)
    ac = write_csv(tmp_path / "ac.csv", [["audiocap_id", "youtube_id", "start_time", "caption"],
                                         ["103549", "7fmOlUlwoNg", "20", "rattling"],
                                         ["103548", "6BJ455B1aAs", "0", "a rocket"],
                                         ["1", "nosuchvideo", "0", "nothing"]])
    data = load_eval_data("caption", clips, ac)
    assert [(i.clip, i.reference) for i in data.items] == [("7fmOlUlwoNg_20.wav", ["rattling"]), ("103548.wav", ["a rocket"])]
    assert data.missing == ["nosuchvideo_0"]
    with pytest.raises(DataError, match="none of the 1 entries"):
        load_eval_data("classify", clips, write_csv(tmp_path / "x.csv", [["file", "label"], ["zz.wav", "dog"]]))
    with pytest.raises(ConfigError, match="only applies"):
        load_eval_data("caption", clips, ac, labels=["dog"])


# ------------------------------------------------------------------------------------------ runner


def test_classify_sweep_one_audio_pass_bad_clip_and_values(model, clips, tmp_path, monkeypatch):
    meta = write_csv(tmp_path / "labels.csv", [["file", "label"], ["a.wav", "dog"], ["b.wav", "rain"],
                                               ["broken.wav", "dog"], ["c.flac", "siren"], ["d.wav", "chirping_birds"]])
    windows_seen = []
    real_embed_audio = model.encoder.embed_audio
    monkeypatch.setattr(model.encoder, "embed_audio", lambda w: (windows_seen.append(len(w)), real_embed_audio(w))[1])

    out = tmp_path / "out"
    # The same model twice: the second reuses the cached embeddings (same encoder), so still one pass.
    res = evaluate([model, model], "classify", clips, meta, santa="0,0.5", out=out, batch_size=3, gen=GEN,
                   progress=False)
    assert sum(windows_seen) == 4  # 4 readable clips (each shorter than one window), 2 lambdas, 2 models
    assert [m["embeddings_reused"] for m in res["models"]] == [0, 4]
    assert res["models"][1]["name"].endswith("(2)")

    # The corrupt clip is listed (with a reason) and skipped, everywhere.
    assert [s["clip"] for s in res["data"]["skipped"]] == ["broken.wav"]
    assert "broken.wav" in res["data"]["skipped"][0]["reason"]
    report = (out / "report.md").read_text()
    assert "## Unreadable clips (skipped)" in report and "`broken.wav`" in report
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 2 * 4 * 5  # models x clips x (zero-shot + 2 lambdas x (classify + rank))
    assert "broken.wav" not in {p["clip"] for p in preds}

    # Zero-shot accuracy by hand from the encoder's embeddings.
    from mats.audio import load_clip

    labels = ["chirping_birds", "dog", "rain", "siren"]  # sorted label set of the CSV
    assert res["data"]["labels"] == labels
    files, targets = ["a.wav", "b.wav", "c.flac", "d.wav"], [1, 2, 3, 0]
    with torch.no_grad():
        audio = model.encoder.embed_clips([load_clip(clips / f, target_sr=model.encoder.sample_rate).waveform
                                           for f in files])
        text = model.encoder.embed_text([DEFAULT_TEMPLATE.format(label=l.replace("_", " ")) for l in labels])
    by_hand = (audio @ text.T).argmax(dim=1).tolist()
    zs = res["models"][0]["results"]["zero_shot"]
    assert zs["top1"] == pytest.approx(np.mean([p == t for p, t in zip(by_hand, targets)]))
    zs_preds = {p["clip"]: p["output"] for p in preds if p["method"] == "zero_shot" and p["model"] == res["models"][0]["name"]}
    assert zs_preds == {f: labels[j] for f, j in zip(files, by_hand)}
    assert zs["top5"] is None  # 4 labels: top-5 is meaningless
    assert sum(c["count"] for c in zs["confusion"]) == sum(p != t for p, t in zip(by_hand, targets))

    # MATS classify at lambda 0 decodes exactly what the model decodes for the same batch.
    mats_preds = [p for p in preds if p["method"] == "mats" and p["santa"] == 0 and p["model"] == res["models"][0]["name"]]
    direct = model.run([clips / f for f in files[:3]], "classify", santa=0.0, **GEN)
    assert [p["output"] for p in mats_preds[:3]] == direct
    for lam in ("0", "0.5"):
        s = res["models"][0]["results"]["mats"][lam]
        rows = [p for p in preds if p["method"] == "mats" and p["santa"] == float(lam) and p["model"] == res["models"][0]["name"]]
        assert s["top1"] == pytest.approx(np.mean([p["correct"] for p in rows])) and s["n"] == 4
        assert all(p["predicted"] in labels and p["predicted"] == p["top5"][0] for p in rows)

    # MATS rank: the label the LM scores highest as its whole answer, per clip (same conditioning as above:
    # Santa over the label set, as MATS.classify).
    assert res["config"]["santa_mixes"] == "labels" and res["models"][0]["results"]["santa_mixes"] == "labels"
    for lam in ("0", "0.5"):
        rows = [p for p in preds if p["method"] == "mats_rank" and p["santa"] == float(lam)
                and p["model"] == res["models"][0]["name"]]
        z = model.condition(model.embed_clips([clips / p["clip"] for p in rows]), float(lam), labels=labels)
        best = model.label_log_likelihoods(z, labels).argmax(1).tolist()
        assert [p["output"] for p in rows] == [labels[j] for j in best]
        s = res["models"][0]["results"]["mats_rank"][lam]
        assert s["top1"] == pytest.approx(np.mean([p["correct"] for p in rows])) and s["n"] == 4

    # Every output file exists and parses; results.json holds config, versions, counts and timings.
    saved = json.loads((out / "results.json").read_text())
    assert saved["models"][0]["results"] == json.loads(json.dumps(res["models"][0]["results"]))
    assert saved["config"]["santa"] == [0.0, 0.5] and saved["versions"]["torch"]
    assert saved["data"]["clips_matched"] == 5 and saved["data"]["clips_skipped"] == 1
    assert saved["mapping_rule"].startswith("Each generated text")
    t = saved["models"][0]["timings"]
    assert set(t["generate_s"]) == {"0", "0.5"} and t["encode_s"] > 0 and t["clips_per_s"] > 0
    for png in ("santa_sweep.png", "per_class_accuracy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| CLAP zero-shot |" in report and "MATS classify mapping rule" in report


def test_classify_santa_bank_choice(model, clips, tmp_path, monkeypatch):
    """--santa-bank captions conditions on the checkpoint's bank captions; labels (the default) on the label set's
    sentences; anything else is refused before any work."""
    meta = write_csv(tmp_path / "labels.csv", [["file", "label"], ["a.wav", "dog"], ["b.wav", "rain"]])
    seen = []
    real = model.condition
    monkeypatch.setattr(model, "condition", lambda emb, lam, **kw: seen.append(kw.get("labels")) or real(emb, lam, **kw))
    res = evaluate([model], "classify", clips, meta, santa="0.5", gen=GEN, progress=False, rank=False,
                   santa_bank="captions")
    assert res["config"]["santa_mixes"] == "captions" and seen == [None]
    evaluate([model], "classify", clips, meta, santa="0.5", gen=GEN, progress=False, rank=False)
    assert seen[-1] == ["dog", "rain"]
    with pytest.raises(ConfigError, match="santa-bank"):
        evaluate([model], "classify", clips, meta, santa_bank="both")


def test_caption_and_qa(model, clips, tmp_path, monkeypatch):
    refs = write_csv(tmp_path / "refs.csv", [["file_name", *[f"caption_{i}" for i in range(1, 6)]],
                                             ["a.wav", "a dog barks", "a dog barks loudly", "dog", "barking", "a dog"],
                                             ["b.wav", "rain falls on a roof", "rain", "rainfall", "wet", "rain on a roof"],
                                             ["c.flac", "a siren wails", "siren", "an alarm", "a siren", "sirens"]])
    res = evaluate([model], "caption", clips, refs, santa=[0.3], out=tmp_path / "cap", gen=GEN, progress=False)
    s = res["models"][0]["results"]["mats"]["0.3"]
    preds = [json.loads(l) for l in (tmp_path / "cap" / "predictions.jsonl").read_text().splitlines()]
    hyps = {p["clip"]: p["output"] for p in preds}
    ref_map = {p["clip"]: p["reference"] for p in preds}
    expected = caption_metrics(hyps, ref_map)
    assert {k: s[k] for k in expected} == expected  # the runner hands the metric exactly these texts
    sims = text_similarity(model.encoder, list(hyps.values()), list(ref_map.values()))
    assert s["text_similarity"] == pytest.approx(np.mean(sims)) and s["n"] == 3
    assert "| CIDEr-D |" in (tmp_path / "cap" / "report.md").read_text()

    # QA: Clotho-AQA repeats a question per annotator; every row is scored, each question decoded once.
    qa = write_csv(tmp_path / "qa.csv", [["file_name", "QuestionText", "answer"],
                                         ["a.wav", "Is a dog barking?", "YES"], ["a.wav", "Is a dog barking?", "no"],
                                         ["b.wav", "What is falling?", "rain"], ["c.flac", "Is it loud?", "Yes."]])
    decoded = []
    real = model.generate_from_embeddings
    monkeypatch.setattr(model, "generate_from_embeddings",
                        lambda z, instructions, **kw: (decoded.extend(instructions), real(z, instructions, **kw))[1])
    res = evaluate([model], "qa", clips, qa, santa=[0, 1], out=tmp_path / "qa", gen=GEN, progress=False)
    assert res["task"] == "ask"  # "qa" is the old name of the model's own "ask" task, still accepted
    assert len(decoded) == 2 * 3  # 3 distinct (clip, question) pairs per lambda
    preds = [json.loads(l) for l in (tmp_path / "qa" / "predictions.jsonl").read_text().splitlines()]
    for lam in ("0", "1"):
        s = res["models"][0]["results"]["mats"][lam]
        rows = [p for p in preds if p["santa"] == float(lam)]
        assert (s["n"], s["questions"], s["yes_no"]["n"], s["single_word"]["n"]) == (4, 3, 3, 1)
        by_hand = [normalize_answer(p["output"]) == normalize_answer(p["reference"]) for p in rows]
        assert [p["correct"] for p in rows] == by_hand and s["accuracy"] == pytest.approx(np.mean(by_hand))


def test_cli_eval(tiny_ckpt_gpt2, clips, tmp_path, capsys):
    from mats.cli import main

    meta = write_csv(tmp_path / "m.csv", [["file", "label"], ["a.wav", "dog"], ["b.wav", "rain"]])
    out = tmp_path / "res"
    argv = ["eval", "--model", str(tiny_ckpt_gpt2), "--task", "classify", "--clips", str(clips), "--meta", str(meta),
            "--labels", "dog,rain,siren", "--santa", "0.3", "--out", str(out), "--beams", "1",
            "--max-new-tokens", "3", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| MATS classify | 0.3 |" in printed and "| MATS rank | 0.3 |" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["labels"] == ["dog", "rain", "siren"] and res["models"][0]["generation"]["num_beams"] == 1
    assert main(argv[:-9] + ["--santa", "1.5", "--out", str(out)]) == 2  # clear error, no traceback
    assert "between 0 and 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_scores_its_own_failures(model):
    from mats.eval import round_trip

    labels = ["dog", "rain", "siren", "engine", "bird"]
    res = round_trip(model, labels, gen=GEN)
    assert res["n"] == 5 and 0.0 <= res["top1"] <= 1.0
    # Every label that did not come back is listed with the answer and where it went.
    assert len(res["failures"]) == round((1 - res["top1"]) * 5)
    assert all(f["mapped_to"] != f["label"] and f["label"] in labels for f in res["failures"])
    # The LM's own ranking of the labels is scored and its misses listed the same way.
    assert len(res["rank_failures"]) == round((1 - res["rank_top1"]) * 5)
    assert all(f["ranked_first"] != f["label"] for f in res["rank_failures"])
    # Seeded noise: the same seed gives the same answers.
    a = round_trip(model, labels, noise_variance=0.5, seed=3, gen=GEN)
    b = round_trip(model, labels, noise_variance=0.5, seed=3, gen=GEN)
    assert a == b and a["noise_variance"] == 0.5


def test_round_trip_is_perfect_when_the_lm_repeats_the_label(model, monkeypatch):
    from mats.eval import round_trip

    labels = ["dog", "rain", "siren"]
    # An LM that answers with the label whose text embedding it was handed: the mapping must return it.
    emb = model.encoder.embed_text([DEFAULT_TEMPLATE.format(label=l) for l in labels])

    def echo(z, instructions, **kw):
        return [labels[int((row @ emb.T).argmax())] for row in z]

    monkeypatch.setattr(model, "generate_from_embeddings", echo)
    assert round_trip(model, labels)["top1"] == 1.0


def test_old_import_path_still_works():
    # mats.evaluate was one module; it is now the package mats.eval. Older imports get the same objects.
    import mats.eval
    import mats.evaluate

    for name in mats.evaluate.__all__:
        assert getattr(mats.evaluate, name) is getattr(mats.eval, name), name
    assert mats.evaluate.round_trip is mats.eval.round_trip
    assert mats.evaluate.summary_table is mats.eval.summary_table
