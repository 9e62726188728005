"""The demo's public API, called the way users call it: with ``gradio_client`` over HTTP."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent  # `demo/` imports through pyproject's pytest pythonpath = ["."]
pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

DOG = str(ROOT / "assets" / "examples" / "dog.flac")
# gradio's queue uses pandas options that pandas 3 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")
SETTINGS = [0.3, 1, 8, False, 1.0]  # santa, beams, max_new_tokens, sample, temperature


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tiny_ckpt_gpt2, tiny_ckpt_llama):
    from demo.models import ModelRegistry
    from demo.ui import build_demo, launch_kwargs

    registry = ModelRegistry.from_sources([str(tiny_ckpt_gpt2), str(tiny_ckpt_llama)], device="cpu")
    demo = build_demo(registry)
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True,
                **launch_kwargs())
    try:
        client = gradio_client.Client(demo.local_url, verbose=False, download_files=False)
        yield client, [c.source for c in registry.usable]
    finally:
        demo.close()


def test_named_endpoints_are_stable(served):
    client, _ = served
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(named) == {"/caption", "/classify", "/ask", "/compare", "/santa", "/bank", "/bank_remove", "/timeline",
                          "/batch", "/tags"}
    params = [p["parameter_name"] for p in named["/caption"]["parameters"]]
    assert params == ["audio", "model", "santa", "beams", "max_new_tokens", "sample", "temperature"]
    params = {name: [p["parameter_name"] for p in named[name]["parameters"]] for name in named}
    assert params["/santa"] == ["audio", "model", "santa"]
    assert params["/tags"] == ["audio", "model"]
    assert params["/bank"] == ["file", "model"] and params["/bank_remove"] == []
    assert params["/timeline"] == ["audio", "task", "model", "santa", "beams", "max_new_tokens", "sample", "temperature"]
    assert params["/batch"] == ["files", "labels", "model", "santa", "beams", "max_new_tokens", "sample", "temperature"]


def test_each_endpoint_answers(served):
    client, (gpt2, llama) = served
    clip = gradio_client.handle_file(DOG)

    caption, status = client.predict(clip, gpt2, *SETTINGS, api_name="/caption")
    assert isinstance(caption, str) and caption and "full answer" in status

    tags, scores, status = client.predict(clip, "dog, rain", llama, *SETTINGS, api_name="/classify")
    assert tags and "full answer" in status
    assert {c["label"] for c in scores["confidences"]} == {"dog", "rain"}

    answer, status = client.predict(clip, "What is making the sound?", llama, *SETTINGS, api_name="/ask")
    assert answer and "full answer" in status

    a, b, status_a, status_b = client.predict(clip, "Caption", "", gpt2, llama, *SETTINGS, api_name="/compare")
    assert a and b and "full answer" in status_a and "full answer" in status_b
    assert a == caption  # same clip, same greedy settings, same model: same answer


def test_streaming_through_the_client(served):
    client, (gpt2, _) = served
    job = client.submit(gradio_client.handle_file(DOG), gpt2, *SETTINGS, api_name="/caption")
    partial = [text for text, _ in job]
    assert len(partial) >= 2 and partial[-1] == job.outputs()[-1][0]


def test_errors_reach_the_caller_and_the_server_keeps_serving(served):
    client, (gpt2, _) = served
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="question is empty"):
        client.predict(gradio_client.handle_file(DOG), "  ", gpt2, *SETTINGS, api_name="/ask")
    with pytest.raises(AppError, match="No clip yet"):
        client.predict(None, gpt2, *SETTINGS, api_name="/caption")
    caption, _ = client.predict(gradio_client.handle_file(DOG), gpt2, *SETTINGS, api_name="/caption")
    assert caption


# ---------------------------------------------------------------------------------------------- junk in, clear words out
def _wav(tmp, name, data, sr=16000, subtype=None):
    import numpy as np
    import soundfile as sf

    path = tmp / name
    sf.write(str(path), np.asarray(data), sr, subtype=subtype)
    return path


def _bad_inputs(tmp):
    """(id, endpoint, args builder, words the message must hold). ``M`` stands for a usable model."""
    import numpy as np

    tone = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    up = gradio_client.handle_file
    silent = _wav(tmp, "silent.wav", np.zeros(16000, np.float32))
    one = _wav(tmp, "one.wav", np.array([0.5], np.float32))
    dc = _wav(tmp, "dc.wav", np.full(16000, 0.4, np.float32))
    nan = _wav(tmp, "nan.wav", np.full(1600, np.nan, np.float32), subtype="FLOAT")
    slow = _wav(tmp, "slow.wav", tone[:100], sr=1)
    corrupt = tmp / "rock & roll's <i>.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is text, not audio")
    midi = tmp / "tune.mid"
    midi.write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60" + bytes(40))
    empty = tmp / "empty.wav"
    empty.write_bytes(b"")
    good = up(DOG)
    s = list(SETTINGS)  # santa, beams, max_new_tokens, sample, temperature

    def cap(clip=good, santa=s[0], beams=s[1], tokens=s[2], sample=s[3], temp=s[4], model="M"):
        return "/caption", [clip, model, santa, beams, tokens, sample, temp]

    return [
        ("santa-text", *cap(santa="abc"), "'santa' must be a number between 0 and 1, got 'abc'"),
        ("santa-nan-text", *cap(santa="nan"), "'santa' must be a number between 0 and 1, got 'nan'"),
        ("santa-high", *cap(santa=2), "'santa' must be between 0 and 1, got 2"),
        ("santa-negative", *cap(santa=-0.5), "'santa' must be between 0 and 1, got -0.5"),
        ("santa-list", *cap(santa=[0.3]), "'santa' must be a number"),
        ("tokens-text", *cap(tokens="30"), "'max_new_tokens' must be a number between 4 and 128, got '30'"),
        ("tokens-huge", *cap(tokens=10**9), "'max_new_tokens' must be between 4 and 128"),
        ("beams-zero", *cap(beams=0), "'beams' must be between 1 and 8, got 0"),
        ("beams-fraction", *cap(beams=2.7), "Beam size must be a whole number, got 2.7"),
        ("sample-text", *cap(sample="no"), "'sample' must be true or false, got 'no'"),
        ("sample-number", *cap(sample=1), "'sample' must be true or false, got 1"),
        ("temperature-text", *cap(temp="hot"), "'temperature' must be a number"),
        ("temperature-huge", *cap(temp=1e308, sample=True), "'temperature' must be between 0.1 and 2"),
        ("clip-server-path", *cap(clip="/etc/passwd"), "must be an uploaded audio file"),
        ("clip-filedata-path", *cap(clip={"path": "/etc/passwd"}), "must be an uploaded audio file"),
        # With FileData meta, gradio_client uploads the caller's own file: it is read as an upload, and refused clearly.
        ("clip-client-uploads-its-file", *cap(clip={"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}),
         "Could not read hostname"),
        ("clip-dotdot", *cap(clip={"path": "../../../../etc/passwd"}), "must be an uploaded audio file"),
        ("clip-file-url", *cap(clip="file:///etc/passwd"), "must be an uploaded audio file"),
        ("clip-local-url", *cap(clip={"path": "http://127.0.0.1:9/x.wav", "url": "http://127.0.0.1:9/x.wav",
                                      "meta": {"_type": "gradio.FileData"}}), "must be an uploaded audio file"),
        ("clip-number", *cap(clip=5), "must be an uploaded audio file"),
        ("clip-list", *cap(clip=[1, 2, 3]), "must be an uploaded audio file"),
        ("clip-none", *cap(clip=None), "No clip yet"),
        ("clip-silent", *cap(clip=up(str(silent))), "silent (every sample is zero)"),
        ("clip-one-sample", *cap(clip=up(str(one))), "only 1 sample"),
        ("clip-dc", *cap(clip=up(str(dc))), "constant DC offset"),
        ("clip-nan", *cap(clip=up(str(nan))), "NaN or infinite"),
        ("clip-1-hz-header", *cap(clip=up(str(slow))), "outside the supported range"),
        ("clip-corrupt-hostile-name", *cap(clip=up(str(corrupt))), "Could not read rock &amp; roll's"),
        ("clip-midi", *cap(clip=up(str(midi))), "Unsupported audio format '.mid'"),
        ("clip-empty", *cap(clip=up(str(empty))), "empty"),
        ("model-unknown", *cap(model="someone/else"), "'model' must be one of"),
        ("model-none", *cap(model=""), "'model' must be one of"),
        ("model-number", *cap(model=7), "'model' must be text, got 7"),
        ("ask-empty", "/ask", [good, "   ", "M", *s], "The question is empty"),
        ("ask-too-long", "/ask", [good, "why " * 150, "M", *s], "keep it under 500"),
        ("ask-beyond-context", "/ask", [good, "🦆" * 499, "M", *s], "Ask a shorter question"),
        ("ask-number", "/ask", [good, 42, "M", *s], "'question' must be text, got 42"),
        ("labels-only-commas", "/classify", [good, " , ,, ", "M", *s], "No labels were read"),
        ("labels-too-many", "/classify", [good, ",".join(f"l{i}" for i in range(40)), "M", *s], "too many"),
        ("compare-task", "/compare", [good, "Dance", "", "M", "M", *s], "'task' must be one of 'Caption', 'Classify', 'Ask'; got 'Dance'"),
        ("santa-strength", "/santa", [good, "M", 2], "'santa' must be between 0 and 1, got 2"),
        ("santa-silent", "/santa", [up(str(silent)), "M", 0.3], "silent (every sample is zero)"),
        ("timeline-task", "/timeline", [good, "Dance", "M", *s], "'task' must be one of 'Caption', 'Tags'; got 'Dance'"),
        ("timeline-corrupt", "/timeline", [up(str(corrupt)), "Caption", "M", *s], "Could not read rock &amp; roll's"),
        ("batch-server-path", "/batch", [["/etc/passwd"], "", "M", *s], "'files' must be uploaded files"),
        ("batch-labels", "/batch", [[good], " , ,", "M", *s], "No labels were read"),
        ("bank-server-path", "/bank", ["/etc/passwd", "M"], "'file' must be uploaded files"),
        ("bank-none", "/bank", [None, "M"], "No caption file yet"),
    ]


def test_bad_inputs_get_titled_single_escaped_messages_and_the_server_keeps_serving(served, tmp_path):
    from gradio_client.exceptions import AppError

    client, (gpt2, _) = served
    rows = _bad_inputs(tmp_path)
    assert len(rows) >= 30
    failures = []
    for name, endpoint, args, words in rows:
        args = [gpt2 if a == "M" else a for a in args]
        try:
            client.predict(*args, api_name=endpoint)
            failures.append(f"{name}: no error")
            continue
        except AppError as e:
            message, title = e.message or "", getattr(e, "title", "")
        except Exception as e:  # anything else is the opaque kind of failure this test exists to catch
            failures.append(f"{name}: {type(e).__name__}: {e}")
            continue
        if words not in message:
            failures.append(f"{name}: {message!r} lacks {words!r}")
        if not title or title == "Error":
            failures.append(f"{name}: untitled ({title!r})")
        if any(bad in message for bad in ("&#x27;", "&amp;amp;", "&amp;lt;", "&amp;#", "Traceback", "upstream")):
            failures.append(f"{name}: escaped twice or opaque: {message!r}")
    too_few = _raw_call(client.src, "caption", [None, gpt2])  # gradio_client itself fills in missing values
    if "This endpoint takes 7 values (audio, model, santa, beams, max_new_tokens, sample, temperature), got 2" \
            not in too_few or "Invalid request" not in too_few:
        failures.append(f"too-few-values: {too_few[-500:]}")
    server_file = _raw_call(client.src, "caption", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
                                                    gpt2, *SETTINGS])  # a server path sent as if uploaded
    if "must be an uploaded audio file" not in server_file or "root:" in server_file:
        failures.append(f"server-file: {server_file[-500:]}")
    caption, _ = client.predict(gradio_client.handle_file(DOG), gpt2, *SETTINGS, api_name="/caption")
    assert caption  # still serving
    assert not failures, "\n".join(failures)


def _raw_call(url: str, endpoint: str, data: list) -> str:
    """The server's whole answer to a bare HTTP call (what any client, not only gradio_client, may send)."""
    import json
    import urllib.request

    base = url.rstrip("/") + "/gradio_api/call/" + endpoint
    req = urllib.request.Request(base, data=json.dumps({"data": data}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        event = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{base}/{event}", timeout=60) as r:
        return r.read().decode()


# ---------------------------------------------------------------------------------------------- beyond one answer
def test_santa_evidence_endpoint(served):
    client, (gpt2, _) = served
    clip = gradio_client.handle_file(DOG)
    text, data = client.predict(clip, gpt2, 0.3, api_name="/santa")
    assert data["strength"] == 0.3 and 1 <= len(data["captions"]) <= 5 and data["bank"] == "checkpoint"
    assert all(set(c) == {"text", "weight", "similarity"} for c in data["captions"])
    assert data["familiarity"] in ("familiar", "partly familiar", "unfamiliar")
    assert "What Santa leaned on" in text and data["captions"][0]["text"] in text and "λ = 0.30" in text
    _, zero = client.predict(clip, gpt2, 0.0, api_name="/santa")
    assert zero["strength"] == 0.0
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="No clip yet"):
        client.predict(None, gpt2, 0.3, api_name="/santa")


def test_your_caption_bank_is_used_by_every_task_in_this_session_only(served, tmp_path):
    from gradio_client.exceptions import AppError

    client, (gpt2, _) = served
    clip = gradio_client.handle_file(DOG)
    mine = tmp_path / "harbour.txt"
    mine.write_text("\n".join(f"a ship horn sounds over the harbour {i}" for i in range(40)) + "\nbird.wav\n")
    status = client.predict(gradio_client.handle_file(str(mine)), gpt2, api_name="/bank")
    assert "Your caption bank: 40 captions" in status and "built in" in status and "Skipped 1 line" in status
    _, data = client.predict(clip, gpt2, 0.3, api_name="/santa")
    assert data["bank"] == "yours" and data["bank_size"] == 40
    assert all(c["text"].startswith("a ship horn") for c in data["captions"])
    _, status = client.predict(clip, gpt2, *SETTINGS, api_name="/caption")
    assert "with your caption bank" in status
    other = gradio_client.Client(client.src, verbose=False, download_files=False)  # another visitor
    _, theirs = other.predict(clip, gpt2, 0.3, api_name="/santa")
    assert theirs["bank"] == "checkpoint"
    for name, content, words in [("empty.txt", b"", "is empty"), ("blob.txt", bytes(range(256)) * 4, "looks binary"),
                                 ("cols.csv", b"file,label\na.wav,dog\n", "no caption column"),
                                 ("big.txt", b"a caption\n" * 50_001, "the limit is 50,000"),
                                 ("notes.pdf", b"%PDF-1.4", "'file' must be a .txt or .csv file, got 'notes.pdf'")]:
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(AppError, match=words):
            client.predict(gradio_client.handle_file(str(bad)), gpt2, api_name="/bank")
    assert "Removed your caption bank" in client.predict(api_name="/bank_remove")
    _, data = client.predict(clip, gpt2, 0.3, api_name="/santa")
    assert data["bank"] == "checkpoint"


def _sweep(seconds: float, sr: int = 16000):
    import numpy as np

    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * (200 + 30 * t) * t)).astype(np.float32)


