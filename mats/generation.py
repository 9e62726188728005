"""Decoding: the checkpoint's generation settings with a call's overrides, checked in plain words, and streaming.

Streaming runs ``generate`` in a worker thread and yields text as it comes. With one beam, Hugging Face's
``TextIteratorStreamer`` gives the growing text. Its streamers do not support beam search, so with several
beams a stopping criterion that never stops hands over the best-scoring hypothesis at every step, and the
finished search's answer comes last: the first words show after one step instead of after the whole search.
"""
from __future__ import annotations

import functools
import math
import queue
import threading
from typing import Callable, Iterator

import torch

from mats.errors import ArgumentError


# The generation settings a call may give (as keywords to caption, ask, classify, ...). Anything else would reach
# transformers' generate, which answers a typo with its own error (or changes what it returns).
GENERATION_SETTINGS = ("max_new_tokens", "min_new_tokens", "num_beams", "do_sample", "temperature", "top_p", "top_k",
                       "repetition_penalty", "no_repeat_ngram_size", "length_penalty", "early_stopping",
                       "stopping_criteria", "logits_processor")


def generation_kwargs(g, overrides: dict) -> dict:
    """``generate`` keyword arguments: the checkpoint's ``GenerationConfig`` ``g``, then the call's non-None overrides."""
    unknown = sorted(set(overrides) - set(GENERATION_SETTINGS))
    if unknown:
        raise ArgumentError(f"unknown generation setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                            f"use {', '.join(GENERATION_SETTINGS[:-2])}.")
    kw = dict(num_beams=g.num_beams, max_new_tokens=g.max_new_tokens, no_repeat_ngram_size=g.no_repeat_ngram_size,
              repetition_penalty=g.repetition_penalty, do_sample=g.do_sample)
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if kw.get("do_sample"):
        kw.setdefault("temperature", g.temperature)
        kw.setdefault("top_p", g.top_p)
        kw["num_beams"] = 1 if "num_beams" not in overrides else kw["num_beams"]
    if kw.get("no_repeat_ngram_size") == 0:
        kw.pop("no_repeat_ngram_size")
    _check_generation(kw)
    return kw


def stream_answer(generate: Callable[..., str], tokenizer, beams: int, gen: dict) -> Iterator[str]:
    """Yield the growing answer of ``generate(streamer, **gen)`` (one prompt); the last text yielded is the answer.

    Closing this generator (a web client that went away) stops generation at the next token, so an abandoned
    request does not keep the device (and the model's lock) busy for the next visitor.
    """
    from transformers import TextIteratorStreamer

    cancel = threading.Event()
    more = list(gen.get("stopping_criteria") or [])
    if beams > 1:
        pieces: queue.Queue = queue.Queue()
        more.append(_LeadingHypothesis(tokenizer, pieces.put))
        streamer = None
    else:
        streamer = pieces = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
    gen = {**gen, "stopping_criteria": _cancel_criteria(cancel, more)}
    errors: list[BaseException] = []
    done = object()

    def work():
        try:
            answer = generate(streamer, **gen)
            if streamer is None:
                pieces.put(answer)
        except BaseException as e:  # re-raised in the caller's thread below
            errors.append(e)
            if streamer is not None:
                streamer.end()
        finally:
            if streamer is None:
                pieces.put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    text = ""
    try:
        if streamer is not None:
            for piece in streamer:
                text += piece
                yield text.strip()
        else:
            for text in iter(functools.partial(pieces.get, timeout=300), done):
                yield text
    finally:
        cancel.set()
        thread.join()
    if errors:
        raise errors[0]


@functools.cache  # one class, built on first use: transformers loads lazily
def _leading_hypothesis_class():
    from transformers import StoppingCriteria

    class LeadingHypothesis(StoppingCriteria):
        """Never stops anything: hands the best-scoring beam's text so far to ``emit`` at every step.

        Beam search calls stopping criteria with its candidate continuations sorted best first, so row 0
        is the hypothesis that leads now (prompt excluded: MATS generates from embeddings)."""

        def __init__(self, tokenizer, emit):
            self.tokenizer, self.emit, self.last = tokenizer, emit, None

        def __call__(self, input_ids, scores, **kwargs):
            text = self.tokenizer.decode(input_ids[0], skip_special_tokens=True).strip()
            if text and text != self.last and "\ufffd" not in text:  # skip a half-decoded UTF-8 character
                self.last = text
                self.emit(text)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return LeadingHypothesis


def _LeadingHypothesis(tokenizer, emit):  # noqa: N802 - a class, built on first use
    return _leading_hypothesis_class()(tokenizer, emit)


def _cancel_criteria(cancel: threading.Event, more=None):
    """transformers stopping criteria that end generation once ``cancel`` is set (plus any given ones)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([*(more or []), Cancelled()])


def _check_generation(kw: dict) -> None:
    """Generation settings in plain words, before transformers turns them into ZeroDivisionError and friends."""
    def whole(name, low):
        v = kw.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise ArgumentError(f"{name} must be a whole number of at least {low}, got {v!r}.")

    whole("max_new_tokens", 1)
    whole("num_beams", 1)
    whole("no_repeat_ngram_size", 0)
    if not isinstance(kw.get("do_sample", False), bool):
        raise ArgumentError(f"do_sample must be True or False, got {kw['do_sample']!r}.")
    for name, low, high in (("temperature", 0.0, None), ("top_p", 0.0, 1.0), ("repetition_penalty", 0.0, None)):
        v = kw.get(name)
        if v is None or (name != "repetition_penalty" and not kw.get("do_sample")):
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > low
        if not ok or (high is not None and v > high):
            bound = f"above {low:g}" + (f" and at most {high:g}" if high is not None else "")
            hint = " (for deterministic answers turn sampling off instead)" if name == "temperature" else ""
            raise ArgumentError(f"{name} must be a number {bound} when sampling, got {v!r}{hint}.".replace(
                " when sampling", "" if name == "repetition_penalty" else " when sampling"))
