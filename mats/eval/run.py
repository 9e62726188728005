"""Running an evaluation: ``evaluate()`` and the classify / caption / qa loops.

For each model the clips are decoded and embedded by its encoder once (``model.embed_clips``); every lambda
then only re-mixes the cached embeddings (``model.condition``) and decodes (``model.generate_from_embeddings``)
in batches, so a sweep costs one audio pass. This module imports torch lazily, so ``mats --help`` stays fast.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mats.config import SANTA_BANKS
from mats.errors import ConfigError
from mats.eval.clips import EvalData, _bar, _embed, _encoder_key, load_eval_data
from mats.eval.report import _lam_key, _versions, write_outputs
from mats.metrics import (
    MAPPING_RULE,
    accuracy,
    caption_metrics,
    confusion_summary,
    map_to_labels,
    normalize_answer,
    per_class_accuracy,
    qa_exact_match,
    text_similarity,
)
from mats.prompts import LABEL_TEMPLATE, eval_task

__all__ = ["evaluate", "RunContext", "DEFAULT_TEMPLATE"]

DEFAULT_TEMPLATE = LABEL_TEMPLATE
TOP_K = 5  # top-5 accuracy is reported when the label set has at least this many labels
MAX_LISTED = 20  # missing clips / notes kept by name in results.json (the count covers all)


def _parse_santa(value) -> list[float] | None:
    if value is None or value == "":
        return None
    raw = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in raw:
        try:
            lam = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"--santa takes numbers between 0 and 1 separated by commas, e.g. 0,0.3; got {v!r}")
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"Santa strength must be between 0 and 1 (got {lam}); 0 = audio only")
        out.append(lam)
    return list(dict.fromkeys(out))


@dataclass
class RunContext:
    """One model's run over the evaluation data: what every task loop (``_run_*``) reads, and the two records
    it fills in (``timings``, ``predictions``)."""

    model: Any  # a loaded MATS
    name: str  # the model's name in results.json and predictions.jsonl
    data: EvalData
    keys: list[str]  # the clips that were embedded, in the row order of ``emb``
    emb: Any  # [N, D] clip embeddings (torch, on the model's device)
    lambdas: list[float]  # Santa strengths to sweep
    batch_size: int
    gen: dict  # generation overrides (None values already dropped)
    progress: bool  # show progress bars
    timings: dict  # filled in: zero_shot_s, generate_s[λ], rank_s[λ]
    predictions: list[dict]  # filled in: one record per method x λ x item

    def index(self) -> tuple[dict[str, int], list]:
        """(clip -> row of ``emb``, the items whose clip was embedded)."""
        row = {k: i for i, k in enumerate(self.keys)}
        return row, [it for it in self.data.items if it.clip in row]

    def generate(self, z, instructions: list[str], what: str, lam: float) -> list[str]:
        """Decode each instruction over its row of the conditioned embeddings ``z``, in batches, with a bar."""
        with _bar(len(instructions), f"{self.name}: {what} λ={_lam_key(lam)}", self.progress) as bar:
            return _generate(self.model, z, instructions, self.batch_size, self.gen, bar)


def _generate(model, z, instructions: list[str], batch_size: int, gen: dict, bar) -> list[str]:
    out: list[str] = []
    for start in range(0, len(instructions), batch_size):
        chunk = instructions[start : start + batch_size]
        out += model.generate_from_embeddings(z[start : start + len(chunk)], chunk, **gen)
        bar.update(len(chunk))
    return out


def _class_scores(ranked: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    per_class = per_class_accuracy(ranked, targets, labels)
    return {
        "n": int(len(targets)),
        "top1": accuracy(ranked, targets, k=1),
        "top5": accuracy(ranked, targets, k=TOP_K) if len(labels) >= TOP_K else None,
        "balanced_top1": float(np.mean(list(per_class.values()))),
        "per_class": per_class,
        "confusion": [{"true": t, "predicted": p, "count": c} for t, p, c in confusion_summary(ranked, targets, labels)],
    }


def _run_classify(ctx: RunContext, template: str, rank: bool = False, santa_bank: str = "labels") -> dict:
    from mats.prompts import instruction_for

    model, name, emb, timings, preds = ctx.model, ctx.name, ctx.emb, ctx.timings, ctx.predictions
    labels = ctx.data.labels
    label_index = {l: i for i, l in enumerate(labels)}
    row, items = ctx.index()
    targets = np.array([label_index[it.reference] for it in items], dtype=np.int64)
    rows = [row[it.clip] for it in items]
    result: dict = {"labels": labels, "template": template, "santa_mixes": santa_bank}

    # CLAP zero-shot: the encoder alone, independent of lambda.
    t0 = time.perf_counter()
    scores = model.zero_shot(emb, labels, template)
    probs = np.array([[s[l] for l in labels] for s in scores])[rows]
    ranked = np.argsort(-probs, axis=1, kind="stable")
    timings["zero_shot_s"] = time.perf_counter() - t0
    result["zero_shot"] = _class_scores(ranked, targets, labels)
    for it, r, t in zip(items, ranked, targets):
        preds.append({"model": name, "method": "zero_shot", "santa": None, "clip": it.clip, "task": "classify",
                      "output": labels[r[0]], "top5": [labels[j] for j in r[:TOP_K]],
                      "reference": it.reference, "correct": bool(r[0] == t)})

    instruction = instruction_for("classify")
    result["mats"] = {}
    if rank:
        result["mats_rank"], timings["rank_s"] = {}, {}
    for lam in ctx.lambdas:
        t0 = time.perf_counter()
        # As MATS.classify with a label set: Santa mixes in the labels' sentences (or the bank's captions).
        z = model.condition(emb, lam, labels=labels if santa_bank == "labels" else None, template=template)
        texts = ctx.generate(z, [instruction] * len(ctx.keys), "classify", lam)
        timings["generate_s"][_lam_key(lam)] = time.perf_counter() - t0
        ranked = map_to_labels(model.encoder, texts, labels, template)[rows]
        result["mats"][_lam_key(lam)] = _class_scores(ranked, targets, labels)
        for it, r, t in zip(items, ranked, targets):
            preds.append({"model": name, "method": "mats", "santa": lam, "clip": it.clip, "task": "classify",
                          "output": texts[row[it.clip]], "predicted": labels[r[0]],
                          "top5": [labels[j] for j in r[:TOP_K]], "reference": it.reference,
                          "correct": bool(r[0] == t)})
        if rank:
            t0 = time.perf_counter()
            ranked = _rank_labels(model, z, labels, ctx.batch_size)[rows]
            timings["rank_s"][_lam_key(lam)] = time.perf_counter() - t0
            result["mats_rank"][_lam_key(lam)] = _class_scores(ranked, targets, labels)
            for it, r, t in zip(items, ranked, targets):
                preds.append({"model": name, "method": "mats_rank", "santa": lam, "clip": it.clip,
                              "task": "classify", "output": labels[r[0]], "top5": [labels[j] for j in r[:TOP_K]],
                              "reference": it.reference, "correct": bool(r[0] == t)})
    return result


def _rank_labels(model, z, labels: Sequence[str], batch_size: int) -> np.ndarray:
    """[N, L] label indices, best first, by the LM's log-likelihood of each label as the whole answer."""
    scores = np.concatenate([model.label_log_likelihoods(z[s : s + batch_size], labels).numpy()
                             for s in range(0, len(z), batch_size)])
    return np.argsort(-scores, axis=1, kind="stable")