def test_timeline_endpoint(served, tmp_path):
    import csv

    client, (_, llama) = served
    path = _wav(tmp_path, "long.wav", _sweep(25.0))
    table, image, csv_file, status = client.predict(gradio_client.handle_file(str(path)), "Caption", llama,
                                                    *SETTINGS, api_name="/timeline")
    assert table["headers"][:4] == ["#", "start", "end", "caption"]
    assert [r[1:3] for r in table["data"]] == [["0:00.0", "0:10.0"], ["0:10.0", "0:20.0"], ["0:15.0", "0:25.0"]]
    assert all(r[3] and r[4] for r in table["data"]) and "3 windows" in status
    with open(csv_file if isinstance(csv_file, str) else csv_file["path"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:4] == ["window", "start_s", "end_s", "caption"] and len(rows) == 4
    again = client.predict(gradio_client.handle_file(str(path)), "Caption", llama, *SETTINGS, api_name="/timeline")
    assert again[0]["data"] == table["data"]  # deterministic windows, greedy answers
    tags, *_ = client.predict(gradio_client.handle_file(DOG), "Tags", llama, *SETTINGS, api_name="/timeline")
    assert tags["headers"][3] == "tags" and len(tags["data"]) == 1
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="No clip yet"):
        client.predict(None, "Caption", llama, *SETTINGS, api_name="/timeline")


