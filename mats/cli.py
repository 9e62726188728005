"""The `mats` command (also `python -m mats`).

Errors go to stderr as one clear line with a non-zero exit; `--debug` shows the traceback.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from mats.config import SANTA_BANKS
from mats.errors import CheckpointError, MATSError
from mats.quantize import NO_QUANTIZE_HELP, quantize_flag

from mats.audio import AUDIO_SUFFIXES as AUDIO_EXTS
from mats.audio import DEFAULT_MAX_SECONDS


def _clips(paths: list[str]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in AUDIO_EXTS)
        elif p.exists():
            out.append(p)
        else:
            raise MATSError(f"{p} does not exist: give an audio file or a folder of clips")
    if not out:
        raise MATSError(f"no audio files found in {', '.join(paths)} (looked for {', '.join(sorted(AUDIO_EXTS))})")
    return out


def _gen_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--santa", type=float, default=None, help="Santa strength lambda in [0, 1] (default: checkpoint's)")
    g.add_argument("--beams", type=int, default=None, help="beam size (default: checkpoint's, paper: 4)")
    g.add_argument("--max-new-tokens", type=int, default=None)
    g.add_argument("--sample", action="store_true", help="sample instead of beam search")
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    g.add_argument("--no-quantize", action="store_true", help=NO_QUANTIZE_HELP)
    g.add_argument("--output", "-o", default=None, help="write results to a .csv or .jsonl file instead of stdout")


def _gen_kwargs(a) -> dict:
    kw = {"num_beams": a.beams, "max_new_tokens": a.max_new_tokens, "temperature": a.temperature}
    if a.sample:
        kw["do_sample"] = True
    return {k: v for k, v in kw.items() if v is not None}


def _emit(rows: list[dict], output: str | None, many: bool = False) -> None:
    if output is None:
        # One clip: just the answer. Several: one JSON line per clip, so results stay attributable.
        for r in rows:
            print(json.dumps(r, ensure_ascii=False) if many or "scores" in r else r["output"])
        return
    path = Path(output)
    if path.suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        raise MATSError(f"--output must end in .csv or .jsonl, got '{output}'")
    print(f"wrote {len(rows)} rows to {path}", file=sys.stderr)


# Where the shipped default lives, relative to the repository root (a source checkout or an editable install).
# The CLI knows the repository's layout; the library does not.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLI_CHECKPOINT = "assets/mats-smollm2"  # the better-measured of the two shipped models


def default_checkpoint() -> Path:
    """The checkpoint used when none is named: ``$MATS_MODEL`` if set, else the shipped MATS-SmolLM2."""
    named = os.environ.get("MATS_MODEL")
    if named:
        return Path(named)
    path = REPO_ROOT / DEFAULT_CLI_CHECKPOINT
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"no model given and the default checkpoint {path} is not there (it ships with the source checkout). "
            "Name one: a checkpoint folder or a Hub id (e.g. `mats caption user/mats-gpt2 clip.wav`), or set MATS_MODEL."
        )
    return path


def _split_inputs(a) -> None:
    """``mats caption [MODEL] CLIP...`` / ``mats ask [MODEL] QUESTION CLIP...``: the model is optional (default: the
    shipped checkpoint), so the first word is the model only when it names one (see ``looks_like_checkpoint``)."""
    from mats.hub import looks_like_checkpoint

    words = list(a.inputs)
    model = a.model
    if model is None and words and looks_like_checkpoint(words[0]):
        model = words.pop(0)
    if a.command == "ask":
        if len(words) < 2:
            raise MATSError("ask needs a question and at least one clip: mats ask [MODEL] \"What is making the sound?\" clip.wav")
        a.question = words.pop(0)
    if not words:
        raise MATSError(f"no clips given: mats {a.command} [MODEL] CLIP [CLIP ...]")
    a.model = str(model) if model is not None else str(default_checkpoint())
    a.clips = words


def _each_clip(a, answer, many: bool | None = None) -> int:
    """Load the command's model, run ``answer(model, clip) -> rows`` on every clip, print or write the rows.
    One clip: its error is the command's error. Several: a bad clip is reported on stderr, the rest are answered and
    the exit status is 1. ``many``: always one JSON line per row (default: when there are several clips)."""
    from mats.model import MATS

    _split_inputs(a)
    clips = _clips(a.clips)
    model = MATS.from_pretrained(a.model, device=a.device, quantize=quantize_flag(a))
    rows, failures = [], 0
    for clip in clips:
        try:
            rows += answer(model, clip)
        except MATSError as e:
            if len(clips) == 1:
                raise
            failures += 1  # one bad clip in a folder: report it and go on with the rest
            print(f"error: {clip}: {e}", file=sys.stderr)
    if rows:
        _emit(rows, a.output, many=len(clips) > 1 if many is None else many)
    return 1 if failures else 0


def cmd_infer(a) -> int:
    def answer(model, clip):
        if a.command == "caption":
            return [{"clip": str(clip), "output": model.caption(clip, santa=a.santa, **_gen_kwargs(a))}]
        if a.command == "ask":
            return [{"clip": str(clip), "question": a.question,
                     "output": model.ask(clip, a.question, santa=a.santa, **_gen_kwargs(a))}]
        labels = [l.strip() for l in a.labels.split(",")] if a.labels else None
        res = model.classify(clip, labels=labels, santa=a.santa, santa_bank=a.santa_bank, **_gen_kwargs(a))
        out = {"clip": str(clip), "output": res["text"], "tags": res["tags"]}
        if res["scores"] is not None:
            out["scores"] = dict(sorted(res["scores"].items(), key=lambda kv: -kv[1]))
        return [out]

    return _each_clip(a, answer)


def _labels(a) -> list[str] | None:
    return [l.strip() for l in a.labels.split(",") if l.strip()] if getattr(a, "labels", None) else None


def cmd_explain(a) -> int:
    """What Santa leaned on per clip (``MATS.explain``), or with --labels the labels it mixed in
    (``MATS.explain_labels``): the page's evidence panel, one JSON line (or CSV row) per clip."""
    labels = _labels(a)

    def answer(model, clip):
        if labels:
            ev = model.explain_labels(model.embed_clips([clip]), labels, santa=a.santa, top=a.top)[0]
            return [{"clip": str(clip), "bank": "labels", **ev}]
        ev = model.explain(clip, santa=a.santa, top=a.top)
        return [{"clip": str(clip), "bank": "checkpoint", "bank_size": len(model.santa), **ev.to_dict()}]

    return _each_clip(a, answer, many=True)