def _run_caption(ctx: RunContext) -> dict:
    from mats.prompts import instruction_for

    model, name, preds = ctx.model, ctx.name, ctx.predictions
    row, items = ctx.index()
    instruction = instruction_for("caption")
    result: dict = {"mats": {}}
    for lam in ctx.lambdas:
        t0 = time.perf_counter()
        z = model.condition(ctx.emb, lam)
        texts = ctx.generate(z, [instruction] * len(ctx.keys), "caption", lam)
        ctx.timings["generate_s"][_lam_key(lam)] = time.perf_counter() - t0
        hyps = {it.clip: texts[row[it.clip]] for it in items}
        refs = {it.clip: it.reference for it in items}
        scores = caption_metrics(hyps, refs)
        sims = text_similarity(model.encoder, [hyps[it.clip] for it in items], [it.reference for it in items])
        scores["text_similarity"] = float(np.mean(sims))
        scores["n"] = len(items)
        result["mats"][_lam_key(lam)] = scores
        for it, sim in zip(items, sims):
            preds.append({"model": name, "method": "mats", "santa": lam, "clip": it.clip, "task": "caption",
                          "output": hyps[it.clip], "reference": it.reference, "correct": None,
                          "text_similarity": sim})
    return result


def _answer_type(answer: str) -> str:
    return "yes_no" if normalize_answer(answer) in ("yes", "no") else "single_word"


