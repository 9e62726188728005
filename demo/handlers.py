"""Event handlers: plain functions of the widgets' values, testable without a browser.

Each task handler is a generator that yields the growing answer (streaming) and a status line, so the
page shows text as it is generated and the Gradio API streams too. Every failure a user can cause
(no clip, a corrupt or silent or over-long clip, an empty question, a missing model) becomes a
``gr.Error`` whose message says what to do; anything unexpected is logged and reported the same way,
and the server keeps serving.
"""
from __future__ import annotations

import csv
import functools
import html
import logging
import math
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import gradio as gr

from demo.clips import (DEMO_MAX_SECONDS, HARD_MAX_SECONDS, NO_CLIP, PreparedClip, html_text, markdown_literal,
                        prepare_clip, spectrogram_image)
from demo.models import HOW_TO_GET_A_MODEL, ModelRegistry, where
from demo.sessions import SessionBanks, UserBank
from mats.errors import AudioError, CheckpointError, DataError, MATSError
from mats.prompts import tags_text

log = logging.getLogger("demo")

EMPTY_ANSWER = "(the model produced no text for this clip; try sampling or another Santa strength)"
MAX_LABELS = 32
MAX_QUESTION_CHARS = 500
TASKS = {"Caption": "caption", "Classify": "classify", "Ask": "ask"}
# Encoder rate/window used to describe a clip when no model can be loaded (LAION-CLAP's).
FALLBACK_SR, FALLBACK_WINDOW_S = 48000, 10.0


# ---------------------------------------------------------------------------------------------- errors
def _as_gr_error(exc: BaseException) -> gr.Error:
    """Library errors -> a titled message for the page; unexpected ones are logged with their traceback."""
    if isinstance(exc, gr.Error):
        return exc
    msg = html_text(str(exc))  # gr.Error renders HTML: file names and questions come from users
    if isinstance(exc, AudioError):
        return gr.Error(msg, title="Problem with the clip", print_exception=False)
    if isinstance(exc, CheckpointError):
        return gr.Error(msg, title="Model unavailable", print_exception=False)
    if isinstance(exc, DataError):
        return gr.Error(msg, title="Problem with the caption file", print_exception=False)
    if isinstance(exc, (MATSError, ValueError)):
        return gr.Error(msg, title="Cannot run this", print_exception=False)
    if type(exc).__name__ == "OutOfMemoryError":
        return gr.Error("The device ran out of memory. Try fewer beams, fewer new tokens or a shorter clip.",
                        title="Out of memory")
    log.exception("unexpected error in a demo handler")
    return gr.Error(
        f"Unexpected error ({type(exc).__name__}: {msg}). The demo is still running: try again or with another clip.",
        title="Something went wrong",
    )


def friendly_errors(fn):
    """Wrap a generator handler so every exception reaches the page as a clear gr.Error."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            yield from fn(*args, **kwargs)
        except Exception as e:  # GeneratorExit (user left) is a BaseException and passes through
            raise _as_gr_error(e) from e

    return wrapper


def friendly_call(fn):
    """``friendly_errors`` for plain (non-generator) handlers."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise _as_gr_error(e) from e

    return wrapper


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    santa: float
    num_beams: int
    max_new_tokens: int
    do_sample: bool
    temperature: float

    @classmethod
    def parse(cls, santa, num_beams, max_new_tokens, do_sample, temperature) -> "Settings":
        """Widget (or API) values -> checked settings; API callers can send anything, so check it all."""
        s = cls(_number("Santa strength", santa), _whole("Beam size", num_beams),
                _whole("Max new tokens", max_new_tokens), _flag("Sampling", do_sample), _number("Temperature", temperature))
        if not 0.0 <= s.santa <= 1.0:
            raise MATSError(f"Santa strength must be between 0 and 1, got {s.santa}.")
        if not 1 <= s.num_beams <= 8:
            raise MATSError(f"Beam size must be between 1 and 8, got {s.num_beams}.")
        if not 1 <= s.max_new_tokens <= 512:
            raise MATSError(f"Max new tokens must be between 1 and 512, got {s.max_new_tokens}.")
        if s.do_sample and not 0.05 <= s.temperature <= 5.0:
            raise MATSError(f"Temperature must be between 0.05 and 5, got {s.temperature}.")
        return s

    def gen_kwargs(self) -> dict:
        kw = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kw["temperature"] = self.temperature
        return kw

    def describe(self) -> str:
        mode = f"sampling T={self.temperature:g}" if self.do_sample else "greedy"
        if self.num_beams > 1:
            mode = f"beam {self.num_beams}" + (f", sampling T={self.temperature:g}" if self.do_sample else "")
        return f"λ={self.santa:.2f} · {mode}"