def test_batch_endpoint(served, tmp_path):
    import csv
    import zipfile

    import numpy as np

    client, (gpt2, _) = served
    silent = _wav(tmp_path, "silent.wav", np.zeros(16000, np.float32))
    z = tmp_path / "more.zip"
    with zipfile.ZipFile(z, "w") as zz:
        zz.write(DOG, "sub/dog_again.flac")
        zz.writestr("../escape.wav", b"x")
    up = gradio_client.handle_file
    table, csv_file, status = client.predict([up(DOG), up(str(silent)), up(str(z))], "dog, rain", gpt2, *SETTINGS,
                                             api_name="/batch")
    assert table["headers"] == ["file", "caption", "tags", "score: dog", "score: rain", "error"]
    rows = {r[0]: r for r in table["data"]}
    assert set(rows) == {"dog.flac", "silent.wav", "more.zip/sub/dog_again.flac", "more.zip/../escape.wav"}
    assert rows["dog.flac"][1] and rows["dog.flac"][1] == rows["more.zip/sub/dog_again.flac"][1]
    assert abs(rows["dog.flac"][3] + rows["dog.flac"][4] - 1) < 1e-3 and not rows["dog.flac"][5]
    assert "silent" in rows["silent.wav"][5] and "unsafe path" in rows["more.zip/../escape.wav"][5]
    assert "2 of 4 files answered" in status
    with open(csv_file if isinstance(csv_file, str) else csv_file["path"], newline="") as f:
        assert len(list(csv.reader(f))) == 5
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="No files yet"):
        client.predict([], "", gpt2, *SETTINGS, api_name="/batch")


def test_tags_endpoint_says_when_the_encoder_does_not_tag(served):
    """The tiny models listen through a CLAP tower, which names no AudioSet classes: a clear error, not a crash
    (the YAMNet case is tests/test_demo.py's evidence-panel test, on the handler the endpoint calls)."""
    client, (gpt2, _) = served
    with pytest.raises(Exception, match="AudioSet"):
        client.predict(gradio_client.handle_file(DOG), gpt2, api_name="/tags")
