"""mats.encoders.align (`mats align`): the pieces that decide what the projection is trained on (augmentation, batches)."""
from __future__ import annotations


import json

import numpy as np
import pytest

from mats.encoders.align import features, run
from mats.encoders.align import card as align_card
from mats.encoders.align import crossval as cv
from mats.encoders.align import data as align_data
from mats.encoders.align import fit as align_fit
from mats.encoders.align.args import parse_args
N = 44100 * 5


def _tone(freq: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(N) / 44100)).astype(np.float32)


@pytest.mark.parametrize("style", ["basic", "rich"])
def test_augment_keeps_length_is_seeded_and_changes_the_clip(style):
    x, partner = _tone(440.0), _tone(97.0)
    a = align_data.augment(x, [partner], np.random.default_rng(5), style)
    b = align_data.augment(x, [partner], np.random.default_rng(5), style)
    assert a.shape == x.shape and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, b)  # same seed, same copy: cached features stay valid
    assert not np.allclose(a, x)
    others = [align_data.augment(x, [partner], np.random.default_rng(s), style) for s in range(6)]
    assert len({o.tobytes() for o in others}) == 6  # every copy differs


def test_rich_augment_changes_speed_and_pitch_sometimes():
    # A 440 Hz tone with a speed change moves its spectral peak; without one the peak stays put.
    x = _tone(440.0)
    peaks = set()
    for s in range(12):
        y = align_data.augment(x, [], np.random.default_rng(s), "rich")
        spec = np.abs(np.fft.rfft(y[:44100]))
        peaks.add(int(round(np.argmax(spec) / 10)) * 10)  # 1 Hz bins, rounded to 10 Hz
    assert 440 in peaks and len(peaks) >= 3, peaks
    assert all(370 <= p <= 510 for p in peaks), peaks  # 0.85-1.15x


def test_basic_augment_never_changes_pitch():
    x = _tone(440.0)
    for s in range(8):
        y = align_data.augment(x, [], np.random.default_rng(s), "basic")
        assert abs(int(np.argmax(np.abs(np.fft.rfft(y[:44100])))) - 440) <= 1


@pytest.mark.parametrize("how", ["mixed", "domain"])
def test_epoch_batches_cover_every_clip_once(how):
    domains = np.array([0] * 23 + [1] * 41)
    batches = align_fit.epoch_batches(domains, 8, how, np.random.default_rng(0))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(64))
    assert all(len(b) <= 8 for b in batches)
    single = [len(set(domains[b])) == 1 for b in batches]
    if how == "domain":
        assert all(single)  # a real clip's negatives are real clips
    else:
        assert not all(single)  # one shuffle mixes them (64 clips in 8 batches: all pure has ~0 chance)


def test_epoch_batches_mixed_is_the_old_single_shuffle():
    # The shipped encoder was trained with one permutation per epoch; "mixed" must draw exactly that.
    order = np.random.default_rng(3).permutation(50)
    batches = align_fit.epoch_batches(np.zeros(50, int), 16, "mixed", np.random.default_rng(3))
    assert np.array_equal(np.concatenate(batches), order)


def _tiny_setup(tune: bool, extra: tuple = ()):
    import torch

    from mats.encoders.offline import OfflineEncoder

    enc = OfflineEncoder.tiny(seed=1)
    enc.audio_settings["pool"] = "stats"
    rng = np.random.default_rng(0)
    n, length = 24, enc.window_samples
    t = np.arange(length) / enc.sample_rate
    # Three "concepts": tones at three pitches, with noise, so the task is learnable.
    waves = np.stack([(0.4 * np.sin(2 * np.pi * (200.0 * (1 + i % 3)) * t) + 0.05 * rng.standard_normal(length))
                      .astype(np.float32) for i in range(n)])
    captions = ["a low tone", "a middle tone", "a high tone"]
    clips = [align_data.Clip(f"c{i}", "train", f"tone/{i % 3}", [captions[i % 3]], {"dataset": "corpus"}) for i in range(n)]
    with torch.inference_mode():
        spec = enc.frontend(torch.from_numpy(waves))
        feats = (enc.audio_net.stem(spec) if tune else enc.audio_net.frames(spec)).clone()
    text = enc.embed_text(captions)
    cap_ids = [[i % 3] for i in range(n)]
    args = parse_args(["--data", "unused", "--epochs", "4", "--batch-size", "8", "--lr", "0.01",
                          "--block4-lr-scale", "0.5", *extra] + (["--tune-block4"] if tune else []))
    return enc, waves, clips, feats, text, cap_ids, args