def _number(name: str, value) -> float:
    """A real number (a numeric string like "0.3" too, as a text field would send); never a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MATSError(f"{name} must be a number, got {value!r}.")
    try:
        return float(value)
    except ValueError:
        raise MATSError(f"{name} must be a number, got {value!r}.") from None


def _whole(name: str, value) -> int:
    """A whole number: 2.7 beams is refused rather than silently run as 2."""
    number = _number(name, value)
    if not math.isfinite(number) or number != int(number):
        raise MATSError(f"{name} must be a whole number, got {value!r}.")
    return int(number)


def _flag(name: str, value) -> bool:
    """True or False only: bool("no") is True, so strings are refused instead of guessed."""
    if not isinstance(value, bool):
        raise MATSError(f"{name} must be true or false, got {value!r}.")
    return value


def parse_labels(text: str | None) -> list[str]:
    """'dog, rain; siren' (commas, semicolons or new lines) -> unique labels, in order."""
    if text is not None and not isinstance(text, str):
        raise MATSError(f"Labels must be text like 'dog, rain, siren', got {text!r}.")
    labels = [p.strip() for p in re.split(r"[,;\n]", text or "") if p.strip()]
    if not labels and (text or "").strip():
        raise MATSError(f"No labels were read from {text.strip()[:40]!r}: type words separated by commas, "
                        "like 'dog, rain, siren', or leave the box empty for MATS tags only.")
    labels = list(dict.fromkeys(labels))
    if len(labels) > MAX_LABELS:
        raise MATSError(f"{len(labels)} labels is too many for one request; keep it to {MAX_LABELS}.")
    return labels



def check_question(question: str | None) -> str:
    if question is not None and not isinstance(question, str):
        raise MATSError(f"The question must be text, got {question!r}.")
    q = (question or "").strip()
    if not q:
        raise MATSError("The question is empty. Type one, for example 'What is making the sound?', then press Ask.")
    if len(q) > MAX_QUESTION_CHARS:
        raise MATSError(f"The question is {len(q)} characters long; keep it under {MAX_QUESTION_CHARS}.")
    return q


# ---------------------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    start: float
    first: float | None = None
    end: float | None = None
    load_s: float = 0.0

    def line(self, label: str, device: str, settings: Settings) -> str:
        first = f"first token {self.first - self.start:.2f} s · " if self.first is not None else ""
        total = f"full answer {self.end - self.start:.2f} s" if self.end is not None else "generating…"
        load = f" · model loaded in {self.load_s:.1f} s" if self.load_s else ""
        return f"**{markdown_literal(label)}** on `{device}` · {first}{total} · {settings.describe()}{load}"


# ---------------------------------------------------------------------------------------------- handlers
class Handlers:
    """The functions the page's events call; one instance per demo, sharing the model registry."""

    def __init__(self, registry: ModelRegistry, max_seconds: float = DEMO_MAX_SECONDS):
        self.registry = registry
        self.max_seconds = float(max_seconds)
        self.banks = SessionBanks()  # each session's own caption bank (in memory, that session only)
        # The last clips' audio embeddings, so the Santa evidence under an answer does not encode the clip again.
        self._embeddings: OrderedDict[tuple, object] = OrderedDict()
        self._embeddings_guard = threading.Lock()
        self._warming: set[int] = set()  # models whose evidence embedding has been started

    # -- helpers -------------------------------------------------------------------------------------
    def _load(self, source, request=None):
        """(model, seconds spent loading now: 0 when it was cached). With a session that uploaded its own caption
        bank, the model answers with that bank (a view: the shared model keeps its own)."""
        was_loaded = self.registry.is_loaded(source)
        rec = self.registry.get_record(source)
        self._warm_evidence(rec.model)
        return self.banks.model_for(request, rec.model), (0.0 if was_loaded else rec.seconds)

    def _warm_evidence(self, model) -> None:
        """The Santa evidence needs the bank's captions embedded once (~25 s on a cold cache): start that in the
        background the first time a model is used, so it is ready by the time the first answer is (explain() waits
        for it rather than doing it twice)."""
        if getattr(model, "santa", None) is None or getattr(model.santa, "clean", None) is not None:
            return
        with self._embeddings_guard:
            if id(model) in self._warming:
                return
            self._warming.add(id(model))
        threading.Thread(target=_prepare_evidence, args=(model,), daemon=True).start()

    def _label(self, source, model) -> str:
        label = self.registry.label(source)
        base = self.registry.get_record(source).model
        return label + (" with your caption bank" if model is not base else "")  # with_bank made a view

    def _remember(self, audio, model, embedding) -> None:
        if not isinstance(audio, str):
            return
        with self._embeddings_guard:
            self._embeddings[(audio, id(model.encoder))] = embedding
            while len(self._embeddings) > 64:
                self._embeddings.popitem(last=False)

    def _embedding(self, audio, model):
        """[1, D] audio embedding of a clip: remembered from the answer just given, else computed now."""
        if isinstance(audio, str):
            with self._embeddings_guard:
                hit = self._embeddings.get((audio, id(model.encoder)))
            if hit is not None:
                return hit
        embedding = model.embed_clips([self._prepare(audio, model).clip])
        self._remember(audio, model, embedding)
        return embedding

    def _prepare(self, audio, model) -> PreparedClip:
        enc = model.encoder
        return prepare_clip(audio, int(enc.sample_rate), float(enc.window_seconds), max_seconds=self.max_seconds)

    def _stream(self, model, audio_embedding, task: str, question: str | None, s: Settings,
                labels: list[str] | None = None) -> Iterator[str]:
        """Growing text for one embedded clip ([1, D]). With beams > 1 it is the leading hypothesis, revised as
        the search goes, then the finished answer (``MATS.stream``). ``labels``: Santa over these labels."""
        yield from model.stream(None, task, question=question, santa=s.santa, audio_embedding=audio_embedding,
                                labels=labels, num_beams=s.num_beams, **s.gen_kwargs())

    def _answer(self, source, audio, task, question, s: Settings, timing: Timing, ctx: dict | None = None,
                request=None, labels: list[str] | None = None):
        """Yield (text, status) while one model answers; the last yield carries the final status.

        ``ctx`` (optional) receives the model and the clip's audio embedding, for work after the answer
        (zero-shot scores), so the clip is encoded once. ``labels``: classify's typed labels, which Santa mixes
        in instead of bank captions (``MATS.classify``'s default).
        """
        label = self.registry.label(source)
        if not self.registry.is_loaded(source):
            yield "", f"Loading **{markdown_literal(label)}** (first use)…"
        model, timing.load_s = self._load(source, request)
        label = self._label(source, model)
        prepared = self._prepare(audio, model)
        embedding = model.embed_clips([prepared.clip])
        self._remember(audio, model, embedding)
        if ctx is not None:
            ctx.update(model=model, audio_embedding=embedding)
        device = where(model)
        text, shown = "", ""
        for text in self._stream(model, embedding, task, question, s, labels):
            if text and text != shown:  # the streamer also emits empty pieces (partial UTF-8): skip those
                if timing.first is None:
                    timing.first = time.perf_counter()
                shown = text
                yield text, timing.line(label, device, s)
        timing.end = time.perf_counter()
        if timing.first is None:
            timing.first = timing.end
        yield (text or EMPTY_ANSWER), timing.line(label, device, s)

    # -- page events ---------------------------------------------------------------------------------
    def clip_facts(self, audio, model_source):
        """(Markdown facts, spectrogram image) for the clip panel. Never raises: problems are shown inline."""
        if audio is None:
            return "*No clip yet: record, upload, or pick an example.*", None
        sr, window, note = FALLBACK_SR, FALLBACK_WINDOW_S, ""
        try:
            loaded = self.registry.get(model_source)
            self._warm_evidence(loaded)
            enc = loaded.encoder
            sr, window = int(enc.sample_rate), float(enc.window_seconds)
        except Exception as e:  # the clip can still be described; the task buttons will report the model problem
            if self.registry.usable:  # with no model at all, the banner at the top already explains
                note = f"\n\n⚠️ model not available: {markdown_literal(str(e))}"
        try:
            prepared = prepare_clip(audio, sr, window, max_seconds=self.max_seconds)
        except AudioError as e:
            gr.Warning(html_text(str(e)), title="Problem with the clip")
            return f"⚠️ {markdown_literal(str(e))}", None
        except Exception as e:
            log.exception("could not describe a clip")
            gr.Warning(f"Could not read this clip ({type(e).__name__}). Try another file.")
            return f"⚠️ could not read this clip ({html.escape(type(e).__name__)})", None
        if prepared.clip.info.capped:
            gr.Warning(f"Only the first {self.max_seconds:g} s of this clip are used.", title="Long clip")
        image = spectrogram_image(prepared.clip.waveform, prepared.clip.sample_rate)
        return "\n".join(f"- {f}" for f in prepared.facts) + note, image

    def model_defaults(self, model_source):
        """When the model changes, the Santa slider and token limit start at that checkpoint's values."""
        d = self.registry.defaults(model_source)
        info = SANTA_INFO if d.has_santa else "This checkpoint has no Santa memory bank: the slider has no effect."
        return gr.update(value=d.santa, info=info), gr.update(value=d.max_new_tokens)

    def about_models(self) -> str:
        return "\n".join(self.registry.status_lines())

    @friendly_errors
    def caption(self, audio, model, santa, beams, max_new_tokens, sample, temperature, request: gr.Request = None):
        """Describe the clip in one sentence. Yields (caption, status)."""
        s = Settings.parse(santa, beams, max_new_tokens, sample, temperature)
        yield from self._answer(model, audio, "caption", None, s, Timing(time.perf_counter()), request=request)

    @friendly_errors
    def classify(self, audio, labels, model, santa, beams, max_new_tokens, sample, temperature,
                 request: gr.Request = None):
        """MATS sound tags; with typed labels, zero-shot scores too. Yields (tags, scores, status)."""
        s = Settings.parse(santa, beams, max_new_tokens, sample, temperature)
        wanted = parse_labels(labels)
        text, status, ctx = "", "", {}
        for text, status in self._answer(model, audio, "classify", None, s, Timing(time.perf_counter()), ctx,
                                         request=request, labels=wanted or None):
            yield text, None, status
        tags = tags_text(text) if text != EMPTY_ANSWER else text
        scores = None
        if wanted:  # the encoder's own audio-text similarity, as LAION-CLAP zero-shot classification does
            scores = ctx["model"].zero_shot(ctx["audio_embedding"], wanted)[0]
        yield tags or text, scores, status

    @friendly_errors
    def ask(self, audio, question, model, santa, beams, max_new_tokens, sample, temperature,
            request: gr.Request = None):
        """Answer a question about the clip. Yields (answer, status)."""
        s = Settings.parse(santa, beams, max_new_tokens, sample, temperature)
        q = check_question(question)
        yield from self._answer(model, audio, "ask", q, s, Timing(time.perf_counter()), request=request)

    @friendly_errors
    def compare(self, audio, task, question, model_a, model_b, santa, beams, max_new_tokens, sample, temperature,
                request: gr.Request = None):
        """Run two models on the same clip and settings, one after the other (they share the device).

        Yields (answer A, answer B, status A, status B). A model that cannot load shows why in its
        column; the other still answers.
        """
        s = Settings.parse(santa, beams, max_new_tokens, sample, temperature)
        if task not in TASKS:
            raise MATSError(f"Unknown task '{task}'; choose one of {', '.join(TASKS)}.")
        q = check_question(question) if TASKS[task] == "ask" else None
        if audio is None:
            raise AudioError(NO_CLIP)
        texts, statuses = ["", ""], ["waiting…", "waiting…"]
        for i, source in enumerate((model_a, model_b)):
            timing = Timing(time.perf_counter())
            try:
                for texts[i], statuses[i] in self._answer(source, audio, TASKS[task], q, s, timing, request=request):
                    yield texts[0], texts[1], statuses[0], statuses[1]
            except AudioError:
                raise  # the same clip fails for both models: one clear error
            except Exception as e:
                err = _as_gr_error(e)
                gr.Warning(f"{html_text(self.registry.label(source))}: {err.message}", title=err.title)
                texts[i], statuses[i] = "", f"⚠️ **{markdown_literal(self.registry.label(source))}**: {markdown_literal(html.unescape(err.message))}"
                yield texts[0], texts[1], statuses[0], statuses[1]


    # -- Santa evidence --------------------------------------------------------------------------------
    def _evidence_for(self, audio, model, santa, request) -> tuple[float, object]:
        """(λ, loaded model) for an evidence panel, after checking the strength and that there is a clip."""
        lam = _number("Santa strength", santa)
        if not 0.0 <= lam <= 1.0:
            raise MATSError(f"Santa strength must be between 0 and 1, got {lam}.")
        if audio is None:
            raise AudioError(NO_CLIP)
        return lam, self._load(model, request)[0]

    @friendly_call
    def evidence(self, audio, model, santa, request: gr.Request = None):
        """What Santa leaned on for this clip: (Markdown for the page, the same as a dict for the API)."""
        lam, m = self._evidence_for(audio, model, santa, request)
        if m.santa is None:
            note = ("This checkpoint has no Santa memory bank, so the answer used the clip alone. Upload your own "
                    "captions under 'Your caption bank' to give it one.")
            return self._with_tags(audio, m, f"*{note}*", {"strength": lam, "captions": [], "note": note, "bank": None})
        ev = m.explain(audio_embeddings=self._embedding(audio, m), santa=lam)[0]
        mine = m is not self.registry.get_record(model).model
        data = {**ev.to_dict(), "bank": "yours" if mine else "checkpoint", "bank_size": len(m.santa)}
        return self._with_tags(audio, m, evidence_markdown(data), data)

    def _tags(self, audio, m) -> list[tuple[str, float]] | None:
        """The encoder's AudioSet tags of the clip (None when the encoder does not tag), from the prepared clip."""
        if not m.can_tag:
            return None
        return m.encoder.tags([self._prepare(audio, m).clip.waveform], top=TAGS_SHOWN)[0]

    def _with_tags(self, audio, m, markdown: str, data: dict) -> tuple[str, dict]:
        """An evidence panel with the line of what the encoder heard above it (every answer gets one)."""
        tags = self._tags(audio, m)
        if tags is None:
            return markdown, data
        return tags_markdown(tags) + "\n\n" + markdown, {**data, "heard": [{"tag": n, "score": v} for n, v in tags]}

    @friendly_call
    def tags(self, audio, model, request: gr.Request = None):
        """What the encoder heard: (one Markdown line, the tags as a dict) for the page and the API."""
        if audio is None:
            raise AudioError(NO_CLIP)
        m = self._load(model, request)[0]
        tags = self._tags(audio, m)
        if tags is None:
            raise MATSError("This model's encoder does not name AudioSet classes (only YAMNet encoders do); "
                            "pick a model with the YAMNet encoder for tags.")
        return tags_markdown(tags), {"tags": [{"tag": n, "score": v} for n, v in tags]}

    @friendly_call
    def classify_evidence(self, audio, labels, model, santa, request: gr.Request = None):
        """Under a classify answer: with typed labels, the labels Santa mixed in (as ``MATS.classify``); without,
        the bank captions (``evidence``). Returns (Markdown, dict)."""
        wanted = parse_labels(labels)
        if not wanted:
            return self.evidence(audio, model, santa, request)
        lam, m = self._evidence_for(audio, model, santa, request)
        data = {**m.explain_labels(self._embedding(audio, m), wanted, santa=lam)[0], "bank": "your labels"}
        return self._with_tags(audio, m, label_evidence_markdown(data), data)

    # -- your own caption bank ---------------------------------------------------------------------------
    @friendly_call
    def bank_upload(self, file, model, request: gr.Request = None, progress=gr.Progress()):
        """Build a Santa bank from an uploaded .txt / .csv of captions, for this session only. Returns status."""
        from mats.bank import read_captions

        path = _upload_path(file)
        if path is None:
            raise DataError("No caption file yet: upload a .txt (one caption per line) or a .csv with a 'caption' "
                            "column.")
        progress(0.05, desc="reading captions")
        name = Path(path).name
        captions = read_captions(path, name=name)
        m, _ = self._load(model)
        user = UserBank(name=name, captions=captions)
        progress(0.2, desc=f"embedding {len(captions.texts):,} captions")
        built = self.banks.build(user, m)
        self.banks.put(request, user)
        return bank_markdown(user, built, self.registry.label(model))

    @friendly_call
    def bank_remove(self, request: gr.Request = None):
        """Forget this session's caption bank: answers use each checkpoint's own bank again."""
        user = self.banks.drop(request)
        if user is None:
            return NO_BANK
        return f"Removed your caption bank ({markdown_literal(user.name)}). {NO_BANK}"

    def bank_status(self, request: gr.Request = None) -> str:
        user = self.banks.get(request)
        if user is None:
            return NO_BANK
        built = next(iter(user.built.values()), None)
        return bank_markdown(user, built, None) if built else NO_BANK

    def end_session(self, request: gr.Request = None) -> None:
        self.banks.drop(request)

    # -- long clips as a timeline --------------------------------------------------------------------------
    @friendly_call
    def timeline(self, audio, task, model, santa, beams, max_new_tokens, sample, temperature,
                 request: gr.Request = None, progress=gr.Progress()):
        """One row per window of the whole clip (up to 10 minutes): (table, spectrogram with the window
        boundaries, CSV file, status)."""
        from mats.audio import window_bounds
        from mats.timeline import timeline

        s = Settings.parse(santa, beams, max_new_tokens, sample, temperature)
        if task not in TIMELINE_TASKS:
            raise MATSError(f"Unknown timeline task '{task}'; choose one of {', '.join(TIMELINE_TASKS)}.")
        if audio is None:
            raise AudioError(NO_CLIP)
        start = time.perf_counter()
        progress(0, desc="loading the model")
        m, _ = self._load(model, request)
        enc = m.encoder
        prepared = prepare_clip(audio, int(enc.sample_rate), float(enc.window_seconds), max_seconds=HARD_MAX_SECONDS)
        clip = prepared.clip

        def report(done, total, what):
            n = total // 2
            progress(done / total, desc=f"{what}: window {done if what == 'listening' else done - n} of {n}")

        rows = timeline(m, clip, task=TIMELINE_TASKS[task], santa=s.santa, progress=report,
                        num_beams=s.num_beams, **s.gen_kwargs())
        seconds = time.perf_counter() - start
        what = "tags" if TIMELINE_TASKS[task] == "classify" else "caption"
        table = [[i + 1, _clock(r["start"]), _clock(r["end"]), r["text"], r["familiarity"],
                  r["nearest"] or "", r["similarity"]] for i, r in enumerate(rows)]
        headers = ["#", "start", "end", what, "familiarity", "nearest bank caption", "similarity"]
        bounds = window_bounds(len(clip.waveform), enc.window_samples)
        image = spectrogram_image(clip.waveform, clip.sample_rate,
                                  markers=[(a / clip.sample_rate, b / clip.sample_rate) for a, b in bounds])
        path = _csv_file("timeline", ["window", "start_s", "end_s", what, "familiarity", "nearest_caption",
                                      "similarity"],
                         [[i + 1, r["start"], r["end"], r["text"], r["familiarity"], r["nearest"] or "",
                           r["similarity"]] for i, r in enumerate(rows)])
        label = self._label(model, m)
        status = (f"**{len(rows)} window{'s' if len(rows) != 1 else ''}** of {enc.window_seconds:g} s over "
                  f"{_clock(clip.info.duration_s)} · **{markdown_literal(label)}** on `{where(m)}` · {seconds:.1f} s "
                  f"({len(rows) / seconds:.1f} windows/s) · {s.describe()}")
        return _frame(headers, table), image, path, status

    # -- many clips at once --------------------------------------------------------------------------------
    @friendly_call
    def batch(self, files, labels, model, santa, beams, max_new_tokens, sample, temperature,
              request: gr.Request = None, progress=gr.Progress()):
        """Caption, tags and zero-shot scores for many files (or a .zip): (table, CSV file, status)."""
        from mats.batch import gather, run_batch

        s = Settings.parse(santa, beams, max_new_tokens, sample, temperature)
        wanted = parse_labels(labels)
        paths = [p for p in (_upload_path(f) for f in (files or [])) if p]
        if not paths:
            raise AudioError("No files yet: upload audio files (wav, flac, ogg, mp3) or a .zip of them.")
        start = time.perf_counter()
        progress(0, desc="loading the model")
        m, _ = self._load(model, request)
        with tempfile.TemporaryDirectory(prefix="mats-batch-") as work:
            items = gather(paths, work)
            rows = run_batch(m, items, labels=wanted or None, santa=s.santa, num_beams=s.num_beams,
                             progress=lambda d, n, w: progress(d / n, desc=f"clip {d} of {n}"), **s.gen_kwargs())
        seconds = time.perf_counter() - start
        headers = ["file", "caption", "tags", *[f"score: {l}" for l in wanted], "error"]
        table = [[r["file"], r["caption"], r["tags"],
                  *[round(r["scores"][l], 4) if r["scores"] else None for l in wanted], r["error"]] for r in rows]
        path = _csv_file("batch", headers, table)
        failed = sum(1 for r in rows if r["error"])
        status = (f"**{len(rows) - failed} of {len(rows)} files answered**"
                  + (f", {failed} could not be used (see the error column)" if failed else "")
                  + f" · **{markdown_literal(self._label(model, m))}** on `{where(m)}` · {seconds:.1f} s "
                  f"({len(rows) / seconds:.2f} files/s) · {s.describe()}")
        return _frame(headers, table), path, status


