"""Pure metric functions for MATS evaluation: captioning, text similarity, classification, QA.

Nothing here loads a model or touches the network; the evaluation runner (``mats.eval``) reads the data,
runs the model and hands the texts to these functions.

Captioning follows the coco-caption toolkit (github.com/tylin/coco-caption, packaged on PyPI as
``pycocoevalcap``) so numbers are comparable with the audio-captioning literature (DCASE, MATS paper):

* BLEU-1..4: corpus-level (clipped n-gram counts and lengths summed over the corpus before dividing),
  brevity penalty from the *closest* reference length per hypothesis, and coco's 1e-15 / 1e-9 smoothing.
* ROUGE-L: LCS-based F-measure with beta = 1.2, using the max precision and the max recall over the
  references (coco takes the two maxima separately), averaged over items.
* CIDEr-D: 1..4-gram TF-IDF vectors, IDF from the references of the evaluated corpus, clipped hypothesis
  weights, a Gaussian length penalty (sigma = 6), averaged over n and references, times 10.

They are implemented here in plain Python rather than imported: ``pycocoevalcap`` (1.2, last released 2020)
is a ~100 MB wheel of Java jars, its tokenizer shells out to Java and writes temporary files into its own
install folder, and its BLEU prints to stdout on every call. The formulas below reproduce its scorers exactly
(tests/test_metrics.py checks our numbers against values produced by pycocoevalcap 1.2, and against the
library itself when it is installed). METEOR and SPICE are Java programs; they are computed through
``pycocoevalcap`` when it, Java and their resources are present, and otherwise reported as unavailable
(``None`` plus a reason), never as 0.
"""
from __future__ import annotations

import importlib.util
import math
import re
import shutil
import string
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mats.errors import ConfigError, DataError
from mats.prompts import LABEL_TEMPLATE

__all__ = [
    "MAPPING_RULE",
    "tokenize_caption",
    "bleu",
    "rouge_l",
    "cider_d",
    "caption_metrics",
    "text_similarity",
    "map_to_labels",
    "accuracy",
    "per_class_accuracy",
    "confusion_summary",
    "normalize_answer",
    "qa_exact_match",
]

# --------------------------------------------------------------------------------------------------------------
# Caption tokenisation
# --------------------------------------------------------------------------------------------------------------

