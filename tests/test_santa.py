import json

import pytest
import torch
import torch.nn.functional as F

from mats.errors import CheckpointError
from mats.santa import SantaBank, add_noise, kmeans, label_mix


def _bank(n=200, d=16, k=5, top_k=4, tau=10.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    texts = [f"caption {i}" for i in range(n)]
    return SantaBank.build(emb, texts, n_clusters=k, top_k=top_k, tau=tau, noise_variance=0.0, seed=seed)


def test_noise_injection_keeps_unit_norm_and_has_right_scale():
    x = F.normalize(torch.randn(2000, 512), dim=-1)
    noisy = add_noise(x, 0.015, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(noisy.norm(dim=-1), torch.ones(2000), atol=1e-5)
    # E|noise|^2 = D * sigma^2 = 7.68 -> cosine to the clean vector = 1/sqrt(1 + 7.68) ~ 0.34
    cos = (noisy * x).sum(-1).mean().item()
    assert 0.30 < cos < 0.38
    assert torch.allclose(add_noise(x, 0.0), x, atol=1e-6)


def test_kmeans_is_seeded_and_recovers_clusters():
    g = torch.Generator().manual_seed(1)
    centers = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    pts = F.normalize(centers.repeat_interleave(50, 0) + 0.05 * torch.randn(200, 8, generator=g), dim=-1)
    c1, l1 = kmeans(pts, 4, seed=3)
    c2, l2 = kmeans(pts, 4, seed=3)
    assert torch.equal(l1, l2) and torch.equal(c1, c2)
    # every true group lands in exactly one cluster
    for grp in range(4):
        assert len(set(l1[grp * 50 : (grp + 1) * 50].tolist())) == 1
    assert len(set(l1.tolist())) == 4


def test_retrieval_matches_hand_computation():
    bank = _bank()
    audio = F.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(7)), dim=-1)
    r = bank.retrieve(audio)
    for b in range(3):
        cluster = int((audio[b] @ bank.centroids.T).argmax())
        members = (bank.labels == cluster).nonzero().flatten()
        sims = bank.embeddings[members] @ audio[b]
        order = sims.argsort(descending=True)[:4]
        expected_idx = members[order]
        assert set(r.indices[b].tolist()) == set(expected_idx.tolist())  # true nearest in the cluster
        w = torch.softmax(10.0 * sims[order], dim=0)
        assert torch.allclose(r.weights[b], w, atol=1e-5)
        assert torch.isclose(r.weights[b].sum(), torch.tensor(1.0))
        mix = (w[:, None] * bank.embeddings[expected_idx]).sum(0)
        assert torch.allclose(r.mixed_text[b], mix, atol=1e-5)


def test_mix_endpoints_and_determinism():
    bank = _bank()
    audio = F.normalize(torch.randn(2, 16, generator=torch.Generator().manual_seed(2)), dim=-1)
    assert torch.allclose(bank.mix(audio, 0.0), audio)
    text = F.normalize(bank.retrieve(audio).mixed_text, dim=-1)
    assert torch.allclose(bank.mix(audio, 1.0), text, atol=1e-6)
    half = bank.mix(audio, 0.5)
    assert torch.allclose(half, F.normalize(0.5 * audio + 0.5 * bank.retrieve(audio).mixed_text, dim=-1), atol=1e-6)
    # The bank is noised once when built, never per query: a clip mixes the same alone, in a batch, and after a
    # global-RNG draw (a per-query noise, or one clip's retrieval leaking into another's, would break this).
    alone = bank.mix(audio[1:], 0.3)
    torch.manual_seed(123)
    torch.randn(5)
    assert torch.allclose(bank.mix(audio, 0.3)[1:], alone, atol=1e-6)
    assert torch.allclose(alone, F.normalize(0.7 * audio[1:] + 0.3 * bank.retrieve(audio[1:]).mixed_text, dim=-1), atol=1e-6)
    with pytest.raises(ValueError, match="between 0 and 1"):
        bank.mix(audio, 1.5)


def test_small_cluster_pads_with_zero_weight():
    bank = _bank(n=12, k=6, top_k=32)  # clusters have ~2 members, top_k asks for 32
    r = bank.retrieve(F.normalize(torch.randn(4, 16), dim=-1))
    assert torch.allclose(r.weights.sum(1), torch.ones(4), atol=1e-6)
    assert ((r.indices == -1) == (r.weights == 0)).all()


def test_save_load_round_trip(tmp_path):
    bank = _bank()
    bank.save(tmp_path)
    again = SantaBank.load(tmp_path, top_k=bank.top_k, tau=bank.tau)
    assert again.texts == bank.texts and again.top_k == bank.top_k
    assert set(json.loads((tmp_path / "santa.json").read_text())) == {"texts"}  # settings live in config.json only
    audio = F.normalize(torch.randn(3, 16), dim=-1)
    # bank embeddings are stored in fp16: mixing agrees to fp16 precision
    assert torch.allclose(again.mix(audio, 0.3), bank.mix(audio, 0.3), atol=2e-3)
    (tmp_path / "santa.json").unlink()
    with pytest.raises(CheckpointError, match="santa.json is missing"):
        SantaBank.load(tmp_path)