@pytest.mark.parametrize("tune,extra", [(False, ()), (True, ()), (True, ("--warm-epochs", "3"))])
def test_trained_path_equals_the_encoders_own_embedding(tune, extra):
    # What the trainer scores (cached features -> [block 4] -> pool -> projection) must be exactly what the saved
    # encoder computes from audio, or the reported numbers describe another model.
    import torch

    enc, waves, clips, feats, text, cap_ids, args = _tiny_setup(tune, extra)
    before = {k: v.clone() for k, v in enc.audio_net.conv_block4.state_dict().items()}
    tr, ev = np.arange(0, 18), np.arange(18, 24)
    proj, emb, block4 = align_fit.fit_and_embed(enc, feats, clips, tr, ev, text, cap_ids,
                                         {"pool": "stats", "proj_hidden": 8}, args, 0.0, "test")
    assert emb.shape == (6, enc.dim) and torch.allclose(emb.norm(dim=1), torch.ones(6), atol=1e-5)
    for k, v in enc.audio_net.conv_block4.state_dict().items():
        assert torch.equal(v, before[k]), k  # each fit starts from (and leaves) the pretrained block
    if tune:
        changed = [k for k, v in block4.state_dict().items() if not torch.equal(v, before[k])]
        assert any("conv" in k for k in changed) and not any("running" in k for k in changed), changed
        enc.audio_net.conv_block4.load_state_dict(block4.state_dict())
    else:
        assert block4 is None
    enc.audio_proj = proj
    assert torch.allclose(enc.embed_audio(waves[ev]), emb, atol=1e-4)


@pytest.mark.parametrize("fit_on", ["train+val", "train"])
def test_a_validation_encoder_lists_the_fold_it_never_saw(tmp_path, fit_on):
    from mats.encoders.offline import OfflineEncoder

    # --fit-on train saves a validation encoder: its split-val.json must list exactly the real val clips (the fold
    # MATS settings are chosen on), and its card must say it is not for shipping; the shipped kind writes neither.
    enc, waves, clips, feats, text, cap_ids, _ = _tiny_setup(False)
    enc.audio_settings["pool"] = OfflineEncoder.tiny(seed=1).audio_settings["pool"]  # what its projection was built for
    splits = ["train"] * 8 + ["val"] * 8 + ["test"] * 8
    datasets = ["esc50", "us8k", "corpus"] * 8
    real = [align_data.Clip(f"{d}/clip{i}.wav", s, c.concept, c.captions, {"dataset": d, "augmented": i == 9})
            for i, (c, s, d) in enumerate(zip(clips, splits, datasets))]
    args = parse_args(["--data", "unused", "--fit-on", fit_on, "--out", str(tmp_path / "enc")])
    checks = {k: 0.5 for k in ("coarse", "coarse_speech", "coarse_music", "coarse_other", "family",
                               "zero_shot_esc50", "zero_shot_us8k", "mixture_source_top5")}
    results = {"test": {**checks, "esc50_clips": 2, "us8k_clips": 3, "family_clips": 0, "mixture_sources": 0},
               "captions": 3, "chosen": {"pool": "stats", "proj_hidden": 8}, "selection_on_val": [],
               "settings": {k: str(v) for k, v in vars(args).items()}, "sizes": {}, "fit_on": fit_on}
    run.save_encoder(args, enc, real, {0: waves[0]}, results, tmp_path / "no-aisfx" / "model.safetensors", 0.0)
    held = json.loads((tmp_path / "enc" / "split.json").read_text())
    assert held["esc50"] == ["clip18.wav", "clip21.wav"] and held["us8k"] == ["clip16.wav", "clip19.wav", "clip22.wav"]
    card = (tmp_path / "enc" / "README.md").read_text()
    if fit_on == "train":
        val = json.loads((tmp_path / "enc" / "split-val.json").read_text())
        # clip9 (esc50, val) is an augmented copy, not a clip of the fold: left out
        assert val["esc50"] == ["clip12.wav", "clip15.wav"] and val["us8k"] == ["clip10.wav", "clip13.wav"]
        assert "validation encoder, not for shipping" in card
    else:
        assert not (tmp_path / "enc" / "split-val.json").exists() and "not for shipping" not in card