def _prepare_evidence(model) -> None:
    try:
        model.prepare_evidence()
    except Exception:  # the evidence event will report it in words; the answer itself is not affected
        log.exception("could not prepare the Santa evidence")


TIMELINE_TASKS = {"Caption": "caption", "Tags": "classify"}
NO_BANK = ("No caption bank of yours: answers use each checkpoint's own memory bank. Upload a .txt (one caption per "
           "line) or a .csv with a 'caption' column, up to 50,000 lines; it stays in this browser session only.")


def _upload_path(file) -> str | None:
    """What a gr.File / gr.UploadButton hands over (a path, or a FileData-like dict from API callers)."""
    if file is None:
        return None
    if isinstance(file, dict):
        file = file.get("path")
    return str(file) if file else None


def _clock(seconds: float) -> str:
    m, s = divmod(float(seconds), 60)
    return f"{int(m)}:{s:04.1f}"


def _frame(headers: list[str], rows: list[list]):
    import pandas as pd

    return pd.DataFrame(rows, columns=headers)


def _csv_file(kind: str, headers: list[str], rows: list[list]) -> str:
    """A CSV in a fresh temporary folder (Gradio serves it as a download)."""
    folder = Path(tempfile.mkdtemp(prefix=f"mats-{kind}-"))
    path = folder / f"mats-{kind}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(headers)
        w.writerows(rows)
    return str(path)


