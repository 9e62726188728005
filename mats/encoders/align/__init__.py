"""Train the offline encoder's audio projection against the locked all-MiniLM-L6-v2 text tower.

    mats corpus --data ../shared/data --out ~/.cache/mats/corpus        # ~8 min, 2 cores
    mats align --data ../shared/data --corpus ~/.cache/mats/corpus \
        --out assets/encoders/sfx-minilm --select --ensemble 3 --cache-dir ~/.cache/mats
    mats align-cv --data ../shared/data --corpus ~/.cache/mats/corpus --cache-dir ~/.cache/mats  # cross-validate

Recipe (LiT: the text tower is locked, only the audio side learns):

1. Clips: the synthesized, captioned corpus (speech, music, signals, mixed scenes; mats.corpus) and the real
   ESC-50 (262) and UrbanSound8K (568) clips of ``<data>/clips``, one 5 s window each at 44.1 kHz.
2. Split: the corpus's own train / val / test (whole voices, languages, GM programs, seeds); the real clips in
   three recording-grouped folds (a group is one Freesound recording; fold 0 = test, the held-out fold of
   split.json that the MATS evaluation uses; fold 1 = val; fold 2 = train). One augmented copy of every real
   train/val clip (shift, gain, a quieter clip of another class, noise) is added to training.
3. Features: the aisfx CNN is frozen, so its block-4 frame features (frequency mean, 27 frames per window) are
   computed once and cached; every pooling below reads them.
4. Projection: standardise, then a linear map or a one-hidden-layer MLP into the 384-d text space, trained with
   the symmetric multi-positive InfoNCE loss (learned temperature). Texts: the corpus's captions (several per
   clip, one drawn per step) and, for real clips, 6 hand-written sentences per class
   (mats/encoder_sentences.json, read by mats.realclips).
5. ``--select`` compares capacities (CANDIDATES: whole-window max vector or max/mean/std statistics over the
   frames, linear or MLP) trained on train and scored on val, plus the best one trained on the real clips only
   (what the data alone buys); the shipped weights are that choice fit on train + val, scored once on test.
6. Checks (mats.hearing): coarse speech / music / other, instrument family among ten, two- and three-source
   mixtures (each source's label in the top 5), ESC-50 (50 labels) and UrbanSound8K (10) zero-shot.

What was tried and dropped is in the encoder's model card (``card.write_model_card``: "What was tried").

Modules, in the order a run uses them: ``args`` (the flags; torch-free), ``data`` (clips, splits, augmentation,
texts; the fold facts come from mats.realclips), ``features`` (the frozen CNN's cached frame features and pooling:
the backbone seam), ``fit`` (InfoNCE, ensembles, checks, --select), ``card`` (model card, licence notes), ``run``
(one run end to end: `mats align`), ``crossval`` (`mats align-cv`). This package's own import stays light.
"""
