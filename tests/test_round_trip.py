"""Standing check of the text-only part of the shipped checkpoints (issue "LM gap"): the clean text embedding of
"the sound of {label}" for all 50 ESC-50 + 10 UrbanSound8K labels must decode back to its label at least as often
as assets/eval_results.json records (minus a small margin for numerics on another CPU), so it cannot silently
regress. The target (0.95) is not reached yet; the recorded value is what this guards."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "assets" / "eval_results.json"
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["mats-gpt2-mini", "mats-smollm2"])
def test_round_trip_does_not_regress(name):
    from mats import MATS
    from mats.eval import round_trip
    from mats.hearing import ESC50_LABELS, US8K_LABELS

    report = json.loads(RESULTS.read_text())
    recorded = report["models"][name]["round_trip"]["0"]
    model = MATS.from_pretrained(ROOT / "assets" / name, device="cpu")
    gen = report["generation"]
    per = [round_trip(model, labels, gen=gen) for labels in (ESC50_LABELS, US8K_LABELS)]
    n = sum(r["n"] for r in per)
    top1 = sum(r["top1"] * r["n"] for r in per) / n
    assert top1 >= recorded["top1"] - 0.05, (top1, recorded["top1"], [f for r in per for f in r["failures"]][:10])
    rank = sum(r["rank_top1"] * r["n"] for r in per) / n  # the LM choosing among the labels itself
    assert rank >= recorded["rank_top1"] - 0.05, (rank, recorded["rank_top1"], [f for r in per for f in r["rank_failures"]][:10])