def test_an_ensemble_is_one_wider_mlp_whose_output_is_the_members_mean(tmp_path):
    import torch

    from mats.encoders.offline import OfflineEncoder

    # --ensemble N ships N seeds as one MLP: its output must be exactly their mean, it must survive save/reload as
    # an ordinary encoder (config.json names the wider layer), and the members must really differ.
    enc, waves, clips, feats, text, cap_ids, args = _tiny_setup(False, ("--ensemble", "3"))
    x = features.pooled(feats, "stats")
    fit = (x, [c.concept for c in clips], cap_ids, text, 8)
    members = [align_fit.train_projection(*fit, align_fit.member_args(args, m), 0.0, "m") for m in range(3)]
    assert not torch.allclose(members[0].net[0].weight, members[1].net[0].weight)
    merged = align_fit.merge_projections(members)
    assert merged.net[0].out_features == 24 and merged.net[-1].out_features == enc.dim
    with torch.no_grad():
        assert torch.allclose(merged(x), torch.stack([m(x) for m in members]).mean(0), atol=1e-5)
    # through fit_and_embed and the encoder's own audio path, saved and reloaded
    proj, emb, _ = align_fit.fit_and_embed(enc, feats, clips, np.arange(18), np.arange(18, 24), text, cap_ids,
                                    {"pool": "stats", "proj_hidden": 8}, args, 0.0, "test")
    enc.audio_proj = proj
    enc.audio_settings["proj_hidden"] = proj.net[0].out_features
    assert torch.allclose(enc.embed_audio(waves[18:]), emb, atol=1e-4)
    enc.save_pretrained(tmp_path / "e", dtype=torch.float32)
    back = OfflineEncoder.from_pretrained(tmp_path / "e")
    assert back.audio_settings["proj_hidden"] == 24
    assert torch.allclose(back.embed_audio(waves[18:]), emb, atol=1e-4)
    # members fit on other data cannot be merged
    other = align_fit.train_projection(x[:12], fit[1][:12], cap_ids[:12], text, 8, args, 0.0, "o")
    with pytest.raises(ValueError, match="standardisation"):
        align_fit.merge_projections(members + [other])
    # linear members average into one linear map, with the same identity
    lin = [align_fit.train_projection(*fit[:4], 0, align_fit.member_args(args, m), 0.0, "l") for m in range(3)]
    one = align_fit.merge_projections(lin)
    assert len(one.net) == 2
    with torch.no_grad():
        assert torch.allclose(one(x), torch.stack([m(x) for m in lin]).mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="MLPs or all linear"):
        align_fit.merge_projections(members[:1] + lin[:1])


