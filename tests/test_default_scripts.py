"""The scripts that build and evaluate the shipped defaults: their small, testable pieces."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _scripts import load_script  # tests/_scripts.py

def test_probe_rate_is_read_from_the_last_log_record(tmp_path):
    gpu = load_script("train_defaults_gpu")
    (tmp_path / "train_config.json").write_text(json.dumps({"train": {"batch_size": 64}}))
    (tmp_path / "log.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [
            {"step": 10, "loss": 3.0, "samples_per_s": 128.0},
            {"step": 20, "val_loss": 2.9},
            {"step": 20, "loss": 2.8, "samples_per_s": 320.0},
        ]) + "\n"
    )
    assert gpu.steps_per_second(tmp_path / "log.jsonl") == pytest.approx(5.0)


def test_probe_without_rate_records_is_an_error(tmp_path):
    gpu = load_script("train_defaults_gpu")
    (tmp_path / "train_config.json").write_text(json.dumps({"train": {"batch_size": 8}}))
    (tmp_path / "log.jsonl").write_text(json.dumps({"step": 5, "val_loss": 3.0}) + "\n")
    with pytest.raises(RuntimeError, match="no samples_per_s"):
        gpu.steps_per_second(tmp_path / "log.jsonl")


def test_card_metrics_flatten_an_evaluation_entry():
    ev = load_script("evaluate_defaults")
    entry = {"esc50": {"zero_shot_top1": 0.6781, "mats_classify_top1": {"0.0": 0.1609, "0.3": 0.1724},
                       "mats_rank_top1": {"0.0": 0.4023},
                       "caption": {"0.0": {"names_source": 0.2759, "similarity": 0.3}}},
             "round_trip": {"0": {"top1": 0.7333, "rank_top1": 0.8167}, "0.015": {"top1": 0.5333}}}
    assert ev.card_metrics(entry) == {
        "esc50_encoder_zero_shot": 0.678, "esc50_mats_classify_lambda0": 0.161, "esc50_mats_classify_lambda0.3": 0.172,
        "esc50_mats_rank_lambda0": 0.402, "esc50_caption_names_source_lambda0": 0.276,
        "round_trip_noise0": 0.733, "round_trip_rank_noise0": 0.817, "round_trip_noise0.015": 0.533,
    }


def test_update_card_writes_config_and_readme(tmp_path):
    from mats.config import MATSConfig
    from mats.testing import make_tiny_checkpoint

    ev = load_script("evaluate_defaults")
    folder = make_tiny_checkpoint(tmp_path / "ckpt")
    ev.update_card(Path(folder), {"esc50_mats_classify_lambda0.3": 0.172})
    assert MATSConfig.load(folder).train_info["eval"] == {"esc50_mats_classify_lambda0.3": 0.172}
    assert "| esc50_mats_classify_lambda0.3 | 0.172 |" in (Path(folder) / "README.md").read_text()
