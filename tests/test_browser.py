"""End to end: `python app.py` with two tiny checkpoints, driven by Debian's chromium through Playwright.

Upload a clip, caption it (timing click -> first streamed token -> full answer in the browser), tag it with
zero-shot labels, ask a question (and an empty one), compare two models, and keep a screenshot.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOG = str(ROOT / "assets" / "examples" / "dog.flac")
# Debian's chromium; MATS_CHROMIUM names another build.
CHROMIUM = os.environ.get("MATS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.slow
# CI sets MATS_REQUIRE_BROWSER=1 (after installing chromium), so there a missing browser fails instead of skipping.
REQUIRED = os.environ.get("MATS_REQUIRE_BROWSER", "").strip().lower() in ("1", "true", "yes")
HOW_TO_GET_IT = "apt-get install -y chromium && pip install playwright (never `playwright install`)"


def _need(ok: bool, what: str) -> None:
    """Skip with a visible reason on a machine without the browser; fail where the browser is required."""
    if ok:
        return
    message = f"{what}: browser tests need it ({HOW_TO_GET_IT})"
    if REQUIRED:
        pytest.fail(message + "; MATS_REQUIRE_BROWSER=1 says they must run", pytrace=False)
    pytest.skip(message)


def _has_playwright() -> bool:
    import importlib.util

    return importlib.util.find_spec("playwright") is not None

# Click a button and time, in the page itself, the first non-empty answer and the final status line.
TIMED_CLICK = """
async ([button, output, status]) => {
  const out = document.querySelector(output + " textarea");
  const st = document.querySelector(status);
  const seen = new Set();
  const t0 = performance.now();
  document.querySelector(button).click();
  let first = null;
  return await new Promise((resolve, reject) => {
    const tick = () => {
      const now = performance.now();
      if (out.value) { seen.add(out.value); if (first === null) first = now - t0; }
      if (st.innerText.includes("full answer")) {
        return resolve({first_ms: first, full_ms: now - t0, text: out.value, status: st.innerText,
                        distinct: seen.size});
      }
      if (now - t0 > 60000) return reject(new Error("no answer after 60 s"));
      setTimeout(tick, 2);
    };
    tick();
  });
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")  # session: set up before the session-wide tiny checkpoints
def chromium():
    """Checked before anything is built, so a machine without a browser skips (or fails) at once."""
    _need(_has_playwright(), "the playwright package is not installed")
    _need(Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing")
    return CHROMIUM


@pytest.fixture(scope="module")
def app_url(chromium, tiny_ckpt_gpt2, tiny_ckpt_llama, tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    # MATS_BROWSER_MODELS=a,b runs the page with other checkpoints (the README's screenshots use the shipped ones).
    models = [m for m in os.environ.get("MATS_BROWSER_MODELS", "").split(",") if m] or [tiny_ckpt_gpt2, tiny_ckpt_llama]
    cmd = [sys.executable, "app.py", *[a for m in models for a in ("--model", str(m))],
           "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not serve {url} within 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, proc, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_page_end_to_end(app_url, tmp_path):
    url, proc, log_path = app_url
    shots = tmp_path  # pytest keeps the last few runs' temp dirs: the screenshot stays there to look at
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            outside = []  # the page must work offline: nothing may be fetched from anywhere but the app
            page.on("request", lambda r: outside.append(r.url)
                    if not r.url.startswith((url, "data:", "blob:")) else None)
            page.goto(url)
            expect(page.locator("#caption-btn")).to_be_visible(timeout=30000)
            expect(page.get_by_text("Example clips (CC0: four from ESC-50, one synthesized)")).to_be_visible()

            # Upload: the "Upload file" source button first, then the hidden file input.
            page.locator("#clip").get_by_role("button", name="Upload file").click()
            page.locator("#clip input[type=file]").set_input_files(DOG)
            facts = page.locator("#clip-facts")
            expect(facts).to_contain_text("44100 Hz", timeout=30000)
            expect(facts).to_contain_text("resampled 44100 Hz → 48000 Hz")
            expect(page.locator("#spectrogram img")).to_be_visible(timeout=30000)

            # Caption, timed in the browser (the upload already loaded the model: this is a warm request).
            caption = page.evaluate(TIMED_CLICK, ["#caption-btn", "#caption-out", "#caption-status"])
            assert caption["text"].strip() and caption["first_ms"] is not None
            assert caption["first_ms"] <= caption["full_ms"]

            page.get_by_role("tab", name="Classify").click()
            page.locator("#labels textarea").fill("dog, rain, church bells")
            page.locator("#classify-btn").click()
            expect(page.locator("#classify-status")).to_contain_text("full answer", timeout=60000)
            expect(page.locator("#classify-scores")).to_contain_text("church bells")
            assert page.locator("#classify-out textarea").input_value().strip()
            # Under the tags: the typed labels Santa mixed in, with their weights (not bank captions).
            expect(page.locator("#classify-evidence")).to_contain_text("your labels", timeout=60000)
            expect(page.locator("#classify-evidence table")).to_be_visible()

            page.get_by_role("tab", name="Ask").click()
            page.locator("#question textarea").fill("What is making the sound?")
            ask = page.evaluate(TIMED_CLICK, ["#ask-btn", "#ask-out", "#ask-status"])
            assert ask["text"].strip()
            page.locator("#question textarea").fill("")
            page.locator("#ask-btn").click()
            expect(page.locator('[data-testid="toast-body"].error', has_text="The question is empty").first
                   ).to_be_visible(timeout=30000)

            page.get_by_role("tab", name="Compare").click()
            page.locator("#compare-btn").click()
            expect(page.locator("#compare-b-status")).to_contain_text("full answer", timeout=60000)
            expect(page.locator("#compare-a-status")).to_contain_text("full answer")
            a = page.locator("#compare-a textarea").input_value()
            b = page.locator("#compare-b textarea").input_value()
            assert a.strip() and b.strip()

            page.get_by_text("About MATS and this demo").click()
            expect(page.locator("#models-status")).to_contain_text("loaded on cpu")
            page.screenshot(path=str(shots / "demo.png"), full_page=True)
            record = {
                "caption": caption, "ask": ask, "compare": {"a": a, "b": b,
                "status_a": page.locator("#compare-a-status").inner_text(),
                "status_b": page.locator("#compare-b-status").inner_text()},
                "facts": facts.inner_text(), "screenshot": str(shots / "demo.png"),
            }
            (shots / "timings.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))

            # A corrupt upload: a warning in the clip panel, a clear error on Caption, and the server lives on.
            broken = tmp_path / "broken.wav"
            broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is text, not audio")
            page.locator("#clip").get_by_role("button", name="Clear").click()
            page.locator("#clip").get_by_role("button", name="Upload file").click()
            page.locator("#clip input[type=file]").set_input_files(str(broken))
            expect(facts).to_contain_text("broken.wav", timeout=30000)
            expect(facts).to_contain_text("corrupt")
            expect(page.locator("#caption-out textarea")).to_have_value("")  # the old answer is cleared
            page.get_by_role("tab", name="Caption").click()
            page.locator("#caption-btn").click()
            error_toast = page.locator('[data-testid="toast-body"].error', has_text="Could not read broken.wav")
            expect(error_toast.first).to_be_visible(timeout=30000)
            page.screenshot(path=str(shots / "corrupt-upload.png"))
            print(f"\nbrowser: click -> first token {caption['first_ms']:.0f} ms, -> full answer "
                  f"{caption['full_ms']:.0f} ms ({caption['distinct']} distinct partial texts); screenshot {shots}")
        finally:
            browser.close()
    assert (shots / "demo.png").stat().st_size > 10_000
    assert outside == [], f"the page fetched from outside the app: {outside}"
    assert proc.poll() is None, f"the server must keep serving after an error:\n{log_path.read_text()[-3000:]}"


# ---------------------------------------------------------------------------------------------- beyond one answer
SHOTS = os.environ.get("MATS_SCREENSHOTS")  # a folder: save the README's screenshots of each feature there


def _shot(target, name: str, tmp_path) -> None:
    for close in target.page.locator('[data-testid="toast-close"]').all():  # no stale message over the picture
        close.click()
    path = Path(SHOTS or tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(path), type="jpeg", quality=80) if name.endswith(".jpg") else \
        target.screenshot(path=str(path))


def _example_walk(path: Path, seconds: float = 25.0) -> Path:
    """The example clips one after the other (dog, rain, bells, baby, speech), cut to exactly ``seconds``."""
    import numpy as np
    import soundfile as sf

    parts = [sf.read(str(ROOT / "assets" / "examples" / n), dtype="float32")
             for n in ("dog.flac", "rain.flac", "church_bells.flac", "crying_baby.flac", "speech.flac")]
    sr = parts[0][1]
    wave = np.concatenate([w for w, _ in parts])
    wave = np.resize(wave, int(seconds * sr))  # repeats from the start if the examples are shorter
    sf.write(str(path), wave, sr)
    return path


def _download(page, elem: str) -> str:
    """The CSV behind a gr.File's download link, fetched as the browser would."""
    from playwright.sync_api import expect

    link = page.locator(f"{elem} a[href$='.csv']").first
    expect(link).to_be_attached(timeout=30000)
    with urllib.request.urlopen(link.get_attribute("href"), timeout=30) as r:
        return r.read().decode()


def test_evidence_bank_timeline_and_batch_in_the_page(app_url, tmp_path):
    url, proc, log_path = app_url
    from playwright.sync_api import expect, sync_playwright

    mine = tmp_path / "harbour.txt"
    mine.write_text("\n".join([f"a ship horn sounds over the harbour {i}" for i in range(40)]
                              + ["a dog barks at the harbour", "gulls.wav"]))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    long_clip = _example_walk(tmp_path / "five_sounds.flac")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is text, not audio")
    examples = [str(ROOT / "assets" / "examples" / n) for n in
                ("dog.flac", "rain.flac", "church_bells.flac", "crying_baby.flac", "speech.flac")]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 2100, "height": 1000})  # room for the tables
            page.goto(url)
            expect(page.locator("#caption-btn")).to_be_visible(timeout=30000)
            page.locator("#clip").get_by_role("button", name="Upload file").click()
            page.locator("#clip input[type=file]").set_input_files(DOG)
            expect(page.locator("#spectrogram img")).to_be_visible(timeout=60000)

            # 1. Santa evidence under the answer: captions, weights, lambda and the familiarity cue in words.
            page.locator("#caption-btn").click()
            evidence = page.locator("#caption-evidence")
            # At the checkpoint's default λ: 0.3 for the tiny model ("leaned on"), 0 for the shipped MATS-SmolLM2
            # ("would lean on": the answer used the clip alone, the captions are still shown).
            expect(evidence).to_contain_text(re.compile(r"What Santa (leaned on|would lean on) \(λ = 0"), timeout=120000)
            expect(evidence.locator("table")).to_be_visible()
            assert 2 <= evidence.locator("table tr").count() <= 6  # header + the top captions (at most 5)
            expect(evidence).to_contain_text("Nearest caption")
            assert any(w in evidence.inner_text() for w in ("Familiar:", "Partly familiar:", "Unfamiliar:"))
            _shot(page.locator("#caption-evidence").locator(".."), "evidence.png", tmp_path)

            # 2. Your own caption bank: a bad file is refused clearly; a good one is used by the next answer.
            page.get_by_text("Your caption bank (this session only)").click()
            page.locator("#bank-file input[type=file]").set_input_files(str(empty))
            expect(page.locator('[data-testid="toast-body"].error', has_text="is empty").first
                   ).to_be_visible(timeout=60000)
            page.locator("#bank-file").get_by_role("button", name="Clear").click()
            page.locator("#bank-file input[type=file]").set_input_files(str(mine))
            status = page.locator("#bank-status")
            expect(status).to_contain_text("Your caption bank: 41 captions", timeout=120000)
            expect(status).to_contain_text("Skipped 1 line")
            expect(status).to_contain_text("built in")
            page.locator("#caption-btn").click()
            expect(page.locator("#caption-status")).to_contain_text("with your caption bank", timeout=120000)
            expect(evidence).to_contain_text("from your caption bank", timeout=120000)
            expect(evidence).to_contain_text("harbour")
            _shot(page.locator("#bank"), "bank.png", tmp_path)
            page.locator("#bank-remove-btn").click()
            expect(status).to_contain_text("Removed your caption bank", timeout=30000)

            # 3. Timeline: one row per window, boundaries on the spectrogram, a CSV to download.
            page.locator("#clip").get_by_role("button", name="Clear").click()
            page.locator("#clip").get_by_role("button", name="Upload file").click()
            page.locator("#clip input[type=file]").set_input_files(str(long_clip))
            expect(page.locator("#clip-facts")).to_contain_text("25.00 s", timeout=60000)
            page.get_by_role("tab", name="Timeline").click()
            page.locator("#timeline-btn").click()
            expect(page.locator("#timeline-status")).to_contain_text("windows", timeout=300000)
            table = page.locator("#timeline-table")
            expect(table).to_contain_text("0:20.0")  # a window boundary with 5 s and with 10 s windows
            expect(table).to_contain_text("0:25.0")
            expect(page.locator("#timeline-spectrogram img")).to_be_visible()
            assert _download(page, "#timeline-csv").startswith("window,start_s,end_s,caption")
            _shot(page.locator("#timeline-status").locator(".."), "timeline.png", tmp_path)

            # 4. Batch: several files, one of them broken, each with its own row; a CSV at the end.
            page.get_by_role("tab", name="Batch").click()
            page.locator("#batch-files input[type=file]").set_input_files([*examples, str(broken)])
            page.locator("#batch-labels textarea").fill("dog, rain")
            page.locator("#batch-btn").click()
            expect(page.locator("#batch-status")).to_contain_text("5 of 6 files answered", timeout=300000)
            batch = page.locator("#batch-table")
            expect(batch).to_contain_text("broken.wav")
            expect(batch).to_contain_text("score: rain")
            assert _download(page, "#batch-csv").startswith("file,caption,tags,score: dog,score: rain,error")
            _shot(page.locator("#batch-status").locator(".."), "batch.png", tmp_path)
        finally:
            browser.close()
    assert proc.poll() is None, f"the server must keep serving:\n{log_path.read_text()[-3000:]}"
