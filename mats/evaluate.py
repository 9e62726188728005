"""Compatibility: the evaluation runner is the package ``mats.eval`` (metadata, clips, run, roundtrip, report,
cli). Every name this module held is re-exported here, so ``from mats.evaluate import evaluate`` keeps working;
new code imports from ``mats.eval``. Patch a name where it is looked up (``mats.eval.run``, ``mats.eval.clips``,
...): rebinding it here does not reach the package."""
from __future__ import annotations

from mats.eval.cli import add_eval_args, eval_from_cli
from mats.eval.clips import (  # noqa: F401
    _LOOSE_RE,
    AUDIO_EXTS,
    TASKS,
    ClipIndex,
    EvalData,
    Item,
    _bar,
    _embed,
    _encoder_key,
    _label_key,
    _loose,
    load_eval_data,
)
from mats.eval.metadata import (  # noqa: F401
    _read_csv,
    _records,
    _start_seconds,
    audiocaps_candidates,
    read_caption_csv,
    read_label_csv,
    read_qa_csv,
)
from mats.eval.report import (  # noqa: F401
    _fmt,
    _lam_key,
    _report,
    _sweep_series,
    _table,
    _versions,
    summary_table,
    write_outputs,
    write_plots,
)
from mats.eval.roundtrip import round_trip  # noqa: F401
from mats.eval.run import (  # noqa: F401
    DEFAULT_TEMPLATE,
    MAX_LISTED,
    TOP_K,
    RunContext,
    _answer_type,
    _class_scores,
    _generate,
    _model_name,
    _parse_santa,
    _rank_labels,
    _run_caption,
    _run_classify,
    _run_qa,
    evaluate,
)

__all__ = ["evaluate", "add_eval_args", "eval_from_cli", "load_eval_data", "EvalData", "Item",
           "read_label_csv", "read_caption_csv", "read_qa_csv", "audiocaps_candidates", "DEFAULT_TEMPLATE"]
