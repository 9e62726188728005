"""`mats eval`: the command-line arguments and the thin runner over ``mats.eval.evaluate``."""
from __future__ import annotations

import argparse
import sys

from mats.config import SANTA_BANKS
from mats.eval.clips import TASKS
from mats.eval.report import summary_table
from mats.eval.run import DEFAULT_TEMPLATE, evaluate
from mats.quantize import NO_QUANTIZE_HELP, quantize_flag
from mats.prompts import EVAL_TASK_ALIASES

__all__ = ["add_eval_args", "eval_from_cli"]


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", required=True, metavar="CKPT",
                   help="checkpoint folder or Hub id; repeat to compare several (--model A --model B)")
    p.add_argument("--task", required=True, choices=[*TASKS, *EVAL_TASK_ALIASES])
    p.add_argument("--clips", required=True, metavar="DIR", help="folder of audio clips (searched recursively)")
    p.add_argument("--meta", required=True, metavar="CSV",
                   help="classify: labels CSV (ESC-50, UrbanSound8K, file,label); caption: references "
                        "(Clotho, AudioCaps, file,caption); qa: Clotho-AQA or file,question,answer; "
                        "hearing: file,coarse,family,sources (`mats corpus`'s corpus.csv)")
    p.add_argument("--labels", default=None, help="classify: comma-separated label set (default: every label in --meta)")
    p.add_argument("--santa", default=None, metavar="L1,L2", help="Santa strengths to sweep, e.g. 0,0.3,0.6 (default: each checkpoint's)")
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help="classify: text prompt for a label (default: %(default)r)")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only N clips, evenly spaced over the metadata (a quick look)")
    p.add_argument("--beams", type=int, default=None, help="beam size (default: checkpoint's)")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--no-quantize", action="store_true", help=NO_QUANTIZE_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--santa-bank", default="labels", choices=SANTA_BANKS,
                   help="classify: what Santa mixes in, the label set's sentences (default, as MATS.classify) or the "
                        "checkpoint's bank captions")
    p.add_argument("--no-rank", action="store_true",
                   help="classify: skip 'MATS rank' (the LM scoring every label as its answer; costs one LM pass "
                        "over all labels per clip)")


def eval_from_cli(args) -> int:
    if args.task == "hearing":
        from mats.hearing import hearing_from_cli

        return hearing_from_cli(args)
    labels = [l.strip() for l in args.labels.split(",") if l.strip()] if args.labels else None
    results = evaluate(
        args.model, args.task, args.clips, args.meta, santa=args.santa, labels=labels, out=args.out,
        limit=args.limit, batch_size=args.batch_size, template=args.template, device=args.device,
        gen={"num_beams": args.beams, "max_new_tokens": args.max_new_tokens},
        progress=not getattr(args, "no_progress", False), rank=not getattr(args, "no_rank", False),
        quantize=quantize_flag(args), santa_bank=getattr(args, "santa_bank", "labels"),
    )
    print("\n".join(summary_table(results)))
    if results["mapping_rule"]:
        print(f"\nMATS classify mapping rule: {results['mapping_rule']}")
    d = results["data"]
    if d["clips_skipped"]:
        print(f"warning: {d['clips_skipped']} unreadable clip(s) skipped (listed in report.md): "
              + ", ".join(s["clip"] for s in d["skipped"][:5]), file=sys.stderr)
    if d["missing_clips"]:
        print(f"note: {d['missing_clips']} metadata entries have no clip in {args.clips}", file=sys.stderr)
    print(f"wrote {args.out}/results.json, predictions.jsonl, report.md and plots", file=sys.stderr)
    return 0
