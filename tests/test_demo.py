"""The demo's handlers, clip preparation and model registry, called directly with tiny random models."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `demo/` is not an installed package; plain `pytest` must find it too
    sys.path.insert(0, str(ROOT))
gr = pytest.importorskip("gradio")

from demo.clips import count_windows, markdown_literal, prepare_clip, spectrogram_image  # noqa: E402
from demo.handlers import EMPTY_ANSWER, Handlers, Settings, parse_labels  # noqa: E402
from demo.models import ModelRegistry, inspect_source  # noqa: E402
from mats.audio import windows  # noqa: E402
from mats.errors import AudioError, CheckpointError  # noqa: E402

EXAMPLES = ROOT / "assets" / "examples"
DOG = str(EXAMPLES / "dog.flac")
GREEDY = dict(santa=0.3, beams=1, max_new_tokens=8, sample=False, temperature=1.0)


def settings(**kw):
    s = {**GREEDY, **kw}
    return [s["santa"], s["beams"], s["max_new_tokens"], s["sample"], s["temperature"]]


@pytest.fixture(scope="module")
def registry(tiny_ckpt_gpt2, tiny_ckpt_llama):
    return ModelRegistry.from_sources([str(tiny_ckpt_gpt2), str(tiny_ckpt_llama)], device="cpu")


@pytest.fixture(scope="module")
def handlers(registry):
    return Handlers(registry)


def last(gen):
    out = list(gen)
    assert out, "the handler yielded nothing"
    return out


# ---------------------------------------------------------------------------------------------- example clips
def test_example_clips_are_shipped_with_attribution():
    clips = sorted(p.name for p in EXAMPLES.glob("*.flac"))
    assert clips == ["church_bells.flac", "crying_baby.flac", "dog.flac", "rain.flac", "speech.flac"]
    attribution = (EXAMPLES / "ATTRIBUTION.md").read_text()
    for name in clips:
        assert f"`{name}`" in attribution
    assert attribution.count("| CC0 |") == 4 and "freesound.org" in attribution and "piczak2015dataset" in attribution
    assert "espeak-ng" in attribution and "CC0 1.0" in attribution  # the synthesized spoken sentence
    for p in EXAMPLES.glob("*.flac"):
        info = sf.info(str(p))
        assert (info.samplerate, info.channels) == (44100, 1)
        # ESC-50 excerpts are exactly 5 s; the spoken sentence is one sentence long.
        assert info.duration == pytest.approx(5.0) if p.name != "speech.flac" else 3.0 < info.duration < 10.0


# ---------------------------------------------------------------------------------------------- clip preparation
def test_prepare_clip_describes_what_was_done():
    p = prepare_clip(DOG, 48000, 10.0)
    assert p.clip.sample_rate == 48000 and p.clip.waveform.shape == (5 * 48000,)
    text = "\n".join(p.facts)
    assert "5.00 s" in text and "44100 Hz" in text and "mono" in text
    assert "resampled 44100 Hz → 48000 Hz" in text
    assert "1 window of 10 s" in text and "capped" not in text
    assert p.clip.info.n_windows == 1 and 0 < p.peak <= 1


def test_prepare_clip_downmixes_and_caps():
    sr = 16000
    rng = np.random.default_rng(0)
    left = (0.3 * rng.standard_normal(sr * 5)).astype(np.float32)
    stereo = np.stack([left, -left * 0.5], axis=1)  # (samples, channels) as Gradio gives it
    p = prepare_clip((sr, stereo), 16000, 2.0, max_seconds=3.0)
    text = "\n".join(p.facts)
    assert "2 channels" in text and "downmixed 2 channels to mono by averaging" in text
    assert "capped to the first 3.0 s" in text and p.clip.info.capped
    assert p.clip.waveform.shape == (3 * sr,)
    np.testing.assert_allclose(p.clip.waveform, (left[: 3 * sr] - 0.5 * left[: 3 * sr]) / 2, atol=1e-6)
    assert "not resampled" in text and "2 windows of 2 s" in text


@pytest.mark.parametrize("n,w", [(1, 10), (10, 10), (11, 10), (20, 10), (25, 10), (100, 7)])
def test_count_windows_matches_the_library(n, w):
    assert count_windows(n, w) == len(windows(np.ones(n, np.float32), w))


def test_prepare_clip_refuses_bad_input(tmp_path):
    with pytest.raises(AudioError, match="No clip yet"):
        prepare_clip(None, 48000, 10.0)
    with pytest.raises(AudioError, match="silent"):
        prepare_clip((16000, np.zeros(16000, np.int16)), 48000, 10.0)
    with pytest.raises(AudioError, match="practically silent"):
        prepare_clip((16000, np.full(16000, 1e-6, np.float32)), 48000, 10.0)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        prepare_clip(str(empty), 48000, 10.0)
    no_frames = tmp_path / "no_frames.wav"
    sf.write(str(no_frames), np.zeros(0, np.int16), 16000)
    with pytest.raises(AudioError, match="no samples|empty"):
        prepare_clip(str(no_frames), 48000, 10.0)
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio" * 3)
    with pytest.raises(AudioError, match="corrupt"):
        prepare_clip(str(corrupt), 48000, 10.0)
    odd = tmp_path / "song.m4a"
    odd.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(200))
    with pytest.raises(AudioError, match="Unsupported audio format '.m4a'"):
        prepare_clip(str(odd), 48000, 10.0)


def test_prepare_clip_refuses_an_hour_long_file_from_its_header(tmp_path):
    path = tmp_path / "hour.wav"
    sf.write(str(path), np.zeros(3600 * 1000, np.int16), 1000, subtype="PCM_U8")  # 1 h at 1 kHz, 3.6 MB
    start = time.perf_counter()
    with pytest.raises(AudioError, match=r"hour\.wav is 60 min long.*up to 10 min.*Trim it"):
        prepare_clip(str(path), 48000, 10.0)
    assert time.perf_counter() - start < 1.0  # refused from the header, never decoded


def test_spectrogram_image():
    p = prepare_clip(DOG, 48000, 10.0)
    img = spectrogram_image(p.clip.waveform, p.clip.sample_rate)
    assert img.dtype == np.uint8 and img.shape == (220, 640, 3)
    assert img.std() > 10  # a picture, not a blank canvas


# ---------------------------------------------------------------------------------------------- registry
def test_registry_without_checkpoints_still_builds_the_page(tmp_path, monkeypatch):
    import demo.models

    monkeypatch.chdir(tmp_path)  # no assets/ here or in the "repository": the default checkpoints do not exist
    monkeypatch.setattr(demo.models, "REPO_ROOT", tmp_path)
    reg = ModelRegistry.from_sources(None)
    assert reg.choices == [] and reg.dropdown_choices() == []
    with pytest.raises(CheckpointError, match="python app.py --model"):
        reg.get(None)
    h = Handlers(reg)
    with pytest.raises(gr.Error, match="mats tiny"):
        last(h.caption(DOG, None, *settings()))
    from demo.ui import build_demo

    demo = build_demo(reg)
    assert isinstance(demo, gr.Blocks)


def test_default_checkpoints_are_found_from_any_directory(tmp_path, monkeypatch):
    import demo.models

    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    (repo / "assets" / "mats-smollm2").mkdir(parents=True)
    (repo / "assets" / "mats-smollm2" / "config.json").write_text("{}")
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(demo.models, "REPO_ROOT", repo)
    reg = ModelRegistry.from_sources(None)
    # Only the existing default is offered (the missing GPT-2 one is not mistaken for a Hub id 'assets/...').
    assert reg.dropdown_choices() == [("mats-smollm2", "assets/mats-smollm2")]
    assert reg.choices[0].location == str(repo / "assets" / "mats-smollm2")


def test_model_menu_opens_on_the_strongest_shipped_checkpoint(tmp_path, monkeypatch):
    import demo.models

    repo = tmp_path / "repo"
    for name in ("mats-gpt2-mini", "mats-smollm2"):
        (repo / "assets" / name).mkdir(parents=True)
        (repo / "assets" / name / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo.models, "REPO_ROOT", repo)
    reg = ModelRegistry.from_sources(None)
    assert [c[1] for c in reg.dropdown_choices()] == ["assets/mats-smollm2", "assets/mats-gpt2-mini"]
    from demo.ui import build_demo

    page = build_demo(reg)
    menu = next(b for b in page.blocks.values() if getattr(b, "elem_id", None) == "model")
    assert menu.value == "assets/mats-smollm2"
    # Models named on the command line keep their order: the first one given is the default.
    assert ModelRegistry.from_sources([str(repo / "assets" / "mats-gpt2-mini")]).dropdown_choices()[0][0] == \
        "mats-gpt2-mini"


def test_bank_and_evidence_handlers_say_what_is_wrong(handlers, registry, tmp_path):
    src = registry.usable[0].source
    with pytest.raises(gr.Error, match="No caption file yet"):
        handlers.bank_upload(None, src)
    bad = tmp_path / "x.csv"
    bad.write_text("file,label\na.wav,dog\n")
    with pytest.raises(gr.Error, match="no caption column") as e:
        handlers.bank_upload(str(bad), src)
    assert e.value.title == "Problem with the caption file"
    with pytest.raises(gr.Error, match="between 0 and 1"):
        handlers.evidence(DOG, src, 3)
    with pytest.raises(gr.Error, match="No clip yet"):
        handlers.timeline(None, "Caption", src, *settings())
    with pytest.raises(gr.Error, match="Unknown timeline task"):
        handlers.timeline(DOG, "Dance", src, *settings())
    with pytest.raises(gr.Error, match="No files yet"):
        handlers.batch([], "", src, *settings())
    assert "No caption bank of yours" in handlers.bank_remove()


def test_first_use_of_a_model_prepares_the_evidence_in_the_background(tiny_ckpt_gpt2):
    reg = ModelRegistry.from_sources([str(tiny_ckpt_gpt2)], device="cpu")
    h = Handlers(reg)
    h.clip_facts(DOG, reg.usable[0].source)  # an upload loads the model
    model = reg.get(reg.usable[0].source)
    deadline = time.monotonic() + 60
    while model.santa.clean is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert model.santa.clean is not None and model.santa.clean.shape[0] == len(model.santa)
    text, data = h.evidence(DOG, reg.usable[0].source, 0.3)
    assert data["bank"] == "checkpoint" and "What Santa leaned on" in text


def test_inspect_source_explains_problems(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "does not exist" in inspect_source(str(tmp_path / "nope")).problem
    (tmp_path / "empty").mkdir()
    assert "no config.json" in inspect_source(str(tmp_path / "empty")).problem
    assert "HF_HUB_OFFLINE" in inspect_source("someone/not-downloaded-mats").problem
    reg = ModelRegistry.from_sources([str(tmp_path / "nope")])
    assert reg.usable == [] and "unavailable" in reg.status_lines()[0]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub = inspect_source("someone/not-downloaded-mats")  # online: downloaded on first use, by mats
    assert hub.usable and hub.location == "someone/not-downloaded-mats" and not hub.local


def test_registry_loads_lazily_once_and_shares(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    calls = []

    def slow_loader(source, device):
        calls.append(source)
        time.sleep(0.2)
        return object()

    reg = ModelRegistry.from_sources([str(tmp_path)], loader=slow_loader)
    assert calls == [] and not reg.is_loaded(str(tmp_path))  # nothing loaded at start
    got = []
    threads = [threading.Thread(target=lambda: got.append(reg.get(str(tmp_path)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 4 and all(g is got[0] for g in got)
    assert reg.get(reg.choices[0].label) is got[0]  # the label works as well as the source
    with pytest.raises(CheckpointError, match="Unknown model"):
        reg.get("something-else")


def test_defaults_come_from_the_checkpoint(registry, handlers):
    src = registry.usable[0].source
    d = registry.defaults(src)
    assert (d.santa, d.has_santa, d.num_beams, d.max_new_tokens) == (0.3, True, 2, 8)
    santa, max_tokens = handlers.model_defaults(src)
    assert santa["value"] == 0.3 and max_tokens["value"] == 8


# ---------------------------------------------------------------------------------------------- handlers
def test_settings_and_labels_are_checked():
    assert Settings.parse(0.3, 2.0, 16.0, False, 1.0).num_beams == 2
    assert Settings.parse(0.3, 1, 8, False, 0.7).gen_kwargs() == {"max_new_tokens": 8, "do_sample": False}
    assert Settings.parse(0.3, 1, 8, True, 0.7).gen_kwargs()["temperature"] == 0.7
    for bad in [(1.5, 1, 8, False, 1), (0.3, 0, 8, False, 1), (0.3, 1, 9999, False, 1), (0.3, 1, 8, True, 0)]:
        with pytest.raises(Exception, match="must be between"):
            Settings.parse(*bad)
    assert parse_labels(" dog, rain;siren\n dog ,") == ["dog", "rain", "siren"]
    assert parse_labels("") == [] and parse_labels(None) == [] and parse_labels("  ") == []
    with pytest.raises(Exception, match="No labels were read from ', ,;'"):
        parse_labels(" , ,; ")
    for bad, words in [(("abc", 1, 8, False, 1), "Santa strength must be a number, got 'abc'"),
                       ((0.3, 2.7, 8, False, 1), "Beam size must be a whole number, got 2.7"),
                       ((0.3, 1, "lots", False, 1), "Max new tokens must be a number"),
                       ((0.3, 1, 8, "no", 1), "Sampling must be true or false, got 'no'"),
                       ((0.3, True, 8, False, 1), "Beam size must be a number, got True"),
                       ((float("nan"), 1, 8, False, 1), "Santa strength must be between 0 and 1")]:
        with pytest.raises(Exception, match=words):
            Settings.parse(*bad)
    assert Settings.parse("0.3", "2", 8, True, 1).num_beams == 2  # numeric text, as a text field sends it


def test_caption_streams_the_greedy_answer(registry, handlers):
    src = registry.usable[0].source
    outs = last(handlers.caption(DOG, src, *settings()))
    texts = [t for t, _ in outs]
    final, status = outs[-1]
    assert final and "full answer" in status and "first token" in status and markdown_literal(registry.label(src)) in status
    assert len(set(texts)) >= 2  # it grew in steps: streamed, not delivered in one piece
    model = registry.get(src)
    expected = model.caption(DOG, santa=0.3, num_beams=1, max_new_tokens=8) or EMPTY_ANSWER
    assert final == expected  # same clip handling and decoding as the library


def test_concurrent_users_share_a_model_safely(registry, handlers):
    src = registry.usable[0].source
    alone = last(handlers.caption(DOG, src, *settings()))[-1][0]
    results, errors = [], []

    def user():
        try:
            results.append(last(handlers.caption(DOG, src, *settings()))[-1][0])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=user) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and results == [alone] * 3  # MATS.lock serialises generate: no mixed-up streams


def test_caption_with_beams_shows_the_leading_hypothesis_then_the_answer(registry, handlers):
    src = registry.usable[0].source
    outs = last(handlers.caption(DOG, src, *settings(beams=2)))
    texts = [t for t, _ in outs if t]
    assert len(set(texts)) >= 2  # the search's best hypothesis so far shows while it runs, not one final piece
    assert "beam 2" in outs[-1][1] and "first token" in outs[-1][1]
    model = registry.get(src)
    assert outs[-1][0] == (model.caption(DOG, santa=0.3, num_beams=2, max_new_tokens=8) or EMPTY_ANSWER)


def test_classify_gives_tags_and_zero_shot_scores(registry, handlers):
    src = registry.usable[1].source
    tags, scores, status = last(handlers.classify(DOG, "dog, rain, church bells", src, *settings()))[-1]
    assert tags and "full answer" in status
    assert list(scores) == ["dog", "rain", "church bells"] and sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    _, no_scores, _ = last(handlers.classify(DOG, "  ", src, *settings()))[-1]
    assert no_scores is None


def test_classify_encodes_the_clip_once_for_tags_and_scores(registry, handlers, monkeypatch):
    src = registry.usable[0].source
    model = registry.get(src)
    calls = []
    real = model.embed_clips
    monkeypatch.setattr(model, "embed_clips", lambda clips, **kw: calls.append(len(clips)) or real(clips, **kw))
    tags, scores, _ = last(handlers.classify(DOG, "dog, rain", src, *settings()))[-1]
    assert calls == [1]
    monkeypatch.undo()
    expected = model.classify(DOG, labels=["dog", "rain"], santa=0.3, num_beams=1, max_new_tokens=8)
    assert scores == pytest.approx(expected["scores"])
    assert tags == (", ".join(expected["tags"]) or EMPTY_ANSWER)


def test_classify_evidence_shows_the_labels_santa_mixed_in(registry, handlers):
    """Typed labels: the panel lists those labels with their Santa weights (what MATS.classify mixed in); none
    typed: the bank captions, as under a caption."""
    src = registry.usable[0].source
    model = registry.get(src)
    text, data = handlers.classify_evidence(DOG, "dog, rain, church bells", src, 0.6)
    assert data["bank"] == "your labels" and data["strength"] == 0.6
    assert {c["text"] for c in data["labels"]} <= {"dog", "rain", "church bells"}
    assert sum(c["weight"] for c in data["labels"]) == pytest.approx(1.0, abs=1e-3)
    expected = model.explain_labels(model.embed_clips([DOG]), ["dog", "rain", "church bells"], santa=0.6)[0]
    assert data["labels"] == expected["labels"]
    assert "your labels' sentences" in text
    assert all(f"| {c['text']} | {c['weight']:.2f} |" in text for c in data["labels"])
    plain, plain_data = handlers.classify_evidence(DOG, "  ", src, 0.6)
    assert "captions" in plain_data and "Nearest caption" in plain
    with pytest.raises(gr.Error, match="between 0 and 1"):
        handlers.classify_evidence(DOG, "dog", src, 2)


def test_ask_and_its_errors(registry, handlers, tmp_path):
    src = registry.usable[1].source
    sampled = settings(sample=True, temperature=0.7)
    answer, status = last(handlers.ask(DOG, "What is making the sound?", src, *sampled))[-1]
    assert answer and "sampling T=0.7" in status
    with pytest.raises(gr.Error, match="question is empty"):
        last(handlers.ask(DOG, "   ", src, *settings()))
    with pytest.raises(gr.Error, match="No clip yet"):
        last(handlers.ask(None, "What is it?", src, *settings()))
    broken = tmp_path / "upload.wav"
    broken.write_bytes(b"not a wav at all" * 10)
    with pytest.raises(gr.Error) as err:
        last(handlers.ask(str(broken), "What is it?", src, *settings()))
    assert err.value.title == "Problem with the clip" and "upload.wav" in err.value.message
    assert str(tmp_path) not in err.value.message  # the server's upload folder is not shown
    with pytest.raises(gr.Error, match="between 0 and 1"):
        last(handlers.ask(DOG, "What is it?", src, *settings(santa=3)))
    # The model still works after all of that.
    assert last(handlers.ask(DOG, "What is it?", src, *settings()))[-1][0]


def test_unexpected_errors_become_clear_messages(registry):
    class Broken:
        encoder = registry.get(registry.usable[0].source).encoder
        device = "cpu"

        def embed_clips(self, clips):
            return None  # the failure comes mid-answer, from stream

        def stream(self, *a, **k):
            raise RuntimeError("boom")
            yield  # pragma: no cover

    reg = ModelRegistry.from_sources([registry.usable[0].source], loader=lambda s, d: Broken())
    with pytest.raises(gr.Error, match=r"Unexpected error \(RuntimeError: boom\).*still running"):
        last(Handlers(reg).caption(DOG, reg.usable[0].source, *settings()))


def test_clip_facts_never_raise(registry, handlers, tmp_path):
    src = registry.usable[0].source
    md, img = handlers.clip_facts(DOG, src)
    assert "44100 Hz" in md and "resampled" in md and img.shape == (220, 640, 3)
    assert handlers.clip_facts(None, src) == ("*No clip yet: record, upload, or pick an example.*", None)
    broken = tmp_path / "x.flac"
    broken.write_bytes(b"fLaC" + bytes(50))
    with pytest.warns(UserWarning, match="corrupt"):  # gr.Warning (a toast in the page) outside a request
        md, img = handlers.clip_facts(str(broken), src)
    assert md.startswith("⚠️") and "x\\.flac" in md and img is None


def test_file_names_are_shown_as_literal_text(registry, handlers, tmp_path):
    import shutil

    hostile = tmp_path / "_x_ [y](javascript-alert(1)) <b>.flac"
    shutil.copy(DOG, hostile)
    md, _ = handlers.clip_facts(str(hostile), registry.usable[0].source)
    assert "\\_x\\_ \\[y\\]\\(javascript\\-alert\\(1\\)\\) &lt;b&gt;\\.flac" in md  # no emphasis, link or tag
    assert "<b>" not in md and "](" not in md


def test_compare_runs_both_models_with_times(registry, handlers):
    a, b = (c.source for c in registry.usable[:2])
    outs = last(handlers.compare(DOG, "Caption", "", a, b, *settings()))
    text_a, text_b, status_a, status_b = outs[-1]
    assert text_a and text_b
    assert markdown_literal(registry.label(a)) in status_a and markdown_literal(registry.label(b)) in status_b
    assert "full answer" in status_a and "full answer" in status_b
    assert any(o[0] and not o[1] for o in outs)  # A streams first, then B
    _, _, _, status_ask = last(handlers.compare(DOG, "Ask", "Is it loud?", a, b, *settings()))[-1]
    assert "full answer" in status_ask
    with pytest.raises(gr.Error, match="question is empty"):
        last(handlers.compare(DOG, "Ask", "", a, b, *settings()))
    with pytest.raises(gr.Error, match="No clip yet"):
        last(handlers.compare(None, "Caption", "", a, b, *settings()))


def test_compare_reports_a_broken_model_in_its_column(registry, tmp_path):
    bad = tmp_path / "bad-ckpt"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    reg = ModelRegistry.from_sources([registry.usable[0].source, str(bad)], device="cpu")
    reg._loaded.update(registry._loaded)  # reuse the loaded tiny model
    with pytest.warns(UserWarning, match="bad-ckpt.*not valid JSON"):
        text_a, text_b, status_a, status_b = last(Handlers(reg).compare(DOG, "Caption", "", reg.choices[0].source,
                                                                        str(bad), *settings()))[-1]
    assert text_a and "full answer" in status_a
    assert text_b == "" and "⚠️" in status_b and "not valid JSON" in status_b


def test_about_lists_loaded_models(registry, handlers):
    registry.get(registry.usable[0].source)
    md = handlers.about_models()
    assert f"**{registry.usable[0].label}**: loaded on `cpu · float32`" in md  # where, and in what precision


def test_page_wires_stable_api_names_and_one_device_queue(registry):
    from demo.ui import build_demo

    demo = build_demo(registry, queue_size=5, concurrency=1)
    public = {fn.api_name: fn for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert set(public) == {"caption", "classify", "ask", "compare", "santa", "bank", "bank_remove", "timeline", "batch",
                           "tags"}
    device = {name: fn for name, fn in public.items() if name != "bank_remove"}  # forgetting a bank needs no device
    assert {fn.concurrency_id for fn in device.values()} == {"mats-cpu"}
    assert all(fn.concurrency_limit == 1 for fn in device.values())
    assert demo._queue.max_size == 5


def test_app_help_and_model_sources(monkeypatch):
    from demo.launch import model_sources, parse_args

    assert model_sources(parse_args(["--model", "a", "--model", "b"])) == ["a", "b"]
    monkeypatch.setenv("MATS_MODELS", "user/x, ./y ,")
    assert model_sources(parse_args([])) == ["user/x", "./y"]
    monkeypatch.delenv("MATS_MODELS")
    assert model_sources(parse_args([])) is None


def test_every_evidence_panel_shows_the_encoders_audioset_tags(tiny_ckpt_yamnet, tiny_ckpt_gpt2):
    """A YAMNet encoder: the caption/ask and classify panels start with the line of tags it heard, the same tags
    as MATS.tags; the tags endpoint returns them; an encoder that does not tag gets no line and a clear error."""
    reg = ModelRegistry.from_sources([str(tiny_ckpt_yamnet), str(tiny_ckpt_gpt2)], device="cpu")
    h = Handlers(reg)
    src, plain_src = reg.usable[0].source, reg.usable[1].source
    model = reg.get(src)
    expected = model.tags(DOG, top=5)
    text, data = h.evidence(DOG, src, 0.3)
    assert text.startswith("**Heard (AudioSet tags from the encoder):**")
    assert [(t["tag"], t["score"]) for t in data["heard"]] == expected
    assert all(markdown_literal(n) in text.splitlines()[0] for n, _ in expected)
    labelled, ldata = h.classify_evidence(DOG, "dog, rain", src, 0.3)
    assert labelled.startswith("**Heard") and ldata["heard"] == data["heard"]
    line, tags = h.tags(DOG, src)
    assert line == text.splitlines()[0] and [t["tag"] for t in tags["tags"]] == [n for n, _ in expected]
    plain, plain_data = h.evidence(DOG, plain_src, 0.3)
    assert not plain.startswith("**Heard") and "heard" not in plain_data
    with pytest.raises(gr.Error, match="YAMNet"):
        h.tags(DOG, plain_src)
    with pytest.raises(gr.Error):
        h.tags(None, src)
