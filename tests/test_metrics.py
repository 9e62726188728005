"""Tests for mats.metrics: hand-computed toy values, values produced by the reference toolkit, error paths."""
import math

import numpy as np
import pytest

from mats import metrics
from mats.errors import ConfigError, DataError
from mats.metrics import (
    MAPPING_RULE,
    accuracy,
    bleu,
    caption_metrics,
    cider_d,
    confusion_summary,
    map_to_labels,
    normalize_answer,
    per_class_accuracy,
    qa_exact_match,
    rouge_l,
    text_similarity,
    tokenize_caption,
)


def toks(*sentences):
    return [s.split() for s in sentences]


# ---------------------------------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize(
    "text, expected",
    [
        # Expected outputs are what coco-caption's PTBTokenizer (Stanford CoreNLP 3.4.1) + punctuation removal gives.
        ("A Dog BARKS", "a dog barks"),
        ("a man's voice; wind: strong", "a man 's voice wind strong"),
        ("it's they're we've I'll he'd I'm won't can't", "it 's they 're we 've i 'll he 'd i 'm wo n't ca n't"),
        ("dog,cat and 1,000 birds", "dog cat and 1,000 birds"),
        ("the dogs' toys", "the dogs toys"),
        ("'quoted' words", "quoted words"),
        ('"double" quotes', "double quotes"),
        ("a -- b - c", "a b c"),
        ("end...", "end"),
        ("tick-tock at 3.5 o'clock", "tick-tock at 3.5 o'clock"),
        ("rain/thunder", "rain/thunder"),
        ("...", ""),
    ],
)
def test_tokenize_caption_matches_ptb_on_common_cases(text, expected):
    assert tokenize_caption(text) == expected.split()


# ---------------------------------------------------------------------------------------------------- BLEU


def test_bleu_clipped_precision_and_brevity_penalty_by_hand():
    hyp = toks("a dog barks twice")
    refs = [toks("a dog is barking loudly outside", "the dog barks at the mailman")]
    b = bleu(hyp, refs)
    # Unigrams: a, dog, barks match (each clipped to 1), "twice" does not -> p1 = 3/4.
    # Bigrams: "a dog" (ref 1), "dog barks" (ref 2) match, "barks twice" not -> p2 = 2/3.
    # Both references have 6 tokens, so r = 6 > c = 4 and BP = exp(1 - 6/4).
    bp = math.exp(1 - 6 / 4)
    assert b[0] == pytest.approx(0.75 * bp, rel=1e-6)
    assert b[1] == pytest.approx(math.sqrt(0.75 * 2 / 3) * bp, rel=1e-6)
    # No trigram matches: coco's smoothing makes BLEU-3/4 tiny but positive, never a math error.
    assert 0 < b[2] < 1e-4 and 0 < b[3] < 1e-3


def test_bleu_closest_reference_length_ties_go_to_the_shorter_reference():
    # Hypothesis of 5 tokens, references of 4 and 6: both 1 away, coco picks 4 -> c > r -> BP = 1.
    b = bleu(toks("a b c d e"), [toks("a b c d", "a b c d e f")])
    assert b[0] == pytest.approx(1.0, rel=1e-6)


def test_bleu_counts_repeated_words_at_most_as_often_as_a_reference_has_them():
    # "the the the the" vs "the cat": "the" clipped to 1 -> p1 = 1/4; c = 4 > r = 2 -> BP = 1.
    assert bleu(toks("the the the the"), [toks("the cat")])[0] == pytest.approx(0.25, rel=1e-6)


# ---------------------------------------------------------------------------------------------------- ROUGE-L


def test_rouge_l_known_lcs():
    # LCS("a dog barks at night", "the dog barks loudly at night") = "dog barks at night" = 4 tokens.
    p, r, beta2 = 4 / 5, 4 / 6, 1.2**2
    expected = (1 + beta2) * p * r / (r + beta2 * p)
    mean, per_item = rouge_l(toks("a dog barks at night"), [toks("the dog barks loudly at night")])
    assert per_item == [pytest.approx(expected)]
    assert mean == pytest.approx(expected) and expected == pytest.approx(0.715542, abs=1e-6)


def test_rouge_l_takes_max_precision_and_max_recall_separately_like_coco():
    # ref 1 "a b": LCS 2 -> P = 0.5, R = 1.0; ref 2 (8 tokens) LCS 3 -> P = 0.75, R = 0.375. coco uses P=.75, R=1.
    _, per_item = rouge_l(toks("a b c d"), [toks("a b", "a b c x y z w v")])
    assert per_item[0] == pytest.approx(2.44 * 0.75 * 1.0 / (1.0 + 1.44 * 0.75))