def _run_qa(ctx: RunContext) -> dict:
    import torch

    from mats.prompts import instruction_for

    model, name, emb, preds = ctx.model, ctx.name, ctx.emb, ctx.predictions
    row, items = ctx.index()
    # Clotho-AQA repeats each (clip, question) once per annotator: decode each pair once.
    pairs = list(dict.fromkeys((it.clip, it.question) for it in items))
    pair_rows = torch.tensor([row[c] for c, _ in pairs], device=emb.device)
    instructions = [instruction_for("ask", q) for _, q in pairs]
    types = [_answer_type(it.reference) for it in items]
    result: dict = {"mats": {}}
    for lam in ctx.lambdas:
        t0 = time.perf_counter()
        z = model.condition(emb, lam)[pair_rows]
        texts = ctx.generate(z, instructions, "qa", lam)
        ctx.timings["generate_s"][_lam_key(lam)] = time.perf_counter() - t0
        answer = dict(zip(pairs, texts))
        outs = [answer[(it.clip, it.question)] for it in items]
        correct = [normalize_answer(o) == normalize_answer(it.reference) for o, it in zip(outs, items)]
        scores: dict = {"n": len(items), "questions": len(pairs), "accuracy": qa_exact_match(outs, [it.reference for it in items])}
        for kind in ("yes_no", "single_word"):
            sel = [c for c, t in zip(correct, types) if t == kind]
            scores[kind] = {"n": len(sel), "accuracy": float(np.mean(sel)) if sel else None}
        result["mats"][_lam_key(lam)] = scores
        for it, out, ok in zip(items, outs, correct):
            preds.append({"model": name, "method": "mats", "santa": lam, "clip": it.clip, "task": "ask",
                          "question": it.question, "output": out, "reference": it.reference, "correct": bool(ok)})
    return result


def _model_name(model, i: int, taken: set[str]) -> str:
    base = str(model) if isinstance(model, (str, Path)) else (getattr(model, "source", None) or f"model{i + 1}")
    name, n = base, 2
    while name in taken:
        name, n = f"{base} ({n})", n + 1
    taken.add(name)
    return name