TAGS_SHOWN = 5


def tags_markdown(tags: list[tuple[str, float]]) -> str:
    """One line for the page: the AudioSet classes the encoder heard, with their scores."""
    heard = " · ".join(f"{markdown_literal(n)} {v:.2f}" for n, v in tags)
    return f"**Heard (AudioSet tags from the encoder):** {heard}"


def evidence_markdown(ev: dict) -> str:
    """Santa evidence for the page: the top captions with their weights, lambda, and the familiarity cue in words."""
    lam = ev["strength"]
    bank = "your caption bank" if ev.get("bank") == "yours" else "the checkpoint's memory bank"
    if lam > 0:
        head = (f"**What Santa leaned on** (λ = {lam:.2f}: the model heard {100 * (1 - lam):.0f} % the clip and "
                f"{100 * lam:.0f} % these captions from {bank}, mixed by weight)")
    else:
        head = (f"**What Santa would lean on** (λ = 0: this answer used the clip alone; raise λ to mix in these "
                f"captions from {bank})")
    lines = [head, "", "| caption | weight | similarity to the clip |", "|---|---:|---:|"]
    for c in ev["captions"]:
        lines.append(f"| {markdown_literal(c['text'])} | {c['weight']:.2f} | {c['similarity']:.2f} |")
    level, _, words = ev["note"].partition(":")
    lines += ["", f"**{markdown_literal(level)}:**{markdown_literal(words)} (Nearest caption: "
                  f"“{markdown_literal(ev['nearest'])}”, similarity {ev['nearest_similarity']:.2f}.)"]
    return "\n".join(lines)