# coco-caption runs Stanford's PTBTokenizer (-lowerCase) and then drops these punctuation tokens. We do the same
# in Python so captioning metrics need no Java. On ordinary captions the output is identical; known differences
# are rare edge cases (PTB keeps "e.g." / "p.m." / "?!" / "-lrb-", we drop edge punctuation and brackets).
_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
_CLITIC_RE = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)(?![\w'])")
_BRACKETS_QUOTES_RE = re.compile(r"[()\[\]{}\"]")
_WORD_COMMA_RE = re.compile(r"(?<!\d),|,(?!\d)")  # "dog,cat" splits; "1,000" stays (as in PTB)
_EDGE_PUNCT = ".,!?;:'`-"


def tokenize_caption(text: str) -> list[str]:
    """Lower-case and tokenise a caption the way coco-caption does (PTB tokens, punctuation removed).

    "A dog's bark, while a man speaks." -> ["a", "dog", "'s", "bark", "while", "a", "man", "speaks"].
    Clitics are split as PTB does ("can't" -> "ca", "n't"); word-internal punctuation stays ("3.5",
    "walkie-talkie", "o'clock").
    """
    text = text.lower()
    text = _BRACKETS_QUOTES_RE.sub(" ", text)
    text = _WORD_COMMA_RE.sub(" ", text)
    text = _CLITIC_RE.sub(r" \1", text)
    tokens = []
    for tok in text.split():
        if tok not in _CLITICS:
            tok = tok.strip(_EDGE_PUNCT)
        if tok:
            tokens.append(tok)
    return tokens


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of every 1..n-gram (as tuples) in ``tokens``."""
    counts: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i : i + k])] += 1
    return counts


# --------------------------------------------------------------------------------------------------------------
# BLEU (Papineni et al. 2002, as computed by coco-caption's bleu_scorer.py with option="closest")
# --------------------------------------------------------------------------------------------------------------

_TINY = 1e-15  # coco's numerator smoothing: a zero precision gives a tiny number, not a log(0) error
_SMALL = 1e-9  # coco's denominator smoothing


def bleu(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n for tokenised hypotheses (one per item) and references (a list per item).

    BLEU-k = BP * (prod_{j<=k} p_j)^(1/k), where p_j = sum of clipped j-gram matches / sum of hypothesis
    j-grams over the corpus (clipped: a j-gram counts at most as often as it appears in any one reference),
    and BP = exp(1 - r/c) when c < r, with c the total hypothesis length and r the sum over items of the
    reference length closest to that item's hypothesis length (ties go to the shorter reference).
    """
    correct = [0] * n
    guess = [0] * n
    test_len = 0
    ref_len = 0
    for hyp, item_refs in zip(hyps, refs):
        max_ref_counts: Counter = Counter()
        for ref in item_refs:
            for gram, count in _ngrams(ref, n).items():
                max_ref_counts[gram] = max(max_ref_counts[gram], count)
        for gram, count in _ngrams(hyp, n).items():
            correct[len(gram) - 1] += min(max_ref_counts[gram], count)
        for k in range(n):
            guess[k] += max(0, len(hyp) - k)
        test_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in item_refs)[1]

    scores = []
    product = 1.0
    for k in range(n):
        product *= (correct[k] + _TINY) / (guess[k] + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (test_len + _TINY) / (ref_len + _SMALL)
    if ratio < 1:
        brevity = math.exp(1 - 1 / ratio)
        scores = [s * brevity for s in scores]
    return scores


# --------------------------------------------------------------------------------------------------------------
# ROUGE-L (Lin 2004, as computed by coco-caption's rouge.py)
# --------------------------------------------------------------------------------------------------------------


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (classic O(len(a)*len(b)) dynamic programme, one row kept)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(
    hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], beta: float = 1.2
) -> tuple[float, list[float]]:
    """Mean and per-item ROUGE-L for tokenised hypotheses and references.

    Per item: P = max_r LCS(h, r) / |h|, R = max_r LCS(h, r) / |r| (each maximised on its own, as coco
    does), score = (1 + beta^2) P R / (R + beta^2 P), or 0 when P or R is 0.
    """
    per_item = []
    for hyp, item_refs in zip(hyps, refs):
        precisions, recalls = [0.0], [0.0]
        for ref in item_refs:
            lcs = _lcs_length(ref, hyp)
            if hyp:
                precisions.append(lcs / len(hyp))
            if ref:
                recalls.append(lcs / len(ref))
        p, r = max(precisions), max(recalls)
        per_item.append((1 + beta**2) * p * r / (r + beta**2 * p) if p > 0 and r > 0 else 0.0)
    return float(np.mean(per_item)) if per_item else 0.0, per_item


# --------------------------------------------------------------------------------------------------------------
# CIDEr-D (Vedantam et al. 2015, as computed by coco-caption's cider_scorer.py)
# --------------------------------------------------------------------------------------------------------------


def _tfidf(counts: Counter, doc_freq: Counter, log_n_docs: float, n: int):
    """TF-IDF vector (one dict per n-gram order), its norms, and coco's "length" for the length penalty."""
    vec: list[dict] = [{} for _ in range(n)]
    norm = [0.0] * n
    length = 0
    for gram, term_freq in counts.items():
        k = len(gram) - 1
        # IDF = log(#items) - log(#items whose references contain the n-gram); unseen n-grams count once.
        weight = term_freq * (log_n_docs - math.log(max(1.0, doc_freq[gram])))
        vec[k][gram] = weight
        norm[k] += weight * weight
        if k == 1:
            # coco's quirk, kept for comparability: the "length" is the number of bigrams (= tokens - 1).
            length += term_freq
    return vec, [math.sqrt(x) for x in norm], length


def cider_d(
    hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], n: int = 4, sigma: float = 6.0
) -> tuple[float, list[float]]:
    """Mean and per-item CIDEr-D for tokenised hypotheses and references.

    Per item: 10 * mean_{k=1..n} mean_r [ sum_g min(h_k[g], r_k[g]) r_k[g] / (|h_k| |r_k|) * exp(-d^2 / 2 sigma^2) ]
    with h_k, r_k the TF-IDF k-gram vectors and d the length difference. The IDF comes from the
    references of the evaluated items, so it needs a corpus: with a single item every IDF is 0 and so is
    the score (as in coco-caption).
    """
    ref_counts = [[_ngrams(r, n) for r in item_refs] for item_refs in refs]
    doc_freq: Counter = Counter()
    for item in ref_counts:
        doc_freq.update(set().union(*(c.keys() for c in item)))
    log_n_docs = math.log(float(len(ref_counts))) if ref_counts else 0.0

    per_item = []
    for hyp, item in zip(hyps, ref_counts):
        h_vec, h_norm, h_len = _tfidf(_ngrams(hyp, n), doc_freq, log_n_docs, n)
        total = np.zeros(n)
        for counts in item:
            r_vec, r_norm, r_len = _tfidf(counts, doc_freq, log_n_docs, n)
            penalty = math.exp(-((h_len - r_len) ** 2) / (2 * sigma**2))
            for k in range(n):
                # "Clipping": a hypothesis n-gram repeated more often than in the reference gains nothing.
                dot = sum(min(w, r_vec[k].get(g, 0.0)) * r_vec[k].get(g, 0.0) for g, w in h_vec[k].items())
                if h_norm[k] != 0 and r_norm[k] != 0:
                    dot /= h_norm[k] * r_norm[k]
                total[k] += dot * penalty
        per_item.append(float(np.mean(total)) / len(item) * 10.0)
    return float(np.mean(per_item)) if per_item else 0.0, per_item