def test_rouge_l_empty_hypothesis_scores_zero():
    assert rouge_l([[]], [toks("a dog")]) == (0.0, [0.0])


# ---------------------------------------------------------------------------------------------------- CIDEr-D


def test_cider_d_identical_captions_score_ten():
    hyps = toks("a dog barks at the mailman", "rain falls on a tin roof")
    mean, per_item = cider_d(hyps, [[h] for h in hyps])
    assert per_item == [pytest.approx(10.0), pytest.approx(10.0)]
    assert mean == pytest.approx(10.0)


def test_cider_d_by_hand():
    # Two items, one reference each, so every n-gram has document frequency 1 and IDF = log(2) (it cancels in
    # the cosine). Item A: hyp "a" vs ref "a b": unigram cosine = 1/sqrt(2), no bigrams in the hypothesis;
    # coco's length is the bigram count, 0 vs 1 -> penalty exp(-1 / (2 * 6^2)). Mean over n = 1..4, x10.
    # Item B: hyp "c d" == ref "c d": unigram and bigram cosines 1, no 3/4-grams -> 10 * 2/4 = 5.
    a = 10 * (1 / math.sqrt(2)) * math.exp(-1 / 72) / 4
    mean, per_item = cider_d(toks("a", "c d"), [toks("a b"), toks("c d")])
    assert per_item == [pytest.approx(a), pytest.approx(5.0)]
    assert mean == pytest.approx((a + 5.0) / 2)


def test_cider_d_needs_a_corpus_single_item_scores_zero():
    # IDF = log(#items) - log(df) = log 1 - log 1 = 0 for every n-gram (same as coco-caption).
    assert cider_d(toks("a dog barks"), [toks("a dog barks")]) == (0.0, [0.0])


# ---------------------------------------------------------------------------------------------------- caption_metrics

PRED = {
    "rain": "Rain falls on a tin roof while thunder rumbles.",
    "dog": "A man shouts and a dog barks twice.",
    "car": "A car drives by.",
    "birds": "Birds are chirping in the trees, with wind blowing.",
}
REFS = {
    "rain": [
        "Heavy rain is falling on a metal roof.",
        "Rain pours onto a tin roof as thunder rumbles in the distance.",
        "Thunder rumbles while rain falls steadily.",
    ],
    "dog": ["A dog is barking while a man yells at it.", "A man shouts and a dog barks loudly.",
            "Dogs bark and a person shouts."],
    "car": ["A vehicle passes by quickly on a wet road.", "A car drives past on the street."],
    "birds": ["Many birds chirp in the trees as the wind blows.", "Birds sing while wind blows through leaves.",
              "Birds are chirping and the wind is blowing."],
}
# Produced by pycocoevalcap 1.2 (PTBTokenizer via Java, then Bleu(4) / Rouge() / Cider()) on PRED / REFS above.
COCO_VALUES = {
    "bleu_1": 0.9027350270563567,
    "bleu_2": 0.7555786751729728,
    "bleu_3": 0.6090237701652871,
    "bleu_4": 0.46941118480526595,
    "rouge_l": 0.6663535704012,
    "cider_d": 2.291279120352046,
}


def test_caption_metrics_match_coco_caption_reference_values():
    out = caption_metrics(PRED, REFS, java_metrics=False)
    for key, value in COCO_VALUES.items():
        assert out[key] == pytest.approx(value, rel=1e-9), key


def test_caption_metrics_agree_with_installed_pycocoevalcap():
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {k: [" ".join(tokenize_caption(r)) for r in v] for k, v in REFS.items()}
    res = {k: [" ".join(tokenize_caption(PRED[k]))] for k in PRED}
    out = caption_metrics(PRED, REFS, java_metrics=False)
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [out[f"bleu_{k}"] for k in range(1, 5)] == pytest.approx(b, rel=1e-9)
    assert out["rouge_l"] == pytest.approx(Rouge().compute_score(gts, res)[0], rel=1e-9)
    assert out["cider_d"] == pytest.approx(Cider().compute_score(gts, res)[0], rel=1e-9)


def test_caption_metrics_perfect_predictions():
    refs = {"a": ["A dog barks at the mailman."], "b": ["Rain falls on a tin roof."]}
    out = caption_metrics({k: v[0] for k, v in refs.items()}, refs, java_metrics=False)
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"):
        assert out[key] == pytest.approx(1.0, rel=1e-6), key
    assert out["cider_d"] == pytest.approx(10.0)


