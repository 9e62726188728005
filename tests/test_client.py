"""The demo's public API, called the way users call it: with ``gradio_client`` over HTTP."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `demo/` is not an installed package; plain `pytest` must find it too
    sys.path.insert(0, str(ROOT))
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
    assert set(named) == {"/caption", "/classify", "/ask", "/compare"}
    params = [p["parameter_name"] for p in named["/caption"]["parameters"]]
    assert params == ["audio", "model", "santa", "beams", "max_new_tokens", "sample", "temperature"]


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