def cmd_tags(a) -> int:
    """What the encoder itself hears (``MATS.tags``): the top AudioSet classes of each clip with their scores."""
    def answer(model, clip):
        tags = model.tags(clip, top=a.top)
        return [{"clip": str(clip), "output": ", ".join(f"{n} {s:.2f}" for n, s in tags), "tags": dict(tags)}]

    return _each_clip(a, answer)


def cmd_timeline(a) -> int:
    """One row per window of each clip (``mats.timeline.timeline``): start, end, text, familiarity, nearest."""
    from mats.timeline import timeline

    def answer(model, clip):
        windows = timeline(model, clip, task=a.task, santa=a.santa, batch_size=a.batch_size,
                           max_seconds=a.max_seconds, **_gen_kwargs(a))
        return [{"clip": str(clip), **w} for w in windows]

    return _each_clip(a, answer, many=True)


def _batch_files(paths: list[str]) -> list[Path]:
    """Audio files, .zip files and folders of them; anything else named is passed on, and reported per file."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in AUDIO_EXTS or f.suffix.lower() == ".zip")
        elif p.exists():
            out.append(p)
        else:
            raise MATSError(f"{p} does not exist: give audio files, .zip files of clips or folders")
    if not out:
        raise MATSError(f"no audio or .zip files found in {', '.join(paths)}")
    return out


def cmd_batch(a) -> int:
    """Many files (audio, .zip, folders) as the page's batch tab does (``mats.batch.gather`` + ``run_batch``): a
    caption, tags and, with --labels, zero-shot scores per file; a file that cannot be used gets its error."""
    import tempfile

    from mats.batch import gather, run_batch
    from mats.model import MATS

    _split_inputs(a)
    files = _batch_files(a.clips)
    model = MATS.from_pretrained(a.model, device=a.device, quantize=quantize_flag(a))
    with tempfile.TemporaryDirectory(prefix="mats-batch-") as work:
        items = gather([str(f) for f in files], work, names=[str(f) for f in files])
        rows = run_batch(model, items, labels=_labels(a), santa=a.santa, batch_size=a.batch_size,
                         max_seconds=a.max_seconds, **_gen_kwargs(a))
    failed = sum(1 for r in rows if r["error"])
    for r in rows:
        if r["error"]:
            print(f"error: {r['file']}: {r['error']}", file=sys.stderr)
    _emit(rows, a.output, many=True)
    return 1 if failed else 0


def cmd_tiny(a) -> int:
    from mats.testing import make_tiny_checkpoint

    path = make_tiny_checkpoint(a.out, lm=a.lm)
    print(f"wrote a tiny random MATS ({a.lm}) to {path}; try: mats caption {path} CLIP")
    return 0


def cmd_push(a) -> int:
    from mats.model import MATS

    model = MATS.from_pretrained(a.model, device="cpu", quantize="none")
    url = model.push_to_hub(a.repo_id, private=a.private)
    print(f"pushed {a.model} to {a.repo_id}: {url}")
    return 0


def cmd_bank(a) -> int:
    from mats.bank import rebuild_bank

    out = rebuild_bank(a.model, a.texts, out=a.out, size=a.size, clusters=a.clusters, seed=a.seed,
                       noise=a.noise, tau=a.tau, top_k=a.top_k)
    print(f"rebuilt the Santa bank of {a.model} from {', '.join(a.texts)}: {out}")
    return 0


def cmd_train(a) -> int:
    from mats.train import train_from_cli

    return train_from_cli(a.config, a.overrides, resume=a.resume, out=a.out)


def cmd_eval(a) -> int:
    from mats.eval.cli import eval_from_cli

    return eval_from_cli(a)


def cmd_corpus(a) -> int:
    from mats.corpus import corpus_from_cli

    return corpus_from_cli(a)


def cmd_align(a) -> int:
    from mats.encoders.align.run import align_from_cli

    return align_from_cli(a)


def cmd_align_cv(a) -> int:
    from mats.encoders.align.crossval import cross_validate

    return cross_validate(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mats", description="MATS: an audio-language model trained with text only.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, help_ in (("caption", "caption clips"), ("classify", "sound tags (+ zero-shot scores with --labels)"),
                        ("ask", "answer a question about clips")):
        s = sub.add_parser(name, help=help_)
        usage = "[MODEL] QUESTION CLIP [CLIP ...]" if name == "ask" else "[MODEL] CLIP [CLIP ...]"
        s.add_argument("inputs", nargs="+", metavar=usage.split(" ", 1)[0],
                       help=f"{usage}: MODEL (a checkpoint folder or Hub id) is optional, default $MATS_MODEL or "
                            "the shipped assets/mats-smollm2; clips are audio files or folders")
        s.add_argument("--model", "-m", default=None, help="checkpoint folder or Hub id (instead of the first word)")
        if name == "classify":
            s.add_argument("--labels", default=None, help='comma-separated labels, e.g. "dog,rain,siren"')
            s.add_argument("--santa-bank", default="labels", choices=SANTA_BANKS,
                           help="with --labels, what Santa mixes in: the labels' sentences (default) or the "
                                "checkpoint's bank captions")
        _gen_args(s)
        s.set_defaults(func=cmd_infer)

    # What the page does beyond one answer: Santa's evidence, a timeline of a long clip, many files at once.
    inputs_help = ("[MODEL] CLIP [CLIP ...]: MODEL (a checkpoint folder or Hub id) is optional, default $MATS_MODEL or "
                   "the shipped assets/mats-smollm2; clips are audio files or folders")
    s = sub.add_parser("explain", help="what Santa leaned on per clip: the bank captions (or --labels) it mixed in "
                                       "and how familiar the clip is")
    s.add_argument("inputs", nargs="+", metavar="[MODEL] CLIP", help=inputs_help)
    s.add_argument("--model", "-m", default=None, help="checkpoint folder or Hub id (instead of the first word)")
    s.add_argument("--labels", default=None, help='comma-separated labels: show the labels Santa mixes in when '
                                                  'classifying with them (as `mats classify --labels`)')
    s.add_argument("--top", type=int, default=5, help="captions (or labels) shown per clip (default: 5)")
    s.add_argument("--santa", type=float, default=None, help="Santa strength lambda in [0, 1] (default: checkpoint's)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    s.add_argument("--no-quantize", action="store_true", help=NO_QUANTIZE_HELP)
    s.add_argument("--output", "-o", default=None, help="write results to a .csv or .jsonl file instead of stdout")
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("tags", help="what the encoder hears: the top AudioSet classes of each clip and their scores "
                                    "(YAMNet encoders)")
    s.add_argument("inputs", nargs="+", metavar="[MODEL] CLIP", help=inputs_help)
    s.add_argument("--model", "-m", default=None, help="checkpoint folder or Hub id (instead of the first word)")
    s.add_argument("--top", type=int, default=5, help="tags per clip (default: 5)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    s.add_argument("--no-quantize", action="store_true", help=NO_QUANTIZE_HELP)
    s.add_argument("--output", "-o", default=None, help="write results to a .csv or .jsonl file instead of stdout")
    s.set_defaults(func=cmd_tags)

    s = sub.add_parser("timeline", help="a long clip as a timeline: one caption (or tags) per window")
    s.add_argument("inputs", nargs="+", metavar="[MODEL] CLIP", help=inputs_help)
    s.add_argument("--model", "-m", default=None, help="checkpoint folder or Hub id (instead of the first word)")
    s.add_argument("--task", choices=["caption", "classify"], default="caption",
                   help="caption each window (default) or tag it")
    s.add_argument("--batch-size", type=int, default=16, help="windows per encoder/LM pass (default: 16)")
    s.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                   help=f"longest clip accepted, in seconds (default: {DEFAULT_MAX_SECONDS:g})")
    _gen_args(s)
    s.set_defaults(func=cmd_timeline)

    s = sub.add_parser("batch", help="many files at once (audio, .zip or folders): caption, tags and zero-shot "
                                     "scores per file, failures included")
    s.add_argument("inputs", nargs="+", metavar="[MODEL] FILE",
                   help="[MODEL] FILE [FILE ...]: MODEL is optional as for caption; files are audio, .zip files "
                        "of clips or folders")
    s.add_argument("--model", "-m", default=None, help="checkpoint folder or Hub id (instead of the first word)")
    s.add_argument("--labels", default=None, help='comma-separated labels for zero-shot scores, e.g. "dog,rain"')
    s.add_argument("--batch-size", type=int, default=8, help="clips per encoder/LM pass (default: 8)")
    s.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                   help=f"longest clip accepted, in seconds (default: {DEFAULT_MAX_SECONDS:g})")
    _gen_args(s)
    s.set_defaults(func=cmd_batch)

    s = sub.add_parser("train", help="train a MATS on text only from a YAML/JSON config")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.max_steps=100")
    s.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output folder")
    s.add_argument("--out", default=None, help="output folder (overrides the config's)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="evaluate checkpoints on clips (classification, captioning, QA)")
    from mats.eval.cli import add_eval_args

    add_eval_args(s)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("bank", help="Santa memory bank tools")
    bsub = s.add_subparsers(dest="bank_command", required=True, metavar="ACTION")
    b = bsub.add_parser("build", help="rebuild a model's Santa bank from other captions (domain adaptation)")
    b.add_argument("model")
    b.add_argument("texts", nargs="+", help="caption files (any format mats.data reads, or plain text)")
    b.add_argument("--out", default=None, help="write a new checkpoint folder here (default: update MODEL in place)")
    b.add_argument("--size", type=int, default=None, help="bank size (default: the config's)")
    b.add_argument("--clusters", type=int, default=None)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--noise", type=float, default=None, metavar="VAR",
                   help="noise variance on the bank's caption embeddings (0 = clean; default: the config's "
                        "santa.bank_noise_variance, else the training noise)")
    b.add_argument("--tau", type=float, default=None, help="retrieval temperature (default: the config's)")
    b.add_argument("--top-k", type=int, default=None, help="captions mixed per clip (default: the config's)")
    b.set_defaults(func=cmd_bank)

    # Building the offline encoder: the corpus it is aligned on, the alignment, its cross-validation. Their flags
    # live with them (torch-free modules), so `mats --help` stays fast.
    import mats.corpus
    from mats.encoders.align.args import add_align_args, add_cv_args

    raw = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser("corpus", help="synthesize the captioned audio corpus the offline encoder is aligned on",
                       description=mats.corpus.__doc__, formatter_class=raw)
    mats.corpus.add_corpus_args(s)
    s.set_defaults(func=cmd_corpus)

    s = sub.add_parser("align", help="align the offline encoder's audio projection to the locked MiniLM text tower",
                       formatter_class=raw)
    add_align_args(s)
    s.set_defaults(func=cmd_align)

    s = sub.add_parser("align-cv", help="cross-validate the `mats align` recipe over the three real folds",
                       formatter_class=raw)
    add_cv_args(s)
    s.set_defaults(func=cmd_align_cv)

    s = sub.add_parser("push", help="upload a checkpoint to the Hugging Face Hub with a model card")
    s.add_argument("model")
    s.add_argument("repo_id")
    s.add_argument("--private", action="store_true")
    s.set_defaults(func=cmd_push)

    s = sub.add_parser("tiny", help="write a tiny random checkpoint (checks an install with no downloads)")
    s.add_argument("out")
    s.add_argument("--lm", choices=["gpt2", "llama"], default="gpt2")
    s.set_defaults(func=cmd_tiny)
    return p


def _quiet_transformers() -> None:
    """Weight-loading progress bars and warnings drown the one line a user needs; --debug restores them."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Passing `(repetition_penalty|no_repeat_ngram_size)`")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.debug:
        _quiet_transformers()
    try:
        return a.func(a)
    except (MATSError, ValueError, OSError) as e:
        if a.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