def evaluate(models: Sequence, task: str, clips_dir, meta, santa=None, labels: Sequence[str] | None = None,
             out=None, limit: int | None = None, batch_size: int = 8, gen: dict | None = None,
             template: str = DEFAULT_TEMPLATE, device=None, progress: bool = True, rank: bool = True,
             quantize: str | bool = "auto", santa_bank: str = "labels") -> dict:
    """Evaluate checkpoints (folder paths, Hub ids or loaded ``MATS`` objects) on one task; returns the results
    dict (the content of results.json). ``santa``: list of lambdas (default: each checkpoint's own).
    ``out``: folder for results.json, predictions.jsonl, report.md and plots (None: write nothing).
    ``gen``: generation overrides such as ``{"num_beams": 4, "max_new_tokens": 30}``.
    ``rank`` (classify): also let the LM rank the labels itself (``MATS.label_log_likelihoods``), reported as
    ``mats_rank`` next to the generate-and-map ``mats``. ``quantize``: as ``MATS.from_pretrained`` (fp16 packed
    LM weights on a CPU by default). ``santa_bank`` (classify): what Santa mixes in, the label set's sentences
    ("labels", as ``MATS.classify`` does) or the checkpoint's bank captions ("captions")."""
    task = eval_task(task)
    if isinstance(models, (str, Path)) or not isinstance(models, Sequence):
        models = [models]
    if not models:
        raise ConfigError("give at least one model (--model CHECKPOINT)")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if task == "hearing":
        raise ConfigError("the hearing checks run through mats.hearing.evaluate_hearing (or `mats eval --task hearing`)")
    if santa_bank not in SANTA_BANKS:
        raise ConfigError(f"--santa-bank must be one of {', '.join(SANTA_BANKS)}, got {santa_bank!r}")
    if task == "classify" and "{label}" not in template:
        raise ConfigError(f"--template must contain '{{label}}', got {template!r}")
    lambdas_arg = _parse_santa(santa)
    gen = {k: v for k, v in (gen or {}).items() if v is not None}
    started = time.time()
    data = load_eval_data(task, clips_dir, meta, labels=labels, limit=limit)

    cache: dict = {}  # encoder key -> {clip: embedding}: one audio pass per encoder
    skipped: dict[str, str] = {}
    predictions: list[dict] = []
    model_results = []
    taken: set[str] = set()
    for i, spec in enumerate(models):
        t_model = time.perf_counter()
        if isinstance(spec, (str, Path)):
            from mats.model import MATS

            model = MATS.from_pretrained(spec, device=device, quantize=quantize)
        else:
            model = spec
        name = _model_name(spec, i, taken)
        timings: dict = {"load_s": time.perf_counter() - t_model, "generate_s": {}}
        lambdas = lambdas_arg if lambdas_arg is not None else [float(model.config.santa.strength)]

        t0 = time.perf_counter()
        n_cached = sum(c in cache.get(_encoder_key(model.encoder), {}) for c in data.clips)
        keys, emb = _embed(model, data, cache, skipped, batch_size, progress, name)
        timings["encode_s"] = time.perf_counter() - t0
        entry: dict = {
            "name": name,
            "source": getattr(model, "source", None),
            "encoder": model.encoder.to_config() if hasattr(model.encoder, "to_config") else None,
            "lm": dict(model.config.lm),
            "santa_bank": model.santa is not None,
            "santa": lambdas,
            "generation": model._gen_kwargs(**gen),
            "clips_evaluated": len(keys),
            "embeddings_reused": n_cached,
        }
        if model.santa is None and any(l > 0 for l in lambdas):
            entry["note"] = "this checkpoint has no Santa bank: every lambda is audio only"
        if emb is None:
            entry["results"] = None
            entry["note"] = "no clip could be read; nothing evaluated"
        else:
            ctx = RunContext(model, name, data, keys, emb, lambdas, batch_size, gen, progress, timings, predictions)
            if task == "classify":
                entry["results"] = _run_classify(ctx, template, rank=rank, santa_bank=santa_bank)
            elif task == "caption":
                entry["results"] = _run_caption(ctx)
            else:
                entry["results"] = _run_qa(ctx)
        timings["total_s"] = time.perf_counter() - t_model
        work = timings["total_s"] - timings["load_s"]
        # One "clip evaluation" = one clip at one lambda (encoding, generation and scoring all counted).
        timings["clips_per_s"] = len(keys) * len(lambdas) / work if work > 0 and keys else None
        entry["timings"] = timings
        model_results.append(entry)
        if spec is not model:
            del model  # free a model we loaded before loading the next one

    results = {
        "task": task,
        "config": {
            "models": [str(m) if isinstance(m, (str, Path)) else r["name"] for m, r in zip(models, model_results)],
            "clips_dir": str(clips_dir), "meta": str(meta), "santa": lambdas_arg, "labels": list(labels) if labels else None,
            "template": template if task == "classify" else None,
            "santa_mixes": santa_bank if task == "classify" else None, "limit": limit, "batch_size": batch_size,
            "gen": gen, "device": str(device) if device is not None else None, "quantize": quantize,
        },
        "versions": _versions(),
        "data": {
            "format": data.format, "metadata_entries": data.rows, "clips_matched": len(data.clips),
            "items": len(data.items), "clips_skipped": len(skipped),
            "skipped": [{"clip": c, "reason": r} for c, r in skipped.items()],
            "missing_clips": len(data.missing), "missing_examples": data.missing[:MAX_LISTED],
            "unlisted_files": data.unlisted, "notes": data.notes[:MAX_LISTED],
            "labels": data.labels,
        },
        "mapping_rule": MAPPING_RULE if task == "classify" else None,
        "models": model_results,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "elapsed_s": time.time() - started,
    }
    if out is not None:
        write_outputs(results, predictions, out)
    return results
