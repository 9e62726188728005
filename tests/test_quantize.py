"""Fast CPU inference (mats.quantize): fp16 weights packed for fbgemm; what changes, what must not, the switch."""
from pathlib import Path

import pytest
import torch

from mats.errors import ConfigError, MATSError
from mats.quantize import MIN_PARAMETERS, has_fbgemm, pack_lm, quantize_mode, wants_packing

ROOT = Path(__file__).resolve().parents[1]
needs_fbgemm = pytest.mark.skipif(not has_fbgemm(), reason="fbgemm (x86) is what packs fp16 weights")


@needs_fbgemm
def test_packed_linear_matches_fp32_to_fp16_rounding():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    with torch.no_grad():
        lin.weight.mul_(torch.linspace(0.01, 3.0, 48)[:, None])  # channels of very different scales
    ref_w, ref_b = lin.weight.detach().clone(), lin.bias.detach().clone()
    packed = pack_lm(torch.nn.Sequential(lin))[0]
    assert type(packed) is not torch.nn.Linear and not list(packed.parameters())  # really replaced
    # A prompt whose positions differ 60x in size (MATS's audio prefix vs text), and one decoding step.
    for x in (torch.randn(2, 7, 64) * torch.tensor([0.05] * 3 + [3.0] * 4)[None, :, None], torch.randn(4, 1, 64)):
        exact = torch.nn.functional.linear(x, ref_w, ref_b)
        out = packed(x)
        assert out.shape == exact.shape
        # fp16 weights: ~2^-11 relative rounding per weight, and nothing else (activations stay fp32)
        err = (out - exact).abs() / (x.abs() @ ref_w.abs().T + ref_b.abs())
        assert float(err.max()) < 2e-3
        assert not torch.equal(out, exact)  # it did run the packed kernel


def test_quantize_switch_values():
    assert quantize_mode(True) == "fp16" and quantize_mode(False) == "none" and quantize_mode(None) == "none"
    assert quantize_mode("AUTO") == "auto"
    with pytest.raises(ConfigError, match="auto, fp16, none"):
        quantize_mode("int4")
    small = torch.nn.Linear(8, 8)
    assert not wants_packing("none", small, torch.device("cpu"))
    assert not wants_packing("fp16", small, torch.device("meta"))  # a CPU path only
    if has_fbgemm():
        assert not wants_packing("auto", small, torch.device("cpu"))  # tiny LMs are overhead-bound: stay fp32
        assert wants_packing("fp16", small, torch.device("cpu"))
        big = torch.nn.Embedding(MIN_PARAMETERS // 64 + 1, 64, device="meta")
        assert wants_packing("auto", big, torch.device("cpu"))


def test_quantize_without_fbgemm_is_fp32_under_auto_and_an_error_when_asked(monkeypatch):
    import mats.quantize

    monkeypatch.setattr(mats.quantize, "has_fbgemm", lambda: False)  # an ARM CPU: qnnpack only
    big = torch.nn.Embedding(MIN_PARAMETERS // 64 + 1, 64, device="meta")
    assert not wants_packing("auto", big, torch.device("cpu"))
    with pytest.raises(ConfigError, match="fbgemm"):
        wants_packing("fp16", big, torch.device("cpu"))


@needs_fbgemm
def test_packed_mats_answers_like_fp32_and_refuses_to_save(tmp_path):
    from mats.model import MATS
    from mats.testing import make_tiny_checkpoint, tiny_clip

    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", lm="llama")  # LoRA on: merged before packing
    fp = MATS.from_pretrained(ckpt, device="cpu", quantize="none")
    q = MATS.from_pretrained(ckpt, device="cpu", quantize="fp16")
    auto = MATS.from_pretrained(ckpt, device="cpu")  # a tiny LM stays fp32 under "auto"
    assert (fp.precision, q.precision, auto.precision) == ("float32", "fp16 packed", "float32")
    assert not any(type(m) is torch.nn.Linear for m in q.lm.modules())
    clip = tiny_clip()
    kw = dict(num_beams=2, max_new_tokens=6, min_new_tokens=6, repetition_penalty=1.0, no_repeat_ngram_size=0)
    assert q.caption(clip, **kw) == fp.caption(clip, **kw)  # same answer, decoded through packed weights
    z = fp.condition(fp.embed_clips([clip]))
    torch.testing.assert_close(q.label_log_likelihoods(z, ["dog", "rain"]), fp.label_log_likelihoods(z, ["dog", "rain"]),
                               atol=1e-3, rtol=1e-3)  # fp16 weights: ~2^-11 relative
    with pytest.raises(MATSError, match="quantize='none'"):
        q.save_pretrained(tmp_path / "out")
    fp.save_pretrained(tmp_path / "out")  # fp32 still saves
    with pytest.raises(ConfigError, match="quantize must be"):
        MATS.from_pretrained(ckpt, device="cpu", quantize="int8")


@pytest.mark.slow
@needs_fbgemm
def test_shipped_smollm2_is_packed_by_default_and_decodes_as_fp32():
    """The shipped MATS-SmolLM2 loads packed on a CPU, and decoding steps keep fp32's distribution."""
    import torch.nn.functional as F

    from mats.model import MATS

    clip = ROOT / "assets" / "examples" / "dog.flac"
    q = MATS.from_pretrained(ROOT / "assets" / "mats-smollm2", device="cpu")
    assert q.precision == "fp16 packed"
    fp = MATS.from_pretrained(ROOT / "assets" / "mats-smollm2", device="cpu", quantize="none")
    z = fp.condition(fp.embed_clips([clip]))
    steps = {}
    for name, m in (("fp32", fp), ("packed", q)):
        batch = m.assemble(m.prefix(z), ["Describe the audio in one sentence."], pad_left=True)
        out, logps = None, []
        with torch.inference_mode():
            out = m.lm(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, use_cache=True)
            for token in m.tokenizer("A dog barks and growls")["input_ids"]:  # the same path for both
                logps.append(F.log_softmax(out.logits[0, -1], -1))
                out = m.lm(input_ids=torch.tensor([[token]]), cache=out.cache)
        steps[name] = torch.stack(logps)
    p, r = steps["fp32"], steps["packed"]
    kl = (p.exp() * (p - r)).sum(-1)
    assert float(kl.max()) < 1e-3, kl
    assert torch.equal(p.argmax(-1), r.argmax(-1))
    assert q.caption(clip) == fp.caption(clip)
