"""mats.hearing: the checks behind the "Ears" table (coarse, family, mixtures, caption words)."""
from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
import torch

from mats import hearing
from mats.errors import DataError
from mats.prompts import label_prompt


class PromptEncoder:
    """Text embeddings: a fixed random unit vector per prompt, so an audio embedding equal to a prompt's vector
    is recognised as exactly that prompt."""

    def __init__(self, dim: int = 512):
        self.dim = dim
        self.cache: dict[str, torch.Tensor] = {}

    def embed_text(self, texts):
        out = []
        for t in texts:
            if t not in self.cache:
                g = torch.Generator().manual_seed(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
                self.cache[t] = torch.nn.functional.normalize(torch.randn(self.dim, generator=g), dim=0)
            out.append(self.cache[t])
        return torch.stack(out)


def _rows():
    return [
        {"file": "a.flac", "coarse": "speech", "family": "", "sources": "speech"},
        {"file": "b.flac", "coarse": "music", "family": "piano", "sources": "music"},
        {"file": "c.flac", "coarse": "other", "family": "", "sources": "dog"},
        {"file": "d.flac", "coarse": "other", "family": "", "sources": "dog;speech"},
    ]


def test_zero_shot_checks_score_right_and_wrong_embeddings():
    enc = PromptEncoder()
    p = label_prompt
    right = torch.stack([
        enc.embed_text(["a person speaking"])[0],
        enc.embed_text([p("a piano")])[0] + enc.embed_text([p("music")])[0],
        enc.embed_text([p("dog")])[0],
        enc.embed_text([p("dog")])[0] + enc.embed_text([p("speech")])[0],
    ])
    res = hearing.zero_shot_checks(enc, torch.nn.functional.normalize(right, dim=-1), _rows())
    assert res["coarse"] == 1.0 and res["coarse_max"] == 1.0 and res["family"] == 1.0 and res["mixture_source_top5"] == 1.0
    assert res["family_clips"] == 1 and res["mixture_sources"] == 2 and res["coarse_speech"] == 1.0
    wrong = torch.stack([enc.embed_text([p("rain")])[0]] * 4)  # every clip sounds like rain
    res = hearing.zero_shot_checks(enc, wrong, _rows())
    assert res["coarse_speech"] == 0.0 and res["coarse_music"] == 0.0 and res["coarse_other"] == 1.0
    assert res["mixture_source_top5"] == 0.0


@pytest.mark.parametrize("caption,speech,music", [
    ("A man speaks while a dog barks", True, False),
    ("People are talking in a crowd", True, False),
    ("A solo piano plays a slow melody", False, True),
    ("Music plays in the background", False, True),
    ("A car horn honks loudly", False, False),  # a horn is not an instrument here
    ("Rain falls on a roof", False, False),
])
def test_caption_words(caption, speech, music):
    assert hearing.says_speech(caption) is speech
    assert hearing.says_music(caption) is music


def test_caption_checks_count_only_their_clips():
    res = hearing.caption_checks(["a woman talks", "a guitar strums", "a dog barks", "a man speaks"], _rows())
    assert res == {"speech_captions_say_speech": 1.0, "speech_clips": 1,
                   "instrument_captions_say_music": 1.0, "instrument_clips": 1}


def test_hearing_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\na.wav,dog\n")
    with pytest.raises(DataError, match="needs columns"):
        hearing.read_hearing_csv(bad)
    bad.write_text("file,coarse,family,sources\na.wav,noise,,dog\n")
    with pytest.raises(DataError, match="coarse must be one of"):
        hearing.read_hearing_csv(bad)


def test_evaluate_hearing_runs_a_tiny_checkpoint(tiny_ckpt_gpt2, tmp_path):
    import soundfile as sf

    from mats.model import MATS

    model = MATS.from_pretrained(tiny_ckpt_gpt2)
    rng = np.random.default_rng(0)
    rows = _rows()
    for r in rows:
        sf.write(tmp_path / r["file"], rng.standard_normal(8000).astype(np.float32) * 0.1, 16000)
    rows.append({"file": "missing.flac", "coarse": "other", "family": "", "sources": "cat"})
    meta = tmp_path / "test.csv"
    with meta.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "coarse", "family", "sources"])
        w.writeheader()
        w.writerows(rows)
    res = hearing.evaluate_hearing(model, tmp_path, meta, santa=[0.0, 0.5], gen={"max_new_tokens": 4, "num_beams": 1})
    assert res["zero_shot"]["clips"] == 4 and len(res["skipped"]) == 1
    assert set(res["captions"]) == {"0", "0.5"}
    c = res["captions"]["0"]
    assert c["speech_clips"] == 1 and c["instrument_clips"] == 1 and len(c["examples"]) == 2
    # the yes/no questions: balanced items, every answer parsed or counted wrong
    assert c["yes_no_items"] == len(hearing.yes_no_items(hearing.read_hearing_csv(meta)[:4])) > 0
    assert 0.0 <= c["yes_no"] <= 1.0 and c["yes_no_examples"]


def test_yes_no_items_are_balanced_per_question_and_scored():
    rows = [{"file": f"{i}.wav", "coarse": c, "family": "", "sources": s} for i, (c, s) in enumerate([
        ("speech", "speech"), ("speech", "speech"), ("music", "music"), ("other", "dog"), ("other", "speech;dog_bark"),
        ("other", "rain"), ("other", "siren"), ("music", "music;dog")])]
    items = hearing.yes_no_items(rows, per_answer=50)
    for key, (question, _) in hearing.YES_NO.items():
        mine = [(i, t) for i, q, t in items if q == question]
        yes = [i for i, t in mine if t]
        assert len(yes) == len(mine) - len(yes) > 0  # as many "no" clips as "yes" clips
        assert len(set(i for i, _ in mine)) == len(mine)  # no clip twice for one question
    speech_yes = {i for i, q, t in items if q == "Is someone speaking?" and t}
    assert speech_yes == {0, 1, 4}  # a mixture with speech in it counts
    dog_yes = {i for i, q, t in items if q == "Is there a dog?" and t}
    assert dog_yes == {3, 4, 7}
    assert hearing.yes_no_items(rows, per_answer=1) != items and len(hearing.yes_no_items(rows, per_answer=1)) == 6
    answers = ["Yes." if t else "no, it is not" for _, _, t in items]
    assert hearing.yes_no_checks(answers, items)["yes_no"] == 1.0
    wrong = ["maybe"] * len(items)
    res = hearing.yes_no_checks(wrong, items)
    assert res["yes_no"] == 0.0 and res["yes_no_unparsed"] == len(items)
    assert hearing.says_yes("  YES it is") is True and hearing.says_yes("No") is False
    assert hearing.says_yes("yesterday") is None and hearing.says_yes("") is None
