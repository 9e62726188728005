"""The evaluation runner: `mats eval` and ``evaluate()``.

    from mats.eval import evaluate
    evaluate(["user/mats-clap", "ckpt/"], "classify", "ESC-50/audio", "ESC-50/meta/esc50.csv",
             santa=[0, 0.3, 0.6], out="results/esc50")

One run = one task (classify | caption | qa) on one folder of clips and its metadata CSV, for one or more
checkpoints and one or more Santa strengths (lambda). For each model the clips are decoded and embedded by
its encoder once (``model.embed_clips``); every lambda then only re-mixes the cached embeddings
(``model.condition``) and decodes (``model.generate_from_embeddings``) in batches, so a sweep costs one
audio pass. Models whose encoders have the same config share the cached embeddings.

The library, one concern a module (the runner is ``evaluate`` and the thin CLI over it):

* ``metadata``: the CSV readers (ESC-50, UrbanSound8K, Clotho, AudioCaps, Clotho-AQA, generic);
* ``clips``: finding each entry's clip (``ClipIndex``), the evaluation data (``load_eval_data``), embedding
  and caching the clips;
* ``run``: ``evaluate()`` and the classify / caption / qa loops over a ``RunContext``;
* ``roundtrip``: ``round_trip``, the text-only part alone;
* ``report``: the summary table, report.md, plots, results.json / predictions.jsonl;
* ``cli``: ``add_eval_args`` and ``eval_from_cli`` (`mats eval`).

This package imports torch lazily, so ``mats --help`` stays fast. ``mats.evaluate`` re-exports these names
for older imports.
"""
from mats.eval.metadata import audiocaps_candidates, read_caption_csv, read_label_csv, read_qa_csv
from mats.eval.clips import TASKS, ClipIndex, EvalData, Item, load_eval_data
from mats.eval.report import summary_table, write_outputs, write_plots
from mats.eval.run import DEFAULT_TEMPLATE, RunContext, evaluate
from mats.eval.roundtrip import round_trip
from mats.eval.cli import add_eval_args, eval_from_cli

__all__ = ["evaluate", "add_eval_args", "eval_from_cli", "load_eval_data", "EvalData", "Item", "ClipIndex",
           "RunContext", "read_label_csv", "read_caption_csv", "read_qa_csv", "audiocaps_candidates",
           "round_trip", "summary_table", "write_outputs", "write_plots", "DEFAULT_TEMPLATE", "TASKS"]
