import os

# No network, no telemetry: tests must pass on an air-gapped machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_ckpt_gpt2(tmp_path_factory):
    from mats.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_gpt2"), lm="gpt2")


@pytest.fixture(scope="session")
def tiny_ckpt_llama(tmp_path_factory):
    from mats.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_llama"), lm="llama")


@pytest.fixture(scope="session")
def tiny_ckpt_yamnet(tmp_path_factory):
    """A tiny GPT-2 checkpoint that listens through a tiny random YAMNet encoder (so AudioSet tags work)."""
    from mats.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_yamnet"), lm="gpt2", encoder="yamnet")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # GGUF conversions and text-embedding caches go to a per-session temp dir, not ~/.cache.
    monkeypatch.setenv("MATS_CACHE", os.environ.get("MATS_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache"))