def test_bank_noise_follows_the_santa_config():
    """santa.bank_noise_variance: None keeps the paper's noisy bank (the training noise), 0 stores the clean
    caption embeddings, so an audio embedding retrieves the captions that are actually nearest to it."""
    from mats.bank import build_bank
    from mats.config import SantaConfig

    texts = [f"caption {i}" for i in range(40)]
    clean = F.normalize(torch.randn(40, 16, generator=torch.Generator().manual_seed(1)), dim=-1)

    class Cache:
        def embed(self, chosen):
            return clean[[texts.index(t) for t in chosen]]

    order = sorted(texts)
    want = clean[[texts.index(t) for t in order]]
    paper = build_bank(Cache(), texts, SantaConfig(n_clusters=4), noise_variance=0.5)
    assert paper.texts == order and (paper.embeddings * want).sum(-1).mean() < 0.9  # noised
    exact = build_bank(Cache(), texts, SantaConfig(n_clusters=4, bank_noise_variance=0.0), noise_variance=0.5)
    torch.testing.assert_close(exact.embeddings, want)
    # A query equal to one caption retrieves that caption first with the clean bank.
    r = exact.retrieve(want[7:8])
    assert int(r.indices[0, 0]) == 7


def test_santa_settings_come_from_the_checkpoint_config(tiny_ckpt_gpt2, tmp_path):
    """config.json's santa.top_k / tau are what retrieval uses: editing them (on disk or on the loaded model)
    changes the mixed embedding and the evidence. (They used to be copied into santa.json, which won.)"""
    import shutil

    from mats.model import MATS

    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    audio = F.normalize(torch.randn(3, m.encoder.dim, generator=torch.Generator().manual_seed(3)), dim=-1)
    before = m.condition(audio, 1.0)
    top_before = len(m.explain(audio_embeddings=audio, santa=1.0, top=50)[0].captions)
    m.config.santa.top_k, m.config.santa.tau = 1, 0.5
    after = m.condition(audio, 1.0)
    assert not torch.allclose(before, after, atol=1e-4)
    assert len(m.explain(audio_embeddings=audio, santa=1.0, top=50)[0].captions) == 1 < top_before
    # The same through the checkpoint's config.json.
    folder = tmp_path / "edited"
    shutil.copytree(tiny_ckpt_gpt2, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["santa"].update(top_k=1, tau=0.5)
    (folder / "config.json").write_text(json.dumps(cfg))
    edited = MATS.from_pretrained(folder, device="cpu")
    torch.testing.assert_close(edited.condition(audio, 1.0), after)


def test_label_mix_searches_the_whole_label_set():
    """Santa over a label set: the top-k labels by similarity, softmax(tau * sim) weights, then the same blend as
    a caption bank; lambda 0 is the audio, lambda 1 with k = 1 the nearest label's own sentence."""
    g = torch.Generator().manual_seed(4)
    labels = F.normalize(torch.randn(6, 16, generator=g), dim=-1)
    audio = F.normalize(labels[[2, 5]] + 0.3 * torch.randn(2, 16, generator=g), dim=-1)
    assert torch.allclose(label_mix(audio, labels, 0.0), audio)
    assert torch.allclose(label_mix(audio, labels, 1.0, top_k=1), labels[[2, 5]], atol=1e-6)
    sims = audio @ labels.T
    top, idx = sims.topk(3, dim=1)
    w = torch.softmax(7.0 * top, dim=1)
    text = torch.einsum("bk,bkd->bd", w, labels[idx])
    expected = F.normalize(0.4 * audio + 0.6 * text, dim=-1)
    assert torch.allclose(label_mix(audio, labels, 0.6, top_k=3, tau=7.0), expected, atol=1e-6)
    # top_k larger than the label set: every label counts (no error, no padding)
    every = torch.softmax(7.0 * sims, dim=1) @ labels
    assert torch.allclose(label_mix(audio, labels, 1.0, top_k=32, tau=7.0), F.normalize(every, dim=-1), atol=1e-6)


def test_many_clips_are_retrieved_in_chunks_with_the_same_result(monkeypatch):
    """Issue 26: retrieval holds each clip's cluster members, so clips go RETRIEVE_CHUNK at a time; the mix, the
    retrieval and the evidence are the same as all at once."""
    import mats.santa as santa

    bank = _bank(n=120, d=16, k=6, top_k=5)
    audio = F.normalize(torch.randn(23, 16, generator=torch.Generator().manual_seed(3)), dim=-1)
    whole_mix, whole_r, whole_ev = bank.mix(audio, 0.5), bank.retrieve(audio), bank.evidence(audio, 0.5)
    seen = []
    real = torch.einsum

    def counting(eq, *ops):
        seen.append(ops[0].shape[0])
        return real(eq, *ops)

    monkeypatch.setattr(santa, "RETRIEVE_CHUNK", 4)
    monkeypatch.setattr(santa.torch, "einsum", counting)
    torch.testing.assert_close(bank.mix(audio, 0.5), whole_mix)
    r = bank.retrieve(audio)
    assert torch.equal(r.indices, whole_r.indices)
    torch.testing.assert_close(r.weights, whole_r.weights)
    assert [e.to_dict() for e in bank.evidence(audio, 0.5)] == [e.to_dict() for e in whole_ev]
    assert seen and max(seen) <= 4