def label_evidence_markdown(ev: dict) -> str:
    """Classify's Santa over the typed labels, for the page: the labels it mixed in with their weights."""
    lam = ev["strength"]
    if lam > 0:
        head = (f"**What Santa leaned on** (λ = {lam:.2f}: the model heard {100 * (1 - lam):.0f} % the clip and "
                f"{100 * lam:.0f} % your labels' sentences, “the sound of …”, mixed by weight)")
    else:
        head = "**What Santa would lean on** (λ = 0: these tags used the clip alone; raise λ to mix in your labels)"
    lines = [head, "", "| label | weight | similarity to the clip |", "|---|---:|---:|"]
    lines += [f"| {markdown_literal(c['text'])} | {c['weight']:.2f} | {c['similarity']:.2f} |" for c in ev["labels"]]
    return "\n".join(lines)


def bank_markdown(user: UserBank, built, model_label: str | None) -> str:
    src = user.captions
    skipped = f" Skipped {src.skipped:,} line{'s' if src.skipped != 1 else ''}: " + "; ".join(
        f"{n:,} {why}" for why, n in src.reasons.items()) + "." if src.skipped else ""
    dup = len(src.texts) - built.unique
    dup_note = f" {dup:,} repeated line{'s' if dup != 1 else ''} embedded once." if dup else ""
    who = f" with {markdown_literal(model_label)}'s encoder" if model_label else ""
    return (f"**Your caption bank: {built.unique:,} captions** from {markdown_literal(user.name)} "
            f"({src.lines:,} lines read), built in **{built.seconds:.1f} s**{who}.{dup_note}{skipped} "
            "Every task uses it now, in this browser session only; remove it to go back to the checkpoint's bank.")


SANTA_INFO = "0 = audio only; higher blends in similar training captions to bridge the audio-text gap."


def no_model_markdown(registry: ModelRegistry) -> str:
    """The banner shown instead of answers when no checkpoint can be used."""
    lines = ["### No usable model yet", HOW_TO_GET_A_MODEL]
    for c in registry.problems:
        lines.append(f"- {markdown_literal(c.source)}: {markdown_literal(c.problem or '')}")
    return "\n\n".join(lines)