def test_unavailable_java_metrics_are_none_with_a_reason_never_zero():
    out = caption_metrics(PRED, REFS, java_metrics=False)
    assert set(out) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d", "meteor", "spice",
                        "spider", "unavailable"}
    for key in ("meteor", "spice", "spider"):
        assert out[key] is None
        assert out["unavailable"][key]
    assert "SPICE" in out["unavailable"]["spider"]


def test_unavailable_reasons_name_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(metrics, "_pycocoevalcap_dir", lambda: None)
    out = caption_metrics(PRED, REFS)
    assert out["meteor"] is None and "pycocoevalcap" in out["unavailable"]["meteor"]

    monkeypatch.setattr(metrics, "_pycocoevalcap_dir", lambda: tmp_path)
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    out = caption_metrics(PRED, REFS)
    assert out["spice"] is None and "Java" in out["unavailable"]["spice"]

    monkeypatch.setattr(metrics.shutil, "which", lambda name: "/usr/bin/java")
    out = caption_metrics(PRED, REFS)  # package "installed" at tmp_path but without its jars
    assert out["meteor"] is None and "meteor-1.5.jar" in out["unavailable"]["meteor"]
    assert out["spice"] is None and "stanford-corenlp-3.6.0.jar" in out["unavailable"]["spice"]
    assert out["cider_d"] == pytest.approx(COCO_VALUES["cider_d"], rel=1e-9)  # the rest is still computed


def test_caption_metrics_rejects_mismatched_or_empty_inputs():
    with pytest.raises(DataError, match="same ids"):
        caption_metrics({"rain": "rain"}, REFS, java_metrics=False)
    with pytest.raises(DataError, match="non-empty list"):
        caption_metrics({"x": "rain"}, {"x": []}, java_metrics=False)
    with pytest.raises(DataError, match="non-empty list"):
        caption_metrics({"x": "rain"}, {"x": "rain falls"}, java_metrics=False)
    with pytest.raises(DataError, match="no predictions"):
        caption_metrics({}, {}, java_metrics=False)


# ---------------------------------------------------------------------------------------------------- fake encoder


class FakeEncoder:
    """Stands in for mats.encoders.base.Encoder: embed_text looks texts up in a fixed table."""

    def __init__(self, table):
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.calls = []

    def embed_text(self, texts):
        self.calls.append(list(texts))
        return np.stack([self.table[t] for t in texts])  # KeyError for a text the test did not expect


def test_text_similarity_max_and_mean_over_references():
    enc = FakeEncoder({"pred": [2.0, 0.0], "r1": [0.0, 1.0], "r2": [3.0, 3.0]})  # not unit: re-normalised
    assert text_similarity(enc, ["pred"], [["r1", "r2"]]) == [pytest.approx(math.sqrt(0.5))]
    assert text_similarity(enc, ["pred"], [["r1", "r2"]], reduce="mean") == [pytest.approx(math.sqrt(0.5) / 2)]


def test_text_similarity_embeds_each_distinct_text_once_and_validates():
    enc = FakeEncoder({"a": [1, 0], "b": [0, 1]})
    assert text_similarity(enc, ["a", "b", "a"], [["a"], ["a", "b"], ["b"]]) == pytest.approx([1.0, 1.0, 0.0])
    assert sorted(t for call in enc.calls for t in call) == ["a", "b"]
    with pytest.raises(ConfigError):
        text_similarity(enc, ["a"], [["b"]], reduce="median")
    with pytest.raises(DataError):
        text_similarity(enc, ["a", "b"], [["b"]])
    with pytest.raises(DataError):
        text_similarity(enc, ["a"], [[]])


# ---------------------------------------------------------------------------------------------------- map_to_labels

LABELS = ["dog", "cat", "dog barking", "crying_baby"]
LABEL_VECS = {
    "the sound of dog": [1, 0, 0, 0],
    "the sound of cat": [0, 1, 0, 0],
    "the sound of dog barking": [0.9, 0, 0.1, 0],
    "the sound of crying baby": [0, 0, 0, 1],
}


def test_map_to_labels_verbatim_match_wins_earliest_then_longest():
    # The generated text's own embedding points at "crying baby", yet the verbatim names come first:
    # "cat" appears first; "dog barking" and "dog" start at the same place, the longer name wins.
    enc = FakeEncoder({**LABEL_VECS, "A cat, then a dog barking!": [0, 0, 0, 1]})
    ranked = map_to_labels(enc, ["A cat, then a dog barking!"], LABELS)
    assert ranked.tolist() == [[1, 2, 0, 3]]
    assert ranked.dtype == np.int64