def test_ensemble_flags_are_checked_when_parsed():
    with pytest.raises(SystemExit):
        parse_args(["--data", "unused", "--ensemble", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--data", "unused", "--ensemble", "2", "--tune-block4"])


def test_the_align_term_pulls_audio_onto_its_captions():
    import torch

    # --align-weight adds (1 - cos(audio, caption)) to InfoNCE: the same clips must land closer to their captions.
    enc, waves, clips, feats, text, cap_ids, args = _tiny_setup(False, ("--epochs", "30"))
    x = features.pooled(feats, "stats")
    fit = (x, [c.concept for c in clips], cap_ids, text, 8)
    cos = {}
    for w in (0.0, 2.0):
        args.align_weight = w
        proj = align_fit.train_projection(*fit, args, 0.0, "a")
        with torch.no_grad():
            a = torch.nn.functional.normalize(proj(x), dim=-1)
        cos[w] = float((a * text[[c[0] for c in cap_ids]]).sum(-1).mean())
    assert cos[2.0] > cos[0.0] + 0.1, cos


def test_cross_validation_rotates_every_split_with_its_real_fold():
    # --test-fold r: fold r is test, the next val, the other train; corpus splits move with the real fold their
    # scenes draw from (a scene of the corpus's "val" split holds fold-1 recordings), so nothing crosses sides.
    for r in align_data.REAL_SPLIT:
        new = {s: align_data.rotated_split(s, r) for s in ("train", "val", "test")}
        assert sorted(new.values()) == ["test", "train", "val"]  # a permutation: every split keeps one role
        assert new[align_data.REAL_SPLIT[r]] == "test" and new[align_data.REAL_SPLIT[(r + 1) % 3]] == "val"
    assert all(align_data.rotated_split(s, 0) == s for s in ("train", "val", "test"))  # fold 0 is the shipped split
    with pytest.raises(SystemExit):
        parse_args(["--data", "unused", "--test-fold", "3"])


def test_cross_validation_pools_correct_over_clips_and_refits_the_stored_recipe(tmp_path):
    folds = [{"zero_shot_esc50": 0.5, "esc50_clips": 10, "coarse": 0.9, "family": 0.7, "family_clips": 0},
             {"zero_shot_esc50": 0.8, "esc50_clips": 30, "coarse": 0.6},
             {"zero_shot_esc50": 0.0, "esc50_clips": 10, "coarse": 0.9}]
    pooled = cv.pool_folds(folds)
    assert pooled["zero_shot_esc50"] == pytest.approx((5 + 24 + 0) / 50) and pooled["esc50_clips"] == 50
    assert pooled["coarse"] == pytest.approx(0.8)  # no clip count: the mean of the folds
    assert pooled["family"] == 0.7 and "zero_shot_us8k" not in pooled  # only folds that have the check
    # the refit repeats the stored settings (not `mats align`'s defaults) on the rotated folds
    stored = parse_args(["--data", "d", "--epochs", "7", "--lr", "0.01", "--ensemble", "2", "--real-weight", "5"])
    results = {"settings": {k: (str(v) if hasattr(v, "parts") else v) for k, v in vars(stored).items()},
               "chosen": {"pool": "window", "proj_hidden": 0}}
    ns = type("A", (), {"data": "d", "corpus": "c", "cache_dir": None, "threads": 1})()
    again = parse_args(cv.refit_argv(results, ns, 2, tmp_path / "f2.json"))
    assert (again.test_fold, again.no_save, again.pool, again.proj_hidden) == (2, True, "window", 0)
    assert (again.epochs, again.lr, again.ensemble, again.real_weight) == (7, 0.01, 2, 5)
    # and the model card shows the pooled figures
    section = align_card.cross_validation_section({"pooled": pooled, "folds": folds, "note": "n"})
    assert "| **pooled** |" in section and "**0.58**" in section and align_card.cross_validation_section(None) == ""


def test_features_are_cached_by_the_audio_itself(tmp_path, monkeypatch):
    import torch

    # A larger corpus or another fold rotation must run the CNN only on audio it has not seen, and a clip whose
    # audio changed under the same name must not get the old features.
    calls = []

    def fake_frames(enc, waves, t0, batch=16, maps=False):
        calls.append(len(waves))
        return torch.stack([torch.full((2, 3), float(w[0])) for w in waves]).half()

    monkeypatch.setattr(features, "frame_features", fake_frames)
    args = parse_args(["--data", "unused", "--cache-dir", str(tmp_path)])
    clip = lambda key, v: align_data.Clip(key, "train", key, [], {}, np.full(8, v, np.float32))  # noqa: E731
    first = features.cached_features(args, None, [clip("a", 1), clip("b", 2), clip("a-copy", 1)], 0.0, "cnn1")
    assert calls == [2] and first[:, 0, 0].tolist() == [1, 2, 1]  # identical audio computed once
    again = features.cached_features(args, None, [clip("b", 2), clip("c", 3), clip("a", 1)], 0.0, "cnn1")
    assert calls == [2, 1] and again[:, 0, 0].tolist() == [2, 3, 1]  # only "c" is new
    changed = features.cached_features(args, None, [clip("a", 5)], 0.0, "cnn1")  # same name, other audio
    assert calls == [2, 1, 1] and changed[0, 0, 0].item() == 5
    assert len(features.FeatureStore(tmp_path / "features" / "aisfx-cnn1", "frames").shards()) == 3
    features.cached_features(args, None, [clip("a", 1)], 0.0, "cnn2")  # other CNN weights: computed again
    assert calls == [2, 1, 1, 1]
    assert features.cached_features(parse_args(["--data", "unused"]), None, [clip("a", 1)], 0.0, "cnn1")[0, 0, 0] == 1
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"one")
    first_id = features.backbone_id(weights)
    weights.write_bytes(b"two")
    assert features.backbone_id(weights) != first_id


def test_caption_neighbours_go_to_their_nearest_class_only(tmp_path):
    import torch
    from torch.nn import functional as F

    from mats.encoders.offline import OfflineEncoder

    # --caption-neighbours: every real class gets at most n pool captions, each caption goes to the one class whose
    # sentences it is nearest, best first; corpus clips keep their own captions.
    enc = OfflineEncoder.tiny(seed=1)
    real = {"dog": "esc50", "siren": "us8k", "rain": "esc50"}
    clips = [align_data.Clip(f"{d}/{l}.wav", "train", l, ["own"], {"dataset": d, "label": l}) for l, d in real.items()]
    clips.append(align_data.Clip("c0", "train", "tone", ["a tone"], {"dataset": "corpus"}))
    words = ["a dog barks", "rain falls on a roof", "a siren wails", "wind blows", "a man speaks", "birds chirp",
             "a car passes", "water drips", "thunder rumbles", "a cat meows"]
    pool = [f"{a} while {b}" for a in words for b in words if a != b]  # 90 distinct captions
    extra = align_data.add_caption_neighbours(clips, enc, pool, 5, tmp_path, 0.0)
    labels = sorted(real)
    tables = {**align_data.US8K_SENTENCES, **align_data.ESC50_SENTENCES}
    centres = F.normalize(torch.stack([enc.embed_text(tables[l]).mean(0) for l in labels]), dim=-1)
    sims = enc.embed_text(pool) @ centres.T
    for j, label in enumerate(labels):
        got = [pool.index(t) for t in extra[label]]
        mine = [i for i in range(len(pool)) if int(sims[i].argmax()) == j]
        assert len(got) == min(5, len(mine)) and set(got) <= set(mine)
        assert got == sorted(mine, key=lambda i: -float(sims[i, j]))[:len(got)]  # the nearest, best first
    assert sum(map(len, extra.values())) == len({t for v in extra.values() for t in v}) > 5  # none twice
    for c in clips[:3]:
        assert c.captions == ["own"] + extra[c.row["label"]]
    assert clips[3].captions == ["a tone"]
