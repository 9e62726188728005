"""The flags of `mats align` and `mats align-cv`, in one place for the `mats` command and ``python -m``.

Torch-free on purpose: `mats --help` builds every subcommand's parser, and importing the trainer (torch) for that
would cost seconds. Defaults here are the shipped recipe; change them only with a new model card.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import mats.encoders.align as _align
from mats.realclips import REAL_SPLIT

RECIPE = _align.__doc__  # the recipe, shown as the description of `mats align --help`
CROSS_VALIDATION = """Cross-validate the offline encoder's recipe over the three recording-grouped folds.

    mats align-cv --data ../shared/data --corpus ~/.cache/mats/corpus \\
        --cache-dir ~/.cache/mats --encoder assets/encoders/sfx-minilm        # ~8 min with cached CNN features

One held-out fold is 87 ESC-50 clips (under two per class), so a single fold's figure moves by several clips with
nothing changed (the encoder card: a sub-hop shift of the audio moves it by up to 4). Fold 0 is the shipped
encoder's own test (its results.json, scored once); folds 1 and 2 refit the same recipe (the settings stored in
that results.json) with ``mats align --test-fold``, which rotates the real folds and, with them, the corpus
splits whose scenes use their recordings. The figures pooled over the three folds (correct / clips) go into the
encoder's results.json as "cross_validation" and into its model card. Only scores: no fold model is saved.
"""  # the description of `mats align-cv --help`


def add_align_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    ap.description = ap.description or RECIPE
    ap.add_argument("--data", type=Path, required=True, help="the shared data folder (clips/, backbones/aisfx/)")
    ap.add_argument("--corpus", type=Path, default=None, help="`mats corpus` output (omit: real clips only)")
    ap.add_argument("--corpus-limit", type=int, default=None, help="use about N corpus clips (quick runs)")
    ap.add_argument("--out", type=Path, default=Path("assets/encoders/sfx-minilm"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aisfx", type=Path, default=None, help="aisfx model.safetensors (default <data>/backbones/aisfx/)")
    ap.add_argument("--text-model", default=None,
                    help="the locked text tower (default: mats.encoders.offline.MINILM_ID, all-MiniLM-L6-v2)")
    ap.add_argument("--backbone", default="aisfx", choices=["aisfx", "yamnet"],
                    help="the frozen audio backbone: aisfx (the sfx-minilm recipe) or YAMNet (AudioSet; needs --yamnet)")
    ap.add_argument("--yamnet", type=Path, default=None,
                    help="converted YAMNet folder (scripts/convert_yamnet.py), or an encoder folder that ships it")
    ap.add_argument("--design", default="fused", choices=["tags", "weighted", "projection", "corrected", "fused"],
                    help="yamnet head (mats.encoders.audioset): tags (training-free), weighted (tags with a learnt "
                         "weight per class), projection, corrected (tags + a trained correction), or fused "
                         "(weighted + fuse-weight x projection; shipped)")
    ap.add_argument("--fuse-weight", type=float, default=2.0, help="yamnet fused: the projection's weight")
    ap.add_argument("--compare-aisfx", action="store_true",
                    help="yamnet --select: also score (d), YAMNet's and aisfx's features side by side (not shippable)")
    ap.add_argument("--top-k", type=int, default=10, help="yamnet: AudioSet classes kept in the tag embedding")
    ap.add_argument("--tag-template", default="{name}", help="yamnet: how a class name is written for the text tower")
    ap.add_argument("--pool", default="stats", choices=["window", "stats", "mean", "max", "meanmax", "attention"],
                    help="aisfx: window or stats; yamnet: mean, max, meanmax or attention over the patches")
    ap.add_argument("--proj-hidden", type=int, default=1024, help="0 = linear projection")
    ap.add_argument("--proj-dropout", type=float, default=0.1)
    ap.add_argument("--augment", type=int, default=1, help="augmented copies of each real training clip")
    ap.add_argument("--augment-style", default="basic", choices=["basic", "rich"],
                    help="basic (shipped): shift, mix, noise; rich: speed change and room / microphone realism too "
                         "(tried: model card, 'What was tried')")
    ap.add_argument("--batching", default="mixed", choices=["mixed", "domain"],
                    help="mixed (shipped); domain: every batch holds real clips only or corpus clips only (harder "
                         "negatives; tried: model card, 'What was tried')")
    ap.add_argument("--tune-block4", action="store_true",
                    help="fine-tune the CNN's last block with the projection (caches blocks 1-3's maps, 1.1 GB; "
                         "about 29 ms per clip per epoch on 2 CPU cores: ~3.6 min per epoch of the full corpus)")
    ap.add_argument("--block4-lr-scale", type=float, default=0.05, help="block 4's learning rate / --lr")
    ap.add_argument("--warm-epochs", type=int, default=0,
                    help="with --tune-block4: first train the projection alone this many epochs (cheap), then "
                         "block 4 and the projection together for --epochs")
    ap.add_argument("--ensemble", type=int, default=1,
                    help="fit N projections from seeds seed..seed+N-1 and ship their mean as one N-times-wider MLP")
    ap.add_argument("--align-weight", type=float, default=0.0,
                    help="add this weight x (1 - cosine of each clip to its drawn caption) to InfoNCE: contrastive "
                         "training only ranks, so audio lands in its own cone (cos ~0.35 to its captions), away from "
                         "the text the MATS LMs were trained on; this term pulls it onto the text")
    ap.add_argument("--select", action="store_true", help="compare CANDIDATES (train split -> val split) first, "
                    "then ship the best; without it the --pool/--proj-hidden given are shipped")
    ap.add_argument("--real-weight", type=int, default=3,
                    help="repeat real clips (and their copies) this many times per epoch: 830 real clips among ~5k")
    ap.add_argument("--label-template", action="store_true",
                    help="also train real clips on the evaluation prompt 'the sound of {label}' (the old recipe)")
    ap.add_argument("--caption-neighbours", type=int, default=0,
                    help="also train each real class on the N AudioCaps / Clotho training captions nearest its "
                         "hand-written sentences in the locked text space (tried: model card, 'What was tried')")
    ap.add_argument("--candidates", default=None, help="only these of CANDIDATES, e.g. 'stats:1024,window:0'")
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", type=Path, default=None, help="keep the CNN features here between runs")
    ap.add_argument("--no-save", action="store_true", help="evaluate only")
    ap.add_argument("--fit-on", default="train+val", choices=["train+val", "train"],
                    help="what the saved weights are fit on: train+val (shipped) or train only, a *validation "
                         "encoder* that never saw the val fold, for choosing MATS settings such as Santa's lambda "
                         "on audio the encoder has not met (the shipped encoder has met the val fold)")
    ap.add_argument("--test-fold", type=int, default=0, choices=sorted(REAL_SPLIT),
                    help="cross-validation: hold out this real fold as test (the next one is val, the other train), "
                         "with the corpus split whose scenes use its recordings; 0 is the shipped split. "
                         "`mats align-cv` runs folds 1 and 2 and averages")
    ap.add_argument("--results-json", type=Path, default=None,
                    help="also write the results here (works with --no-save)")
    return ap


def check_align_args(a: argparse.Namespace) -> argparse.Namespace:
    """Fill the text tower's default and refuse combinations that cannot run (ValueError: one line for the user)."""
    if a.text_model is None:
        from mats.encoders.offline import MINILM_ID  # torch: only once a run is on its way

        a.text_model = MINILM_ID
    if a.ensemble < 1:
        raise ValueError(f"--ensemble must be 1 or more, got {a.ensemble}")
    if a.backbone == "yamnet":
        if a.yamnet is None or not (Path(a.yamnet) / "yamnet.safetensors").is_file():
            raise ValueError("--backbone yamnet needs --yamnet: a folder holding yamnet.safetensors (convert it once "
                             "with scripts/convert_yamnet.py, or give assets/encoders/yamnet-minilm)")
        if a.tune_block4:
            raise ValueError("--tune-block4 is aisfx's; YAMNet stays frozen")
    elif a.pool not in ("window", "stats"):
        raise ValueError(f"--pool {a.pool} is a YAMNet pooling; aisfx takes window or stats")
    if a.ensemble > 1 and a.tune_block4:
        raise ValueError("--ensemble works with the frozen CNN only: each member would need its own block 4")
    return a


def align_parser(prog: str = "mats align") -> argparse.ArgumentParser:
    return add_align_args(argparse.ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = align_parser()
    a = ap.parse_args(argv)
    try:
        return check_align_args(a)
    except ValueError as err:
        ap.error(str(err))


def align_settings(a: argparse.Namespace) -> argparse.Namespace:
    """Only the `mats align` flags of a namespace the `mats` command parsed (it adds its own, such as ``func``):
    the run records every setting in results.json, and cross-validation repeats them."""
    names = vars(align_parser().parse_args(["--data", "."]))  # every flag, in the order of the recipe's own parse
    return check_align_args(argparse.Namespace(**{k: getattr(a, k) for k in names}))


def add_cv_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    ap.description = ap.description or CROSS_VALIDATION
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--encoder", type=Path, default=Path("assets/encoders/sfx-minilm"),
                    help="the encoder folder whose results.json gives the recipe and fold 0, and receives the result")
    ap.add_argument("--work", type=Path, default=None,
                    help="per-fold results, reused when the recipe is unchanged (default ~/.cache/mats/cv-<encoder name>)")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    return ap