def test_map_to_labels_matches_underscored_labels_and_whole_words_only():
    enc = FakeEncoder({**LABEL_VECS, "a crying baby": [0, 1, 0, 0], "catalogue of dogs": [0, 0.2, 0, 1]})
    ranked = map_to_labels(enc, ["a crying baby", "catalogue of dogs"], LABELS)
    assert ranked[0, 0] == 3  # "crying_baby" matched verbatim although the embedding says "cat"
    # "cat" is not a word of "catalogue", "dog" not of "dogs": similarity decides (crying baby, then cat).
    assert ranked[1].tolist() == [3, 1, 0, 2]


def test_map_to_labels_similarity_rule_uses_the_template():
    enc = FakeEncoder({**LABEL_VECS, "woof woof": [0.8, 0.1, 0, 0]})
    ranked = map_to_labels(enc, ["woof woof"], LABELS)
    # cosines: dog 0.992, dog barking 0.986, cat 0.124, crying baby 0.
    assert ranked.tolist() == [[0, 2, 1, 3]]
    enc = FakeEncoder({"sounds like dog": [1, 0], "sounds like cat": [0, 1], "meow": [0.1, 1]})
    assert map_to_labels(enc, ["meow"], ["dog", "cat"], template="sounds like {label}").tolist() == [[1, 0]]


def test_map_to_labels_validates_inputs_and_documents_the_rule():
    enc = FakeEncoder(LABEL_VECS)
    assert "verbatim" in MAPPING_RULE.lower() and "cosine" in MAPPING_RULE.lower()
    assert map_to_labels(enc, [], LABELS).shape == (0, 4)
    with pytest.raises(ConfigError, match="empty"):
        map_to_labels(enc, ["x"], [])
    with pytest.raises(ConfigError, match="label"):
        map_to_labels(enc, ["x"], LABELS, template="the sound of")
    with pytest.raises(ConfigError, match="collide"):
        map_to_labels(enc, ["x"], ["crying baby", "crying_baby"])


# ---------------------------------------------------------------------------------------------------- classification

RANKED = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0], [0, 2, 1]])
TARGETS = np.array([0, 0, 1, 1])


def test_accuracy_top_k():
    assert accuracy(RANKED, TARGETS, k=1) == pytest.approx(0.25)
    assert accuracy(RANKED, TARGETS, k=2) == pytest.approx(0.75)
    assert accuracy(RANKED, TARGETS, k=3) == pytest.approx(1.0)
    assert accuracy(RANKED[:, 0], TARGETS) == pytest.approx(0.25)  # plain top-1 predictions work too
    with pytest.raises(ConfigError):
        accuracy(RANKED, TARGETS, k=4)
    with pytest.raises(DataError):
        accuracy(RANKED, TARGETS[:3])
    with pytest.raises(DataError):
        accuracy(RANKED.astype(float), TARGETS)


def test_per_class_accuracy_skips_absent_classes():
    labels = ["a", "b", "c"]
    assert per_class_accuracy(RANKED, TARGETS, labels) == {"a": 0.5, "b": 0.0}
    assert per_class_accuracy(RANKED, TARGETS, labels, k=2) == {"a": 1.0, "b": 0.5}
    with pytest.raises(DataError, match="label indices"):
        per_class_accuracy(RANKED, np.array([0, 0, 1, 3]), labels)


def test_confusion_summary_most_common_first():
    labels = ["a", "b", "c"]
    predicted = np.array([1, 1, 0, 0, 1, 0])
    targets = np.array([0, 0, 0, 1, 1, 2])
    assert confusion_summary(predicted, targets, labels) == [("a", "b", 2), ("b", "a", 1), ("c", "a", 1)]
    assert confusion_summary(predicted, targets, labels, top=1) == [("a", "b", 2)]
    assert confusion_summary(np.array([[0, 1], [1, 0]]), np.array([0, 1]), ["a", "b"]) == []


# ---------------------------------------------------------------------------------------------------- QA


@pytest.mark.parametrize(
    "raw, expected",
    [("Yes.", "yes"), ("YES", "yes"), ("yeah!", "yes"), ("True", "yes"), ("No.", "no"), ("nope", "no"),
     ("The dog.", "dog"), ("  A   bird  ", "bird"), ("2", "two"), ("TWO", "two"), ("no one", "no one"),
     ("walkie-talkie", "walkietalkie"), ("", "")],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_qa_exact_match():
    assert qa_exact_match(["Yes.", "2", "a cat"], ["YES", "two", ["dog", "Cat"]]) == pytest.approx(1.0)
    assert qa_exact_match(["Yes.", "3", "a cat"], ["NO", "two", ["dog", "Cat"]]) == pytest.approx(1 / 3)
    with pytest.raises(DataError, match="pair up"):
        qa_exact_match(["yes"], ["yes", "no"])
    with pytest.raises(DataError):
        qa_exact_match([], [])