# --------------------------------------------------------------------------------------------------------------
# METEOR / SPICE (Java, optional)
# --------------------------------------------------------------------------------------------------------------


def _pycocoevalcap_dir() -> Path | None:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _java_metric_missing(metric: str) -> str | None:
    """Why ``metric`` ("meteor" or "spice") cannot run here, or None when everything it needs is present."""
    package = _pycocoevalcap_dir()
    if package is None:
        return f"{metric.upper()} needs the optional package pycocoevalcap (pip install pycocoevalcap==1.2)"
    if shutil.which("java") is None:
        return f"{metric.upper()} needs Java on PATH (e.g. apt-get install default-jre-headless)"
    if metric == "meteor":
        needed = [package / "meteor" / "meteor-1.5.jar", package / "meteor" / "data" / "paraphrase-en.gz"]
    else:
        # pycocoevalcap downloads Stanford CoreNLP 3.6.0 on first use; offline we can only use it if present.
        lib = package / "spice" / "lib"
        needed = [package / "spice" / "spice-1.0.jar", lib / "stanford-corenlp-3.6.0.jar",
                  lib / "stanford-corenlp-3.6.0-models.jar"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        return f"{metric.upper()} resources missing (no download is attempted): {', '.join(missing)}"
    return None


def _run_java_metric(metric: str, hyps: list[str], refs: list[list[str]]) -> float:
    res = {i: [h] for i, h in enumerate(hyps)}
    gts = {i: list(r) for i, r in enumerate(refs)}
    if metric == "meteor":
        from pycocoevalcap.meteor.meteor import Meteor

        score, _ = Meteor().compute_score(gts, res)
    else:
        from pycocoevalcap.spice.spice import Spice

        score, _ = Spice().compute_score(gts, res)
    return float(score)


# --------------------------------------------------------------------------------------------------------------
# Captioning: the entry point
# --------------------------------------------------------------------------------------------------------------


def caption_metrics(
    predictions: Mapping[Any, str],
    references: Mapping[Any, Sequence[str]],
    *,
    java_metrics: bool = True,
) -> dict:
    """Captioning scores for ``predictions`` (id -> caption) against ``references`` (id -> captions).

    Returns ``{"bleu_1".."bleu_4", "rouge_l", "cider_d", "meteor", "spice", "spider", "unavailable"}``.
    Scores are floats on coco-caption's scale (CIDEr-D is x10, so it can exceed 1). A metric that cannot
    be computed here is ``None`` and ``unavailable[name]`` says why; it is never reported as 0.
    SPIDEr = (CIDEr-D + SPICE) / 2. ``java_metrics=False`` skips METEOR/SPICE (they start a JVM, slow).
    """
    if set(predictions) != set(references):
        missing = sorted(map(str, set(references) - set(predictions)))[:5]
        extra = sorted(map(str, set(predictions) - set(references)))[:5]
        raise DataError(
            "caption_metrics: predictions and references must cover the same ids "
            f"(ids without a prediction: {missing}, ids without references: {extra}); "
            "pass one prediction for every id that has references"
        )
    if not predictions:
        raise DataError("caption_metrics: no predictions given; evaluate at least one item")
    ids = list(references)
    for i in ids:
        if isinstance(references[i], str) or len(references[i]) == 0:
            raise DataError(
                f"caption_metrics: references[{i!r}] must be a non-empty list of captions, got {references[i]!r}"
            )
        if not isinstance(predictions[i], str):
            raise DataError(f"caption_metrics: predictions[{i!r}] must be a string, got {type(predictions[i])}")

    hyps = [tokenize_caption(predictions[i]) for i in ids]
    refs = [[tokenize_caption(r) for r in references[i]] for i in ids]

    b = bleu(hyps, refs, n=4)
    out: dict = {f"bleu_{k + 1}": b[k] for k in range(4)}
    out["rouge_l"] = rouge_l(hyps, refs)[0]
    out["cider_d"] = cider_d(hyps, refs)[0]

    unavailable: dict[str, str] = {}
    joined_hyps = [" ".join(h) for h in hyps]
    joined_refs = [[" ".join(r) for r in item] for item in refs]
    for metric in ("meteor", "spice"):
        reason = "Java metrics disabled (java_metrics=False)" if not java_metrics else _java_metric_missing(metric)
        out[metric] = None
        if reason is None:
            try:
                out[metric] = _run_java_metric(metric, joined_hyps, joined_refs)
            except Exception as exc:  # reported in "unavailable", not swallowed: Java failures take many forms
                reason = f"{metric.upper()} failed: {type(exc).__name__}: {exc}"
        if reason is not None:
            unavailable[metric] = reason
    if out["spice"] is None:
        out["spider"] = None
        unavailable["spider"] = "SPIDEr = (CIDEr-D + SPICE) / 2 needs SPICE: " + unavailable["spice"]
    else:
        out["spider"] = (out["cider_d"] + out["spice"]) / 2
    out["unavailable"] = unavailable
    return out


# --------------------------------------------------------------------------------------------------------------
# Text similarity in the encoder's text space
# --------------------------------------------------------------------------------------------------------------


def _as_numpy(x) -> np.ndarray:
    """Tensor or array -> float64 numpy, without importing torch here."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _embed_texts(encoder, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """[len(texts), dim] unit vectors from ``encoder.embed_text`` (re-normalised in case a backend drifts)."""
    chunks = [_as_numpy(encoder.embed_text(list(texts[i : i + batch_size]))) for i in range(0, len(texts), batch_size)]
    emb = np.concatenate(chunks, axis=0)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise ConfigError(
            f"encoder.embed_text returned shape {emb.shape} for {len(texts)} texts; expected [{len(texts)}, dim]"
        )
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def text_similarity(
    encoder, preds: Sequence[str], refs: Sequence[Sequence[str]], *, reduce: str = "max", batch_size: int = 64
) -> list[float]:
    """Cosine similarity, in the encoder's text space, of each prediction to its references.

    ``reduce="max"`` (default) scores a prediction by its closest reference (a caption only has to agree
    with one annotator); ``reduce="mean"`` averages over the references. Each distinct text is embedded once.
    """
    if reduce not in ("max", "mean"):
        raise ConfigError(f"text_similarity: reduce must be 'max' or 'mean', got {reduce!r}")
    if len(preds) != len(refs):
        raise DataError(f"text_similarity: {len(preds)} predictions but {len(refs)} reference lists; they must pair up")
    for i, item in enumerate(refs):
        if isinstance(item, str) or len(item) == 0:
            raise DataError(f"text_similarity: refs[{i}] must be a non-empty list of strings, got {item!r}")
    if not preds:
        return []
    unique = list(dict.fromkeys([*preds, *(r for item in refs for r in item)]))
    index = {t: j for j, t in enumerate(unique)}
    emb = _embed_texts(encoder, unique, batch_size)
    scores = []
    for pred, item in zip(preds, refs):
        sims = emb[[index[r] for r in item]] @ emb[index[pred]]
        scores.append(float(sims.max() if reduce == "max" else sims.mean()))
    return scores


# --------------------------------------------------------------------------------------------------------------
# Classification: map free-form generated tags onto a label set, then score
# --------------------------------------------------------------------------------------------------------------

MAPPING_RULE = (
    "Each generated text is mapped onto the label set in two steps. "
    "(1) Verbatim match: labels whose name (lower-cased, '_' read as a space, punctuation ignored) appears in "
    "the generated text as whole words rank first, ordered by where they first appear in the text, a longer "
    "name first when two start at the same place (so 'dog barking' beats 'dog'). "
    "(2) Similarity: every other label follows in order of cosine similarity between the encoder's text "
    "embedding of the generated text and that of the label written into the template "
    f"(default '{LABEL_TEMPLATE}'); ties keep label order."
)

_NON_WORD_RE = re.compile(r"[\W_]+")


def _match_form(text: str) -> str:
    """Lower-case, '_' and punctuation to spaces, single-spaced, padded with spaces for whole-word search."""
    return " " + " ".join(_NON_WORD_RE.sub(" ", text.lower()).split()) + " "


def map_to_labels(
    encoder,
    generated: Sequence[str],
    labels: Sequence[str],
    template: str = LABEL_TEMPLATE,
    *,
    batch_size: int = 64,
) -> np.ndarray:
    """Rank ``labels`` for each generated text following ``MAPPING_RULE``: int array [N, L] of label indices,
    best first (column 0 is the prediction; the first k columns are the top-k)."""
    if not labels:
        raise ConfigError("map_to_labels: the label set is empty; pass at least one label")
    if "{label}" not in template:
        raise ConfigError(f"map_to_labels: template must contain '{{label}}', got {template!r}")
    names = [_match_form(label) for label in labels]
    if any(not n.strip() for n in names):
        raise ConfigError(f"map_to_labels: labels must have letters or digits, got {list(labels)!r}")
    duplicates = sorted({labels[i] for i, n in enumerate(names) if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"map_to_labels: labels collide after normalisation: {duplicates}; make them distinct")
    if len(generated) == 0:
        return np.zeros((0, len(labels)), dtype=np.int64)

    label_texts = [template.format(label=" ".join(n.split())) for n in names]
    label_emb = _embed_texts(encoder, label_texts, batch_size)
    gen_emb = _embed_texts(encoder, list(generated), batch_size)
    sims = gen_emb @ label_emb.T  # [N, L] cosine similarities (unit vectors)

    ranked = np.empty((len(generated), len(labels)), dtype=np.int64)
    for i, text in enumerate(generated):
        haystack = _match_form(text)
        hits = [(haystack.find(name), -len(name), j) for j, name in enumerate(names) if name in haystack]
        first = [j for _, _, j in sorted(hits)]
        matched = set(first)
        rest = [int(j) for j in np.argsort(-sims[i], kind="stable") if j not in matched]
        ranked[i] = first + rest
    return ranked


def _check_ranked(pred_ranked, targets, n_labels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    ranked = np.asarray(pred_ranked)
    if ranked.ndim == 1:
        ranked = ranked[:, None]  # plain top-1 predictions
    targets = np.asarray(targets)
    if ranked.ndim != 2 or targets.ndim != 1 or len(ranked) != len(targets):
        raise DataError(
            f"expected pred_ranked [N, L] (or [N]) and targets [N], got shapes {np.shape(pred_ranked)} and "
            f"{np.shape(targets)}"
        )
    if len(targets) == 0:
        raise DataError("no items to score; pass at least one prediction")
    if not (np.issubdtype(ranked.dtype, np.integer) and np.issubdtype(targets.dtype, np.integer)):
        raise DataError("pred_ranked and targets must hold integer label indices (use labels.index(name))")
    if n_labels is not None and (targets.min() < 0 or targets.max() >= n_labels):
        raise DataError(
            f"targets must be label indices in [0, {n_labels}), got values {targets.min()}..{targets.max()}"
        )
    return ranked, targets


def _hits(ranked: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    if not 1 <= k <= ranked.shape[1]:
        raise ConfigError(f"k must be between 1 and the number of ranked labels ({ranked.shape[1]}), got {k}")
    return (ranked[:, :k] == targets[:, None]).any(axis=1)


def accuracy(pred_ranked, targets, k: int = 1) -> float:
    """Top-k accuracy: fraction of items whose target index is among the first k ranked labels."""
    ranked, targets = _check_ranked(pred_ranked, targets)
    return float(_hits(ranked, targets, k).mean())


def per_class_accuracy(pred_ranked, targets, labels: Sequence[str], k: int = 1) -> dict[str, float]:
    """Top-k accuracy per true class, keyed by label name in label order. Classes absent from ``targets``
    are left out (their accuracy is undefined); the mean of the values is the balanced accuracy."""
    ranked, targets = _check_ranked(pred_ranked, targets, len(labels))
    hits = _hits(ranked, targets, k)
    return {labels[c]: float(hits[targets == c].mean()) for c in range(len(labels)) if np.any(targets == c)}


def confusion_summary(pred_ranked, targets, labels: Sequence[str], top: int = 10) -> list[tuple[str, str, int]]:
    """The ``top`` most frequent top-1 mistakes as (true label, predicted label, count), most common first
    (ties in label-index order, so the list is deterministic)."""
    ranked, targets = _check_ranked(pred_ranked, targets, len(labels))
    predicted = ranked[:, 0]
    pairs = Counter((int(t), int(p)) for t, p in zip(targets, predicted) if t != p)
    ordered = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))
    return [(labels[t], labels[p], count) for (t, p), count in ordered[:top]]


# --------------------------------------------------------------------------------------------------------------
# Question answering
# --------------------------------------------------------------------------------------------------------------

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_ARTICLES = {"a", "an", "the"}
# Whole answers that mean yes / no ("Yes.", "yeah", "True" -> "yes").
_YES = {"yes", "yeah", "yep", "yup", "true", "correct"}
_NO = {"no", "nope", "false", "incorrect"}
# Clotho-AQA writes counts as words ("TWO"); a model may say "2".
_NUMBER_WORDS = dict(enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split()
))


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, write 0-20 as words, collapse spaces, and
    map a whole-answer yes/no synonym to "yes"/"no". "Yes." -> "yes", "The dog!" -> "dog", "2" -> "two"."""
    tokens = [t for t in s.lower().translate(_PUNCT_TABLE).split() if t not in _ARTICLES]
    tokens = [_NUMBER_WORDS.get(int(t), t) if t.isascii() and t.isdigit() else t for t in tokens]
    answer = " ".join(tokens)
    if answer in _YES:
        return "yes"
    if answer in _NO:
        return "no"
    return answer


def qa_exact_match(preds: Sequence[str], refs: Sequence[str | Sequence[str]]) -> float:
    """Fraction of predictions equal to their reference after ``normalize_answer``. A reference may be a
    list of acceptable answers (e.g. several annotators); matching any one counts."""
    if len(preds) != len(refs):
        raise DataError(f"qa_exact_match: {len(preds)} predictions but {len(refs)} references; they must pair up")
    if not preds:
        raise DataError("qa_exact_match: no predictions given; evaluate at least one question")
    hits = 0
    for pred, ref in zip(preds, refs):
        accepted = [ref] if isinstance(ref, str) else list(ref)
        hits += normalize_answer(pred) in {normalize_answer(r) for r in accepted}
    return hits / len(preds)
